"""channel_server.client: the protocol against local mode, and every failure
the protocol documents against a scripted server (real websockets on both
sides), plus the terminal client.

Each test runs its own event loop (asyncio.run); waits are bounded by
``TIMEOUT`` only as a failure bound, and synchronise on replies and events."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given, strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from channel_server.client import (
    ChannelClient, ClientClosed, ClientEvent, ConnectFailed, ConnectionLost, FrameTooLarge, GatewayError,
    JoinFailed, Joined, Message, PublishFailed, Published, QueueFull, ReplyTimeout, ServerError, encode, fragments,
)
from channel_server.handlers import protocol
from support.frames import ANY_MESSAGE_ID

TIMEOUT = 30


def run(coroutine: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(TIMEOUT):  # a failure bound, never a synchronisation
            return await coroutine

    return asyncio.run(bounded())


class Events:
    """``on_event`` that records events and lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[ClientEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ClientEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen]

    async def wait_for(self, predicate: Callable[[list[ClientEvent]], bool]) -> None:
        while not predicate(self.seen):
            self._changed.clear()
            await self._changed.wait()

    async def wait_kind(self, kind: str, count: int = 1) -> ClientEvent:
        await self.wait_for(lambda seen: sum(e.kind == kind for e in seen) >= count)
        return [e for e in self.seen if e.kind == kind][count - 1]


# --- against local mode -------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_url() -> Any:
    from channel_server.local.server import running
    from support.local_mode import served_world

    with running(port=0, world=served_world()) as server:
        yield server.url


def test_join_publish_and_messages_between_two_clients(local_url: str) -> None:
    async def scenario() -> None:
        async with ChannelClient(local_url) as alice, ChannelClient(local_url) as bob:
            # WHEN both join, Alice's join returns on joinSuccess with her senderId
            joined = await alice.join("room-1")
            assert alice.sender_id is not None
            assert joined == Joined("room-1", alice.sender_id) and alice.channel == "room-1"
            await bob.join("room-1")
            assert bob.sender_id is not None
            # THEN Bob's publish returns on publishSuccess, and Alice gets a typed message
            assert await bob.publish({"text": "hi", "n": [1, 2.5, None]}) == Published(queued=0)
            assert await alice.__anext__() == Message("room-1", bob.sender_id, {"text": "hi", "n": [1, 2.5, None]},
                                                      ANY_MESSAGE_ID)
            # AND the publisher gets no copy of its own message
            await alice.publish("back")
            async for message in bob:
                assert message == Message("room-1", alice.sender_id, "back", ANY_MESSAGE_ID)
                break
            assert not bob._incoming

    run(scenario())


def test_ping_returns_the_pongs_data(local_url: str) -> None:
    async def scenario() -> None:
        async with ChannelClient(local_url) as client:
            assert await client.ping() is None
            assert await client.ping({"t": 7}) == {"t": 7}
            assert await client.ping(None) is None

    run(scenario())


def test_a_refused_join_raises_join_failed_and_leaves_the_channel_as_it_was(local_url: str) -> None:
    async def scenario() -> None:
        async with ChannelClient(local_url) as client:
            await client.join("kept")
            before = client.sender_id
            with pytest.raises(JoinFailed) as failed:
                await client.join("$reserved")
            assert failed.value.reason == "channelId must not start with '$' (reserved)"
            assert failed.value.frame == {"type": "joinFailure", "data": failed.value.reason,
                                          "requestId": failed.value.frame["requestId"]}
            assert (client.channel, client.sender_id) == ("kept", before)

    run(scenario())


def test_publishing_outside_a_channel_raises_publish_failed_with_the_reason(local_url: str) -> None:
    async def scenario() -> None:
        async with ChannelClient(local_url) as client:
            with pytest.raises(PublishFailed) as failed:
                await client.publish("nobody hears this")
            assert failed.value.reason == "not in a channel; send a join first"
            assert not failed.value.partial and failed.value.delivered is None

    run(scenario())


def test_a_message_over_32_kb_goes_as_several_frames_and_arrives_whole(local_url: str) -> None:
    text = "é€😀" * 9000  # 81,000 bytes of UTF-8: three frames, characters of 2 to 4 bytes

    async def scenario() -> None:
        async with ChannelClient(local_url) as sender, ChannelClient(local_url) as receiver:
            await sender.join("big")
            await receiver.join("big")
            await sender.publish(text)
            assert (await receiver.__anext__()).data == text

    run(scenario())


def test_a_frame_over_128_kb_is_refused_before_sending_and_the_connection_stays(local_url: str) -> None:
    async def scenario() -> None:
        async with ChannelClient(local_url) as client:
            await client.join("big")
            with pytest.raises(FrameTooLarge, match="131072; nothing was sent"):
                await client.publish("x" * protocol.API_GATEWAY_MAX_MESSAGE_BYTES)
            assert await client.ping(1) == 1
            assert client.connections == 1

    run(scenario())


def test_a_server_message_too_large_is_a_publish_failed(local_url: str) -> None:
    # the frame fits API Gateway's 128 KB (with its requestId), the message frame around it does not
    data = "x" * (protocol.API_GATEWAY_MAX_MESSAGE_BYTES - 60)

    async def scenario() -> None:
        async with ChannelClient(local_url) as client:
            await client.join("big")
            with pytest.raises(PublishFailed, match=r"^message too large: \d+ bytes encoded, the limit is 131072$"):
                await client.publish(data)

    run(scenario())


# --- every documented failure, from a scripted server ----------------------------------


Script = Callable[[ServerConnection, dict], Awaitable[None]]


class Scripted:
    """A real WebSocket server on 127.0.0.1 whose connections each run the next
    script; it records every frame each connection received."""

    def __init__(self, *scripts: Script):
        self.scripts = list(scripts)
        self.received: list[list[dict]] = []
        self.refuse: int | None = None  # answer handshakes with this HTTP status instead
        self.url = ""

    def _process_request(self, connection: ServerConnection, request: Any) -> Response | None:
        if self.refuse is not None:
            return Response(self.refuse, "Refused", Headers(), b"")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        frames: list[dict] = []
        self.received.append(frames)
        script = self.scripts.pop(0) if self.scripts else serve_protocol
        await script(ws, {"frames": frames})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["Scripted"]:
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._process_request) as server:
            port = server.sockets[0].getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/dev"
            yield self


def without_ids(frames: list[dict]) -> list[dict]:
    """``frames`` without the ``requestId`` the client puts in every request."""
    return [{k: v for k, v in frame.items() if k != "requestId"} for frame in frames]


async def next_frame(ws: ServerConnection, state: dict) -> dict:
    frame = json.loads(await ws.recv())
    state["frames"].append(frame)
    return frame


async def serve_protocol(ws: ServerConnection, state: dict) -> None:
    """A well-behaved server for one connection (joins succeed, publishes too)."""
    sender = f"s{len(state['frames'])}-{id(ws) % 1000}"
    with contextlib.suppress(Exception):
        while True:
            frame = await next_frame(ws, state)
            if frame["type"] == "join":
                await ws.send(json.dumps({"type": "joinSuccess", "channelId": frame["channelId"], "senderId": sender}))
            elif frame["type"] == "publish":
                await ws.send('{"type":"publishSuccess"}')
            elif frame["type"] == "ping":
                await ws.send(json.dumps({"type": "pong", **({"data": frame["data"]} if "data" in frame else {})}))


def replying(*replies: str) -> Script:
    """Answer the connection's frames with ``replies`` in order, then behave."""

    async def script(ws: ServerConnection, state: dict) -> None:
        for reply in replies:
            await next_frame(ws, state)
            await ws.send(reply)
        await serve_protocol(ws, state)

    return script


@pytest.mark.parametrize("reply, error, check", [
    ('{"type":"joinFailure","data":"this connection may not join this channel"}', JoinFailed,
     lambda e: e.reason == "this connection may not join this channel"),
    ('{"type":"error","data":"internal error; the request was not carried out"}', ServerError,
     lambda e: e.reason == "internal error; the request was not carried out"),
    ('{"message": "Internal server error", "connectionId": "c=", "requestId": "r="}', GatewayError,
     lambda e: e.message == "Internal server error" and e.frame["requestId"] == "r="),
])
def test_join_failures_raise_their_documented_exception(reply: str, error: type, check: Any) -> None:
    async def scenario() -> None:
        async with Scripted(replying(reply)).running() as server, ChannelClient(server.url) as client:
            with pytest.raises(error) as raised:
                await client.join("team-7")
            assert check(raised.value)
            assert client.channel is None
            joined = await client.join("team-7")
            assert client.sender_id is not None
            assert joined == Joined("team-7", client.sender_id)  # still connected
            assert client.connections == 1

    run(scenario())


def test_a_partial_publish_failure_carries_its_counts() -> None:
    partial = json.dumps({"type": "publishFailure", "delivered": 3, "failed": 2, "queued": 0,
                          "data": "could not deliver to 2 of 5 members; the others received the message"})

    async def scenario() -> None:
        async with Scripted(replying('{"type":"joinSuccess","channelId":"c","senderId":"s"}', partial)).running() as server:
            async with ChannelClient(server.url) as client:
                await client.join("c")
                with pytest.raises(PublishFailed) as failed:
                    await client.publish({"n": 1})
                error = failed.value
                assert error.partial and (error.delivered, error.failed, error.queued) == (3, 2, 0)
                assert error.reason.startswith("could not deliver to 2 of 5 members")
                assert await client.publish({"n": 2}) == Published(0)

    run(scenario())


def test_ping_error_reply_is_a_server_error() -> None:
    too_large = '{"type":"error","data":"reply too large: pong would be 140000 bytes encoded, the limit is 131072"}'

    async def scenario() -> None:
        async with Scripted(replying(too_large)).running() as server, ChannelClient(server.url) as client:
            with pytest.raises(ServerError, match="^reply too large: pong"):
                await client.ping([1e15])

    run(scenario())


def test_heartbeats_and_unknown_frames_are_not_messages_and_replies_are_not_confused() -> None:
    async def script(ws: ServerConnection, state: dict) -> None:
        frame = await next_frame(ws, state)
        # before the reply: a heartbeat, a frame of a type from the future, a
        # message (it may arrive before joinSuccess), and garbage
        await ws.send('{"type":"heartbeat"}')
        await ws.send('{"type":"presence","who":["a"]}')
        await ws.send('{"type":"message","channelId":"c","senderId":"other","data":[1]}')
        await ws.send("not json")
        await ws.send(b"\x00binary")
        await ws.send('{"type":"publishSuccess"}')  # answers nothing that is waiting
        await ws.send(json.dumps({"type": "joinSuccess", "channelId": frame["channelId"], "senderId": "me"}))
        await serve_protocol(ws, state)

    async def scenario() -> None:
        events = Events()
        async with Scripted(script).running() as server, ChannelClient(server.url, on_event=events) as client:
            assert await client.join("c") == Joined("c", "me")
            assert await client.__anext__() == Message("c", "other", [1])
            assert not client._incoming
            assert "heartbeat" in events.kinds()

    run(scenario())


def test_a_connection_lost_mid_request_raises_and_the_rejoin_comes_before_queued_requests() -> None:
    async def drops_on_publish(ws: ServerConnection, state: dict) -> None:
        frame = await next_frame(ws, state)
        await ws.send(json.dumps({"type": "joinSuccess", "channelId": frame["channelId"], "senderId": "first"}))
        await next_frame(ws, state)  # the publish: the connection ends without a reply
        await ws.close(1001, "Going away")

    async def scenario() -> None:
        events = Events()
        server = Scripted(drops_on_publish)
        async with server.running(), ChannelClient(server.url, backoff_initial=0.01, on_event=events) as client:
            await client.join("lobby")
            lost, *later = await asyncio.gather(
                client.publish("in flight"), client.publish("queued 1"), client.publish("queued 2"),
                return_exceptions=True)
            # THEN the request in flight has an unknown effect; the queued ones
            # go on the new connection, after the rejoin
            assert isinstance(lost, ConnectionLost) and "(1001 Going away)" in str(lost)
            assert later == [Published(0), Published(0)]
            first, second = server.received
            assert [f["type"] for f in first] == ["join", "publish"]
            assert without_ids(second) == [{"type": "join", "channelId": "lobby"},
                              {"type": "publish", "data": "queued 1"}, {"type": "publish", "data": "queued 2"}]
            assert client.sender_id != "first" and client.connections == 2
            assert events.kinds()[:2] == ["connected", "disconnected"]
            assert {"reconnecting", "rejoined", "ready"} <= set(events.kinds())

    run(scenario())


def test_without_request_ids_no_reply_in_time_raises_reply_timeout_and_the_connection_is_made_again() -> None:
    # the scripted server echoes no requestId, as servers before request ids:
    # a late reply could be taken for the next request's, so the connection goes
    async def silent(ws: ServerConnection, state: dict) -> None:
        await next_frame(ws, state)
        await ws.wait_closed()

    async def scenario() -> None:
        events = Events()
        server = Scripted(silent)
        async with server.running(), ChannelClient(server.url, reply_timeout=0.2, backoff_initial=0.01,
                                                   on_event=events) as client:
            with pytest.raises(ReplyTimeout):
                await client.ping()
            assert await client.ping("again") == "again"
            assert client.connections == 2

    run(scenario())


def test_requests_queue_while_disconnected_up_to_max_queue() -> None:
    async def drop(ws: ServerConnection, state: dict) -> None:
        frame = await next_frame(ws, state)
        await ws.send(json.dumps({"type": "joinSuccess", "channelId": frame["channelId"], "senderId": "a"}))
        server.refuse = 503  # the next handshakes are refused, until the test lets them through
        await ws.close(1001, "Going away")

    server = Scripted(drop)

    async def scenario() -> None:
        events = Events()
        async with server.running(), ChannelClient(server.url, max_queue=2, backoff_initial=0.01,
                                                   backoff_max=0.05, on_event=events) as client:
            await client.join("q")
            await events.wait_kind("reconnecting", 2)  # disconnected, and a reconnect has failed
            assert not client.connected
            queued = [asyncio.ensure_future(client.publish(n)) for n in (1, 2)]
            await asyncio.sleep(0)  # let both take their place in the queue
            with pytest.raises(QueueFull, match=r"max_queue=2"):
                await client.publish(3)
            server.refuse = None
            assert await asyncio.gather(*queued) == [Published(0), Published(0)]
            assert without_ids(server.received[-1]) == [{"type": "join", "channelId": "q"},
                                           {"type": "publish", "data": 1}, {"type": "publish", "data": 2}]

    run(scenario())


def test_a_refused_reconnect_gives_up_and_every_waiter_learns_why() -> None:
    async def drop(ws: ServerConnection, state: dict) -> None:
        server.refuse = 403  # e.g. the authorizer no longer accepts the token
        await ws.close(1001, "Going away")

    server = Scripted(drop)

    async def scenario() -> None:
        events = Events()
        async with server.running(), ChannelClient(server.url, backoff_initial=0.01, on_event=events) as client:
            await events.wait_kind("disconnected")
            with pytest.raises(ClientClosed) as waiting:
                await client.ping()
            with pytest.raises(ClientClosed) as iterating:
                await client.__anext__()
            for raised in (waiting, iterating):
                assert isinstance(raised.value.__cause__, ConnectFailed) and raised.value.__cause__.status == 403
            assert isinstance(client.failure, ConnectFailed) and client.failure.status == 403

    run(scenario())


def test_after_max_reconnect_attempts_failures_in_a_row_the_client_gives_up() -> None:
    async def drop(ws: ServerConnection, state: dict) -> None:
        server.refuse = 503  # unavailable: worth trying again, up to the limit
        await ws.close(1001, "Going away")

    server = Scripted(drop)

    async def scenario() -> None:
        events = Events()
        async with server.running(), ChannelClient(server.url, backoff_initial=0.01, max_reconnect_attempts=3,
                                                   on_event=events) as client:
            with pytest.raises(ClientClosed):
                async for _ in client:
                    pass
            assert events.kinds().count("reconnecting") == 3
            assert isinstance(client.failure, ConnectFailed) and client.failure.status == 503

    run(scenario())


def test_each_reconnecting_event_says_why_the_close_then_each_failed_attempt() -> None:
    class RefusingOnce(Scripted):
        def _process_request(self, connection: ServerConnection, request: Any) -> Response | None:
            refused = super()._process_request(connection, request)
            self.refuse = None
            return refused

    async def drop(ws: ServerConnection, state: dict) -> None:
        frame = await next_frame(ws, state)
        await ws.send(json.dumps({"type": "joinSuccess", "channelId": frame["channelId"], "senderId": "a"}))
        server.refuse = 503  # the next handshake only
        await ws.close(1001, "Going away")

    async def cut_the_rejoin(ws: ServerConnection, state: dict) -> None:
        await next_frame(ws, state)
        await ws.close(1011, "oops")

    server = RefusingOnce(drop, cut_the_rejoin)

    async def scenario() -> None:
        events = Events()
        async with server.running(), ChannelClient(server.url, backoff_initial=0.01, on_event=events) as client:
            await client.join("c")
            await events.wait_kind("ready")
            reconnecting = [e.detail for e in events.seen if e.kind == "reconnecting"]
            assert [(d["attempt"], d["reason"]) for d in reconnecting] == [
                (1, "the connection closed (1001 Going away)"),
                (2, "the server refused the connection: HTTP 503"),
                (3, "could not rejoin c: the connection closed (1011 oops) before the reply to join; "
                    "its effect is unknown"),
            ]
            assert client.connections == 3 and client.channel == "c"

    run(scenario())


def test_a_refused_first_connection_raises_connect_failed() -> None:
    server = Scripted()
    server.refuse = 401

    async def scenario() -> None:
        async with server.running():
            with pytest.raises(ConnectFailed, match="HTTP 401") as refused:
                async with ChannelClient(server.url):
                    pass
            assert refused.value.status == 401

    run(scenario())


def test_an_unreachable_server_raises_connect_failed() -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused

        async def scenario() -> None:
            with pytest.raises(ConnectFailed, match="could not connect"):
                await ChannelClient(f"ws://127.0.0.1:{port}/dev").connect()

        run(scenario())


def test_a_rejoin_refused_for_good_is_raised_once_by_the_iteration() -> None:
    async def drop(ws: ServerConnection, state: dict) -> None:
        frame = await next_frame(ws, state)
        await ws.send(json.dumps({"type": "joinSuccess", "channelId": frame["channelId"], "senderId": "a"}))
        await ws.close(1001, "Going away")

    refuse_join = replying('{"type":"joinFailure","data":"this connection may not join this channel"}')

    async def scenario() -> None:
        events = Events()
        server = Scripted(drop, refuse_join)
        async with server.running(), ChannelClient(server.url, backoff_initial=0.01, on_event=events) as client:
            await client.join("team-7")
            with pytest.raises(JoinFailed, match="may not join"):
                await client.__anext__()
            assert client.channel is None and client.sender_id is None
            assert "rejoin_failed" in events.kinds()
            assert await client.ping(2) == 2  # still connected, in no channel

    run(scenario())


def test_closing_ends_the_iteration_and_later_calls_raise_client_closed() -> None:
    async def scenario() -> None:
        async with Scripted().running() as server:
            client = ChannelClient(server.url)
            await client.connect()
            reader = asyncio.ensure_future(client.__anext__())
            await client.close()
            with pytest.raises(StopAsyncIteration):
                await reader
            with pytest.raises(ClientClosed):
                await client.ping()

    run(scenario())


@pytest.mark.parametrize("kwargs, message", [
    ({"url": "https://example.com/dev"}, "ws:// or wss://"),
    ({"ping_interval": 0}, "ping_interval"),
    ({"max_queue": 0}, "max_queue"),
    ({"reply_timeout": -1}, "reply_timeout"),
    ({"max_reconnect_attempts": 0}, "max_reconnect_attempts"),
])
def test_wrong_arguments_fail_at_construction(kwargs: dict, message: str) -> None:
    kwargs = {"url": "ws://127.0.0.1:1/dev", **kwargs}
    with pytest.raises(ValueError, match=message):
        ChannelClient(kwargs.pop("url"), **kwargs)


# --- frames ----------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300), st.integers(4, 40))
def test_fragments_cut_text_into_pieces_under_the_limit_never_inside_a_character(text: str, limit: int) -> None:
    pieces = list(fragments(text, limit))
    assert "".join(pieces) == text
    assert all(0 < len(p.encode("utf-8")) <= limit for p in pieces)


def test_a_lone_surrogate_is_sent_escaped_and_everything_else_as_utf8() -> None:
    assert encode({"type": "publish", "data": "é"}) == '{"type":"publish","data":"é"}'
    assert encode({"type": "publish", "data": "é\ud800"}) == '{"type":"publish","data":"\\u00e9\\ud800"}'
    with pytest.raises(ValueError):
        encode({"type": "publish", "data": float("nan")})


# --- the terminal client -------------------------------------------------------------------


def terminal_client(url: str, *args: str) -> Awaitable[asyncio.subprocess.Process]:
    return asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_server.client", url, *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def line_from(stream: asyncio.StreamReader, prefix: str) -> str:
    while True:
        line = (await stream.readline()).decode()
        assert line, f"the stream ended before a line starting {prefix!r}"
        if line.startswith(prefix):
            return line.rstrip("\n")


def test_the_terminal_client_publishes_typed_lines_and_prints_messages(local_url: str) -> None:
    async def scenario() -> None:
        cli = await terminal_client(local_url, "--channel", "term")
        assert cli.stdin is not None and cli.stdout is not None and cli.stderr is not None  # all three are pipes
        try:
            joined = await line_from(cli.stderr, "* joined term as ")
            cli_sender = joined.rsplit(" ", 1)[1]
            async with ChannelClient(local_url) as peer:
                await peer.join("term")
                assert peer.sender_id is not None
                # typed lines are published as text, /json as a JSON value, //… as text
                cli.stdin.write(b"hello there\n/json {\"n\": 1}\n//slash\n")
                assert await peer.__anext__() == Message("term", cli_sender, "hello there", ANY_MESSAGE_ID)
                assert await peer.__anext__() == Message("term", cli_sender, {"n": 1}, ANY_MESSAGE_ID)
                assert await peer.__anext__() == Message("term", cli_sender, "/slash", ANY_MESSAGE_ID)
                # messages print on stdout with their senderId
                await peer.publish("two\nlines")
                assert await line_from(cli.stdout, peer.sender_id) == f"{peer.sender_id}: two\\nlines"
                await peer.publish({"k": "v"})
                assert await line_from(cli.stdout, peer.sender_id) == f'{peer.sender_id}: {{"k": "v"}}'
            # a command refused here is answered at once, requests when their reply comes
            cli.stdin.write(b"/frobnicate\n/ping 42\n/join $nope\n/quit\n")
            assert await line_from(cli.stderr, "!") == "! unknown command '/frobnicate'; /help lists them"
            assert (await line_from(cli.stderr, "* pong")).endswith(" ms: 42")
            assert await line_from(cli.stderr, "!") == "! join failed: channelId must not start with '$' (reserved)"
            assert await cli.wait() == 0
        finally:
            if cli.returncode is None:
                cli.kill()
                await cli.wait()

    run(scenario())


def test_the_terminal_client_without_websockets_says_how_to_install_it() -> None:
    hide = ("import importlib.metadata as m, runpy, sys\n"
            "real = m.distribution\n"
            "def distribution(name):\n"
            "    if name.lower() == 'websockets': raise m.PackageNotFoundError(name)\n"
            "    return real(name)\n"
            "m.distribution = distribution\n"
            "sys.modules['websockets'] = None\n"
            "sys.argv = ['channel_server.client', 'ws://127.0.0.1:1/dev']\n"
            "runpy.run_module('channel_server.client', run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=TIMEOUT)
    root = Path(__file__).resolve().parents[1]
    assert result.returncode == 1
    assert result.stderr.strip() == f"the client needs websockets: pip install -e '{root}[client]'"


def test_an_extra_that_includes_the_client_extra_needs_websockets_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from channel_server import extras

    real = metadata.distribution

    def distribution(name: str) -> Any:
        if name.lower() == "websockets":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", distribution)
    # local and test name channel-server[client]; they list websockets only through it
    assert extras.missing_requirements("client") == ["websockets"]
    assert extras.missing_requirements("local") == ["websockets"]
    assert extras.missing_requirements("test") == ["websockets"]


# --- docs ----------------------------------------------------------------------------------


def test_the_client_docs_list_every_exception_and_event_kind_of_the_client() -> None:
    import re

    import channel_server.client as client_module

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "client.md").read_text()
    # the client's section and its failures table
    section = page.split("## The Python client", 1)[1].split("\n## Terminal client", 1)[0]
    errors = {name for name in client_module.__all__
              if isinstance(getattr(client_module, name), type)
              and issubclass(getattr(client_module, name), client_module.ChannelClientError)
              and name not in ("ChannelClientError", "RequestFailed")}
    rows = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert rows == errors
    # every kind of event the client emits is listed, in the README and the docstring
    source, events_doc = inspect.getsourcefile(ChannelClient), client_module.ClientEvent.__doc__
    assert source is not None and events_doc is not None
    emitted = set(re.findall(r'self\._emit\("(\w+)"', Path(source).read_text()))
    documented = set(re.findall(r"^    - ``(\w+)``", events_doc, re.M))
    assert emitted == documented
    assert all(f"`{kind}`" in section for kind in emitted)
