"""Local mode's API Gateway when things go wrong around it: an authorizer that
refuses (by raising, the documented way) or crashes, a client that leaves
mid-handshake, a management API sender that dies mid-post, local mode stopping with publishes under way, and frames
at the edges of API Gateway's limits (invalid UTF-8, a message in thousands
of compressed fragments).

Every wait ends on a reply, a close, a log record or a marker line; TIMEOUT
only bounds a broken build.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import socket
import struct
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as connect_sync

from channel_server.handlers import spec
from channel_server.local.server import running
from support.local_mode import served_world
from test_local import TIMEOUT, Client, newest_connection, wait_until

#: An authorizer that refuses in each way one can: ``raise
#: Exception("Unauthorized")`` (plainly, and while handling another error), a
#: crash, and a deny policy for a token that first prints a marker line.
AUTHORIZER = '''
import sys


def handler(event, context):
    token = event["queryStringParameters"]["token"]
    if token == "nobody":
        raise Exception("Unauthorized")
    if token == "unknown":
        try:
            {}[token]
        except KeyError:
            raise Exception("Unauthorized")
    if token == "crash":
        raise RuntimeError("the token service is down")
    print(token, file=sys.stderr)  # a marker: everything printed before it has been relayed
    return {"principalId": token, "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": event["methodArn"]}]}}
'''


def refused_with(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        with connect_sync(url, open_timeout=TIMEOUT):
            pass
    return refused.value.response.status_code


# --- an authorizer's refusals ---------------------------------------------------------------------


def test_each_refused_handshake_is_one_log_line_and_the_authorizers_tracebacks_go_to_debug(
        tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="channel_server.local")
    (tmp_path / "auth.py").write_text(AUTHORIZER)
    with running(port=0, authorizer=str(tmp_path / "auth.py")) as server:
        capsys.readouterr()
        caplog.clear()
        assert refused_with(f"{server.url}?token=nobody") == 401
        assert refused_with(f"{server.url}?token=unknown") == 401
        assert refused_with(f"{server.url}?token=crash") == 500
        marker = f"marker-{uuid.uuid4().hex}"
        assert refused_with(f"{server.url}?token={marker}") == 403
        # the authorizer printed the marker after every traceback of the refusals above
        stderr: list[str] = []

        def printed_marker() -> bool:
            stderr.append(capsys.readouterr().err)
            return marker in "".join(stderr)

        wait_until(printed_marker)

    relayed = "".join(stderr)
    assert relayed.splitlines() == [marker]  # no traceback, no chained one's lines
    said = [re.sub(r"connect \S+ ", "connect ID ", r.getMessage()) for r in caplog.records
            if r.levelno >= logging.INFO and "by the authorizer" in r.getMessage()]
    arn = "arn:aws:execute-api:us-east-1:123456789012:local/dev/$connect"
    assert said == [
        "connect ID rejected 401 by the authorizer: the authorizer answered Unauthorized",
        "connect ID rejected 401 by the authorizer: the authorizer answered Unauthorized",
        "connect ID rejected 500 by the authorizer: the authorizer failed: local-authorizer: RuntimeError: "
        "the token service is down",
        f"connect ID rejected 403 by the authorizer: the authorizer's policy denies {arn}",
    ]
    tracebacks = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "Traceback" in r.getMessage()]
    # one for each refusal by an error: the plain one, the chained one (with its cause), the crash
    assert [t.splitlines()[-1] for t in tracebacks] == [
        "Exception: Unauthorized", "Exception: Unauthorized", "RuntimeError: the token service is down",
    ]
    assert "KeyError: 'unknown'" in tracebacks[1]
    assert all(t.startswith("[local-authorizer] ") for t in tracebacks)


# --- the management API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with running(port=0, world=served_world()) as server:
        yield server


def test_a_management_post_whose_sender_resets_mid_body_is_one_log_line(server, caplog):
    caplog.set_level(logging.INFO)
    before = set(server.gateway.connections)
    member = Client(server.url)
    try:
        connection_id = newest_connection(server, before)
        body = json.dumps({"type": "message", "data": "x" * 5000}).encode()
        head = (
            f"POST /{server.stage}/@connections/{connection_id} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Authorization: AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/execute-api/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'a' * 64}\r\n"
            "X-Amz-Date: 20261126T000000Z\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n"  # its answer says the request reached its handler
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sender:
            sender.sendall(head)
            assert sender.recv(100).startswith(b"HTTP/1.1 100 Continue")
            sender.sendall(body[:100])
            # reset, as the kernel does for a killed process with unread data: no FIN, an RST
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: [r for r in caplog.records if r.levelno >= logging.WARNING])

        said = [(r.name, r.levelname, r.getMessage(), r.exc_info) for r in caplog.records
                if r.levelno >= logging.WARNING]
        assert said == [(
            "channel_server.local", "WARNING",
            f"management API: the POST to {connection_id} broke off before its body ended "
            "(ConnectionResetError); nothing was sent",
            None,
        )]
        assert member.nothing_more()  # nothing was posted, and the connection is open
    finally:
        member.close()


def test_a_client_that_leaves_during_its_handshake_is_one_log_line_and_no_traceback(server, caplog):
    """A client gone before $connect was answered (a Ctrl-C, a dropped
    network) made aiohttp log "Error handling request" with a traceback."""
    caplog.set_level(logging.INFO)
    upgrade = (f"GET /{server.stage} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    attempts = 10
    for _ in range(attempts):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as client:
            client.sendall(upgrade)  # and closes at once, before the answer

    def outcomes() -> tuple[int, int]:
        """Attempts that ended before the handshake's answer, and those whose
        answer was written before the close was seen (then closed, 1006)."""
        said = [r.getMessage() for r in caplog.records]
        opened = {m.group(1) for line in said if (m := re.fullmatch(r"connect (\S+)", line))}
        left = sum(1 for line in said if re.fullmatch(r"connect \S+: the client left before the handshake "
                                                      r"was answered", line))
        closed = sum(1 for line in said if (m := re.fullmatch(r"disconnect (\S+) 1006", line)) and m.group(1) in opened)
        return left, closed

    wait_until(lambda: sum(outcomes()) == attempts)

    assert outcomes()[0] >= 1  # most, on a quiet machine all: the case that printed a traceback
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    served = Client(server.url)  # and the next client is served as ever
    try:
        assert served.nothing_more()
    finally:
        served.close()


# --- stopping ----------------------------------------------------------------------------------------


MEMBERS = 6
PUBLISHES = 3


def posting_one_member_at_a_time():
    """ChannelServer's world, its publishes posting to one member at a time:
    with a management latency, a publish to a few members is under way long
    enough for local mode to stop in its middle."""
    world = served_world()
    publish = world.routes["publish"]
    routes = {**world.routes, "publish": dataclasses.replace(
        publish, environment={**publish.environment, spec.ENV_POSTS_IN_FLIGHT: "1"})}
    return dataclasses.replace(world, routes=routes)


def frames_until_closed(client: Client) -> tuple[list[dict], int | None]:
    """Every frame the client got, and the close code it got last (None: no close frame)."""
    frames: list[dict] = []
    while True:
        try:
            frames.append(json.loads(client.ws.recv(timeout=TIMEOUT)))
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None


def test_once_stopping_handshakes_are_refused_and_the_management_api_still_answers(caplog):
    import boto3

    caplog.set_level(logging.INFO, logger="channel_server.local")
    with running(port=0, world=served_world()) as server:
        assert server.gateway is not None
        before = set(server.gateway.connections)
        member = Client(server.url)
        try:
            connection_id = newest_connection(server, before)
            server.gateway.refuse_connections()  # what stop() does first

            assert refused_with(server.url) == 503
            assert "connect refused 503: local mode is stopping" in caplog.messages
            client = boto3.client("apigatewaymanagementapi", endpoint_url=server.management_url,
                                  region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
            client.post_to_connection(ConnectionId=connection_id, Data=b'{"type":"message","data":"still here"}')
            assert member.recv() == {"type": "message", "data": "still here"}
        finally:
            member.close()


def test_stopping_lets_the_publishes_under_way_reach_every_member(capsys):
    # GIVEN members of a channel, three of whom publish, each publish posting
    # to one member at a time through a management API with a round trip of 100 ms
    with running(port=0, world=posting_one_member_at_a_time(), management_latency_ms=100) as server:
        members = [Client(server.url) for _ in range(MEMBERS)]
        for member in members:
            member.join("room")
        for number, publisher in enumerate(members[:PUBLISHES]):
            publisher.send({"type": "publish", "channelId": "room", "data": f"news {number}"})
        # WHEN local mode stops while the three publishes are being handled
        gateway = server.gateway
        assert gateway is not None
        wait_until(lambda: gateway.frames_in_flight == PUBLISHES)

    # THEN each member got every other member's news before its connection closed (1001)
    try:
        for index, member in enumerate(members):
            frames, code = frames_until_closed(member)
            news = sorted(f["data"] for f in frames if f["type"] == "message")
            assert news == [f"news {n}" for n in range(PUBLISHES) if n != index], index
            if index < PUBLISHES:
                assert [f["type"] for f in frames if f["type"].startswith("publish")] == ["publishSuccess"]
            assert code == 1001
        # and nothing failed on the way
        assert "delivery failed" not in capsys.readouterr().err
    finally:
        for member in members:
            member.close()


# --- frames at API Gateway's limits ----------------------------------------------------------------


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


def test_invalid_utf8_in_a_text_frame_closes_the_connection_with_1007(server):
    async def send_invalid_utf8() -> int:
        async with connect(server.url) as ws:
            await ws.send(b'{"type":"ping","data":"\xff"}', text=True)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    assert run(send_invalid_utf8()) == 1007


@pytest.mark.parametrize("offer, answer", [
    # websockets' default offer; API Gateway answers it with its own window, 12
    ({}, "permessage-deflate; server_max_window_bits=12"),
    ({"client_max_window_bits": None}, "permessage-deflate; server_max_window_bits=12"),
    ({"server_max_window_bits": 15}, "permessage-deflate; server_max_window_bits=12"),
    # a client that asks for a smaller window gets it
    ({"server_max_window_bits": 10}, "permessage-deflate; server_max_window_bits=10"),
])
def test_permessage_deflate_is_negotiated_as_api_gateway_does(server, offer, answer):
    """API Gateway answers websockets' offer with "permessage-deflate;
    server_max_window_bits=12" (local/gateway.py, SERVER_MAX_WINDOW_BITS), and
    frames compressed so, both ways, carry the message."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    async def negotiated() -> tuple[str, dict]:
        extensions = [ClientPerMessageDeflateFactory(**offer)] if offer else None
        async with connect(server.url, compression="deflate", extensions=extensions) as ws:
            assert ws.response is not None  # the handshake's, once connected
            await ws.send(json.dumps({"type": "ping", "data": "x" * 5_000}))  # compressed: 5 KB of one letter
            return ws.response.headers.get("Sec-WebSocket-Extensions", ""), json.loads(await ws.recv())

    agreed, reply = run(negotiated())
    assert agreed == answer
    assert reply == {"type": "pong", "data": "x" * 5_000}


def test_a_message_of_20000_bytes_in_20000_compressed_fragments_is_counted_as_20000_bytes(server):
    frame = json.dumps({"type": "ping", "data": "x" * (20_000 - 28)})
    assert len(frame) == 20_000

    async def ping_in_fragments() -> dict:
        async with connect(server.url, compression="deflate") as ws:
            await ws.send(iter(frame))  # one fragment a character, each compressed: 140,000 bytes in all
            return json.loads(await ws.recv())

    assert run(ping_in_fragments()) == {"type": "pong", "data": "x" * (20_000 - 28)}


def test_a_compressed_message_over_128_kb_still_closes_the_connection_with_1009(server):
    async def send_compressed() -> int:
        async with connect(server.url, compression="deflate") as ws:
            # about 400 bytes compressed, 128 KB and one byte once inflated
            await ws.send(json.dumps({"type": "ping", "data": "x" * (128 * 1024 - 27)}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    assert run(send_compressed()) == 1009


# --- the front door: plain management calls answered by the gateway, the rest by aiohttp --------------


SIGNED = ("Authorization: AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/execute-api/aws4_request, "
          f"SignedHeaders=host;x-amz-date, Signature={'a' * 64}\r\nX-Amz-Date: 20261126T000000Z\r\n")


def http_call(sender: socket.socket, method: str, path: str, head: str = SIGNED, body: bytes = b"") -> tuple:
    """One request on ``sender``'s connection; (status, error type, JSON body or None, Connection header)."""
    sender.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                   .encode() + body)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sender.recv(65536)
    head_bytes, _, rest = answer.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sender.recv(65536)
    assert len(rest) == length  # nothing more: the next call's answer starts afresh
    return (int(status_line.split()[1]), headers.get("x-amzn-errortype"),
            json.loads(rest) if rest else None, headers.get("connection", "keep-alive").lower())


def test_plain_management_calls_get_the_answers_aiohttp_gives(server, monkeypatch):
    """Each call twice: on a connection whose first request was plain (the
    gateway answers it), and on one aiohttp took over (its first request a
    HEAD of the page). The same status, error type and body; and each way
    served by whom it should be."""
    from channel_server.local.gateway import MAX_MESSAGE_BYTES

    served: list[str] = []
    management_call = server.gateway.management_call

    async def noting(method, raw_id, headers, remote, read):
        served.append("aiohttp" if hasattr(read, "__self__") else "front door")  # aiohttp's request.read
        return await management_call(method, raw_id, headers, remote, read)

    monkeypatch.setattr(server.gateway, "management_call", noting)
    before = set(server.gateway.connections)
    members = [Client(server.url) for _ in range(3)]
    try:
        wait_until(lambda: len(set(server.gateway.connections) - before) == 3)
        ids = sorted(set(server.gateway.connections) - before, key=lambda c: server.gateway.connections[c].connected_at)
        member, first_gone, second_gone = ids
        base = f"/{server.stage}/@connections/"
        calls = [
            ("GET", base + member.replace("=", "%3D"), SIGNED, b""),
            ("POST", base + member, SIGNED, b'{"type":"message","data":"hello"}'),
            ("POST", base + "nobody", SIGNED, b"{}"),
            ("POST", base + member, "", b"{}"),  # unsigned
            ("PUT", base + member, SIGNED, b"{}"),
            ("POST", base + member, SIGNED, b"x" * (MAX_MESSAGE_BYTES + 1)),
            ("POST", base + member, SIGNED, b"\xff\xfe not text"),
        ]
        answers = {}
        for way in ("front door", "aiohttp"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sender:
                if way == "aiohttp":
                    sender.sendall(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    assert sender.recv(65536).startswith(b"HTTP/1.1 200")
                served.clear()
                answers[way] = [http_call(sender, *call) for call in calls[:5]]  # one connection, kept alive
                assert served == [way] * 5
            # over API Gateway's 128 KB: aiohttp's either way (a connection of its own)
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sender:
                answers[way].append(http_call(sender, *calls[5]))
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sender:
                answers[way].append(http_call(sender, *calls[6]))
            gone = first_gone if way == "front door" else second_gone
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sender:
                answers[way].append(http_call(sender, "DELETE", base + gone, SIGNED))
        for way in answers:  # the first POST, the front door's, made the member active since
            assert answers[way][0][2].pop("lastActiveAt").endswith("Z")
        assert answers["front door"] == answers["aiohttp"]
        statuses = [status for status, *_ in answers["front door"]]
        assert statuses == [200, 200, 410, 403, 405, 413, 200, 204]
        # each way: the text, then the bytes that are not UTF-8, as a binary frame
        assert [members[0].ws.recv(timeout=TIMEOUT) for _ in range(4)] == [
            '{"type":"message","data":"hello"}', b"\xff\xfe not text"] * 2
        for closed in members[1:]:
            with pytest.raises(ConnectionClosed):
                closed.ws.recv(timeout=TIMEOUT)
    finally:
        for each in members:
            each.close()
