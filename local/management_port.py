"""The management API's port: plain calls read and answered without aiohttp
(:class:`FrontDoor`), everything else handed to it; round trips paced (:class:`RoundTrips`).

What a call does is :meth:`.gateway.Gateway.management_call`'s, whichever way the
call came in; this module is how calls reach it and how its
:class:`ManagementAnswer` goes back: ``tests/test_local_gateway_faults.py``
compares every kind of call's answer through both ways.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Mapping, cast
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from ..handlers.protocol import API_GATEWAY_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("channel_server.local")


#: Management API calls answered in one turn of the event loop, at most, once
#: their round trip is over (:class:`RoundTrips`).
ANSWERS_PER_TURN = 8


class RoundTrips:
    """The management API's simulated round trip to AWS: each call waits its
    ``seconds``, then for its turn, up to :data:`ANSWERS_PER_TURN` calls a turn
    of the event loop, in the order their round trips ended.

    With a sleep each, the calls a fan-out makes at once (``postsInFlight``)
    all woke in one turn of the loop, and the loop read no request until it had
    answered them all: the next calls, sent as their answers came, started
    their round trips together again once the whole batch was done. Every
    round of a fan-out then took the round trip plus the gateway's whole work
    for the round (1,000 members, 64 in flight at 20 ms: 16 rounds of 35 ms,
    not 20). On AWS, each call's round trip runs on its own; here the loop reads
    the requests that came in between each few answers, so a call sent as its
    predecessor's answer arrived starts its round trip then."""

    def __init__(self) -> None:
        self._due: collections.deque[asyncio.Future[None]] = collections.deque()
        self._releasing = False

    async def wait(self, seconds: float) -> None:
        """Return ``seconds`` from now, or when this call's turn comes after that."""
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        handle = loop.call_later(seconds, self._due_now, turn)
        try:
            await turn
        finally:
            handle.cancel()

    def _due_now(self, turn: asyncio.Future[None]) -> None:
        if turn.done():
            return  # cancelled while it waited
        self._due.append(turn)
        if not self._releasing:
            self._releasing = True
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        released = 0
        while self._due and released < ANSWERS_PER_TURN:
            turn = self._due.popleft()
            if not turn.done():
                turn.set_result(None)
                released += 1
        if self._due:
            asyncio.get_running_loop().call_soon(self._release)  # after the loop's next look at its sockets
        else:
            self._releasing = False



@dataclass(frozen=True)
class ManagementAnswer:
    """A management API call's answer: its status, a JSON body if any, and
    headers beyond the body's."""

    status: int
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


GONE = ManagementAnswer(410, headers={"x-amzn-ErrorType": "GoneException"})


def management_error(status: int, error_type: str, message: str) -> ManagementAnswer:
    return ManagementAnswer(status, json={"message": message}, headers={"x-amzn-ErrorType": error_type})


def broke_off(connection_id: str, exc: BaseException) -> None:
    # a sender that died mid-post (a killed fan-out process): its post
    # is lost with it, and nobody is left to answer
    log.warning("management API: the POST to %s broke off before its body ended (%s); nothing was sent",
                connection_id, type(exc).__name__)


# --- the port: plain management calls answered here, everything else by aiohttp ----------------------

#: The most a plain management call's head may take (aiohttp takes 8,190
#: bytes a line); past it, or anything unusual, aiohttp serves the connection.
PLAIN_HEAD_BYTES = 16 * 1024
#: HEAD is aiohttp's: its answer has no body.
_PLAIN_METHODS = frozenset({"POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS"})
#: Headers that make a call not plain: aiohttp answers them as HTTP says.
_NOT_PLAIN = frozenset({"transfer-encoding", "expect", "upgrade"})


class FrontDoor(asyncio.Protocol):
    """One connection to local mode's port. A sender's keep-alive connection
    carries nothing but management API calls; each plain one (HTTP/1.1, a
    path under ``/{stage}/@connections/``, a Content-Length body up to API
    Gateway's limit, nothing asked of HTTP beyond that) is answered here, by
    :meth:`Gateway.management_call`, as aiohttp's route answers it. The first
    request that is not plain (a WebSocket handshake, the page, a function URL,
    ``Expect: 100-continue``, a chunked body) hands the connection, with what
    it has read, to aiohttp for good, between two calls.

    Through aiohttp a call cost the gateway about 58 µs more (its request and
    response objects, its router, its writer): 228 ms of its CPU for a
    1,000-member publish instead of 170, and each round of a fan-out waits,
    beyond its round trip, for the gateway's work on the round's calls.
    ``tests/test_local_gateway_faults.py`` checks each kind of call gets the
    same answer both ways. Calls on one connection are answered in order, one
    at a time, as HTTP/1.1 needs."""

    def __init__(self, gateway: Gateway, aiohttp_protocol: Callable[[], asyncio.Protocol]):
        self._gateway = gateway
        self._aiohttp_protocol = aiohttp_protocol
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buffer = bytearray()
        self._answering: asyncio.Task | None = None
        self._waiting_body: str | None = None  # the id of a POST whose body is still arriving

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        self._gateway.front_doors.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._answering is None:
            self._next()
        elif len(self._buffer) > PLAIN_HEAD_BYTES + MAX_MESSAGE_BYTES and self._transport is not None:
            self._transport.pause_reading()  # a sender far ahead of its answers: read on once it is answered

    def eof_received(self) -> bool:
        return False  # close: a sender that stops sending has no call left

    def connection_lost(self, exc: Exception | None) -> None:
        self._gateway.front_doors.discard(self)
        self._transport = None
        if self._waiting_body is not None:
            broke_off(self._waiting_body, exc or ConnectionResetError("Connection lost"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _next(self) -> None:
        """Answer the next whole call in the buffer, or hand the connection on."""
        if self._transport is None or not self._buffer:
            return
        call = _plain_call(self._buffer, self._gateway.world.stage)
        if call is None:
            return  # more to come
        if call is _NOT_A_PLAIN_CALL:
            self._hand_over()
            return
        method, raw_id, headers, length, head_end, close = call
        if len(self._buffer) < head_end + length:
            self._waiting_body = unquote(raw_id) if method == "POST" else None
            return
        self._waiting_body = None
        body = bytes(self._buffer[head_end:head_end + length])
        del self._buffer[:head_end + length]
        self._answering = asyncio.ensure_future(self._answer(method, raw_id, headers, body, close))

    async def _answer(self, method: str, raw_id: str, headers: Mapping[str, str], body: bytes, close: bool) -> None:
        async def read() -> bytes:
            return body

        try:
            answer = await self._gateway.management_call(method, raw_id, headers, self._remote, read)
        except Exception:
            log.exception("management API: %s %s failed", method, raw_id)
            answer, close = ManagementAnswer(500), True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(_http_response(answer, close))
        if close:
            transport.close()
            return
        self._answering = None
        if not transport.is_reading():
            transport.resume_reading()
        self._next()

    def _hand_over(self) -> None:
        """aiohttp serves this connection from here on, starting with what is buffered."""
        transport = self._transport
        assert transport is not None
        self._gateway.front_doors.discard(self)
        protocol = self._aiohttp_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        buffered, self._buffer, self._transport = bytes(self._buffer), bytearray(), None
        protocol.data_received(buffered)


_NOT_A_PLAIN_CALL = object()


def _plain_call(buffer: bytearray, stage: str) -> Any:
    """The call at the head of ``buffer``: (method, raw connection id,
    headers, body length, where the body starts, whether to close after it);
    None while its head is still arriving; _NOT_A_PLAIN_CALL for anything
    aiohttp must answer."""
    line_end = buffer.find(b"\r\n")
    if line_end < 0:
        return None if len(buffer) < PLAIN_HEAD_BYTES else _NOT_A_PLAIN_CALL
    parts = bytes(buffer[:line_end]).split(b" ")
    prefix = f"/{stage}/@connections/".encode()
    if (len(parts) != 3 or parts[2] != b"HTTP/1.1" or not parts[1].startswith(prefix)
            or parts[0].decode("latin-1") not in _PLAIN_METHODS):
        return _NOT_A_PLAIN_CALL
    raw_id = parts[1][len(prefix):].decode("latin-1")
    decoded = unquote(raw_id)
    if not decoded or not raw_id.isascii() or any(mark in decoded for mark in "/?#%{}"):
        return _NOT_A_PLAIN_CALL  # aiohttp's router and percent-decoding judge those
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None if len(buffer) < PLAIN_HEAD_BYTES else _NOT_A_PLAIN_CALL
    if head_end + 4 > PLAIN_HEAD_BYTES:
        return _NOT_A_PLAIN_CALL
    headers: CIMultiDict[str] = CIMultiDict()
    for line in bytes(buffer[line_end + 2:head_end]).decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            return _NOT_A_PLAIN_CALL  # no folded lines, no space before the colon: aiohttp judges those
        if name.lower() in _NOT_PLAIN:
            return _NOT_A_PLAIN_CALL
        headers.add(name, value.strip())
    lengths = headers.getall("Content-Length", [])
    if len(lengths) > 1 or lengths and not lengths[0].isdigit():
        return _NOT_A_PLAIN_CALL
    length = int(lengths[0]) if lengths else 0
    if length > MAX_MESSAGE_BYTES:
        return _NOT_A_PLAIN_CALL  # aiohttp's 413s
    close = headers.get("Connection", "").strip().lower() == "close"
    return parts[0].decode("latin-1"), raw_id, headers, length, head_end + 4, close


def _http_response(answer: ManagementAnswer, close: bool) -> bytes:
    """``answer`` as HTTP/1.1 sends it (aiohttp's headers, less Date and Server)."""
    body = b"" if answer.json is None else json.dumps(answer.json).encode()
    lines = [f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}"]
    lines += [f"{name}: {value}" for name, value in answer.headers.items()]
    if answer.json is not None:
        lines.append("Content-Type: application/json; charset=utf-8")
    if answer.status != 204:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class GatewaySite(web.BaseSite):
    """aiohttp's ``SockSite`` for the gateway's port, except that each
    connection meets a :class:`FrontDoor` first. Stopping it closes the port
    and the connections the front doors still serve (aiohttp's runner closes
    its own)."""

    __slots__ = ("_sock", "_gateway")

    def __init__(self, runner: web.BaseRunner, sock: Any, gateway: Gateway):
        super().__init__(runner)
        self._sock = sock
        self._gateway = gateway

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        aiohttp_protocol = self._runner.server
        assert aiohttp_protocol is not None  # the runner is set up
        self._server = await asyncio.get_running_loop().create_server(
            lambda: FrontDoor(self._gateway, aiohttp_protocol), sock=self._sock, backlog=self._backlog)

    async def stop(self) -> None:
        await super().stop()
        for door in list(self._gateway.front_doors):
            door.close()
