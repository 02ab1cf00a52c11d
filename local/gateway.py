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
  unless local mode was told to take them (:func:`.access.management_refusal`).
  Plain calls reach :meth:`Gateway.management_call` without aiohttp, the
  others through it; each waits out the simulated round trip in turn (both
  in :mod:`.management_port`).
- ``http://HOST:PORT/@lambda-url/{function}/{path}``: each Lambda function
  URL of the world (the server publish endpoint), see :mod:`.function_urls`.
- ``http://HOST:PORT/``: the page to try channels (:mod:`.page_routes`).

The events it hands the integrations are built in :mod:`.websocket_events`;
who may call the management API, in :mod:`.access`.

Stopping (:meth:`Gateway.refuse_connections`, :meth:`Gateway.finish_in_flight`,
:meth:`Gateway.close_all`, in that order) keeps the management API answering
until every connection is closed: the frames being handled when local mode
stops make their posts, and their members get them, before the connections
close with 1001.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import unquote

from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from multidict import CIMultiDict

from ..handlers import protocol, spec
from . import authorizer as authorizer_module
from .access import management_refusal
from .account import AccountQuota
from .function_urls import FunctionUrls, InvokeUrl
from .functions import InvocationError
from .management_port import GONE, FrontDoor, ManagementAnswer, RoundTrips, broke_off, management_error
from .page_routes import page_routes
from .websocket_events import StageEvents, iso, new_id, now_ms
from .world import World

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

Invoke = Callable[[str, dict, str], Awaitable[Any]]
"""``invoke(route_key, event, request_id)``: runs the route's function."""
Authorize = Callable[[dict, str], Awaitable[Any]]
"""``authorize(event, request_id)``: runs the ``$connect`` authorizer's function."""


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
        self.last_active_at = now_ms()

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
        account: AccountQuota | None = None,
    ):
        if world.authorizer is not None and authorize is None:
            raise ValueError(f"the world's $connect has the authorizer {world.authorizer.name}: "
                             "give the function that runs it (authorize)")
        if world.function_urls and invoke_url is None:
            raise ValueError("the world has function URLs: give the function that runs theirs (invoke_url)")
        self.world = world
        self._invoke = invoke
        self._authorize = authorize
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.management_latency = management_latency_ms / 1000
        self._round_trips = RoundTrips()
        #: The connections whose management API calls are answered here (:class:`FrontDoor`).
        self.front_doors: set[FrontDoor] = set()
        #: The account's request quota, which the management API enforces (429 beyond it).
        self.account = account or AccountQuota()
        self.api_id = api_id
        self._events = StageEvents(world.stage, api_id)
        #: Whether addresses other than loopback may use the management API.
        self.management_from_anywhere = management_from_anywhere
        #: The world's function URLs, served beside the stage (None: it has none).
        self._function_urls = None
        if world.function_urls and invoke_url is not None:
            self._function_urls = FunctionUrls(world.function_urls, invoke_url, region=world.region,
                                               account=world.account, from_anywhere=management_from_anywhere)
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
        if self._function_urls is not None:
            app.router.add_routes(self._function_urls.routes())
        app.router.add_routes(page_routes(stage))
        return app

    # --- the WebSocket side ---------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # permessage-deflate is negotiated when the client offers it, because
        # API Gateway negotiates it, with its own window (api_gateway_offer);
        # its 128 KB limit is then on the message, which _receive counts.
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
        connected_at = now_ms()
        source_ip = request.remote or "127.0.0.1"
        user_agent = request.headers.get("User-Agent", "")
        event = self._events.connect(request, connection_id, connected_at, source_ip)
        authorized = None
        if self.world.authorizer is not None:
            decision = await self._authorization(event)
            if not decision.allowed:
                log.info("connect %s rejected %d by the authorizer: %s",
                         connection_id, decision.status, decision.reason)
                return web.Response(status=decision.status, text=decision.body, content_type="application/json")
            authorized = dict(decision.context or {})
            event["requestContext"]["authorizer"] = dict(authorized)
        if spec.CONNECT_ROUTE in self.world.route_keys:
            status, body = await self._handshake_status(connection_id, event)
            if not 200 <= status < 300:
                log.info("connect %s rejected %d", connection_id, status)
                return web.Response(status=status, text=body)
        try:
            await ws.prepare(api_gateway_offer(request))
        except ConnectionResetError:  # the client left while $connect ran: nothing to answer
            log.info("connect %s: the client left before the handshake was answered", connection_id)
            return web.Response(status=499)
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
            result = await self._invoke(spec.CONNECT_ROUTE, event, request_id)
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
            now = now_ms()
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
        return spec.DEFAULT_ROUTE if spec.DEFAULT_ROUTE in self.world.route_keys else None

    async def _route_message(self, connection: Connection, body: str) -> None:
        started = time.monotonic()
        request_id = new_id()
        route_key = self.select_route(body)
        if route_key is None:
            await self._send_gatewaymanagement_error(connection, "Forbidden", request_id)
            log.info("message %s: no route, Forbidden", connection.id)
            return
        event = self._events.message(connection, route_key, body, request_id)
        try:
            result = await self._invoke(route_key, event, request_id)
            outcome = f"→ {_reply_type(result)}"
            if route_key in self.world.two_way:
                await self._send_route_response(connection, result)
            elif _reply_type(result) != "no reply":
                outcome += " (dropped: the route is one-way)"
        except InvocationError as exc:
            log.warning("message %s %s: integration failed: %s", connection.id, route_key, exc)
            await self._send_gatewaymanagement_error(connection, "Internal server error", request_id)
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

    async def _send_gatewaymanagement_error(self, connection: Connection, message: str, request_id: str) -> None:
        """API Gateway's own error frame (it names the client's own connection)."""
        if connection.open and not connection.ws.closed:
            frame = {"message": message, "connectionId": connection.id, "requestId": request_id}
            try:
                await connection.ws.send_str(json.dumps(frame))
            except ConnectionError:
                pass

    async def _disconnect(self, connection: Connection, code: int) -> None:
        if spec.DISCONNECT_ROUTE not in self.world.route_keys:
            log.info("disconnect %s %d", connection.id, code)
            return
        event = self._events.disconnect(connection, code)
        try:
            await self._invoke(spec.DISCONNECT_ROUTE, event, event["requestContext"]["requestId"])
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

    # --- the management API ------------------------------------------------------------

    async def _management(self, request: web.Request) -> web.StreamResponse:
        """The management API through aiohttp: the calls :class:`FrontDoor`
        leaves to it (a connection's first call that is not a plain one)."""
        answer = await self.management_call(request.method, request.match_info["connection_id"], request.headers,
                                            request.remote, request.read)
        if answer.json is not None:
            return web.json_response(answer.json, status=answer.status, headers=answer.headers)
        return web.Response(status=answer.status, headers=answer.headers)

    async def management_call(self, method: str, raw_id: str, headers: Mapping[str, str], remote: str | None,
                              read: Callable[[], Awaitable[bytes]]) -> ManagementAnswer:
        """One call of the management API: ``method`` on connection ``raw_id``
        (as the path has it), from ``remote``; ``read`` gives the body."""
        allowed = self.account.take()  # the account's quota counts a request as it arrives
        if self.management_latency:
            await self._round_trips.wait(self.management_latency)
        if not allowed:
            return management_error(429, "LimitExceededException", "Rate exceeded")
        refusal = management_refusal(remote, headers, self.management_from_anywhere)
        if refusal:
            return management_error(403, "ForbiddenException", refusal)
        # botocore percent-encodes the id ("=" → %3D); decode whatever aiohttp left
        connection_id = unquote(raw_id)
        connection = self.connections.get(connection_id)
        if method not in ("POST", "GET", "DELETE"):
            return management_error(405, "MethodNotAllowedException", f"{method} is not supported")
        if connection is None or not connection.open or connection.ws.closed:
            return GONE
        if method == "GET":
            return ManagementAnswer(200, json={
                "connectedAt": iso(connection.connected_at),
                "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                "lastActiveAt": iso(connection.last_active_at),
            })
        if method == "DELETE":
            await connection.close(WSCloseCode.OK, "")
            return ManagementAnswer(204)
        try:
            data = await read()
        except (ConnectionError, web.RequestPayloadError) as exc:
            broke_off(connection_id, exc)
            return ManagementAnswer(400)
        if len(data) > MAX_MESSAGE_BYTES:
            return management_error(413, "PayloadTooLargeException", "Message too long")
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
            return GONE
        connection.touch()
        return ManagementAnswer(200)


#: The window API Gateway compresses what it sends with: it answers a
#: permessage-deflate offer with "permessage-deflate;server_max_window_bits=12",
#: also when the offer asked for no window (websockets' "permessage-deflate;
#: client_max_window_bits": python-websockets issue #1065,
#: https://github.com/python-websockets/websockets/issues/1065, 2021-10-08,
#: whose client changed its defaults in 10.1 to work around API Gateway
#: ignoring the client_max_window_bits it asked for). It saves zlib 112 KB of
#: window a connection but little resident memory (bench/local_capacity.py,
#: 1,000 clients: 370 MB at the peak against 368 with aiohttp's window of
#: 2**15): frames this small touch little of the window, and the deflate
#: state's hash table, which aiohttp's zlib memLevel sizes, is most of it.
SERVER_MAX_WINDOW_BITS = 12


def api_gateway_offer(request: web.Request) -> web.BaseRequest:
    """``request`` as aiohttp must see it to answer the permessage-deflate
    offer as API Gateway does. aiohttp answers with the server window the
    offer names (15, unnamed); so each permessage-deflate offer here names
    at most :data:`SERVER_MAX_WINDOW_BITS`, its other parameters as they were.
    The ``$connect`` event carries the client's own headers, not these."""
    offers = request.headers.getall(hdrs.SEC_WEBSOCKET_EXTENSIONS, [])
    if not any("permessage-deflate" in offer for offer in offers):
        return request
    headers = CIMultiDict(request.headers)
    headers.popall(hdrs.SEC_WEBSOCKET_EXTENSIONS)
    for offer in offers:
        headers.add(hdrs.SEC_WEBSOCKET_EXTENSIONS, ", ".join(_smaller_window(one) for one in offer.split(",")))
    return request.clone(headers=headers)


def _smaller_window(offer: str) -> str:
    """One extension offer, a permessage-deflate one with its server window
    at most :data:`SERVER_MAX_WINDOW_BITS`."""
    name, *params = [part.strip() for part in offer.split(";")]
    if name.lower() != "permessage-deflate":
        return offer.strip()
    kept = []
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "server_max_window_bits":
            bits = value.strip().strip('"')
            if bits.isdigit() and int(bits) <= SERVER_MAX_WINDOW_BITS:
                return offer.strip()  # already at most API Gateway's
            continue
        kept.append(param)
    return "; ".join([name, *kept, f"server_max_window_bits={SERVER_MAX_WINDOW_BITS}"])


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


def _selection_path(expression: str) -> list[str]:
    prefix = "$request.body."
    if not expression.startswith(prefix):
        raise ValueError(f"local mode routes on $request.body.<field>, not {expression!r}")
    return expression[len(prefix):].split(".")

