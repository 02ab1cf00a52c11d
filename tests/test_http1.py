"""The handlers' HTTP/1.1 response parser against http.client: the same bytes,
fed whole or a few at a time, give the same status, headers, body and
keep-alive decision; and the request bytes read back as the request."""

from __future__ import annotations

import http.client
import io
from http.server import BaseHTTPRequestHandler

import pytest

from channel_server.handlers import http1

RESPONSES = {
    "ok, empty": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-amzn-RequestId: r1\r\n\r\n",
    "gone": (b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nx-amzn-ErrorType: GoneException\r\n"
             b"Content-Length: 15\r\n\r\n{\"message\":null}"[:-1]),
    "error type with a url": (b"HTTP/1.1 403 Forbidden\r\nx-amzn-ErrorType: ForbiddenException:http://internal/\r\n"
                              b"Content-Length: 2\r\n\r\n{}"),
    "chunked with extension and trailer": (b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           b"5;ext=1\r\n{\"__t\r\n6\r\nype\":1\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n"),
    "http/1.0, until close": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it",
    "http/1.0 keep-alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
    "connection close": b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 4\r\n\r\nslow",
    "100 continue first": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "204 ignores length": b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
    "repeated header, odd spacing": (b"HTTP/1.1 503 Service Unavailable\r\nX-Amzn-ErrorType:   Busy  \r\n"
                                     b"x-amzn-errortype: Again\r\ncontent-length:1\r\n\r\n!"),
    "no reason phrase": b"HTTP/1.1 502\r\nContent-Length: 0\r\n\r\n",
}
NAMES = ["content-length", "x-amzn-errortype", "x-amzn-requestid", "connection", "content-type", "transfer-encoding"]


class _Socket:
    def __init__(self, data: bytes):
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def by_http_client(raw: bytes) -> tuple:
    response = http.client.HTTPResponse(_Socket(raw), method="POST")  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    return response.status, {name: response.getheader(name) for name in NAMES}, body, not response.will_close


def by_ours(raw: bytes, step: int) -> tuple:
    parser = http1.ResponseParser()
    response = None
    for start in range(0, len(raw), step):
        response = parser.feed(raw[start:start + step]) or response
    if response is None:
        response = parser.eof()
    return response.status, {name: response.headers.get(name) for name in NAMES}, response.body, response.keep_alive


@pytest.mark.parametrize("step", [1, 7, 1 << 20], ids=["byte by byte", "7 bytes", "whole"])
@pytest.mark.parametrize("raw", RESPONSES.values(), ids=RESPONSES.keys())
def test_responses_are_read_as_http_client_reads_them(raw: bytes, step: int) -> None:
    assert by_ours(raw, step) == by_http_client(raw)


@pytest.mark.parametrize("raw", [b"SMTP ready\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_bytes_that_are_not_a_response_are_refused(raw: bytes) -> None:
    with pytest.raises(http1.ProtocolError):
        http1.ResponseParser().feed(raw)


def test_a_response_cut_short_by_the_close_is_an_error() -> None:
    parser = http1.ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") is None
    with pytest.raises(http1.ProtocolError):
        parser.eof()


def test_a_parser_reads_one_response_after_another() -> None:
    parser = http1.ResponseParser()
    first = parser.feed(RESPONSES["ok, empty"] + RESPONSES["gone"][:20])
    assert first is not None and first.status == 200
    second = parser.feed(RESPONSES["gone"][20:])
    assert second is not None and second.status == 410 and second.headers["x-amzn-errortype"] == "GoneException"


def test_request_bytes_read_back_as_the_request() -> None:
    raw = http1.request("POST", "/dev/@connections/a%3D", "example.com:8443",
                        {"X-Amz-Date": "20261126T120000Z", "Authorization": "AWS4-HMAC-SHA256 x"}, b'{"a":1}')

    class Parsed(BaseHTTPRequestHandler):
        def __init__(self) -> None:  # parse only: no socket, no server
            self.rfile = io.BytesIO(raw)
            self.raw_requestline = self.rfile.readline()
            self.parse_request()

    request = Parsed()
    assert (request.command, request.path, request.request_version) == ("POST", "/dev/@connections/a%3D", "HTTP/1.1")
    assert request.headers["Host"] == "example.com:8443"
    assert request.headers["X-Amz-Date"] == "20261126T120000Z"
    assert request.rfile.read(int(request.headers["Content-Length"])) == b'{"a":1}'
