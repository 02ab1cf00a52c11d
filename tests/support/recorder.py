"""An HTTP server on 127.0.0.1 that keeps every request and answers as the test says.

``Recorder(answer)`` answers each POST with ``answer(request)``, a ``(status,
body)`` pair (bytes sent as they are, a dict or list as JSON) or :data:`HOLD`;
what arrived is in :attr:`Recorder.requests`, as :class:`Received`.
:class:`RecordingAws` stands in for DynamoDB, SQS and a stage's management API
at once, to see where each client went and what it signed with::

    with RecordingAws() as aws:
        ... ChannelApp({"AWS_ENDPOINT_URL": aws.endpoint, ...}) ...
        aws.scopes()                        # {"KEY/eu-west-1/dynamodb", ...}
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Self

#: What an answer is: the HTTP status and the body (bytes, or a dict or list sent as JSON), or HOLD.
Answer = Any
#: An answer that never comes: the server holds the request until the test ends (at most
#: HOLD_SECONDS, so that a broken build fails instead of hanging).
HOLD = object()
HOLD_SECONDS = 30
#: The credential scope of a SigV4 Authorization header: key, region, service.
CREDENTIAL_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Received:
    method: str
    target: str  # the path and query, as sent
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """Serves from ``with`` to its end, HTTP/1.1 with keep-alive (as AWS's
    clients expect); ``url`` ends in ``/``."""

    def __init__(self, answer: Callable[[Received], Answer], content_type: str = "application/json") -> None:
        self.requests: list[Received] = []
        self._released = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Received(self.command, self.path,
                                   {name.lower(): value for name, value in self.headers.items()}, body)
                recorder.requests.append(request)
                reply = answer(request)
                if reply is HOLD:
                    recorder._released.wait(HOLD_SECONDS)
                    self.close_connection = True
                    return
                status, content = reply
                if isinstance(content, (dict, list)):
                    content = json.dumps(content).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> Self:
        # a short poll: shutdown() waits for the loop to see it
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


class RecordingAws(Recorder):
    """DynamoDB, SQS and a stage's management API on one port: answers posts
    to ``@connections`` 200 and every other request a ValidationException,
    which no client retries."""

    def __init__(self) -> None:
        super().__init__(self._answer, content_type="application/x-amz-json-1.0")

    @staticmethod
    def _answer(request: Received) -> Answer:
        if "/@connections/" in request.target:
            return 200, b""
        return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException", "message": "recorded"}

    @property
    def endpoint(self) -> str:
        """The URL without its ``/``: an ``AWS_ENDPOINT_URL``, or a stage's with ``/{stage}`` added."""
        return self.url.rstrip("/")

    def scopes(self) -> set[str]:
        """``KEY/REGION/SERVICE`` of every request's signature."""
        found = set()
        for request in self.requests:
            match = CREDENTIAL_SCOPE.search(request.headers.get("authorization", ""))
            assert match, request.headers
            found.add("/".join(match.groups()))
        return found
