"""A benchmark's audience: many WebSocket members in one process, each a bare
asyncio protocol that notes when each message arrived.

A benchmark shares the machine with local mode, so what its clients cost
is taken from what it measures. 1,000 ``websockets`` clients took 65-75 ms
of CPU to receive one publish (a frame parser, an awaiting task woken per
message, keep-alive pings), on the cores local mode and the handlers use. A
:class:`Member` does the same job (RFC 6455 with permessage-deflate, RFC
7692, offered as ``websockets`` offers it, so local mode compresses as it
does for a browser) in the protocol's own callback, no task, no parser
objects: 35-45 ms for 1,000 (bench/fanout.py's process, its publisher
included), most of it the kernel's, a read per message. It stamps a message
when its frame is read and decodes it later, so a busy benchmark delays the
stamp no more than it must. Not a client for anything else: it takes only
what local mode sends (unmasked, unfragmented frames, pings and a close).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

#: What a member offers, as websockets' client does by default.
OFFER = "permessage-deflate; client_max_window_bits"
_TAIL = b"\x00\x00\xff\xff"


class Member(asyncio.Protocol):
    """One WebSocket connection. ``arrived`` holds (time, frame) for each
    message in order; :meth:`next_message` waits for the next one."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.arrived: list[tuple[float, bytes]] = []
        self.closed = asyncio.get_running_loop().create_future()
        self._opened = asyncio.get_running_loop().create_future()
        self._buffer = b""
        self._handshaken = False
        self._inflater: Any = None
        self._bits = -15
        self._fresh_inflater = False
        self._waiter: asyncio.Future | None = None
        self._read = 0

    @classmethod
    async def connect(cls, url: str) -> "Member":
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        _, member = await loop.create_connection(cls, parts.hostname or "127.0.0.1", parts.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Extensions: {OFFER}\r\nUser-Agent: bench-audience\r\n\r\n")
        assert member.transport is not None
        member.transport.write(request.encode())
        await asyncio.wait_for(member._opened, 60)
        return member

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self._opened, self.closed):
            if not future.done():
                future.set_result(None) if future is self.closed else future.set_exception(
                    ConnectionError("closed before the handshake was answered"))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("closed"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buffer += data
        if not self._handshaken:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4:]
            self._answered(head)
        while self._frame(now):
            pass

    def _answered(self, head: str) -> None:
        status, *lines = head.split("\r\n")
        if " 101 " not in status + " ":
            self._opened.set_exception(ConnectionError(f"handshake refused: {status}"))
            return
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        agreed = headers.get("sec-websocket-extensions", "")
        if agreed.startswith("permessage-deflate"):
            params = {p.strip().partition("=")[0]: p.strip().partition("=")[2] for p in agreed.split(";")[1:]}
            self._bits = -int(params.get("server_max_window_bits") or 15)  # raw deflate, the server's window
            self._inflater = zlib.decompressobj(self._bits)
            self._fresh_inflater = "server_no_context_takeover" in params
        self._handshaken = True
        self._opened.set_result(None)

    def _frame(self, now: float) -> bool:
        """Take one whole frame off the buffer, if there is one."""
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        first, second = buffer[0], buffer[1]
        length, at = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return False
            (length,), at = struct.unpack_from("!H", buffer, 2), 4
        elif length == 127:
            if len(buffer) < 10:
                return False
            (length,), at = struct.unpack_from("!Q", buffer, 2), 10
        if len(buffer) < at + length:
            return False
        payload, self._buffer = buffer[at:at + length], buffer[at + length:]
        opcode = first & 0x0F
        if not first & 0x80:
            raise RuntimeError("a fragmented message: local mode sends none")
        if opcode in (0x1, 0x2):  # text, binary
            if first & 0x40:  # RSV1: compressed
                payload = self._inflate(payload)
            self._message(now, payload)
        elif opcode == 0x9:
            self._send(0xA, payload)  # pong
        elif opcode == 0x8:
            self._send(0x8, payload[:2])
            assert self.transport is not None
            self.transport.close()
        return True

    def _inflate(self, payload: bytes) -> bytes:
        if self._inflater is None:
            raise RuntimeError("a compressed frame, but permessage-deflate was not agreed")
        if self._fresh_inflater:  # the server starts each message afresh
            self._inflater = zlib.decompressobj(self._bits)
        return self._inflater.decompress(payload + _TAIL)

    def _message(self, now: float, frame: bytes) -> None:
        self.arrived.append((now, frame))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_message(self) -> tuple[float, dict[str, Any]]:
        """The next message not yet taken: (when it arrived, the frame). Frames
        are decoded here, not as they arrive, when the benchmark has time."""
        while self._read >= len(self.arrived):
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self._read += 1
        arrived, frame = self.arrived[self._read - 1]
        return arrived, json.loads(frame)

    def send(self, frame: dict[str, Any]) -> None:
        self._send(0x1, json.dumps(frame).encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        head = bytes([0x80 | opcode])
        if length < 126:
            head += bytes([0x80 | length])
        elif length < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(head + mask + masked)

    async def close(self) -> None:
        self._send(0x8, struct.pack("!H", 1000))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 10)
        except asyncio.TimeoutError:
            if self.transport is not None:
                self.transport.close()


async def join_members(members: list[Member], channel: str, in_flight: int) -> None:
    """Join every member to ``channel``, ``in_flight`` joins at a time."""
    gate = asyncio.Semaphore(in_flight)

    async def join(member: Member) -> None:
        async with gate:
            member.send({"type": "join", "channelId": channel})
            _, reply = await member.next_message()
            assert reply["type"] == "joinSuccess", reply

    await asyncio.gather(*(join(member) for member in members))
