"""channel_server.client with request ids (docs/protocol.md §3): several
requests in flight, replies paired by ``requestId`` in any order, a reply
timeout that keeps the connection, an older server that echoes no id, and API
Gateway's error frames, which say no request of the client's.

The server is a real WebSocket server on 127.0.0.1 that the test drives frame
by frame (``Driven``): it answers when, how and in what order the test says.
The last test runs several publishes in flight against local mode.

Each test runs its own event loop; waits are bounded by ``TIMEOUT`` only as a
failure bound (``run``), and synchronise on frames, replies and events. The
reply timeouts are short because a request must time out; no test waits for
one to pass in order to see that something did not happen."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from channel_server.client import (
    ChannelClient, ConnectionLost, GatewayError, Joined, Message, PublishFailed, Published, ReplyTimeout,
)
from support.frames import ANY_MESSAGE_ID
from test_client import Events, run

GATEWAY_ERROR = {"message": "Internal server error", "connectionId": "AbCd=", "requestId": "AWS-own-id="}


class Driven:
    """A WebSocket server on 127.0.0.1 whose every received frame the test
    takes with :meth:`next` (numbered connection, frame), and answers through
    :meth:`reply` or :meth:`send`, or not at all."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue = asyncio.Queue()
        self.connections: list[ServerConnection] = []
        self.url = ""

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        number = len(self.connections)
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                await self.frames.put((number, json.loads(raw)))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["Driven"]:
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/dev"
            yield self

    async def next(self, expected_type: str | None = None) -> tuple[int, dict]:
        number, frame = await self.frames.get()
        if expected_type is not None:
            assert frame["type"] == expected_type, frame
        return number, frame

    async def send(self, frame: dict, connection: int = -1) -> None:
        await self.connections[connection if connection < 0 else connection - 1].send(json.dumps(frame))

    async def reply(self, request: dict, reply: dict, *, echo: bool = True, connection: int = -1) -> None:
        """Answer ``request`` with ``reply``, carrying its requestId when ``echo``."""
        await self.send({**reply, "requestId": request["requestId"]} if echo else reply, connection)

    async def joined(self, sender_id: str = "me", *, echo: bool = True) -> dict:
        """Take the next frame, a join, and answer joinSuccess."""
        _, join = await self.next("join")
        await self.reply(join, {"type": "joinSuccess", "channelId": join["channelId"], "senderId": sender_id},
                         echo=echo)
        return join


def publish_success(queued: int = 0) -> dict:
    return {"type": "publishSuccess", **({"queued": queued} if queued else {})}


def test_requests_in_flight_go_in_call_order_and_each_reply_settles_its_own_request_in_any_order() -> None:
    async def scenario() -> None:
        async with Driven().running() as server, ChannelClient(server.url) as client:
            joining = asyncio.ensure_future(client.join("c"))
            join = await server.joined()  # the connection's first reply: it echoes requestId
            assert await joining == Joined("c", "me")
            calls = asyncio.gather(client.publish("a"), client.publish("b"), client.ping(7), client.publish("d"),
                                   return_exceptions=True)
            # WHEN all four are sent before any reply, in the order the calls were made
            frames = [(await server.next())[1] for _ in range(4)]
            assert [(f["type"], f.get("data")) for f in frames] == [
                ("publish", "a"), ("publish", "b"), ("ping", 7), ("publish", "d")]
            assert len({f["requestId"] for f in [join, *frames]}) == 5  # each id fresh
            assert client.in_flight == 4
            # AND the replies come in reverse order
            a, b, ping, d = frames
            await server.reply(d, publish_success(4))
            await server.reply(ping, {"type": "pong", "data": 7})
            await server.reply(b, {"type": "publishFailure", "data": "not in a channel; send a join first"})
            await server.reply(a, publish_success(1))
            # THEN each call returns its own reply
            results = await calls
            assert results[0] == Published(1) and results[2] == 7 and results[3] == Published(4)
            assert isinstance(results[1], PublishFailed) and results[1].reason == "not in a channel; send a join first"
            assert client.in_flight == 0 and client.connections == 1

    run(scenario())


def test_at_most_max_in_flight_requests_are_sent_and_a_join_goes_alone() -> None:
    async def scenario() -> None:
        async with Driven().running() as server, ChannelClient(server.url, max_in_flight=2) as client:
            first = asyncio.ensure_future(client.join("c"))
            join = await server.joined()
            await first
            calls = [asyncio.ensure_future(call) for call in (
                client.publish(1), client.publish(2), client.publish(3), client.join("d"), client.publish(4))]
            # WHEN two are in flight, the third waits for a reply
            _, one = await server.next("publish")
            _, two = await server.next("publish")
            assert server.frames.empty() and client.in_flight == 2
            await server.reply(two, publish_success())
            _, three = await server.next("publish")
            assert three["data"] == 3
            # THEN the join waits until nothing is in flight, and what follows it waits for its reply
            await server.reply(three, publish_success())
            assert await calls[2] == Published(0)
            assert server.frames.empty() and client.in_flight == 1
            await server.reply(one, publish_success())
            second = await server.joined("me-in-d")
            _, four = await server.next("publish")
            assert four["data"] == 4
            await server.reply(four, publish_success())
            assert await asyncio.gather(*calls) == [
                Published(0), Published(0), Published(0), Joined("d", "me-in-d"), Published(0)]
            ids = [f["requestId"] for f in (join, one, two, three, second, four)]
            assert len(set(ids)) == 6 and all(0 < len(i) <= 64 and i.isalnum() for i in ids)

    run(scenario())


def test_a_reply_timeout_keeps_the_connection_the_client_checks_it_and_a_late_reply_is_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        events = Events()
        async with Driven().running() as server, \
                ChannelClient(server.url, reply_timeout=0.5, on_event=events) as client:
            joining = asyncio.ensure_future(client.join("c"))
            await server.joined()
            await joining
            slow = asyncio.ensure_future(client.publish("slow"))
            _, late = await server.next("publish")
            # WHEN its reply does not come in time
            with pytest.raises(ReplyTimeout) as timed_out:
                await slow
            assert str(timed_out.value) == ("no reply to publish within 0.5 s; its effect is unknown "
                                            "(the connection stays, and a late reply is dropped)")
            # THEN the client checks the connection with a ping, and it is answered
            _, check = await server.next("ping")
            assert (await events.wait_kind("ping")).detail == {"reason": "a reply timed out"}
            await server.reply(check, {"type": "pong"})
            # AND the late reply is dropped: it settles nothing, the next publish gets its own
            with caplog.at_level(logging.DEBUG, logger="channel_server.client"):
                await server.reply(late, publish_success(9))
                nxt = asyncio.ensure_future(client.publish("next"))
                _, frame = await server.next("publish")
                await server.reply(frame, publish_success())
                assert await nxt == Published(0)
            assert (f"dropping a publishSuccess to request {late['requestId']}: it timed out, "
                    "or was answered already") in caplog.messages
            assert client.connections == 1 and "disconnected" not in events.kinds()

    run(scenario())


def test_a_check_ping_unanswered_after_a_reply_timeout_drops_the_connection_and_the_client_rejoins() -> None:
    async def scenario() -> None:
        events = Events()
        async with Driven().running() as server, ChannelClient(
                server.url, reply_timeout=0.3, backoff_initial=0.01, on_event=events) as client:
            joining = asyncio.ensure_future(client.join("c"))
            await server.joined()
            await joining
            with pytest.raises(ReplyTimeout):
                publishing = asyncio.ensure_future(client.publish("unanswered"))
                await server.next("publish")
                await publishing
            # WHEN the check ping is not answered either, the connection is taken for dead
            await server.next("ping")
            disconnected = await events.wait_kind("disconnected")
            assert disconnected.detail == {"code": 1006, "reason": "no reply within 0.3 s"}
            # THEN the client reconnects and rejoins
            number, rejoin = await server.next("join")
            assert number == 2
            await server.reply(rejoin, {"type": "joinSuccess", "channelId": "c", "senderId": "again"})
            await events.wait_kind("ready")
            assert client.sender_id == "again" and client.connections == 2

    run(scenario())


def test_the_keep_alive_ping_unanswered_drops_the_connection_even_when_the_server_echoes_ids() -> None:
    async def scenario() -> None:
        events = Events()
        async with Driven().running() as server, ChannelClient(
                server.url, ping_interval=0.05, reply_timeout=0.3, backoff_initial=0.01, on_event=events) as client:
            joining = asyncio.ensure_future(client.join("c"))
            await server.joined()
            await joining
            # WHEN the idle connection's keep-alive ping gets no pong
            await server.next("ping")
            assert (await events.wait_kind("ping")).detail == {"reason": "idle"}
            # THEN the connection is dropped and made again, and the channel joined again
            assert (await events.wait_kind("disconnected")).detail["reason"] == "no reply within 0.3 s"
            number, rejoin = await server.next("join")
            assert number == 2 and rejoin["channelId"] == "c"
            await server.reply(rejoin, {"type": "joinSuccess", "channelId": "c", "senderId": "again"})
            await events.wait_kind("ready")
            assert client.connections == 2

    run(scenario())


def test_a_server_that_echoes_no_request_id_gets_one_request_at_a_time_paired_by_order() -> None:
    async def scenario() -> None:
        async with Driven().running() as server, ChannelClient(server.url) as client:
            joining = asyncio.ensure_future(client.join("c"))
            await server.joined(echo=False)  # an older server: replies without requestId
            assert await joining == Joined("c", "me")
            calls = asyncio.gather(client.publish(1), client.ping(2), client.publish(3), return_exceptions=True)
            answers = [publish_success(5), {"type": "pong", "data": 2},
                       {"type": "publishFailure", "data": "message too large: 9 bytes encoded, the limit is 8"}]
            for answer in answers:
                # WHEN each request is sent only after the previous reply
                _, frame = await server.next()
                assert server.frames.empty() and client.in_flight == 1
                await server.reply(frame, answer, echo=False)
            # THEN each reply is paired with the request in flight
            one, two, three = await calls
            assert one == Published(5) and two == 2 and isinstance(three, PublishFailed)
            assert client.connections == 1

    run(scenario())


def test_an_api_gateway_error_frame_with_several_requests_in_flight_fails_the_one_left_without_a_reply() -> None:
    async def scenario() -> None:
        async with Driven().running() as server, ChannelClient(server.url) as client:
            joining = asyncio.ensure_future(client.join("c"))
            await server.joined()
            await joining
            calls = asyncio.gather(client.publish("a"), client.publish("b"), client.publish("c"),
                                   return_exceptions=True)
            a, b, c = [(await server.next("publish"))[1] for _ in range(3)]
            # WHEN API Gateway's error frame comes (its requestId is AWS's own),
            # then the replies to a and c
            await server.send(GATEWAY_ERROR)
            await server.reply(c, publish_success())
            await server.reply(a, publish_success())
            # THEN b, the one left without a reply, gets the GatewayError; a and c their own replies
            first, second, third = await calls
            assert first == Published(0) and third == Published(0)
            assert isinstance(second, GatewayError) and second.message == "Internal server error"
            assert second.frame == GATEWAY_ERROR
            # AND with one request in flight the frame answers it at once
            alone = asyncio.ensure_future(client.ping())
            await server.next("ping")
            await server.send(GATEWAY_ERROR)
            with pytest.raises(GatewayError, match="^Internal server error$"):
                await alone
            assert client.connections == 1 and client.in_flight == 0

    run(scenario())


def test_a_closed_connection_fails_every_request_in_flight_and_the_rejoin_goes_before_queued_requests() -> None:
    async def scenario() -> None:
        events = Events()
        async with Driven().running() as server, ChannelClient(
                server.url, backoff_initial=0.01, on_event=events) as client:
            joining = asyncio.ensure_future(client.join("lobby"))
            await server.joined()
            await joining
            in_flight = asyncio.gather(client.publish("a"), client.publish("b"), return_exceptions=True)
            await server.next("publish")
            await server.next("publish")
            # WHEN the connection closes with both in flight
            await server.connections[0].close(1001, "Going away")
            lost = await in_flight
            assert all(isinstance(e, ConnectionLost) and "(1001 Going away) before the reply to publish" in str(e)
                       for e in lost)
            queued = asyncio.gather(client.publish("q1"), client.publish("q2"))
            # THEN on the new connection the rejoin goes first and alone, then the queued requests
            number, rejoin = await server.next("join")
            assert number == 2 and server.frames.empty()
            await server.reply(rejoin, {"type": "joinSuccess", "channelId": "lobby", "senderId": "again"})
            q1, q2 = [(await server.next("publish"))[1] for _ in range(2)]
            assert (q1["data"], q2["data"]) == ("q1", "q2")
            await server.reply(q2, publish_success())
            await server.reply(q1, publish_success())
            assert await queued == [Published(0), Published(0)]

    run(scenario())


# --- against local mode --------------------------------------------------------------------


def test_several_publishes_in_flight_against_local_mode_each_get_their_reply_and_arrive() -> None:
    from channel_server.handlers import protocol
    from channel_server.local.server import running
    from support.local_mode import served_world

    assert protocol.REQUEST_ID.fullmatch("123")  # the server side of request ids is there
    count = 40

    async def scenario(url: str) -> None:
        async with ChannelClient(url, max_in_flight=8) as publisher, ChannelClient(url) as listener:
            await listener.join("many")
            await publisher.join("many")
            assert publisher.sender_id is not None
            publishing = asyncio.gather(*(publisher.publish({"n": n}) for n in range(count)))
            received, most = [], 0  # most: requests in flight seen as each message arrived
            for _ in range(count):
                received.append(await listener.__anext__())
                most = max(most, publisher.in_flight)
            assert await publishing == [Published(0)] * count
            assert sorted(m.data["n"] for m in received) == list(range(count))
            assert all(m == Message("many", publisher.sender_id, m.data, ANY_MESSAGE_ID) for m in received)
            assert 1 < most <= 8  # the server echoed the ids: more than one was in flight, never over the cap

    with running(port=0, world=served_world()) as server:
        run(scenario(server.url))
