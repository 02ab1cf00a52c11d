"""A fake API Gateway management API (``@connections``) on a real HTTP port.

moto's apigatewaymanagementapi accepts every post and never answers 410, so
the handlers' delivery paths are tested against this instead::

    with FakeManagementApi() as api:
        api.gone.add(connection_id)           # 410 GoneException for that id
        api.faults[other] = (403, "ForbiddenException")
        api.fail(third, 429, "LimitExceededException", times=1)  # first post only
        ... ChannelApp({..., ENV_MANAGEMENT_ENDPOINT: api.endpoint}) ...
        api.frames(connection_id)             # JSON frames it received (posts and route responses)
        api.statuses(third)                   # [429, 200]: every answer, in order
        api.late.add(fourth)                  # takes the post, answers once the client hung up

Answers are shaped like API Gateway's: errors carry ``x-amzn-ErrorType`` (which
botocore names the exception by) and a JSON body.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

GONE = (410, "GoneException")
#: How long a late answer waits for the client to hang up, at most.
HANG_UP_WAIT_SECONDS = 30


class _Server(ThreadingHTTPServer):
    # the sender opens up to its posts in flight at once; socketserver's
    # default backlog of 5 would drop the other connection attempts
    request_queue_size = 256


class FakeManagementApi:
    """POST /{stage}/@connections/{id}: records (id, body) and answers 200, or
    the status and error type set for the id in :attr:`faults` (or 410 Gone
    for ids in :attr:`gone`). :meth:`fail` sets a fault for the first N posts
    to an id only; ids in :attr:`gone` or :attr:`faults` answer as set there
    whatever :meth:`fail` says."""

    def __init__(self, stage: str = "dev"):
        self.stage = stage
        #: Connection ids that answer 410 GoneException.
        self.gone: set[str] = set()
        #: Connection id -> (HTTP status, x-amzn-ErrorType) to answer instead of 200.
        self.faults: dict[str, tuple[int, str]] = {}
        #: Every post that was answered 200, in arrival order: (connection id, body).
        self.posts: list[tuple[str, bytes]] = []
        #: What each connection received, in order: its posts answered 200 and
        #: the route responses :meth:`route_response` recorded.
        self.received: list[tuple[str, bytes]] = []
        #: Every post, whatever the answer: (connection id, status).
        self.attempts: list[tuple[str, int]] = []
        #: The client's port of every post, in arrival order: one per TCP connection used.
        self.client_ports: list[int] = []
        self._sockets: set[Any] = set()
        #: Connection ids whose posts are delivered (recorded as 200) but
        #: answered only after the client gave up waiting and hung up.
        self.late: set[str] = set()
        #: Connection id -> [status, error type, posts left]: :meth:`fail`'s faults.
        self._limited: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # a short poll interval: shutdown() waits up to one interval
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-management-api", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an IPv4 server's (typeshed allows bytes for other families)
        return f"http://{host}:{port}/{self.stage}"

    # --- what was sent ----------------------------------------------------------

    def frames(self, connection_id: str) -> list[Any]:
        """The JSON-decoded frames ``connection_id`` received, in order:
        posts and route responses."""
        return [json.loads(body) for body in self.bodies(connection_id)]

    def bodies(self, connection_id: str) -> list[bytes]:
        """The bodies ``connection_id`` received (posts and route responses), in order."""
        with self._lock:
            return [body for cid, body in self.received if cid == connection_id]

    def all_received(self) -> list[bytes]:
        """Every body any connection received (posts and route responses), in order."""
        with self._lock:
            return [body for _, body in self.received]

    def all_bodies(self) -> list[bytes]:
        """Every body posted and answered 200, in order."""
        with self._lock:
            return [body for _, body in self.posts]

    def recipients(self) -> list[str]:
        """The connection ids posted to and answered 200, in order (repeats included)."""
        with self._lock:
            return [cid for cid, _ in self.posts]

    def route_response(self, connection_id: str, body: bytes) -> None:
        """Record what API Gateway sends a connection as a two-way route's
        answer: no post, but the client receives it (in :meth:`frames`)."""
        with self._lock:
            self.received.append((connection_id, body))

    def statuses(self, connection_id: str) -> list[int]:
        """The status of every post to ``connection_id``, in arrival order."""
        with self._lock:
            return [status for cid, status in self.attempts if cid == connection_id]

    def clear(self) -> None:
        with self._lock:
            self.posts.clear()
            self.received.clear()
            self.attempts.clear()
            self.client_ports.clear()

    # --- faults -----------------------------------------------------------------

    def fail(self, connection_id: str, status: int, error_type: str | None, times: int | None = None) -> None:
        """Answer posts to ``connection_id`` with ``status`` and ``error_type``
        (the ``x-amzn-ErrorType`` header; None sends none): the next ``times``
        posts only, then 200 again, or every post when ``times`` is None."""
        with self._lock:
            if times is None:
                self._limited.pop(connection_id, None)
                self.faults[connection_id] = (status, error_type)  # type: ignore[assignment]
            else:
                self.faults.pop(connection_id, None)
                self._limited[connection_id] = [status, error_type, times]

    def close_idle_connections(self) -> None:
        """Close every client connection from the server's side, as a server
        does with keep-alive connections idle too long."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- lifecycle --------------------------------------------------------------

    def _answer_for(self, connection_id: str) -> tuple[int, str | None]:
        if connection_id in self.gone:
            return GONE
        if connection_id in self.faults:
            return self.faults[connection_id]
        with self._lock:
            limited = self._limited.get(connection_id)
            if limited and limited[2] > 0:
                limited[2] -= 1
                return limited[0], limited[1]
        return 200, None

    def _record(self, connection_id: str, body: bytes, status: int) -> None:
        with self._lock:
            self.attempts.append((connection_id, status))
            if status == 200:
                self.posts.append((connection_id, body))
                self.received.append((connection_id, body))

    def start(self) -> "FakeManagementApi":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeManagementApi":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _handler_for(api: FakeManagementApi) -> type[BaseHTTPRequestHandler]:
    prefix = f"/{api.stage}/@connections/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sender's pool expects

        def setup(self) -> None:
            super().setup()
            with api._lock:
                api._sockets.add(self.connection)

        def finish(self) -> None:
            with api._lock:
                api._sockets.discard(self.connection)
            super().finish()

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            if not path.startswith(prefix) or "/" in path[len(prefix):]:
                self._send(404, "NotFoundException", {"message": f"no route for POST {path}"})
                return
            connection_id = unquote(path[len(prefix):])  # botocore sends "=" as %3D
            status, error_type = api._answer_for(connection_id)
            with api._lock:
                api.client_ports.append(self.client_address[1])
            api._record(connection_id, body, status)
            if status == 200 and connection_id in api.late:
                self._wait_for_hang_up()
            if status == 200:
                self._send(200, None, None)
            else:
                self._send(status, error_type, {"message": None})

        def _wait_for_hang_up(self) -> None:
            """Return once the client closed the connection (it stopped
            waiting for the answer), or after HANG_UP_WAIT_SECONDS."""
            self.connection.settimeout(HANG_UP_WAIT_SECONDS)
            try:
                while self.connection.recv(4096):
                    pass
            except OSError:
                pass
            self.close_connection = True

        def _send(self, status: int, error_type: str | None, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # a late answer to a client that hung up
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # one line per post is noise
            pass

    return Handler
