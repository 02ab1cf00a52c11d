"""``ChannelClient``: one channel server connection, on API Gateway's terms
(what it does is in the package's docstring, ``channel_server.client``)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Mapping, Optional, cast

from ..handlers import protocol
from .errors import (ChannelClientError, ClientClosed, ConnectFailed, ConnectionLost, GatewayError, JoinFailed,
                     PublishFailed, QueueFull, ReplyTimeout, ServerError)
from .frames import MAX_FRAME_BYTES, Joined, Message, Published, encode, fragments
from .resume import DELIVER, DUPLICATE, Resume

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger("channel_server.client")

#: Seconds without a frame in either direction after which the client pings:
#: well under API Gateway's 10-minute idle timeout.
DEFAULT_PING_INTERVAL = protocol.API_GATEWAY_IDLE_TIMEOUT_SECONDS * 0.4
#: Seconds to wait for a reply. API Gateway answers within its 29-second
#: integration timeout (with the function's reply or its own error frame), so
#: a reply later than this will not come.
DEFAULT_REPLY_TIMEOUT = 35.0
#: Requests in flight at once on a server that echoes request ids. Each one is
#: a Lambda invocation running at the same time as the others (the account has
#: 1,000 concurrent executions by default, for every client together), and
#: publishes in flight together are delivered in no particular order; 16 is
#: plenty to hide a round trip of tens of milliseconds.
DEFAULT_MAX_IN_FLIGHT = 16

#: joinFailure reasons that a later attempt may not get (docs/protocol.md §4.1).
_TRANSIENT_REASONS = (protocol.JOIN_BUSY, protocol.INTERNAL_ERROR)
#: The replies each request kind can get.
_REPLIES = {
    "join": ("joinSuccess", "joinFailure", "error"),
    "publish": ("publishSuccess", "publishFailure", "error"),
    "ping": ("pong", "error"),
}
_REPLY_TYPES = frozenset(t for replies in _REPLIES.values() for t in replies)
_NO_DATA = object()


@dataclass
class _Pending:
    """A request sent on the current connection whose reply has not come."""

    kind: str
    reply: asyncio.Future[Mapping[str, Any]]
    #: a ping that checks the connection: no reply in time means it is dead
    liveness: bool = False


@dataclass(frozen=True)
class ClientEvent:
    """What happened to the connection, for ``on_event`` (a log line, a status bar).

    ``kind`` is one of:

    - ``connected``: a connection is open (``detail``: the attempt's number, 1 first);
    - ``disconnected``: it closed (``code``, ``reason``); a reconnect follows
      unless the client is closing;
    - ``reconnecting``: the next attempt starts after ``delay`` seconds
      (``attempt``, 1 first; ``reason``: why, as a sentence: how the connection
      closed before the first attempt, how the previous attempt failed before
      a later one);
    - ``rejoined``: the channel was joined again after a reconnect (``channel_id``, ``sender_id``);
    - ``rejoin_failed``: that join was refused for good (``reason``); the client
      is in no channel, and iterating raises the :class:`JoinFailed`;
    - ``resumed``: the rejoin resumed from the last message seen
      (``replayed``: the missed messages the server sent; ``complete``:
      whether that was all of them, False when some are lost);
    - ``ready``: requests flow again after a reconnect (and the rejoin);
    - ``heartbeat``: a ``heartbeat`` frame from the server arrived;
    - ``ping``: the client pinged to keep an idle connection open;
    - ``dropped``: an incoming message was dropped because ``max_incoming``
      messages were waiting to be read;
    - ``duplicate``: a message whose ``messageId`` was seen already was
      dropped (``message``).
    """

    kind: str
    detail: Mapping[str, Any] = field(default_factory=dict)



class ChannelClient:
    """An asyncio client of one channel server connection (see the module's docstring).

    ``url``: the stack output ``url`` (``wss://…/stage``, or local mode's ``ws://…``).
    ``headers``: extra handshake headers, e.g. what a ``$connect`` authorizer reads.
    ``ping_interval``: seconds without traffic before a keep-alive ``ping``
    (None: never ping). ``reply_timeout``: seconds to wait for any reply.
    ``reconnect``: whether to reconnect after the connection closes; with
    ``backoff_initial``/``backoff_max`` the bounds of the exponential backoff (each
    wait is drawn uniformly below the bound) and ``max_reconnect_attempts`` the
    failed attempts in a row after which the client gives up (None: never).
    ``max_in_flight``: requests sent and not yet answered, at most (on a
    server that echoes request ids; one otherwise).
    ``max_queue``: requests that may wait while disconnected.
    ``max_incoming``: messages kept until read; beyond it the oldest is dropped.
    ``max_remembered``: message ids remembered to drop second copies.
    ``on_event``: called with a :class:`ClientEvent` for each change of state.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        ping_interval: Optional[float] = DEFAULT_PING_INTERVAL,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_reconnect_attempts: Optional[int] = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_queue: int = 100,
        max_incoming: int = 10_000,
        max_remembered: int = 10_000,
        open_timeout: float = 10.0,
        on_event: Optional[Callable[[ClientEvent], None]] = None,
    ):
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError(f"url must be a ws:// or wss:// URL (the stack output url), not {url!r}")
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError(f"ping_interval must be a positive number of seconds or None, not {ping_interval!r}")
        for name, value in (("reply_timeout", reply_timeout), ("backoff_initial", backoff_initial),
                            ("backoff_max", backoff_max), ("open_timeout", open_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        for name, value in (("max_in_flight", max_in_flight), ("max_queue", max_queue),
                            ("max_incoming", max_incoming), ("max_remembered", max_remembered)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer of at least 1, not {value!r}")
        if max_reconnect_attempts is not None and max_reconnect_attempts < 1:
            raise ValueError(f"max_reconnect_attempts must be at least 1 or None, not {max_reconnect_attempts!r}")
        self.url = url
        self.headers = dict(headers or {})
        self.ping_interval = ping_interval
        self.reply_timeout = reply_timeout
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_reconnect_attempts = max_reconnect_attempts
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.max_incoming = max_incoming
        self.max_remembered = max_remembered
        self.open_timeout = open_timeout
        self.on_event = on_event
        #: The channel this client is in (or is rejoining after a reconnect), or None.
        self.channel: Optional[str] = None
        #: This client's senderId in that channel (a new one after each join), or None.
        self.sender_id: Optional[str] = None
        #: Connections made so far; ``connections - 1`` reconnects.
        self.connections = 0
        self._resume = Resume(max_remembered)

        self._ws: Optional[ClientConnection] = None
        self._reader: Optional[asyncio.Task[None]] = None
        self._keepalive: Optional[asyncio.Task[None]] = None
        self._reconnecting: Optional[asyncio.Task[None]] = None
        self._probe: Optional[asyncio.Task[None]] = None  # the ping that checks the connection after a timeout
        self._send_lock = asyncio.Lock()  # held by the next request to send: requests go in call order
        self._ready = asyncio.Event()  # set: requests may go (connected, or finished: they raise)
        self._slots = asyncio.Event()  # set when a request in flight settles, or the connection changes
        #: requests in flight on the current connection by requestId, in the order sent
        self._pending: dict[str, _Pending] = {}
        #: whether the current connection's server echoes requestId; None until its first reply says
        self._echoes: Optional[bool] = None
        #: API Gateway error frames that came while several requests were in
        #: flight: the requests each may answer, and the frame
        self._owed: list[tuple[set[str], dict[str, Any]]] = []
        self._last_id = 0  # requestIds are this counter, never reused by this client
        self._waiting = 0  # requests not yet sent
        self._incoming: deque[Message | BaseException] = deque()
        self._arrived = asyncio.Event()
        self._closing = False
        self._failure: Optional[BaseException] = None  # why the client gave up
        self._last_traffic = 0.0

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> "ChannelClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the first connection; :class:`ConnectFailed` if it cannot be made.
        (Later connections are made by the client itself.)"""
        if self._closing or self._failure is not None:
            raise ClientClosed("this client was closed; make a new one")
        if self.connections:
            raise RuntimeError("connect() opens the first connection only; the client reconnects by itself")
        self._attach(await self._open())
        self._ready.set()
        if self.ping_interval is not None:
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def close(self) -> None:
        """Close the connection (code 1000) and stop reconnecting. Requests still
        waiting raise :class:`ClientClosed`; iterating ends."""
        if self._closing:
            return
        self._closing = True
        for task in (self._keepalive, self._reconnecting, self._probe):
            if task is not None:
                task.cancel()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        for task in (self._keepalive, self._reconnecting, self._probe):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        self._finish()

    @property
    def failure(self) -> Optional[BaseException]:
        """Why the client gave up (a refused reconnect, ``max_reconnect_attempts``
        reached, or a closed connection with ``reconnect=False``), or None."""
        return self._failure

    @property
    def connected(self) -> bool:
        """Whether requests are being sent now (connected, and rejoined after a reconnect)."""
        return self._ws is not None and self._ready.is_set() and not self._closing

    @property
    def in_flight(self) -> int:
        """Requests sent on the current connection whose reply has not come (at
        most ``max_in_flight``; one while the server's echo of request ids is unknown)."""
        return len(self._pending)

    @property
    def position(self) -> Optional[str]:
        """Where a rejoin resumes in the channel: the newest of the last
        join's ``position`` and the messages received since (None: the
        server keeps no history, or no join yet)."""
        return self._resume.position

    @property
    def duplicates(self) -> int:
        """Second copies of messages dropped (protocol §4.3)."""
        return self._resume.duplicates

    # --- requests ---------------------------------------------------------------------

    async def join(self, channel_id: str) -> Joined:
        """Join ``channel_id`` (leaving the current channel); returns on
        ``joinSuccess``, raises :class:`JoinFailed` on ``joinFailure``."""
        frame = await self._request("join", {"type": "join", "channelId": channel_id})
        # a joinSuccess carries the connection's senderId (docs/protocol.md §4.2)
        joined = Joined(frame.get("channelId", channel_id), cast(str, frame.get("senderId")))
        self._resume.joined(frame, joined.sender_id, new_channel=channel_id != self.channel)
        self.channel, self.sender_id = channel_id, joined.sender_id
        return joined

    async def publish(self, data: Any) -> Published:
        """Publish ``data`` (any JSON value) to the other members of the channel;
        returns on ``publishSuccess``, raises :class:`PublishFailed` with the
        reason on ``publishFailure``."""
        frame = await self._request("publish", {"type": "publish", "data": data})
        return Published(int(frame.get("queued") or 0))

    async def ping(self, data: Any = _NO_DATA) -> Any:
        """Ping the server; returns the ``pong``'s ``data`` (None without)."""
        frame = {"type": "ping"} if data is _NO_DATA else {"type": "ping", "data": data}
        return (await self._request("ping", frame)).get("data")

    async def _request(self, kind: str, frame: Mapping[str, Any], *, liveness: bool = False) -> Mapping[str, Any]:
        self._check_usable()
        request_id = self._new_id()
        text = encode({**frame, "requestId": request_id})
        if not self._ready.is_set() and self._waiting >= self.max_queue:
            raise QueueFull(f"disconnected, and {self._waiting} requests already wait to be sent "
                            f"(max_queue={self.max_queue}); {kind} was not sent")
        self._waiting += 1
        sent = False
        try:
            async with self._send_lock:  # fair: requests are sent in the order they were made
                while True:
                    # _ready is set while connected (and rejoined), or once the
                    # client is finished; it may have been cleared again by the
                    # time this task runs
                    while not self._ready.is_set():
                        await self._ready.wait()
                    self._check_usable()
                    if self._has_slot(kind):
                        break
                    self._slots.clear()
                    await self._slots.wait()
                ws = self._ws
                assert ws is not None  # set whenever _ready is and the client is not finished
                self._waiting -= 1
                sent = True
                reply = await self._send(ws, kind, request_id, text, liveness)
            # the reply is awaited without the lock: the next request goes meanwhile
            answer = await self._reply_to(ws, kind, request_id, reply)
        finally:
            if not sent:
                self._waiting -= 1
        return self._outcome(kind, answer)

    @property
    def _capacity(self) -> int:
        """Requests that may be in flight on the current connection: one until
        its first reply says the server echoes requestId (and for good when it
        does not, as replies are then paired by order)."""
        return self.max_in_flight if self._echoes else 1

    def _has_slot(self, kind: str) -> bool:
        """Whether a ``kind`` request may be sent now. A join goes alone: after
        the requests before it are answered, and the ones after it wait for its
        reply. The server runs the frames in flight at the same time, so a
        publish sent with a join could run before it, in the channel it leaves,
        and two joins could both be stored."""
        if any(pending.kind == "join" for pending in self._pending.values()):
            return False
        if kind == "join":
            return not self._pending
        return len(self._pending) < self._capacity

    def _new_id(self) -> str:
        self._last_id += 1
        return str(self._last_id)

    def _issued(self, request_id: Any) -> bool:
        """Whether ``request_id`` is one this client sent."""
        return (isinstance(request_id, str) and request_id.isascii() and request_id.isdigit()
                and 0 < int(request_id) <= self._last_id)

    @staticmethod
    def _outcome(kind: str, reply: Mapping[str, Any]) -> Mapping[str, Any]:
        reply_type = reply["type"]
        if reply_type in ("joinSuccess", "publishSuccess", "pong"):
            return reply
        reason = reply.get("data")
        reason = reason if isinstance(reason, str) else json.dumps(reason)
        if reply_type == "joinFailure":
            raise JoinFailed(reason, reply)
        if reply_type == "publishFailure":
            raise PublishFailed(reason, reply)
        raise ServerError(reason, reply)

    async def _send(self, ws: "ClientConnection", kind: str, request_id: str, text: str,
                    liveness: bool = False) -> asyncio.Future[Mapping[str, Any]]:
        """Send one request on ``ws``; the future its reply settles."""
        from websockets.exceptions import ConnectionClosed

        reply: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        # in flight before it is sent: the reader may see the reply before this resumes
        self._pending[request_id] = _Pending(kind, reply, liveness)
        try:
            await ws.send(text if len(text.encode("utf-8")) <= MAX_FRAME_BYTES else fragments(text))
        except ConnectionClosed as exc:
            self._abandon(request_id, reply)
            raise ConnectionLost(f"the connection closed while sending {kind}; its effect is unknown") from exc
        except BaseException:
            self._abandon(request_id, reply)
            raise
        self._last_traffic = _now()
        return reply

    async def _reply_to(self, ws: "ClientConnection", kind: str, request_id: str,
                        reply: asyncio.Future[Mapping[str, Any]]) -> Mapping[str, Any]:
        """Wait for the reply to the request ``request_id`` sent on ``ws``."""
        try:
            return await asyncio.wait_for(reply, self.reply_timeout)
        except asyncio.TimeoutError:
            pending = self._pending.get(request_id)
            self._abandon(request_id, reply)
            if (pending is not None and pending.liveness) or not self._echoes:
                # a ping unanswered: the connection is gone. Or the server does
                # not echo requestId, and a late reply would be taken for the
                # next request's: either way the connection cannot be kept
                log.warning("no reply to %s within %s s: dropping the connection", kind, self.reply_timeout)
                ws.transport.abort()
                # at once, so that no request goes out on it in the meantime
                self._ended(ws, 1006, f"no reply within {self.reply_timeout} s")
                raise ReplyTimeout(f"no reply to {kind} within {self.reply_timeout} s; its effect is unknown, "
                                   "and the connection was dropped") from None
            log.info("no reply to %s (requestId %s) within %s s: checking the connection",
                     kind, request_id, self.reply_timeout)
            self._check_connection(ws)
            raise ReplyTimeout(f"no reply to {kind} within {self.reply_timeout} s; its effect is unknown "
                               "(the connection stays, and a late reply is dropped)") from None
        finally:
            self._abandon(request_id, reply)  # if cancelled: the slot is free

    def _abandon(self, request_id: str, reply: asyncio.Future[Mapping[str, Any]]) -> None:
        """The request ``request_id`` waits no more (timed out, cancelled or
        failed to send): free its slot. An API Gateway error frame that it may
        be the one answered can no longer be attributed."""
        if reply.done() and not reply.cancelled():
            reply.exception()  # settled (say by a close) while the caller raised: retrieved, not logged
        pending = self._pending.get(request_id)
        if pending is None or pending.reply is not reply:
            return
        del self._pending[request_id]
        if not reply.done():
            reply.cancel()
        self._owed = [(ids, frame) for ids, frame in self._owed if request_id not in ids]
        self._slots.set()

    def _check_connection(self, ws: "ClientConnection") -> None:
        """After a reply timed out: ping (once at a time) to tell a slow reply
        from a dead connection, which a busy client's keep-alive never would
        (its own requests are traffic)."""
        if ws is not self._ws or (self._probe is not None and not self._probe.done()):
            return

        async def probe() -> None:
            self._emit("ping", reason="a reply timed out")
            try:
                await self._request("ping", {"type": "ping"}, liveness=True)
            except ChannelClientError as exc:
                log.info("connection check failed: %s", exc)

        self._probe = asyncio.get_running_loop().create_task(probe())

    # --- messages ---------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        """The next message; the iteration ends when the client is closed, and
        raises :class:`ClientClosed` if the client gave up (or
        :class:`JoinFailed` once if a rejoin was refused)."""
        if not self.connections:
            raise RuntimeError("connect() first, or use `async with ChannelClient(url) as client:`")
        while True:
            if self._incoming:
                item = self._incoming.popleft()
                if isinstance(item, BaseException):
                    raise item
                return item
            if self._closing:
                raise StopAsyncIteration
            if self._failure is not None:
                raise ClientClosed("the client gave up") from self._failure
            self._arrived.clear()
            await self._arrived.wait()

    # --- inside -----------------------------------------------------------------------

    async def _open(self) -> "ClientConnection":
        try:
            from websockets.asyncio.client import connect
            from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        except ImportError as exc:  # pragma: no cover - exercised through the command line
            from ..extras import install_command

            raise ImportError(f"ChannelClient needs websockets: {install_command('client')}") from exc
        try:
            return await connect(
                self.url,
                additional_headers=self.headers or None,
                # keep-alive is ping messages: API Gateway documents its idle
                # timeout for messages, not whether ping control frames reset it
                ping_interval=None,
                open_timeout=self.open_timeout,
                max_size=None,  # the server's frames are at most 128 KB anyway
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ConnectFailed(f"the server refused the connection: HTTP {status}", status) from exc
        except InvalidURI as exc:
            raise ValueError(f"not a WebSocket URL: {self.url!r} ({exc})") from exc
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
            raise ConnectFailed(f"could not connect to {self.url}: {exc}") from exc

    def _attach(self, ws: "ClientConnection") -> None:
        self._ws = ws
        self.connections += 1
        self._last_traffic = _now()
        self._echoes = None  # until the connection's first reply says
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))
        self._emit("connected", attempt=self.connections)

    async def _read(self, ws: "ClientConnection") -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in ws:
                self._last_traffic = _now()
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        finally:
            self._ended(ws)

    def _dispatch(self, raw: Any) -> None:
        if isinstance(raw, bytes):
            log.warning("ignoring a binary frame (%d bytes): the protocol has none", len(raw))
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignoring a frame that is not JSON: %.80r", raw)
            return
        if not isinstance(frame, dict):
            log.warning("ignoring a frame that is not a JSON object: %.80r", raw)
            return
        frame_type = frame.get("type")
        if frame_type == "message":
            # the fields as the server sent them (a message frame has both ids)
            self._message(Message(cast(str, frame.get("channelId")), cast(str, frame.get("senderId")),
                                  frame.get("data"), frame.get("messageId")))
        elif frame_type == "heartbeat":
            self._emit("heartbeat")
        elif frame_type is None and isinstance(frame.get("message"), str):
            # API Gateway's own error frame takes the place of a reply (§9);
            # its requestId is AWS's, not one of this client's
            self._gateway_error(frame)
        elif isinstance(frame_type, str) and frame_type in _REPLY_TYPES:
            self._reply(frame_type, frame)
        else:
            log.debug("ignoring a frame of unknown type %r", frame_type)  # protocol §10

    def _reply(self, frame_type: str, frame: dict[str, Any]) -> None:
        """Settle the request ``frame`` answers: the one with its requestId, or
        (from a server that does not echo requestId) the one in flight."""
        if "requestId" in frame:
            request_id = frame["requestId"]
            pending = self._pending.get(request_id) if isinstance(request_id, str) else None
            if pending is None:
                if self._issued(request_id):
                    log.debug("dropping a %s to request %s: it timed out, or was answered already",
                              frame_type, request_id)
                else:
                    log.warning("ignoring a %s frame with requestId %.80r: this client sent no such request",
                                frame_type, request_id)
                return
            if frame_type not in _REPLIES[pending.kind]:
                log.warning("ignoring a %s frame with requestId %s: that request is a %s",
                            frame_type, request_id, pending.kind)
                return
            if self._echoes is None:
                self._echoes = True
                self._slots.set()  # more requests may go now
            self._settle(request_id, frame)
            return
        if self._echoes:
            log.warning("ignoring a %s frame without requestId: this server echoes requestId", frame_type)
            return
        # an older server: one request in flight (its first reply said so, or
        # this is that first reply), and this answers it
        first = next(iter(self._pending.items()), None)
        if first is None or frame_type not in _REPLIES[first[1].kind]:
            log.warning("ignoring a %s frame: no request it answers is waiting", frame_type)
            return
        if self._echoes is None:
            self._echoes = False
            log.info("the server does not echo requestId: one request at a time on this connection")
        self._settle(first[0], frame)

    def _gateway_error(self, frame: dict[str, Any]) -> None:
        """API Gateway's error frame answers one of the requests in flight: the
        only one, or with several, the one left without a reply of its own."""
        if not self._pending:
            log.warning("API Gateway error frame with no request waiting: %s", frame["message"])
            return
        if len(self._pending) == 1:
            self._settle(next(iter(self._pending)), GatewayError(frame["message"], frame))
            return
        log.info("API Gateway error frame %r with %d requests in flight: it answers the one that gets "
                 "no reply of its own", frame["message"], len(self._pending))
        self._owed.append((set(self._pending), frame))

    def _settle(self, request_id: str, outcome: Any) -> None:
        """The request ``request_id`` is answered with ``outcome`` (a reply
        frame, or the exception to raise); attribute what that tells."""
        pending = self._pending.pop(request_id)
        if not pending.reply.done():
            if isinstance(outcome, BaseException):
                pending.reply.set_exception(outcome)
            else:
                pending.reply.set_result(outcome)
        self._slots.set()
        for owed in list(self._owed):
            ids, frame = owed
            ids.discard(request_id)
            if owed not in self._owed:  # attributed meanwhile, by a call below
                continue
            if len(ids) <= 1:
                self._owed.remove(owed)
            if len(ids) == 1:  # every other request it may answer got its own reply
                self._settle(ids.pop(), GatewayError(frame["message"], frame))

    def _message(self, message: Message) -> None:
        """A message: held during a resuming rejoin, dropped when it is a
        second copy (or this client's own, brought back by a replay), else
        delivered (:class:`resume.Resume`)."""
        verdict = self._resume.take(message, self.channel)
        if verdict == DELIVER:
            self._deliver(message)
        elif verdict == DUPLICATE:
            self._emit("duplicate", message=message)

    def _rejoined(self, frame: Optional[Mapping[str, Any]] = None) -> None:
        """The rejoin's reply came (None: it failed): what it held, in id order."""
        for message in self._resume.rejoined(frame, self.sender_id if frame is not None else None):
            self._message(message)

    def _deliver(self, item: Message | BaseException) -> None:
        if len(self._incoming) >= self.max_incoming:
            dropped = self._incoming.popleft()
            self._emit("dropped", message=dropped)
        self._incoming.append(item)
        self._arrived.set()

    def _ended(self, ws: "ClientConnection", code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """``ws`` closed (with ``code`` and ``reason``, if not its own): settle
        the request in flight and reconnect."""
        if ws is not self._ws:
            return
        self._ws = None
        if code is None:
            code, reason = ws.close_code, ws.close_reason
        closed = f"the connection closed ({code} {reason or ''}".rstrip() + ")"
        pending, self._pending, self._owed, self._echoes = self._pending, {}, [], None
        for request in pending.values():
            if not request.reply.done():
                error = ClientClosed if self._closing else ConnectionLost
                request.reply.set_exception(error(f"{closed} before the reply to {request.kind}; "
                                                  "its effect is unknown"))
        self._slots.set()
        self._emit("disconnected", code=code, reason=reason)
        if self._closing or self._reconnecting is not None:
            return
        self._ready.clear()
        if not self.reconnect:
            self._give_up(ConnectionLost(closed))
            return
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(closed))

    async def _reconnect(self, closed: str) -> None:
        """Connect again (``closed``: how the last connection ended), and
        rejoin, until it works or the client gives up."""
        failures = 0  # failed attempts in a row
        why = closed  # each reconnecting event says why it is needed: the close, then each failure
        try:
            while not self._closing:
                delay = random.uniform(0, min(self.backoff_max, self.backoff_initial * 2 ** failures))
                self._emit("reconnecting", attempt=failures + 1, delay=delay, reason=why)
                await asyncio.sleep(delay)
                try:
                    ws = await self._open()
                except ConnectFailed as exc:
                    if _refused_for_good(exc):
                        self._give_up(exc)  # refused, e.g. by an authorizer: trying again will not help
                        return
                    failure: BaseException = exc
                    log.info("reconnect attempt %d failed: %s", failures + 1, exc)
                else:
                    self._attach(ws)
                    rejoin_failure = await self._rejoin(ws)
                    if rejoin_failure is None:
                        break
                    failure = rejoin_failure
                    await ws.close()  # the rejoin failed for now: a new connection later
                failures += 1
                why = str(failure)
                if self.max_reconnect_attempts is not None and failures >= self.max_reconnect_attempts:
                    self._give_up(failure)
                    return
        except Exception as exc:  # a bug, not a network failure: give up loudly rather than hang
            log.exception("reconnecting failed")
            self._give_up(exc)
            return
        finally:
            self._reconnecting = None
        if not self._closing and self._ws is not None:
            self._ready.set()
            self._emit("ready")

    async def _rejoin(self, ws: "ClientConnection") -> Optional[ConnectionLost]:
        """Join the channel again on a new connection, before any queued request.
        None when done (or refused for good); the failure when it should be
        tried again on another connection."""
        if self.channel is None:
            return None
        try:
            request_id = self._new_id()
            # with history, since: what the replay and live posts bring is held until the reply
            text = encode({"type": "join", "channelId": self.channel, "requestId": request_id,
                           **self._resume.rejoining()})
            # the connection's first request, alone in flight: its reply says
            # whether the server echoes requestId
            reply = await self._send(ws, "join", request_id, text)
            frame = self._outcome("join", await self._reply_to(ws, "join", request_id, reply))
        except JoinFailed as exc:
            self._rejoined()
            if exc.reason in _TRANSIENT_REASONS:
                return ConnectionLost(f"could not rejoin {self.channel}: {exc.reason}")
            log.error("could not rejoin %s: %s", self.channel, exc.reason)
            self._emit("rejoin_failed", channel_id=self.channel, reason=exc.reason)
            self.channel = self.sender_id = None
            self._deliver(exc)
            return None
        except (ConnectionLost, GatewayError, ServerError, ReplyTimeout) as exc:
            self._rejoined()
            return ConnectionLost(f"could not rejoin {self.channel}: {exc}")
        self.sender_id = frame["senderId"]
        self._emit("rejoined", channel_id=self.channel, sender_id=self.sender_id)
        self._rejoined(frame)
        if "resumed" in frame:
            complete = frame.get("resumed") is True
            if not complete:
                log.warning("rejoined %s, but messages published while disconnected may be lost "
                            "(the server could not send them all)", self.channel)
            self._emit("resumed", replayed=frame.get("replayed"), complete=complete)
        return None

    async def _keep_alive(self) -> None:
        """Ping when ``ping_interval`` seconds pass without traffic either way."""
        interval = self.ping_interval
        assert interval is not None
        while not self._finished:
            idle = _now() - self._last_traffic
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            if not self.connected:  # a reconnect is under way; a new connection counts as traffic
                await self._ready.wait()
                continue
            if self._pending or self._send_lock.locked():  # requests are under way; their replies are traffic
                await asyncio.sleep(interval)
                continue
            self._emit("ping", reason="idle")
            try:
                # unanswered, it drops the connection: an idle connection's
                # ping has nothing to wait behind
                await self._request("ping", {"type": "ping"}, liveness=True)
            except (ConnectionLost, GatewayError, ServerError, QueueFull, ReplyTimeout) as exc:
                log.info("keep-alive ping failed: %s", exc)
            except ClientClosed:
                return

    def _give_up(self, failure: BaseException) -> None:
        log.error("giving up on %s: %s", self.url, failure)
        self._failure = failure
        self._finish()

    def _finish(self) -> None:
        self._ready.set()  # waiting requests wake up and raise
        self._slots.set()
        self._arrived.set()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()

    @property
    def _finished(self) -> bool:
        return self._closing or self._failure is not None

    def _check_usable(self) -> None:
        if self._closing:
            raise ClientClosed("this client was closed")
        if self._failure is not None:
            raise ClientClosed(f"the client gave up: {self._failure}") from self._failure
        if not self.connections:
            raise RuntimeError("connect() first, or use `async with ChannelClient(url) as client:`")

    def _emit(self, kind: str, **detail: Any) -> None:
        log.debug("%s %s", kind, detail)
        if self.on_event is not None:
            try:
                self.on_event(ClientEvent(kind, detail))
            except Exception:  # a broken callback must not break the connection
                log.exception("on_event raised on %s", kind)



def _now() -> float:
    return asyncio.get_running_loop().time()


def _refused_for_good(failure: BaseException) -> bool:
    """Whether a failed attempt to connect is not worth repeating: a handshake
    refused with a 4xx status other than 429 (Too Many Requests)."""
    status = getattr(failure, "status", None) if isinstance(failure, ConnectFailed) else None
    return status is not None and 400 <= status < 500 and status != 429
