"""The least HTTP/1.1 a management API post needs: one request's bytes, an incremental
parser for its response, and whether a keep-alive connection left idle may carry the next one.

Why not ``http.client``: measured with ``bench/post_cpu.py``, its response
parsing (headers through the ``email`` package) was half of a post's CPU, and
a post cost 280 µs against the 100 µs target. This parser does what
``http.client`` does for these responses, no more; ``tests/test_http1.py``
feeds both the same bytes and checks they agree on the status, the headers,
the body and whether the connection stays open.
"""

from __future__ import annotations

import select
from dataclasses import dataclass, field

#: The longest response head (status line and headers) accepted.
MAX_HEAD_BYTES = 64 * 1024


class ProtocolError(Exception):
    """The bytes received are not an HTTP/1.x response."""


@dataclass
class Response:
    status: int
    #: Header values by lowercased name; repeated headers joined with ", ".
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Whether the connection can carry another request after this response.
    keep_alive: bool = True


def request(method: str, path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    """The bytes of one request with a body (``Content-Length`` added)."""
    lines = [f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"]
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(lines).encode("latin-1") + body


def closed_while_idle(fileno: int) -> bool:
    """Whether the keep-alive connection on ``fileno``, idle in a pool, must
    not carry another request: readable while idle means the server closed
    it (or spoke unasked). Both clients' pools (``awsjson``, ``sender``) ask
    before reusing a connection."""
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))


class ResponseParser:
    """Feed it bytes as they arrive; :meth:`feed` returns the response once
    it is complete (None until then). :meth:`eof` says the peer closed: it
    completes a response delimited by the close, or raises
    :class:`ProtocolError`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._response: Response | None = None
        self._remaining = 0  # body bytes still expected (content-length)
        self._mode = "head"  # head, length, chunk-size, chunk-data, chunk-trailer, close

    def feed(self, data: bytes) -> Response | None:
        self._buffer += data
        while True:
            if self._mode == "head":
                if not self._parse_head():
                    return None
            elif self._mode == "length":
                if len(self._buffer) < self._remaining:
                    return None
                self._take_body(self._remaining)
                return self._finish()
            elif self._mode == "chunk-size":
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEAD_BYTES:
                        raise ProtocolError("chunk size line too long")
                    return None
                size_text = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
                del self._buffer[:end + 2]
                try:
                    self._remaining = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_text!r}") from None
                self._mode = "chunk-trailer" if self._remaining == 0 else "chunk-data"
            elif self._mode == "chunk-data":
                if len(self._buffer) < self._remaining + 2:
                    return None
                self._take_body(self._remaining)
                if self._buffer[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del self._buffer[:2]
                self._mode = "chunk-size"
            elif self._mode == "chunk-trailer":
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    return None
                del self._buffer[:end + 2]
                if end == 0:  # the empty line that ends the trailer
                    return self._finish()
            else:  # close: the body runs until the peer closes
                assert self._response is not None
                self._response.body += bytes(self._buffer)
                self._buffer.clear()
                return None

    def eof(self) -> Response:
        if self._mode == "close" and self._response is not None:
            self._response.body += bytes(self._buffer)
            self._buffer.clear()
            return self._finish()
        raise ProtocolError("connection closed before the response was complete")

    def _parse_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("response head too long")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[:end + 4]
        status_line, _, header_text = head.partition("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        try:
            status = int(rest[:3])
        except ValueError:
            raise ProtocolError(f"bad status line {status_line[:80]!r}") from None
        if not 100 <= status <= 999:
            raise ProtocolError(f"bad status {status}")
        headers: dict[str, str] = {}
        for line in header_text.split("\r\n") if header_text else ():
            name, colon, value = line.partition(":")
            if not colon:
                continue  # http.client skips what is not a header too
            # as http.client: leading blanks go, trailing ones stay
            name, value = name.strip().lower(), value.lstrip(" \t")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:
            return True  # an interim response (100 Continue): the real one follows
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            keep_alive = "keep-alive" in connection
        else:
            keep_alive = "close" not in connection
        self._response = Response(status, headers, b"", keep_alive)
        if status in (204, 304):
            self._remaining = 0  # no body, whatever the headers say
            self._mode = "length"
            return True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = "chunk-size"
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise ProtocolError(f"bad content-length {headers['content-length']!r}") from None
            if self._remaining < 0:
                raise ProtocolError("negative content-length")
            self._mode = "length"
        else:
            self._response.keep_alive = False
            self._mode = "close"
        return True

    def _take_body(self, size: int) -> None:
        assert self._response is not None
        self._response.body += bytes(self._buffer[:size])
        del self._buffer[:size]

    def _finish(self) -> Response:
        response = self._response
        assert response is not None
        self._response = None
        self._mode = "head"
        return response
