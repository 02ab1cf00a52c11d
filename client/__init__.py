"""A Python client for a channel server (docs/protocol.md), on API Gateway's terms.

    from channel_server.client import ChannelClient

    async with ChannelClient("wss://abc123.execute-api.eu-west-1.amazonaws.com/prod") as client:
        joined = await client.join("lobby")       # returns on joinSuccess
        await client.publish({"text": "hello"})   # returns on publishSuccess
        async for message in client:              # Message(channel_id, sender_id, data)
            print(message.sender_id, message.data)

What every client of a channel server on API Gateway has to do, done once:

- **One request at a time.** Replies carry no request id (protocol §5), so the
  client sends a join, publish or ping only after the previous one was answered;
  concurrent calls wait their turn, in order. Each call returns on its reply or
  raises the exception that documents it (see :class:`ChannelClientError`).
- **Keeping an idle connection open.** API Gateway closes a connection after
  10 idle minutes. The client sends a ``ping`` whenever ``ping_interval``
  seconds (4 minutes by default) pass without a frame in either direction, so
  the server's own ``heartbeat`` frames, when it sends them, make the pings
  unnecessary and none are sent. A ping not answered within ``reply_timeout``
  means the connection is dead: the client drops it and reconnects.
  ``heartbeat`` frames are never yielded as messages.
- **Reconnecting.** API Gateway closes every connection after 2 hours, and on
  deploys. When a connection closes for any reason other than :meth:`close`,
  the client reconnects with exponential backoff and full jitter, joins the
  channel it was in again (a new membership, so a new ``sender_id``) and only
  then sends the requests that were made while it was disconnected. Those wait
  in a queue of at most ``max_queue`` requests; one more raises
  :class:`QueueFull` at once.
- **Frame limits.** A client message over 32 KB is sent as several frames of at
  most 32 KB each (API Gateway closes the connection on a bigger frame), and a
  message over 128 KB raises :class:`FrameTooLarge` before anything is sent
  (API Gateway would close the connection).

Messages published while the client is disconnected are not delivered to it:
the server keeps no history (protocol §5).

The library needs ``websockets`` (``pip install 'channel-server[client]'``);
importing this module does not, so its names can be imported anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Mapping, Optional

from ..handlers import protocol

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = [
    "ChannelClient", "ClientClosed", "ChannelClientError", "ClientEvent", "ConnectFailed", "ConnectionLost",
    "FrameTooLarge", "GatewayError", "JoinFailed", "Joined", "Message", "PublishFailed", "Published",
    "QueueFull", "ReplyTimeout", "RequestFailed", "ServerError",
]

log = logging.getLogger("channel_server.client")

#: Seconds without a frame in either direction after which the client pings:
#: well under API Gateway's 10-minute idle timeout.
DEFAULT_PING_INTERVAL = protocol.API_GATEWAY_IDLE_TIMEOUT_SECONDS * 0.4
#: Seconds to wait for a reply. API Gateway answers within its 29-second
#: integration timeout (with the function's reply or its own error frame), so
#: a reply later than this will not come: the connection is dropped and made again.
DEFAULT_REPLY_TIMEOUT = 35.0
MAX_MESSAGE_BYTES = protocol.API_GATEWAY_MAX_MESSAGE_BYTES
MAX_FRAME_BYTES = protocol.API_GATEWAY_MAX_FRAME_BYTES

#: joinFailure reasons that a later attempt may not get (docs/protocol.md §4.1).
_TRANSIENT_REASONS = ("could not join right now; try again", "internal error; the request was not carried out")
#: The replies each request kind can get.
_REPLIES = {
    "join": ("joinSuccess", "joinFailure", "error"),
    "publish": ("publishSuccess", "publishFailure", "error"),
    "ping": ("pong", "error"),
}
_NO_DATA = object()


# --- what the client yields and returns ------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A ``message`` frame: ``data`` published by ``sender_id`` in ``channel_id``."""

    channel_id: str
    sender_id: str
    data: Any


@dataclass(frozen=True)
class Joined:
    """A ``joinSuccess``: this connection is in ``channel_id`` as ``sender_id``."""

    channel_id: str
    sender_id: str


@dataclass(frozen=True)
class Published:
    """A ``publishSuccess``. ``queued``: how many members of a large channel the
    message was handed to the server's fan-out queue for (accepted for
    delivery, not yet delivered; protocol §5); 0 in a smaller channel."""

    queued: int = 0


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
    - ``ready``: requests flow again after a reconnect (and the rejoin);
    - ``heartbeat``: a ``heartbeat`` frame from the server arrived;
    - ``ping``: the client pinged to keep an idle connection open;
    - ``dropped``: an incoming message was dropped because ``max_incoming``
      messages were waiting to be read.
    """

    kind: str
    detail: Mapping[str, Any] = field(default_factory=dict)


# --- what the client raises ------------------------------------------------------------


class ChannelClientError(Exception):
    """Everything the client raises on purpose derives from this."""


class RequestFailed(ChannelClientError):
    """The server answered a request with a failure. ``reason`` is its English
    reason (protocol §4.1), ``frame`` the whole reply."""

    def __init__(self, reason: str, frame: Mapping[str, Any]):
        super().__init__(reason)
        self.reason = reason
        self.frame = dict(frame)


class JoinFailed(RequestFailed):
    """``joinFailure``: the join did not happen; the connection stays where it was."""


class PublishFailed(RequestFailed):
    """``publishFailure``. When some members could not be reached, ``delivered``
    and ``failed`` say how many (``partial`` is true; the delivered members did
    receive the message, so publishing again sends them a second copy); otherwise
    they are None and nobody received it."""

    @property
    def delivered(self) -> Optional[int]:
        return self.frame.get("delivered")

    @property
    def failed(self) -> Optional[int]:
        return self.frame.get("failed")

    @property
    def queued(self) -> Optional[int]:
        return self.frame.get("queued")

    @property
    def partial(self) -> bool:
        return self.delivered is not None


class ServerError(RequestFailed):
    """An ``error`` frame in reply (for example a ``pong`` that would exceed 128 KB)."""


class GatewayError(ChannelClientError):
    """API Gateway's own error frame in place of the reply (protocol §9), such as
    ``Internal server error``: the request's effect is unknown (a publish may
    have reached some members)."""

    def __init__(self, message: str, frame: Mapping[str, Any]):
        super().__init__(message)
        self.message = message
        self.frame = dict(frame)


class ConnectionLost(ChannelClientError):
    """The connection closed before the reply: the request's effect is unknown.
    The client reconnects by itself (unless ``reconnect=False``)."""


class ReplyTimeout(ConnectionLost):
    """No reply within ``reply_timeout``: the connection is taken for dead and
    made again. The request's effect is unknown."""


class QueueFull(ChannelClientError):
    """The client is disconnected and ``max_queue`` requests already wait to be sent."""


class ClientClosed(ChannelClientError):
    """The client was closed (:meth:`ChannelClient.close`), or it gave up (the
    exception's ``__cause__`` says why)."""


class ConnectFailed(ChannelClientError):
    """No connection could be made: the handshake was refused (``status``, e.g.
    401 or 403 from a ``$connect`` authorizer) or the server could not be reached."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class FrameTooLarge(ChannelClientError, ValueError):
    """The frame is over API Gateway's 128 KB limit; it was not sent."""


# --- the client --------------------------------------------------------------------------


def encode(frame: Mapping[str, Any]) -> str:
    """``frame`` as the compact JSON text the client sends: UTF-8 characters
    unescaped, except in a frame with a lone surrogate, which UTF-8 cannot carry
    (then everything non-ASCII is escaped). :class:`FrameTooLarge` if it is over
    API Gateway's 128 KB; ValueError or TypeError if it is not JSON."""
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        text = json.dumps(frame, separators=(",", ":"), allow_nan=False)
        size = len(text)
    if size > MAX_MESSAGE_BYTES:
        raise FrameTooLarge(f"{frame.get('type')} frame is {size} bytes encoded; "
                            f"API Gateway's limit is {MAX_MESSAGE_BYTES}; nothing was sent")
    return text


def fragments(text: str, limit: int = MAX_FRAME_BYTES) -> Iterator[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes, never inside a
    character: the frames of one fragmented message."""
    data = text.encode("utf-8")
    start = 0
    while start < len(data):
        end = min(len(data), start + limit)
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a character's continuation byte
            end -= 1
        yield data[start:end].decode("utf-8")
        start = end


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
    ``max_queue``: requests that may wait while disconnected.
    ``max_incoming``: messages kept until read; beyond it the oldest is dropped.
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
        max_queue: int = 100,
        max_incoming: int = 10_000,
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
        for name, value in (("max_queue", max_queue), ("max_incoming", max_incoming)):
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
        self.max_queue = max_queue
        self.max_incoming = max_incoming
        self.open_timeout = open_timeout
        self.on_event = on_event
        #: The channel this client is in (or is rejoining after a reconnect), or None.
        self.channel: Optional[str] = None
        #: This client's senderId in that channel (a new one after each join), or None.
        self.sender_id: Optional[str] = None
        #: Connections made so far; ``connections - 1`` reconnects.
        self.connections = 0

        self._ws: Optional[ClientConnection] = None
        self._reader: Optional[asyncio.Task] = None
        self._keepalive: Optional[asyncio.Task] = None
        self._reconnecting: Optional[asyncio.Task] = None
        self._lock = asyncio.Lock()  # one request in flight: replies carry no request id
        self._ready = asyncio.Event()  # set: requests may go (connected, or finished: they raise)
        self._inflight: Optional[tuple[str, asyncio.Future]] = None
        self._waiting = 0  # requests not yet sent
        self._incoming: deque = deque()
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
        for task in (self._keepalive, self._reconnecting):
            if task is not None:
                task.cancel()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        for task in (self._keepalive, self._reconnecting):
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

    # --- requests ---------------------------------------------------------------------

    async def join(self, channel_id: str) -> Joined:
        """Join ``channel_id`` (leaving the current channel); returns on
        ``joinSuccess``, raises :class:`JoinFailed` on ``joinFailure``."""
        frame = await self._request("join", {"type": "join", "channelId": channel_id})
        joined = Joined(frame.get("channelId", channel_id), frame.get("senderId"))
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

    async def _request(self, kind: str, frame: Mapping[str, Any]) -> Mapping[str, Any]:
        self._check_usable()
        text = encode(frame)
        if not self._ready.is_set() and self._waiting >= self.max_queue:
            raise QueueFull(f"disconnected, and {self._waiting} requests already wait to be sent "
                            f"(max_queue={self.max_queue}); {kind} was not sent")
        self._waiting += 1
        sent = False
        try:
            async with self._lock:
                # _ready is set while connected (and rejoined), or once the
                # client is finished; it may have been cleared again by the
                # time this task runs
                while not self._ready.is_set():
                    await self._ready.wait()
                self._check_usable()
                ws = self._ws
                assert ws is not None  # set whenever _ready is and the client is not finished
                self._waiting -= 1
                sent = True
                reply = await self._exchange(ws, kind, text)
        finally:
            if not sent:
                self._waiting -= 1
        return self._outcome(kind, reply)

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

    async def _exchange(self, ws: "ClientConnection", kind: str, text: str) -> Mapping[str, Any]:
        """Send one request on ``ws`` and wait for its reply (the caller holds the
        one request slot)."""
        from websockets.exceptions import ConnectionClosed

        reply: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight = (kind, reply)
        try:
            try:
                await ws.send(text if len(text.encode("utf-8")) <= MAX_FRAME_BYTES else fragments(text))
            except ConnectionClosed as exc:
                raise ConnectionLost(f"the connection closed while sending {kind}; its effect is unknown") from exc
            self._last_traffic = _now()
            try:
                return await asyncio.wait_for(reply, self.reply_timeout)
            except asyncio.TimeoutError:
                log.warning("no reply to %s within %s s: dropping the connection", kind, self.reply_timeout)
                ws.transport.abort()
                # at once, so that no request goes out on it in the meantime
                self._ended(ws, 1006, f"no reply within {self.reply_timeout} s")
                raise ReplyTimeout(f"no reply to {kind} within {self.reply_timeout} s; its effect is unknown, "
                                   "and the connection was dropped") from None
        finally:
            if self._inflight is not None and self._inflight[1] is reply:
                self._inflight = None
            if reply.done() and not reply.cancelled():
                reply.exception()  # settled while this raised something else: retrieved, not logged

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
            self._deliver(Message(frame.get("channelId"), frame.get("senderId"), frame.get("data")))
        elif frame_type == "heartbeat":
            self._emit("heartbeat")
        elif frame_type is None and isinstance(frame.get("message"), str):
            # API Gateway's own error frame takes the place of the reply (§9)
            if not self._answer(None, GatewayError(frame["message"], frame)):
                log.warning("API Gateway error frame with no request waiting: %s", frame["message"])
        elif isinstance(frame_type, str) and any(frame_type in replies for replies in _REPLIES.values()):
            if not self._answer(frame_type, frame):
                log.warning("ignoring a %s frame: no request it answers is waiting", frame_type)
        else:
            log.debug("ignoring a frame of unknown type %r", frame_type)  # protocol §10

    def _answer(self, frame_type: Optional[str], outcome: Any) -> bool:
        """Settle the request in flight with ``outcome`` if ``frame_type`` can
        answer it (None: any request); whether one was settled."""
        if self._inflight is None:
            return False
        kind, reply = self._inflight
        if reply.done() or (frame_type is not None and frame_type not in _REPLIES[kind]):
            return False
        if isinstance(outcome, BaseException):
            reply.set_exception(outcome)
        else:
            reply.set_result(outcome)
        return True

    def _deliver(self, item: Any) -> None:
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
        if self._inflight is not None:
            kind, reply = self._inflight
            if not reply.done():
                error = ClientClosed if self._closing else ConnectionLost
                reply.set_exception(error(f"{closed} before the reply to {kind}; its effect is unknown"))
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
            text = encode({"type": "join", "channelId": self.channel})
            frame = self._outcome("join", await self._exchange(ws, "join", text))
        except JoinFailed as exc:
            if exc.reason in _TRANSIENT_REASONS:
                return ConnectionLost(f"could not rejoin {self.channel}: {exc.reason}")
            log.error("could not rejoin %s: %s", self.channel, exc.reason)
            self._emit("rejoin_failed", channel_id=self.channel, reason=exc.reason)
            self.channel = self.sender_id = None
            self._deliver(exc)
            return None
        except (ConnectionLost, GatewayError, ServerError) as exc:
            return ConnectionLost(f"could not rejoin {self.channel}: {exc}")
        self.sender_id = frame["senderId"]
        self._emit("rejoined", channel_id=self.channel, sender_id=self.sender_id)
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
            if self._lock.locked():  # a request is under way, and its reply is traffic
                await asyncio.sleep(interval)
                continue
            self._emit("ping")
            try:
                await self.ping()
            except (ConnectionLost, GatewayError, ServerError, QueueFull) as exc:
                log.info("keep-alive ping failed: %s", exc)
            except ClientClosed:
                return

    def _give_up(self, failure: BaseException) -> None:
        log.error("giving up on %s: %s", self.url, failure)
        self._failure = failure
        self._finish()

    def _finish(self) -> None:
        self._ready.set()  # waiting requests wake up and raise
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
