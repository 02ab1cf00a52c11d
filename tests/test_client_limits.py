"""channel_server.client against local mode with API Gateway's connection
limits shortened by flags: the 2-hour lifetime and the 10-minute idle timeout.

Local mode closes a connection with 1001 and the reason ``Going away`` at its
lifetime and ``Idle timeout`` when idle, so each test tells from the client's
own ``disconnected`` event which limit closed it; nothing waits on a clock."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

from channel_server.client import ChannelClient, ConnectionLost, Message
from support.local_mode import served_world
from test_client import Events, run

LIFETIME = 2.5  # seconds; every connection is closed after this
IDLE = 1.2  # seconds without traffic before local mode closes a connection
PING = 0.2  # the client's keep-alive interval in these tests: well under IDLE


def first_close(events: Events) -> str:
    return next(e.detail["reason"] for e in events.seen if e.kind == "disconnected")


@pytest.fixture(scope="module")
def limited_url() -> Iterator[str]:
    from channel_server.local.server import running

    with running(port=0, world=served_world(), max_lifetime=LIFETIME, idle_timeout=IDLE) as server:
        yield server.url


def test_a_connection_closed_at_its_lifetime_is_reconnected_and_rejoined_and_messages_keep_arriving(
        limited_url: str) -> None:
    async def scenario() -> None:
        events = Events()
        received: list[Message] = []
        after_rejoin: list[int] = []  # how many messages had arrived when the rejoin happened

        def on_event(event: Any) -> None:
            if event.kind == "rejoined":
                after_rejoin.append(len(received))
            events(event)

        async with ChannelClient(limited_url, ping_interval=PING, on_event=on_event) as listener, \
                ChannelClient(limited_url, ping_interval=PING) as publisher:
            await listener.join("lifetime")
            first_sender_id = listener.sender_id
            await publisher.join("lifetime")

            async def publish_forever() -> None:
                n = 0
                while True:
                    try:
                        await publisher.publish(n)
                    except ConnectionLost:  # its own connection reached its lifetime mid-publish
                        pass
                    n += 1

            publishing = asyncio.ensure_future(publish_forever())
            try:
                async for message in listener:
                    received.append(message)
                    if after_rejoin and len(received) > after_rejoin[0] + 3:
                        break
            finally:
                publishing.cancel()

            # THEN the first connection ended at its lifetime (the pings kept it
            # from idling out), the client rejoined with a new senderId, and
            # messages arrived on the new connection too
            assert first_close(events) == "Going away"
            assert events.kinds().index("rejoined") < events.kinds().index("ready")
            assert listener.connections >= 2 and listener.channel == "lifetime"
            assert listener.sender_id != first_sender_id
            assert {m.channel_id for m in received} == {"lifetime"}
            numbers = [m.data for m in received]
            assert numbers == sorted(numbers)  # one publisher waiting for each reply: in order

    run(scenario())


async def silent_ping(client: ChannelClient, data: str) -> object:
    """A ping from a client that sends nothing else: its connection idles out every
    IDLE seconds, and on a busy machine a ping may cross that close (ConnectionLost,
    Idle timeout); the next connection, fresh, answers it."""
    for _ in range(3):
        try:
            return await client.ping(data)
        except ConnectionLost as lost:
            if "Idle timeout" not in str(lost):
                raise
    return await client.ping(data)


def test_pings_keep_an_idle_connection_open_past_the_idle_timeout_and_without_them_it_closes(
        limited_url: str) -> None:
    async def scenario() -> None:
        pinging, silent = Events(), Events()
        async with ChannelClient(limited_url, ping_interval=PING, on_event=pinging) as kept, \
                ChannelClient(limited_url, ping_interval=None, on_event=silent) as idle:
            await kept.join("quiet")
            await idle.join("quiet")
            # both send nothing more; one of them pings when idle
            await asyncio.gather(pinging.wait_kind("disconnected"), silent.wait_kind("disconnected"))
            assert first_close(silent) == "Idle timeout"
            assert first_close(pinging) == "Going away"  # open past IDLE, until its lifetime
            assert "ping" in pinging.kinds() and "ping" not in silent.kinds()
            # and both come back by themselves
            await asyncio.gather(pinging.wait_kind("ready"), silent.wait_kind("ready"))
            assert await kept.ping("k") == "k" and await silent_ping(idle, "i") == "i"

    run(scenario())


@pytest.fixture(scope="module")
def heartbeat_url() -> Iterator[str]:
    from channel_server.local.server import running

    world = served_world(heartbeat_seconds=0.2)
    with running(port=0, world=world, heartbeat_seconds=0.2, max_lifetime=LIFETIME, idle_timeout=IDLE) as server:
        yield server.url


def test_while_server_heartbeats_arrive_the_client_sends_no_pings(heartbeat_url: str) -> None:
    async def scenario() -> None:
        events = Events()
        # pings would go after 0.8 s of silence; heartbeats come every 0.2 s
        async with ChannelClient(heartbeat_url, ping_interval=0.8, on_event=events) as client:
            await events.wait_kind("disconnected")
            assert first_close(events) == "Going away"  # never idle, until its lifetime
            kinds = events.kinds()
            assert kinds.count("heartbeat") >= 2
            # once heartbeats arrive (before the first, on a busy machine, the
            # client may have pinged: it had heard nothing yet)
            assert "ping" not in kinds[kinds.index("heartbeat"):kinds.index("disconnected")]
            await events.wait_kind("ready")
            assert await client.ping() is None

    run(scenario())
