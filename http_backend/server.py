"""The reference HTTP backend's server: :class:`HttpBackend` answers each POSTed envelope
with the route's answer from a ``ChannelApp``.

It answers on a thread pool, over keep-alive HTTP/1.1 (the package's docstring says what it
answers). The command line is in ``cli``.
"""

from __future__ import annotations

import inspect
import json
import logging
import socket
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Union, cast

from .. import backend as contract
from ..handlers import spec
from ..handlers.app import ChannelApp
from ..handlers.events import WebSocketEvent
from ..handlers.settings import AppSettings
# the port it listens on, bound as local mode binds its own
from ..local.ports import BACKEND_ADVICE, bind, port_in_use_reported

#: The backend's logger, for its request lines and start-up (the channel
#: code logs as ``channel_server``, at its own level).
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
ROUTE_METHODS: Mapping[str, str] = spec.ROUTE_FUNCTIONS
#: Where an envelope of a route key this table lacks goes, as API Gateway
#: sends a frame no route matches.
DEFAULT_ROUTE = spec.DEFAULT_ROUTE
#: Methods that take Lambda's context object (its remaining time bounds their work).
TAKES_CONTEXT = frozenset(
    name for name in ROUTE_METHODS.values() if "context" in inspect.signature(getattr(ChannelApp, name)).parameters
)

#: What :class:`HttpBackend` serves: a ChannelApp, its settings or an
#: environment to build one from (on the first request), or a function that
#: builds one.
AppSource = Union[ChannelApp, AppSettings, Mapping[str, str], Callable[[], ChannelApp]]


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
        """Serve ``app``: a ChannelApp, its settings or an environment mapping
        (a ChannelApp is built from them on the first request; the mapping
        holds the app's ``CHANNEL_*`` settings and the ``AWS_*`` variables
        its clients read, as a function's environment does) or a function
        returning one (called on the first request, again after it raised)."""
        ready: ChannelApp | None = None
        build: Callable[[], ChannelApp] | None = None
        if isinstance(app, (AppSettings, Mapping)):
            settings = app if isinstance(app, AppSettings) else dict(app)  # a copy, parsed when built
            build = lambda: ChannelApp(settings)  # noqa: E731
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
