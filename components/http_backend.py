"""The reference HTTP backend: ``python -m channel_server.http_backend``.

What it is
----------
With ``ChannelServerArgs.backend`` set, API Gateway calls no Lambda function:
each WebSocket event (a ``$connect``, a ``$disconnect``, every message frame)
is POSTed as one JSON *envelope* to an HTTP server you run
(``channel_server.backend`` is that contract). This is such a server, small
enough to start from. It serves the channel protocol with the very code the
Lambda handlers run (``channel_server.handlers.app.ChannelApp``: the same
table, the same store, the same sender), so the two backends cannot drift:

- each envelope becomes the Lambda event it stands for
  (``backend.lambda_event``) and goes to the ``ChannelApp`` method of its
  route, found in ``spec.ROUTES`` (a route key it does not know is served as
  ``$default``);
- the method's reply frame is the HTTP answer's body, which API Gateway sends
  back to the client on the two-way routes (join, publish, ping,
  ``$default``);
- messages for the other members of a channel go out through API Gateway's
  management API (``POST @connections/{id}``), as the Lambda handlers post
  them.

How API Gateway reaches it
--------------------------
Every route's integration POSTs to the one URL deployed as ``backend.url``
(``backendUrl``). The path is not read: POST the envelope to ``/`` or to any
other path, so the URL may carry whatever path a proxy in front needs. API
Gateway must be able to reach the URL (a public https endpoint, or one behind
a load balancer); it waits ``backend.timeout_ms`` for an answer, and that is
this server's ``--timeout-ms``: a publish stops starting posts to members in
time to answer within it.

Run it::

    export AWS_REGION=us-east-1            # and credentials, as for any AWS client
    python -m channel_server.http_backend --port 8000 \\
        --table chat-connections-1a2b3c \\
        --management-endpoint https://k7x2mq9ehd.execute-api.us-east-1.amazonaws.com/dev

Against local mode (its table, its DynamoDB, its management API) it needs no
AWS account at all: see "Region and credentials" below.

It prints ``channel-server HTTP backend on http://127.0.0.1:8000/`` on stdout
once it serves (flushed at once, the only line it prints there: whoever
started it reads the URL from it, ``http://[::1]:8000/`` for an IPv6 host),
logs one line per request (route key, connection id, status, time;
never a frame's content) on stderr, and stops cleanly on Ctrl-C or SIGTERM
(exit status 0): it stops accepting, finishes the requests in flight (for up
to the timeout), then exits. A port in use is one line on stderr and exit
status 1; a missing or invalid setting is an argparse error (exit status 2)
that names what to set.

Flags (a flag wins over its environment variable)
-------------------------------------------------
``--host ADDR``
    The address to listen on (default 127.0.0.1; 0.0.0.0 for every interface).
``--port N``
    Required: the port to listen on; 0 picks a free one (printed when ready).
``--table NAME``
    The connections table; else ``$CHANNEL_TABLE_NAME``. Required.
``--management-endpoint URL``
    The stage's management API, ``https://{api}.execute-api.{region}.amazonaws.com/{stage}``;
    else ``$CHANNEL_MANAGEMENT_ENDPOINT``. Required.
``--index NAME``
    The table's channel index; else ``$CHANNEL_INDEX_NAME``; else ``byChannel``
    (``spec.CHANNEL_INDEX``, the index the component declares).
``--dynamodb-endpoint URL``
    Another DynamoDB (DynamoDB Local, local mode's embedded one); sets
    ``AWS_ENDPOINT_URL_DYNAMODB``. Default: the environment's, that is AWS.
``--timeout-ms N``
    The integration's timeout, as deployed (``backend.timeout_ms``): 50 to
    29000, default 29000.
``--workers N``
    Requests the channel code runs at once (default 64); more wait their turn,
    their wait counted against the timeout.
``--handler-log-level LEVEL``
    The level of the channel code's own logging (default WARNING).

Environment
-----------
Every other ``CHANNEL_*`` variable is handed to ``ChannelApp`` as it is
(``CHANNEL_ID_PATTERN``, ``CHANNEL_MAX_MESSAGE_BYTES``,
``CHANNEL_POSTS_IN_FLIGHT``, ...: the names in ``channel_server.handlers.spec``).
Without ``CHANNEL_FANOUT_QUEUE_URL`` a publish posts to every member itself;
with it, members beyond ``CHANNEL_INLINE_FANOUT_LIMIT`` are queued, and
something must consume that queue (``ChannelApp.fanout``): the component
builds no queue and no fan-out function for an HTTP backend.

Region and credentials
----------------------
They come from the environment as for any AWS client (``AWS_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, a container
role); both are checked at start-up, and one that is missing is an argparse
error naming what to set.

When every endpoint it talks to is on loopback (``localhost``, 127.0.0.0/8,
``::1``): DynamoDB's (``--dynamodb-endpoint``, else
``AWS_ENDPOINT_URL_DYNAMODB``, else ``AWS_ENDPOINT_URL``), the management
API, and SQS's when ``CHANNEL_FANOUT_QUEUE_URL`` sets a queue, nothing there
checks a signature: what the environment lacks, it takes from local mode
(``channel_server.local.placeholders``), the placeholder credentials
``local``/``local`` and the region us-east-1, and says so in one log line at
start-up. Credentials the environment has are still used (DynamoDB Local
keeps one database per access key and region): a signature carries the
access key id, never the secret key. Placeholders never go anywhere else:
with any endpoint off this machine the checks above stand.

What it answers
---------------
``POST`` with an envelope:
    the route's answer as ``ChannelApp`` returns it: 200, with the reply frame
    as an ``application/json`` body on the message routes, and no body on
    ``$connect`` and ``$disconnect``. Failures in the channel code become
    protocol replies there (``joinFailure``, ``error``, ...), still 200.
``400``
    The body is not UTF-8 JSON, or not an envelope (a field missing or of the
    wrong type): ``{"message": "..."}`` says which.
``405``
    Any method but POST (``Allow: POST``).
``411`` / ``413``
    No ``Content-Length``; a body over 1 MiB (an envelope of API Gateway's
    largest frame, 128 KiB, escaped, is under 800 KiB).
``500``
    The channel code raised (it rarely does: it answers most failures with a
    protocol reply).
``503``
    No app yet (``HttpBackend`` built without one), or the server is stopping.

Every non-2xx answer carries ``{"message": "..."}``; API Gateway shows the
client none of it: it refuses a ``$connect``, and answers a frame with its
"Internal server error" frame.

From Python
-----------
``HttpBackend(app, host=..., port=...)`` binds at once, so its ``url`` is known
before anything else is built; ``app`` is a ``ChannelApp``, an environment
mapping to build one from, or a function that builds one, and may be supplied
later with :meth:`HttpBackend.set_app`. ``start()`` serves on a thread,
``stop()`` stops; as a context manager it does both.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, Callable, Mapping, Union, cast

from . import backend as contract
from .handlers import aws, sigv4, spec
from .handlers.app import ChannelApp
from .handlers.events import WebSocketEvent
# where it is safe to sign with local mode's placeholders; shared with the publisher
from .local.placeholders import is_loopback, local_placeholders  # noqa: F401 (is_loopback: kept importable here)
# the port it listens on, bound as local mode binds its own (PortInUse: importable here)
from .local.ports import BACKEND_ADVICE, PortInUse, bind, port_in_use_reported  # noqa: F401

log = logging.getLogger("channel_server.http_backend")

DEFAULT_HOST = "127.0.0.1"
#: The largest request body read. API Gateway's largest frame is 128 KiB, and
#: its envelope escapes each byte of it into at most 6 (``\\u0001``): under
#: 800 KiB.
MAX_BODY_BYTES = 1024 * 1024
#: A body over the limit is read and dropped, up to this much, so the client
#: gets its 413 rather than a reset connection; a longer one is cut off.
MAX_DISCARD_BYTES = 16 * MAX_BODY_BYTES
#: Requests the channel code runs at once, by default.
DEFAULT_WORKERS = 64
#: Seconds a connection may sit idle between requests (or send one slowly)
#: before it is closed.
IDLE_TIMEOUT_SECONDS = 60
JSON = "application/json"

#: The ``ChannelApp`` method behind each route key (``spec.ROUTES``).
ROUTE_METHODS: Mapping[str, str] = MappingProxyType({route.key: route.function for route in spec.ROUTES})
#: Where an envelope of a route key this table lacks goes, as API Gateway
#: sends a frame no route matches.
DEFAULT_ROUTE = "$default"
#: Methods that take Lambda's context object (its remaining time bounds their work).
TAKES_CONTEXT = frozenset(
    name for name in ROUTE_METHODS.values() if "context" in inspect.signature(getattr(ChannelApp, name)).parameters
)

#: What :class:`HttpBackend` serves: a ChannelApp, an environment to build one
#: from (on the first request), or a function that builds one.
AppSource = Union[ChannelApp, Mapping[str, str], Callable[[], ChannelApp]]


class RequestContext:
    """The part of Lambda's context object the channel code reads: the time
    left before API Gateway gives up on this request (the integration's
    timeout, counted from ``started``, a ``time.monotonic()`` value)."""

    def __init__(self, timeout_ms: int, started: float, request_id: str = ""):
        self.aws_request_id = request_id
        self.deadline = started + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, JSON body (None: none) and, for the log, the
    route key and connection id of the envelope ("-" when unknown)."""

    status: int
    body: bytes | None = None
    route_key: str = "-"
    connection_id: str = "-"


def _problem(status: int, message: str, route_key: str = "-", connection_id: str = "-") -> Answer:
    return Answer(status, json.dumps({"message": message}).encode(), route_key, connection_id)


class HttpBackend:
    """The channel protocol over HTTP, for API Gateway's HTTP integrations.

    Binds ``host:port`` (0: a free port) when built, so :attr:`url` is known
    at once; raises :class:`PortInUse` when the port is taken. ``app`` (see
    :data:`AppSource`) may come now or later (:meth:`set_app`); until then
    every request is answered 503. ``timeout_ms`` is the integration's
    timeout; ``workers`` how many requests run the channel code at once."""

    def __init__(
        self, app: AppSource | None = None, *, host: str = DEFAULT_HOST, port: int = 0,
        timeout_ms: int = contract.DEFAULT_TIMEOUT_MS, workers: int = DEFAULT_WORKERS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ):
        if not contract.MIN_TIMEOUT_MS <= timeout_ms <= contract.MAX_TIMEOUT_MS:
            raise ValueError(f"timeout_ms must be from {contract.MIN_TIMEOUT_MS} to {contract.MAX_TIMEOUT_MS}")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.timeout_ms = timeout_ms
        self.max_body_bytes = max_body_bytes
        self._app: ChannelApp | None = None
        self._build: Callable[[], ChannelApp] | None = None
        self._building = threading.Lock()
        self._state = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._server = _Server(host, port, self)
        # The channel code runs on long-lived threads: its clients keep an
        # event loop and idle connections per thread, reused request after request.
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="channel-app")
        if app is not None:
            self.set_app(app)

    # --- where ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return cast(str, self._server.server_address[0])  # a TCP server's (host, port)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://host:port/``: where API Gateway (or a test) POSTs envelopes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # --- the app ----------------------------------------------------------------------

    def set_app(self, app: AppSource) -> None:
        """Serve ``app``: a ChannelApp, an environment mapping (a ChannelApp is
        built from it on the first request) or a function returning one
        (called on the first request, again after it raised)."""
        ready: ChannelApp | None = None
        build: Callable[[], ChannelApp] | None = None
        if isinstance(app, Mapping):
            environ = dict(app)
            build = lambda: ChannelApp(environ)  # noqa: E731
        elif callable(app):
            build = app
        else:
            ready = app
        with self._building:
            self._app, self._build = ready, build

    @property
    def app(self) -> ChannelApp | None:
        """The app served, built now if it was given as a source; None when
        none was given."""
        if self._app is None and self._build is not None:
            with self._building:
                if self._app is None and self._build is not None:
                    self._app = self._build()
                    self._build = None
        return self._app

    # --- serving ----------------------------------------------------------------------

    def start(self) -> "HttpBackend":
        """Serve on a thread of its own; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-backend", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let the requests in flight finish (for up to
        ``grace`` seconds, by default the timeout: API Gateway waits no longer
        for them), then close every connection. Requests that arrive on open
        connections meanwhile are answered 503."""
        with self._state:
            if self._stopping:
                return
            self._stopping = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        wait = self.timeout_ms / 1000 if grace is None else grace
        with self._state:
            self._state.wait_for(lambda: self._in_flight == 0, timeout=wait)
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._workers.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "HttpBackend":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _admit(self) -> bool:
        with self._state:
            if self._stopping:
                return False
            self._in_flight += 1
            return True

    def _done(self) -> None:
        with self._state:
            self._in_flight -= 1
            self._state.notify_all()

    # --- one request ------------------------------------------------------------------

    def answer(self, body: bytes, started: float | None = None) -> Answer:
        """The answer to one POSTed ``body``; ``started`` (``time.monotonic()``)
        is when the request arrived, from which the timeout counts (default:
        now). Never raises."""
        started = time.monotonic() if started is None else started
        try:
            document = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return _problem(400, "the body must be a JSON envelope (UTF-8)")
        try:
            event = contract.lambda_event(document)
        except ValueError as exc:
            return _problem(400, f"not an envelope: {exc}")
        context = event["requestContext"]
        route_key, connection_id = context["routeKey"], context["connectionId"]
        method = ROUTE_METHODS.get(route_key) or ROUTE_METHODS[DEFAULT_ROUTE]
        try:
            app = self.app
        except Exception:
            log.exception("building the app failed", extra={"routeKey": route_key, "connectionId": connection_id})
            return _problem(500, "the backend could not start its app", route_key, connection_id)
        if app is None:
            return _problem(503, "the backend is not ready: it has no app yet", route_key, connection_id)
        arguments: tuple = (WebSocketEvent(event),)
        if method in TAKES_CONTEXT:
            arguments += (RequestContext(self.timeout_ms, started, context["requestId"]),)
        try:
            work = self._workers.submit(getattr(app, method), *arguments)
        except RuntimeError:  # the pool takes no more work: stop() ran
            return _problem(503, "the backend is stopping", route_key, connection_id)
        except Exception as exc:  # an app without the route's method
            return self._failed(exc, route_key, connection_id)
        try:
            result = work.result()
        except CancelledError:  # stop() gave up waiting before it ran
            return _problem(503, "the backend is stopping", route_key, connection_id)
        except Exception as exc:
            return self._failed(exc, route_key, connection_id)
        return _answer_of(result, route_key, connection_id)

    @staticmethod
    def _failed(exc: BaseException, route_key: str, connection_id: str) -> Answer:
        log.error("the route raised", exc_info=exc, extra={"routeKey": route_key, "connectionId": connection_id})
        return _problem(500, "internal error; the request was not carried out", route_key, connection_id)


def _answer_of(result: Any, route_key: str, connection_id: str) -> Answer:
    """The HTTP answer for a route's return value (``{"statusCode": 200,
    "body": "..."}``, as a Lambda proxy integration takes it)."""
    status = result.get("statusCode") if isinstance(result, Mapping) else None
    body = result.get("body") if isinstance(result, Mapping) else None
    if not (isinstance(status, int) and 200 <= status <= 599) or not (body is None or isinstance(body, str)):
        log.error("the route returned no answer", extra={"routeKey": route_key, "connectionId": connection_id})
        return _problem(500, "internal error; the route returned no answer", route_key, connection_id)
    return Answer(status, None if body is None else body.encode("utf-8"), route_key, connection_id)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # API Gateway may open many connections at once

    def __init__(self, host: str, port: int, backend: HttpBackend):
        self.backend = backend
        # bound as local mode binds (local.ports), not by HTTPServer's own
        # server_bind, which looks the host's name up (getfqdn) and can hang without DNS
        bound = bind(host, port, host_named=repr(host), advice=BACKEND_ADVICE, empty_is_any=True, blocking=True)
        self.address_family = bound.family
        try:
            super().__init__(bound.getsockname()[:2], _Handler, bind_and_activate=False)
            self.socket.close()  # the one TCPServer made, unbound
            self.socket = bound
            address = bound.getsockname()
            self.server_address = address
            self.server_name, self.server_port = address[:2]
            with port_in_use_reported(host, port, BACKEND_ADVICE):
                self.server_activate()
        except BaseException:
            bound.close()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("request from %s failed", client_address[0] if client_address else "?")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: API Gateway may reuse connections
    server_version = "channel-server-http-backend"
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.backend._state:
            self.server.backend._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.backend._state:
            self.server.backend._connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        started = time.monotonic()
        backend = self.server.backend
        length = self._content_length()
        if length is None:
            return
        if length > backend.max_body_bytes:
            self._discard(length)
            self._reply(_problem(413, f"the body is over {backend.max_body_bytes} bytes"), started, close=True)
            return
        body = self.rfile.read(length)
        if len(body) < length:  # the client hung up mid-body: nobody to answer
            self.close_connection = True
            return
        if not backend._admit():
            self._reply(_problem(503, "the backend is stopping"), started, close=True)
            return
        try:
            self._reply(backend.answer(body, started), started)
        finally:
            backend._done()

    def __getattr__(self, name: str) -> Any:
        # http.server answers 501 to a method without a do_ method; every
        # method but POST is one this server does not allow
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        started = time.monotonic()
        length = self._content_length(required=False)
        if length is None:
            return
        self._discard(length)
        self._reply(_problem(405, f"{self.command} is not allowed: POST an envelope"), started,
                    headers={"Allow": "POST"}, close=length > self.server.backend.max_body_bytes)

    def _content_length(self, required: bool = True) -> int | None:
        """The body's length (0 when none is announced and ``required`` is
        false), or None after answering a request whose length is unknown."""
        started = time.monotonic()
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._reply(_problem(411, "send the body with a Content-Length, not chunked"), started, close=True)
            return None
        value = self.headers.get("Content-Length")
        if value is None:
            if required:
                self._reply(_problem(411, "a Content-Length is required"), started, close=True)
                return None
            return 0
        try:
            length = int(value)
            if length < 0:
                raise ValueError
        except ValueError:
            self._reply(_problem(400, f"Content-Length {value!r} is not a length"), started, close=True)
            return None
        return length

    def _discard(self, length: int) -> None:
        """Read and drop a body not served; a longer one than is worth reading
        leaves the connection to be closed."""
        left = min(length, MAX_DISCARD_BYTES)
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
        if length > MAX_DISCARD_BYTES:
            self.close_connection = True

    def _reply(self, answer: Answer, started: float, headers: Mapping[str, str] | None = None,
               close: bool = False) -> None:
        # logged before it is written: whoever has the answer finds its line
        # logged. Route and connection only: a frame's content is never logged.
        elapsed_ms = (time.monotonic() - started) * 1000
        log.info("%s %s %s -> %d in %.1f ms (from %s)", self.command or "-", _printable(answer.route_key),
                 _printable(answer.connection_id), answer.status, elapsed_ms, self.client_address[0],
                 extra={"routeKey": answer.route_key, "connectionId": answer.connection_id,
                        "status": answer.status, "ms": round(elapsed_ms, 1)})
        data = answer.body or b""
        if close:
            self.close_connection = True
        try:
            self.send_response(answer.status)
            if answer.body is not None:
                self.send_header("Content-Type", JSON)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client hung up first
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a bad request line, headers too long, an
        # unknown protocol version) answered as JSON, like every other
        self.close_connection = True
        if not hasattr(self, "command") or self.command is None:
            self.command = ""
        self._reply(_problem(code, message or explain or self.responses.get(code, ("error",))[0]),
                    time.monotonic(), close=True)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # _reply logs each request, with its route and connection

    def log_message(self, format: str, *args: Any) -> None:  # idle timeouts and the like
        log.debug("%s " + format, self.client_address[0], *args)


def _printable(text: str) -> str:
    """A value from the envelope as one log field: no spaces or line breaks."""
    text = text or "-"
    return text if text.isprintable() and " " not in text else json.dumps(text)


# --- the command line -----------------------------------------------------------------


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port}: a port is from 0 (any free one) to 65535")
    return port


def _timeout_ms(value: str) -> int:
    try:
        timeout = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of milliseconds") from None
    if not contract.MIN_TIMEOUT_MS <= timeout <= contract.MAX_TIMEOUT_MS:
        raise argparse.ArgumentTypeError(
            f"{timeout}: API Gateway's integration timeout is from {contract.MIN_TIMEOUT_MS} to "
            f"{contract.MAX_TIMEOUT_MS} ms"
        )
    return timeout


def _workers(value: str) -> int:
    try:
        workers = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if workers < 1:
        raise argparse.ArgumentTypeError(f"{workers}: at least 1 request must run at once")
    return workers


def _endpoint_problem(url: str) -> str | None:
    try:
        aws.Origin.of(url)
    except ValueError:
        return f"{url!r} is not an http:// or https:// URL with a host"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m channel_server.http_backend``."""
    parser = argparse.ArgumentParser(
        prog="python -m channel_server.http_backend",
        description="Serve the channel server's routes over HTTP for API Gateway's HTTP integrations "
        "(ChannelServerArgs.backend): POST an envelope, get the route's answer. Flags win over "
        "their environment variables; every other CHANNEL_* variable is passed to the channel code.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=_port, required=True, help="port to listen on; 0 picks a free one")
    parser.add_argument("--table", metavar="NAME",
                        help=f"the connections table (default: ${spec.ENV_TABLE_NAME}); required")
    parser.add_argument("--management-endpoint", metavar="URL",
                        help="the stage's management API, https://{api}.execute-api.{region}.amazonaws.com/{stage} "
                        f"(default: ${spec.ENV_MANAGEMENT_ENDPOINT}); required")
    parser.add_argument("--index", metavar="NAME",
                        help=f"the table's channel index (default: ${spec.ENV_INDEX_NAME}, else {spec.CHANNEL_INDEX})")
    parser.add_argument("--dynamodb-endpoint", metavar="URL",
                        help="another DynamoDB (DynamoDB Local, local mode's); sets AWS_ENDPOINT_URL_DYNAMODB "
                        "(default: the environment's, i.e. AWS)")
    parser.add_argument("--timeout-ms", type=_timeout_ms, default=contract.DEFAULT_TIMEOUT_MS, metavar="N",
                        help=f"the integration's timeout, {contract.MIN_TIMEOUT_MS} to {contract.MAX_TIMEOUT_MS} "
                        "(default %(default)s): a publish answers within it")
    parser.add_argument("--workers", type=_workers, default=DEFAULT_WORKERS, metavar="N",
                        help="requests the channel code runs at once (default %(default)s)")
    parser.add_argument("--handler-log-level", default="WARNING", type=str.upper, metavar="LEVEL",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="log level of the channel code's own logging (default %(default)s)")
    return parser


def parse_args(argv: list[str] | None = None, environ: Mapping[str, str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The command line, with the environment's fallbacks filled in; exits
    with an argparse error naming what to set when a setting is missing or
    invalid."""
    environ = os.environ if environ is None else environ
    parser = parser or build_parser()
    options = parser.parse_args(argv)
    options.table = options.table or environ.get(spec.ENV_TABLE_NAME) or None
    if not options.table:
        parser.error(f"no table: give --table NAME or set {spec.ENV_TABLE_NAME}")
    options.management_endpoint = options.management_endpoint or environ.get(spec.ENV_MANAGEMENT_ENDPOINT) or None
    if not options.management_endpoint:
        parser.error(f"no management API: give --management-endpoint URL or set {spec.ENV_MANAGEMENT_ENDPOINT}")
    problem = _endpoint_problem(options.management_endpoint)
    if problem:
        parser.error(f"--management-endpoint (or {spec.ENV_MANAGEMENT_ENDPOINT}): {problem}")
    options.index = options.index or environ.get(spec.ENV_INDEX_NAME) or spec.CHANNEL_INDEX
    if options.dynamodb_endpoint is not None:
        problem = _endpoint_problem(options.dynamodb_endpoint)
        if problem:
            parser.error(f"--dynamodb-endpoint: {problem}")
    return options


def channel_environ(options: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """ChannelApp's environment: every ``CHANNEL_*`` variable of ``environ``,
    with the table, index and management API the command line settled on."""
    channel = {name: value for name, value in environ.items() if name.startswith("CHANNEL_")}
    channel[spec.ENV_TABLE_NAME] = options.table
    channel[spec.ENV_INDEX_NAME] = options.index
    channel[spec.ENV_MANAGEMENT_ENDPOINT] = options.management_endpoint
    return channel


# --- endpoints on this machine ------------------------------------------------------


def endpoints(options: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str | None]:
    """Where the app's clients will send their requests, by service, as they
    find it in ``environ`` (None: AWS's own endpoint): DynamoDB, the
    management API, and SQS when ``CHANNEL_FANOUT_QUEUE_URL`` sets a queue."""
    found: dict[str, str | None] = {
        "DynamoDB": environ.get("AWS_ENDPOINT_URL_DYNAMODB") or environ.get("AWS_ENDPOINT_URL") or None,
        "management API": options.management_endpoint,
    }
    if environ.get(spec.ENV_FANOUT_QUEUE_URL):
        found["SQS"] = environ.get("AWS_ENDPOINT_URL_SQS") or environ.get("AWS_ENDPOINT_URL") or None
    return found


def credentials_found(environ: Mapping[str, str]) -> bool:
    """Whether the clients would find credentials: ``environ``'s keys, else
    botocore's chain (a profile, a container's or an instance's role), as
    ``aws.signer`` looks for them. Raises botocore's error for credentials
    set only in part or a profile that does not exist."""
    if sigv4.environment_credentials(environ) is not None:
        return True
    try:
        sigv4.botocore_credentials()
    except RuntimeError:  # none anywhere
        return False
    except ImportError:  # no botocore: the environment was the only place
        return False
    return True


def placeholders_line(added: Mapping[str, str]) -> str:
    """The start-up log line that says what :func:`local_placeholders` added."""
    lacks, using = [], []
    if "AWS_ACCESS_KEY_ID" in added:
        lacks.append("no AWS credentials")
        using.append(f"local mode's placeholder credentials ({added['AWS_ACCESS_KEY_ID']!r})")
    if "AWS_REGION" in added:
        lacks.append("no region")
        using.append(f"region {added['AWS_REGION']}")
    return (f"every endpoint is on loopback and the environment has {' and '.join(lacks)}: "
            f"using {' and '.join(using)}")


def _setup_errors() -> tuple[type[Exception], ...]:
    """What a setting that is missing or wrong raises while the app's
    clients are built: ours, and botocore's own (credentials set only in
    part, a profile that does not exist) when botocore is installed."""
    errors: tuple[type[Exception], ...] = (ValueError, RuntimeError, OSError)
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return errors
    return (*errors, BotoCoreError)


def ready_app(environ: Mapping[str, str]) -> ChannelApp:
    """A ChannelApp for ``environ`` whose clients are built already, so what
    they need from the environment (region, credentials, well-formed
    settings) is found missing now rather than on a client's request.
    Raises ValueError or RuntimeError, saying what is wrong."""
    app = ChannelApp(environ)
    app.store, app.sender, app.queue  # noqa: B018 (built for their checks)
    return app


#: What stops the command: Ctrl-C and SIGTERM.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def main(argv: list[str] | None = None) -> int:
    # Only the main thread may take the stop signals: one taken by another
    # thread runs the handler but never wakes the main thread from its wait,
    # which then waited for ever (seen on a busy machine). Every thread started
    # from here on, and every thread they start, inherits this mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    parser = build_parser()
    options = parse_args(argv, parser=parser)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("channel_server").setLevel(options.handler_log_level)
    log.setLevel(logging.INFO)
    if options.dynamodb_endpoint:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = options.dynamodb_endpoint
    environ = channel_environ(options, os.environ)
    try:
        # the app's clients read region and credentials from os.environ
        added = local_placeholders(endpoints(options, os.environ), os.environ,
                                   lambda: credentials_found(os.environ))
        if added:
            os.environ.update(added)
            log.info("%s", placeholders_line(added))
        app = ready_app(environ)
    except _setup_errors() as exc:
        settings = ", ".join(sorted(set(environ) - {spec.ENV_TABLE_NAME, spec.ENV_INDEX_NAME,
                                                    spec.ENV_MANAGEMENT_ENDPOINT}))
        parser.error(f"{exc}" + (f" (settings from the environment: {settings})" if settings else ""))
    try:
        server = HttpBackend(app, host=options.host, port=options.port, timeout_ms=options.timeout_ms,
                             workers=options.workers)
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait for the requests in flight
            print("stopping at once", file=sys.stderr, flush=True)
            os._exit(130)
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    server.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # The ready line, the only one on stdout: whoever started this process
    # (local mode, a script) reads the URL from it. The port listens and the
    # app is built by now, so a request sent on reading it is served; flushed,
    # as stdout is a pipe there.
    print(f"channel-server HTTP backend on {server.url}", flush=True)
    stop.wait()
    print("stopping: finishing the requests in flight", file=sys.stderr, flush=True)
    server.stop()
    print("stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
