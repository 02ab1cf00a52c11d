"""A local API Gateway for one WebSocket API stage, on aiohttp.

On one port:

- ``ws://HOST:PORT/{stage}``: the clients' WebSocket endpoint. Connection ids in
  AWS's shape; ``$connect`` / ``$disconnect`` / MESSAGE events built like
  API Gateway's; route selection on the API's expression with ``$default``
  as the fallback; API Gateway's own error frames ("Forbidden" without a
  ``$default`` route, "Internal server error" when an integration fails); the
  handshake rejected with ``$connect``'s status when it is not 2xx, and
  before that by ``$connect``'s Lambda REQUEST authorizer, whose context then
  rides in ``requestContext.authorizer`` of every event of the connection
  (see ``channel_server.local.authorizer``); a two-way
  route's answer (the body its function returns) sent back to the client, a
  one-way route's dropped; binary
  frames closed with 1003, invalid UTF-8 with 1007, messages over 128 KB
  with 1009 (counted whole, however many frames and however compressed:
  permessage-deflate is negotiated, as API Gateway does); idle timeout and
  maximum lifetime.
- ``http://HOST:PORT/{stage}/@connections/{id}``: the management API. POST
  sends a frame, GET describes the connection, DELETE closes it; unknown or
  closed ids get 410 with ``x-amzn-ErrorType: GoneException`` (what botocore
  needs to raise ``GoneException``), oversized posts 413, requests that are not
  SigV4-signed 403, and so are requests from other addresses than loopback
  unless local mode was told to take them (:func:`management_refusal`).
- ``http://HOST:PORT/@lambda-url/{function}/{path}``: each Lambda function
  URL of the world (the server publish endpoint), any path below it as on
  its own domain in AWS. ``@`` is never in a stage name, so it never shadows
  a stage. An ``AWS_IAM`` URL takes SigV4-signed requests for ``lambda``
  only, and loopback ones only, as the management API does; the request
  becomes a payload format 2.0 event, and the function's answer the HTTP
  response, as Lambda does (:meth:`Gateway._function_url`).

Stopping (:meth:`Gateway.refuse_connections`, :meth:`Gateway.finish_in_flight`,
:meth:`Gateway.close_all`, in that order) keeps the management API answering
until every connection is closed: the frames being handled when local mode
stops make their posts, and their members get them, before the connections
close with 1001.
"""

from __future__ import annotations

import asyncio
import base64
import html
import ipaddress
import json
import logging
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import unquote

from aiohttp import WSCloseCode, WSMsgType, web

from ..handlers import protocol, spec
from . import authorizer as authorizer_module
from .functions import InvocationError, Throttled
from .world import FunctionUrlDef, World

log = logging.getLogger("channel_server.local")

#: API Gateway's limit on one message, in either direction.
MAX_MESSAGE_BYTES = protocol.API_GATEWAY_MAX_MESSAGE_BYTES
#: What aiohttp may take in of one message before local mode counts the message
#: itself (:meth:`Gateway._receive`). aiohttp counts a compressed message by its
#: fragments as they arrive, and they can add up to more than the message: with
#: permessage-deflate each fragment is a deflate block with a flush marker of
#: its own, so 20,000 bytes sent one byte a fragment arrive as 140,000 (7 bytes
#: a fragment). Room for 128 KB sent so;
#: past this aiohttp closes with 1009 itself (as it does when a message
#: decompresses to more than this).
RECEIVE_LIMIT_BYTES = 8 * MAX_MESSAGE_BYTES
#: API Gateway's limit on one WebSocket frame: a longer message must arrive in
#: several frames. aiohttp hands over whole messages, so local mode can only warn.
MAX_FRAME_BYTES = protocol.API_GATEWAY_MAX_FRAME_BYTES
IDLE_TIMEOUT_SECONDS = protocol.API_GATEWAY_IDLE_TIMEOUT_SECONDS
#: The close code reported for a close frame that carried none (RFC 6455 §7.1.5).
NO_STATUS = 1005
MAX_LIFETIME_SECONDS = spec.MAX_CONNECTION_SECONDS
#: How long stopping waits for the frames being handled, before connections
#: close and again after (then they are cancelled).
STOP_WAIT_SECONDS = 10
_ID_ALPHABET = string.ascii_letters + string.digits
#: ``requestContext.domainName`` of every event: on AWS it is the API's own
#: domain, never a value the client chose.
DOMAIN_NAME = "localhost"

Invoke = Callable[[str, dict, str], Awaitable[Any]]
"""``invoke(route_key, event, request_id)``: runs the route's function."""
Authorize = Callable[[dict, str], Awaitable[Any]]
"""``authorize(event, request_id)``: runs the ``$connect`` authorizer's function."""
InvokeUrl = Callable[[str, dict, str], Awaitable[Any]]
"""``invoke_url(function_name, event, request_id)``: runs a function URL's function."""

#: Where local mode serves each function URL: ``/@lambda-url/{function name}``
#: and any path below it (a function URL's own domain takes any path).
FUNCTION_URL_PREFIX = "/@lambda-url"
#: The methods a function URL passes to its function (the Lambda developer
#: guide's "Invoking Lambda function URLs", ``requestContext.http.method``).
FUNCTION_URL_METHODS = frozenset({"GET", "POST", "PUT", "HEAD", "OPTIONS", "PATCH", "DELETE"})
#: Lambda's limit on a synchronous invocation's request, which a function URL's request is.
FUNCTION_URL_MAX_REQUEST_BYTES = 6 * 1024 * 1024
#: Content types whose bodies a function URL passes as text; any other body
#: arrives base64-encoded with ``isBase64Encoded`` (the guide: "If the content
#: type of the request is binary, the body is base64-encoded"). A body without
#: a content type is passed as text when it is UTF-8.
_TEXT_CONTENT = re.compile(r"text/.*|application/(json|xml|javascript|x-www-form-urlencoded|[\w.+-]+\+(json|xml))",
                           re.IGNORECASE)


def new_id() -> str:
    """16 characters in the shape of API Gateway's connection, request and
    message ids (``Jx3uYdT9IAMCJfA=``)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def _now_ms() -> int:
    return int(time.time() * 1000)


def _request_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Connection:
    id: str
    ws: web.WebSocketResponse
    connected_at: int
    source_ip: str
    user_agent: str
    last_active_at: int = 0
    open: bool = True
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    """The code the gateway closed the connection with (None: the client closed
    it, or the connection broke)."""
    authorizer: Mapping[str, str] | None = None
    """What the authorizer allowed the connection with (its context and
    ``principalId``): ``requestContext.authorizer`` of each of its events."""

    def touch(self) -> None:
        self.last_active_at = _now_ms()

    async def close(self, code: int, reason: str) -> None:
        """Close from the gateway's side, remembering the code the client sees."""
        if self.close_code is None:
            self.close_code = code
        self.open = False
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode())

    def disconnect_code(self) -> int:
        """The close code ``$disconnect`` reports: the one the client saw."""
        if self.close_code is not None:
            return self.close_code
        code = self.ws.close_code  # the client's close frame's code (1006: the connection broke)
        if code is None:
            return WSCloseCode.ABNORMAL_CLOSURE
        return code or NO_STATUS  # 0: a close frame without a status code


class Gateway:
    """API Gateway's behaviour for ``world``'s API and stage; ``invoke`` runs a
    route's function."""

    def __init__(
        self,
        world: World,
        invoke: Invoke,
        *,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        max_lifetime: float = MAX_LIFETIME_SECONDS,
        management_latency_ms: float = 0,
        management_from_anywhere: bool = False,
        api_id: str = "local",
        authorize: Authorize | None = None,
        invoke_url: InvokeUrl | None = None,
    ):
        if world.authorizer is not None and authorize is None:
            raise ValueError(f"the world's $connect has the authorizer {world.authorizer.name}: "
                             "give the function that runs it (authorize)")
        if world.function_urls and invoke_url is None:
            raise ValueError("the world has function URLs: give the function that runs theirs (invoke_url)")
        self.world = world
        self._invoke = invoke
        self._authorize = authorize
        self._invoke_url = invoke_url
        #: Function name → its function URL.
        self._function_urls = {url.function.name: url for url in world.function_urls}
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.management_latency = management_latency_ms / 1000
        self.api_id = api_id
        #: Whether addresses other than loopback may use the management API.
        self.management_from_anywhere = management_from_anywhere
        self.connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task] = set()
        #: Handshakes under way (authorizer, ``$connect``): each resolves once its
        #: connection is open or refused.
        self._handshakes: set[asyncio.Future] = set()
        #: False once local mode stops: new handshakes are refused.
        self.accepting = True
        self._selection = _selection_path(world.route_selection_expression)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES * 2)
        stage = self.world.stage
        app.router.add_get(f"/{stage}", self._websocket)
        app.router.add_route("*", f"/{stage}/@connections/{{connection_id}}", self._management)
        if self.world.function_urls:
            # the function's name, then any path (none: the URL's root)
            app.router.add_route("*", FUNCTION_URL_PREFIX + "/{function:[^/]+}{path:(/.*)?}", self._function_url)
        app.router.add_routes(page_routes(stage))
        return app

    # --- the WebSocket side ---------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # permessage-deflate is negotiated when the client offers it, because
        # API Gateway negotiates it: it answers websockets' offer with
        # "permessage-deflate;server_max_window_bits=12" (python-websockets
        # issue #1065, whose client changed its defaults, 10.1, to work around
        # API Gateway ignoring the client_max_window_bits it asked for). Its
        # 128 KB limit is then on the message, which _receive counts.
        ws = web.WebSocketResponse(max_msg_size=RECEIVE_LIMIT_BYTES, autoping=True, compress=True)
        if not ws.can_prepare(request).ok:
            return web.json_response({"message": "Upgrade Required"}, status=426)
        if not self.accepting:
            log.info("connect refused 503: local mode is stopping")
            return web.json_response({"message": "Service Unavailable"}, status=503)
        handshake = asyncio.get_running_loop().create_future()
        self._handshakes.add(handshake)
        try:
            opened = await self._open(request, ws)
        finally:
            self._handshakes.discard(handshake)
            handshake.set_result(None)
        if not isinstance(opened, Connection):
            return opened
        connection = opened
        try:
            await self._receive(connection)
        finally:
            connection.open = False
            self.connections.pop(connection.id, None)
            if not ws.closed:
                await ws.close()
            await self._disconnect(connection, connection.disconnect_code())
            connection.finished.set()
        return ws

    async def _open(self, request: web.Request, ws: web.WebSocketResponse) -> Connection | web.Response:
        """The handshake: the authorizer, then ``$connect``; the open
        connection, or the response that refuses it."""
        connection_id = new_id()
        connected_at = _now_ms()
        source_ip = request.remote or "127.0.0.1"
        user_agent = request.headers.get("User-Agent", "")
        event = self._connect_event(request, connection_id, connected_at, source_ip)
        authorized = None
        if self.world.authorizer is not None:
            decision = await self._authorization(event)
            if not decision.allowed:
                log.info("connect %s rejected %d by the authorizer: %s",
                         connection_id, decision.status, decision.reason)
                return web.Response(status=decision.status, text=decision.body, content_type="application/json")
            authorized = dict(decision.context or {})
            event["requestContext"]["authorizer"] = dict(authorized)
        if "$connect" in self.world.route_keys:
            status, body = await self._handshake_status(connection_id, event)
            if not 200 <= status < 300:
                log.info("connect %s rejected %d", connection_id, status)
                return web.Response(status=status, text=body)
        await ws.prepare(request)
        connection = Connection(connection_id, ws, connected_at, source_ip, user_agent, last_active_at=connected_at,
                                authorizer=authorized)
        self.connections[connection_id] = connection
        log.info("connect %s", connection_id)
        return connection

    async def _authorization(self, event: dict) -> authorizer_module.Decision:
        """The ``$connect`` authorizer's decision on the handshake whose
        ``$connect`` event is ``event`` (see :mod:`.authorizer`)."""
        assert self.world.authorizer is not None and self._authorize is not None
        arn = authorizer_module.method_arn(self.world.region, self.world.account, self.api_id, self.world.stage)
        return await authorizer_module.authorize(
            self.world.authorizer, event, arn, self.world.stage_variables, self._authorize)

    async def _handshake_status(self, connection_id: str, event: dict) -> tuple[int, str]:
        request_id = event["requestContext"]["requestId"]
        try:
            result = await self._invoke("$connect", event, request_id)
        except InvocationError as exc:
            log.warning("connect %s: integration failed: %s", connection_id, exc)
            return 500, json.dumps({"message": "Internal server error"})
        if not isinstance(result, Mapping):
            return 200, ""
        try:
            status = int(result.get("statusCode", 200))
        except (TypeError, ValueError):
            return 500, json.dumps({"message": "Internal server error"})
        return status, str(result.get("body") or "")

    async def _receive(self, connection: Connection) -> None:
        ws = connection.ws
        while True:
            now = _now_ms()
            idle_deadline = connection.last_active_at + self.idle_timeout * 1000
            life_deadline = connection.connected_at + self.max_lifetime * 1000
            wait = (min(idle_deadline, life_deadline) - now) / 1000
            if wait <= 0:
                reason = "Going away" if life_deadline <= now else "Idle timeout"
                await connection.close(WSCloseCode.GOING_AWAY, reason)
                return
            try:
                message = await ws.receive(timeout=wait)
            except asyncio.TimeoutError:
                continue  # re-check: traffic the other way may have reset the idle clock
            if message.type == WSMsgType.TEXT:
                connection.touch()
                size = len(message.data.encode("utf-8"))
                if size > MAX_MESSAGE_BYTES:
                    # the message's own size, whatever its frames or their compression took
                    await connection.close(WSCloseCode.MESSAGE_TOO_BIG, "Message too big")
                    return
                if size > MAX_FRAME_BYTES:
                    log.warning(
                        "message %s: %d bytes; AWS accepts it only as frames of at most 32 KB each "
                        "and closes the connection (1009) if this was one frame",
                        connection.id, size,
                    )
                self._spawn(self._route_message(connection, message.data))
            elif message.type == WSMsgType.BINARY:
                await connection.close(WSCloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
                return
            elif message.type == WSMsgType.ERROR:
                # aiohttp reports an oversized message here, with the code it
                # has already closed with (1009, as API Gateway does), and
                # leaves ws.close_code at 1006
                code = getattr(message.data, "code", None) or WSCloseCode.ABNORMAL_CLOSURE
                await connection.close(code, "Message too big" if code == WSCloseCode.MESSAGE_TOO_BIG else "")
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def select_route(self, body: str) -> str | None:
        """API Gateway's route selection: the expression's value must equal a
        route key exactly; anything else goes to ``$default`` (None when the API
        has no ``$default``)."""
        try:
            value: Any = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse: $default
            value = None
        for part in self._selection:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value in self.world.message_routes:
            return value
        return "$default" if "$default" in self.world.route_keys else None

    async def _route_message(self, connection: Connection, body: str) -> None:
        started = time.monotonic()
        request_id = new_id()
        route_key = self.select_route(body)
        if route_key is None:
            await self._send_gateway_error(connection, "Forbidden", request_id)
            log.info("message %s: no route, Forbidden", connection.id)
            return
        event = self._message_event(connection, route_key, body, request_id)
        try:
            result = await self._invoke(route_key, event, request_id)
            outcome = f"→ {_reply_type(result)}"
            if route_key in self.world.two_way:
                await self._send_route_response(connection, result)
            elif _reply_type(result) != "no reply":
                outcome += " (dropped: the route is one-way)"
        except InvocationError as exc:
            log.warning("message %s %s: integration failed: %s", connection.id, route_key, exc)
            await self._send_gateway_error(connection, "Internal server error", request_id)
            outcome = "integration error"
        log.info("route %s %s %s in %.0f ms", connection.id, route_key, outcome, (time.monotonic() - started) * 1000)

    async def _send_route_response(self, connection: Connection, result: Any) -> None:
        """A two-way route's answer: the body of the function's result, sent
        to the client as one text frame (nothing when there is no body)."""
        body = result.get("body") if isinstance(result, Mapping) else None
        if isinstance(body, str) and body and connection.open and not connection.ws.closed:
            try:
                await connection.ws.send_str(body)
                connection.touch()
            except ConnectionError:
                pass

    async def _send_gateway_error(self, connection: Connection, message: str, request_id: str) -> None:
        """API Gateway's own error frame (it names the client's own connection)."""
        if connection.open and not connection.ws.closed:
            frame = {"message": message, "connectionId": connection.id, "requestId": request_id}
            try:
                await connection.ws.send_str(json.dumps(frame))
            except ConnectionError:
                pass

    async def _disconnect(self, connection: Connection, code: int) -> None:
        if "$disconnect" not in self.world.route_keys:
            log.info("disconnect %s %d", connection.id, code)
            return
        event = self._disconnect_event(connection, code)
        try:
            await self._invoke("$disconnect", event, event["requestContext"]["requestId"])
            log.info("disconnect %s %d", connection.id, code)
        except InvocationError as exc:
            log.warning("disconnect %s %d: integration failed: %s", connection.id, code, exc)

    @property
    def frames_in_flight(self) -> int:
        """Frames being handled (their route's invocation under way)."""
        return len(self._tasks)

    def refuse_connections(self) -> None:
        """Stopping, first: new handshakes are refused (503), while the
        management API, on the same port, still answers."""
        self.accepting = False

    async def finish_in_flight(self, timeout: float = STOP_WAIT_SECONDS) -> None:
        """Stopping, second: wait (``timeout`` at most) for the frames being
        handled now, so their posts reach members that are still connected.
        Closing the connections first would make a publish under way find its
        members gone, or its posts refused if the port closed: with the port
        closed first, 6 publishes to 99 members each logged 594 "delivery
        failed after retries" and took 4.8 s to give up."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        """Close every connection and wait until each one's ``$disconnect`` ran,
        then for frames still being handled. Handshakes under way finish
        first, so a connection they open is closed too."""
        if self._handshakes:
            await asyncio.wait(list(self._handshakes))
        connections = list(self.connections.values())
        await asyncio.gather(*(c.close(code, "Going away") for c in connections))
        await asyncio.gather(*(c.finished.wait() for c in connections))
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=STOP_WAIT_SECONDS)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1)

    # --- events, shaped like API Gateway's ---------------------------------------------

    def _context(self, connection_id: str, route_key: str, event_type: str, request_id: str,
                 connected_at: int, domain: str, source_ip: str) -> dict:
        now = _now_ms()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.world.stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": source_ip},
            "requestId": request_id,
            "domainName": domain,
            "connectionId": connection_id,
            "apiId": self.api_id,
        }

    def _connect_event(self, request: web.Request, connection_id: str, connected_at: int, source_ip: str) -> dict:
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers[name] = value
            multi.setdefault(name, []).append(value)
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi,
            "requestContext": self._context(
                # the API's own name, as on AWS, never the client's Host header
                connection_id, "$connect", "CONNECT", new_id(), connected_at, DOMAIN_NAME, source_ip,
            ),
            "isBase64Encoded": False,
        }
        if request.query:
            event["queryStringParameters"] = {k: v for k, v in request.query.items()}
            event["multiValueQueryStringParameters"] = {k: request.query.getall(k) for k in request.query.keys()}
        return event

    def _message_event(self, connection: Connection, route_key: str, body: str, request_id: str) -> dict:
        context = self._context(
            connection.id, route_key, "MESSAGE", request_id, connection.connected_at,
            DOMAIN_NAME, connection.source_ip,
        )
        context["messageId"] = new_id()
        if connection.authorizer is not None:
            context["authorizer"] = dict(connection.authorizer)
        return {"requestContext": context, "body": body, "isBase64Encoded": False}

    def _disconnect_event(self, connection: Connection, code: int) -> dict:
        context = self._context(
            connection.id, "$disconnect", "DISCONNECT", new_id(), connection.connected_at,
            DOMAIN_NAME, connection.source_ip,
        )
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = _disconnect_reason(code)
        if connection.authorizer is not None:
            context["authorizer"] = dict(connection.authorizer)
        return {
            "headers": {"Host": "localhost", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {"Host": ["localhost"]},
            "requestContext": context,
            "isBase64Encoded": False,
        }

    # --- the management API ------------------------------------------------------------

    async def _management(self, request: web.Request) -> web.StreamResponse:
        if self.management_latency:
            await asyncio.sleep(self.management_latency)
        refusal = management_refusal(request.remote, request.headers, self.management_from_anywhere)
        if refusal:
            return _error(403, "ForbiddenException", refusal)
        # botocore percent-encodes the id ("=" → %3D); decode whatever aiohttp left
        connection_id = unquote(request.match_info["connection_id"])
        connection = self.connections.get(connection_id)
        if request.method not in ("POST", "GET", "DELETE"):
            return _error(405, "MethodNotAllowedException", f"{request.method} is not supported")
        if connection is None or not connection.open or connection.ws.closed:
            return web.Response(status=410, headers={"x-amzn-ErrorType": "GoneException"})
        if request.method == "GET":
            return web.json_response(
                {
                    "connectedAt": _iso(connection.connected_at),
                    "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                    "lastActiveAt": _iso(connection.last_active_at),
                }
            )
        if request.method == "DELETE":
            await connection.close(WSCloseCode.OK, "")
            return web.Response(status=204)
        try:
            data = await request.read()
        except (ConnectionError, web.RequestPayloadError) as exc:
            # a sender that died mid-post (a killed fan-out process): its post
            # is lost with it, and nobody is left to answer
            log.warning("management API: the POST to %s broke off before its body ended (%s); nothing was sent",
                        connection_id, type(exc).__name__)
            return web.Response(status=400)
        if len(data) > MAX_MESSAGE_BYTES:
            return _error(413, "PayloadTooLargeException", "Message too long")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            if text is None:
                await connection.ws.send_bytes(data)
            else:
                await connection.ws.send_str(text)
        except ConnectionError:
            return web.Response(status=410, headers={"x-amzn-ErrorType": "GoneException"})
        connection.touch()
        return web.Response(status=200)

    # --- Lambda function URLs ----------------------------------------------------------

    async def _function_url(self, request: web.Request) -> web.StreamResponse:
        """One request to a function URL, answered as Lambda answers it: 403
        ``{"Message": "Forbidden"}`` when an ``AWS_IAM`` URL's request is not
        SigV4-signed for ``lambda`` (or comes from beyond loopback, see
        :func:`management_refusal`), else the function's answer; 502
        ``{"Message": "Internal Server Error"}`` when the function fails."""
        name = request.match_info["function"]
        url = self._function_urls.get(name)
        if url is None:
            served = ", ".join(f"{FUNCTION_URL_PREFIX}/{n}/" for n in sorted(self._function_urls))
            return _lambda_error(404, f"no function URL for a function named {name!r} here; local mode serves "
                                      f"{served}")
        if url.authorization_type == "AWS_IAM":
            refusal = management_refusal(request.remote, request.headers, self.management_from_anywhere,
                                         service="lambda", endpoint="a function URL")
            if refusal:
                log.info("function URL %s: 403 Forbidden: %s", name, refusal)
                return _lambda_error(403, "Forbidden")
        if request.method not in FUNCTION_URL_METHODS:
            return _lambda_error(405, f"function URLs take {', '.join(sorted(FUNCTION_URL_METHODS))}, "
                                      f"not {request.method}")
        try:
            body = await _read_limited(request, FUNCTION_URL_MAX_REQUEST_BYTES)
        except (ConnectionError, web.RequestPayloadError) as exc:
            log.warning("function URL %s: the request broke off before its body ended (%s); the function was "
                        "not invoked", name, type(exc).__name__)
            return web.Response(status=400)
        if body is None:
            return _lambda_error(413, f"the request is over Lambda's {FUNCTION_URL_MAX_REQUEST_BYTES} bytes")
        request_id = str(uuid.uuid4())
        event = self._function_url_event(request, url, body, request_id)
        started = time.monotonic()
        assert self._invoke_url is not None
        try:
            result = await self._invoke_url(name, event, request_id)
        except Throttled as exc:
            # Lambda's TooManyRequestsException ("Rate Exceeded.")
            log.warning("function URL %s %s: throttled: %s", name, request.method, exc)
            return _lambda_error(429, "Rate Exceeded.", request_id)
        except InvocationError as exc:
            log.warning("function URL %s %s: the function failed: %s", name, request.method, exc)
            return _lambda_error(502, "Internal Server Error", request_id)
        response = _function_url_response(result, request_id)
        if response is None:
            log.warning("function URL %s %s: the function's answer is not a response Lambda can send (statusCode, "
                        "headers, body, cookies or isBase64Encoded of the wrong type)", name, request.method)
            return _lambda_error(502, "Internal Server Error", request_id)
        log.info("function URL %s %s %s → %d in %.0f ms", name, request.method, event["rawPath"], response.status,
                 (time.monotonic() - started) * 1000)
        return response

    def _function_url_event(self, request: web.Request, url: FunctionUrlDef, body: bytes, request_id: str) -> dict:
        """A function URL's event, payload format 2.0, as the Lambda developer
        guide's "Invoking Lambda function URLs" describes it ("Request payload
        format", https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html):
        ``version``, ``routeKey`` ``$default``, ``rawPath``, ``rawQueryString``,
        ``cookies``, ``headers`` (lower-cased, repeated ones joined with
        commas), ``queryStringParameters``, ``requestContext`` (``accountId``,
        ``apiId`` = the URL id, ``authorizer.iam`` for ``AWS_IAM``,
        ``domainName``, ``domainPrefix``, ``http``, ``requestId``, ``routeKey``,
        ``stage`` ``$default``, ``time``, ``timeEpoch``), ``body`` and
        ``isBase64Encoded``. The fields the guide says function URLs set to
        null or leave out (``pathParameters``, ``stageVariables``,
        ``authentication``) are left out."""
        now = _now_ms()
        # the path below the function's prefix, as the client sent it (percent-encoded)
        path = request.rel_url.raw_path[len(f"{FUNCTION_URL_PREFIX}/{url.function.name}"):] or "/"
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            name = key.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
        source_ip = request.remote or "127.0.0.1"
        domain = f"{url.url_id}.lambda-url.{self.world.region}.on.aws"
        context: dict[str, Any] = {
            "accountId": self.world.account,
            "apiId": url.url_id,
            "domainName": domain,
            "domainPrefix": url.url_id,
            "http": {
                "method": request.method,
                "path": path,
                "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                "sourceIp": source_ip,
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": _request_time(now),
            "timeEpoch": now,
        }
        if url.authorization_type == "AWS_IAM":
            context["authorizer"] = {"iam": _iam_caller(request.headers.get("Authorization", ""), self.world.account)}
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": request.query_string,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if request.query:
            # repeated parameters joined with commas, as payload format 2.0 does
            event["queryStringParameters"] = {k: ",".join(request.query.getall(k)) for k in request.query.keys()}
        if body:
            text = _body_text(body, request.headers.get("Content-Type"))
            if text is None:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
            else:
                event["body"] = text
        return event


def _body_text(body: bytes, content_type: str | None) -> str | None:
    """A request body as a function URL passes text, or None to pass it base64-encoded."""
    if content_type is not None and not _TEXT_CONTENT.fullmatch(content_type.split(";", 1)[0].strip()):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _iam_caller(authorization: str, account: str) -> dict:
    """``requestContext.authorizer.iam``: who signed. Local mode checks no
    secret, so it knows only the access key the request names; the other
    fields stand for an IAM user of that name in the function's account."""
    match = re.search(r"Credential=([^/\s,]+)/", authorization)
    access_key = match.group(1) if match else ""
    user_id = "AIDA" + "".join(c for c in access_key.upper() if c.isalnum())[:17].ljust(17, "X")
    return {
        "accessKey": access_key,
        "accountId": account,
        "callerId": user_id,
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": f"arn:aws:iam::{account}:user/{access_key}",
        "userId": user_id,
    }


def _function_url_response(result: Any, request_id: str) -> web.Response | None:
    """The HTTP response Lambda makes of a function URL's answer ("Response
    payload format" in the guide above): a dict with ``statusCode`` gives its
    status, ``headers``, ``body`` (base64-decoded when ``isBase64Encoded``) and
    a ``set-cookie`` header per entry of ``cookies``; any other JSON value
    is the body of a 200 ``application/json`` response. None when the answer
    has a ``statusCode`` but cannot be sent (Lambda answers 502)."""
    if not (isinstance(result, Mapping) and "statusCode" in result):
        return web.Response(status=200, body=json.dumps(result).encode(), content_type="application/json",
                            headers={"x-amzn-RequestId": request_id})
    status, headers, body = result["statusCode"], result.get("headers") or {}, result.get("body")
    cookies = result.get("cookies") or []
    if (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
            or not isinstance(headers, Mapping) or not isinstance(cookies, list)):
        return None
    if body is None:
        data = b""
    elif not isinstance(body, str):
        data = json.dumps(body).encode()
    elif result.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:
            return None
    else:
        data = body.encode("utf-8")
    response = web.Response(status=status, body=data)
    for name, value in headers.items():
        response.headers[str(name)] = str(value)
    for cookie in cookies:
        response.headers.add("Set-Cookie", str(cookie))
    response.headers.setdefault("x-amzn-RequestId", request_id)
    return response


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None when it is longer than ``limit`` (read past
    the app's own limit, which is sized for the management API's posts)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _lambda_error(status: int, message: str, request_id: str | None = None) -> web.Response:
    """Lambda's own answer on a function URL: ``{"Message": ...}``."""
    headers = {"x-amzn-RequestId": request_id} if request_id else None
    return web.json_response({"Message": message}, status=status, headers=headers)


def _sigv4_shape(service: str) -> re.Pattern:
    """The shape of a SigV4 Authorization header for ``service``, as botocore and every AWS SDK send it."""
    return re.compile(
        r"AWS4-HMAC-SHA256 Credential=[^/\s,]+/\d{8}/[a-z0-9-]+/" + re.escape(service) + r"/aws4_request,\s*"
        r"SignedHeaders=[a-z0-9;-]+,\s*Signature=[0-9a-f]{64}"
    )


#: The services whose signatures local mode takes: the management API's, and function URLs'.
_SIGV4 = {service: _sigv4_shape(service) for service in ("execute-api", "lambda")}


def management_refusal(remote: str | None, headers: Mapping[str, str], from_anywhere: bool = False, *,
                       service: str = "execute-api", endpoint: str = "the management API") -> str | None:
    """Why the management API (or ``endpoint``, signed for ``service``: a
    function URL, for ``lambda``) refuses a request, or None. Like API
    Gateway's, it takes only SigV4-signed requests (local mode checks the
    signature's shape, not its secret: any credentials will do). And since it
    cannot check the secret, it answers only loopback addresses (127.0.0.0/8,
    ::1) unless ``from_anywhere``, whatever address local mode listens on: not
    even this machine's own other addresses."""
    if not from_anywhere and not _is_loopback(remote):
        return (f"{endpoint} answers only loopback addresses, not {remote or 'an unknown address'} "
                "(call it on 127.0.0.1, or start local mode with --management-from-anywhere)")
    authorization = headers.get("Authorization")
    if authorization is None:
        return "Missing Authentication Token"
    if not _SIGV4[service].fullmatch(authorization.strip()) or "X-Amz-Date" not in headers:
        return f"the request is not SigV4-signed for {service} (an AWS SDK such as boto3 signs it)"
    return None


def _is_loopback(address: str | None) -> bool:
    try:
        parsed = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or parsed).is_loopback


def _reply_type(result: Any) -> str:
    """What the function returned as its reply, for the log: the reply frame's
    type, never its payload. API Gateway discards the body on a route without
    a route response; local mode does the same and only names it."""
    body = result.get("body") if isinstance(result, Mapping) else None
    if not isinstance(body, str) or not body:
        return "no reply"
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):
        return "a reply that is not JSON"
    kind = reply.get("type") if isinstance(reply, dict) else None
    return kind if isinstance(kind, str) and len(kind) <= 40 else "a reply without a type"


#: The page to try channels, and the files it loads, with their content types.
PAGE_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # its own script and style only; WebSockets anywhere, so it can try a deployed stack too
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
_STAGE_META = '<meta name="channel-server-stage" content="{}">'


def page_routes(stage: str) -> list[web.RouteDef]:
    """``GET /``: the page to try channels (``page/index.html``, told the stage
    in its ``<meta>``), and ``GET /page.js``, ``/page.css``. Stage names have no
    dots, so these never shadow ``/{stage}``. Read on each request, from the
    installed package's files."""
    folder = resources.files(__package__) / "page"

    def serve(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            text = (folder / name).read_text(encoding="utf-8")
            if name == "index.html":
                text = text.replace(_STAGE_META.format(""), _STAGE_META.format(html.escape(stage)), 1)
            return web.Response(text=text, content_type=content_type, charset="utf-8", headers=PAGE_HEADERS)
        return handler

    return [web.get("/" if name == "index.html" else f"/{name}", serve(name, content_type))
            for name, content_type in PAGE_FILES.items()]


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": error_type})


def _selection_path(expression: str) -> list[str]:
    prefix = "$request.body."
    if not expression.startswith(prefix):
        raise ValueError(f"local mode routes on $request.body.<field>, not {expression!r}")
    return expression[len(prefix):].split(".")


def _disconnect_reason(code: int) -> str:
    return {
        1000: "Client closed the connection",
        1001: "Going away",
        1003: "Binary frames are not supported",
        1005: "Client-side close frame status not set",
        1006: "Connection was closed abnormally",
        1009: "Message too big",
    }.get(code, f"Connection closed with code {code}")
