"""History and resume (docs/protocol.md §4.2–4.3, docs/architecture.md
"History and resume"): a publish keeps its message before any copy is sent, a
join with ``since`` is sent what it missed before its joinSuccess, and the
interleavings of a publish with a resuming join are forced, not hoped for
(``test_races.Hooked``), including the one window the guarantee leaves open.
The reconnect figure, over real sockets in local mode, is at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from channel_server.handlers import app as app_module
from channel_server.handlers import protocol, spec
from support.table import rows
from test_races import Hooked

SECONDS = 60


@pytest.fixture
def history(world: Any, install_app: Any) -> Any:
    # after `world`, whose `app` it replaces
    return install_app(**{spec.ENV_HISTORY_SECONDS: str(SECONDS)})


def messages(frames: list[dict]) -> list[Any]:
    return [f["data"] for f in frames if f["type"] == "message"]


def joined(client: Any, channel: str, **fields: Any) -> dict:
    """Join with ``fields``; the joinSuccess (or the failure) frame."""
    client.send({"type": "join", "channelId": channel, **fields})
    return client.frames()[-1]


def test_a_resuming_join_is_sent_what_it_missed_first_then_its_join_success(history: Any, client: Any) -> None:
    alice, bob = client(), client()
    joined(alice, "room")
    position = joined(bob, "room")["position"]
    assert protocol.MESSAGE_ID.fullmatch(position)
    for n in range(3):
        alice.send({"type": "publish", "data": n})
    again = client()  # bob's next connection, after a reconnect

    reply = joined(again, "room", since=position)

    frames = again.frames()
    assert [f["type"] for f in frames] == ["message"] * 3 + ["joinSuccess"]
    assert messages(frames) == [0, 1, 2] and frames[0]["messageId"] > position
    assert [f["messageId"] for f in frames[:3]] == sorted(f["messageId"] for f in frames[:3])
    assert (reply["replayed"], reply["resumed"]) == (3, True)
    # from the second message on: only the third
    third = client()
    assert joined(third, "room", since=frames[1]["messageId"])["replayed"] == 1
    assert messages(third.frames()) == [2]


def test_the_kept_message_is_the_frame_members_got_and_expires_after_the_history_window(
        history: Any, client: Any, dynamodb: Any, table: str) -> None:
    alice, bob = client(), client()
    joined(alice, "room")
    joined(bob, "room")
    alice.send({"type": "publish", "data": {"k": "ü"}})
    (sent,) = [f for f in bob.frames() if f["type"] == "message"]
    (kept,) = [r for r in rows(dynamodb, table) if r[spec.CONNECTION_ID] == spec.HISTORY_PREFIX + "room"]
    assert kept[spec.CHANNEL_ID] == spec.HISTORY_MESSAGE_PREFIX + sent["messageId"]
    assert json.loads(kept[spec.HISTORY_PAYLOAD]) == sent
    assert 0 < kept[spec.EXPIRES_AT] - time.time() <= SECONDS


def test_a_resume_older_than_the_history_kept_is_answered_as_incomplete(history: Any, client: Any) -> None:
    alice = client()
    joined(alice, "room")
    alice.send({"type": "publish", "data": "kept"})
    stale = protocol.position(time.time() - SECONDS - 5)  # messages just after it may have expired

    reply = joined(client(), "room", since=stale)

    assert (reply["replayed"], reply["resumed"]) == (1, False)


def test_a_resume_that_missed_more_than_the_server_replays_is_answered_as_incomplete(
        history: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec, "MAX_REPLAY_MESSAGES", 2)
    alice, bob = client(), client()
    joined(alice, "room")
    position = joined(bob, "room")["position"]
    for n in range(3):
        alice.send({"type": "publish", "data": n})
    again = client()

    reply = joined(again, "room", since=position)

    assert messages(again.frames()) == [0, 1]  # the oldest, in order
    assert (reply["replayed"], reply["resumed"]) == (2, False)


def test_without_history_joins_carry_no_position_and_a_resume_says_nothing_was_sent(app: Any, client: Any) -> None:
    alice = client()
    assert "position" not in joined(alice, "room")
    alice.send({"type": "publish", "data": 1})
    reply = joined(client(), "room", since=protocol.position())
    assert (reply["type"], reply["replayed"], reply["resumed"]) == ("joinSuccess", 0, False)
    assert "position" not in reply


@pytest.mark.parametrize("since", ["", "0", 5, 0, [], {"id": 1}, "0192abcdef01-0123456789abcdeg",
                                   "0192ABCDEF01-0123456789ABCDEF", "x" * 10_000])
def test_a_since_that_is_no_message_id_is_refused_and_nothing_is_stored(
        history: Any, client: Any, dynamodb: Any, table: str, since: Any) -> None:
    before = rows(dynamodb, table)
    reply = joined(client(), "room", since=since)
    assert reply == protocol.join_failure(protocol.BAD_SINCE)
    assert rows(dynamodb, table) == before


def test_a_publish_whose_message_cannot_be_kept_sends_nothing(
        history: Any, client: Any, install_app: Any, dynamodb: Any, caplog: Any) -> None:
    alice, bob = client(), client()
    joined(alice, "room")
    joined(bob, "room")

    def refuse(number: int, kwargs: dict) -> None:
        if kwargs["Item"][spec.CONNECTION_ID]["S"].startswith(spec.HISTORY_PREFIX):
            raise RuntimeError("DynamoDB unavailable")

    install_app(dynamodb=Hooked(dynamodb).before("put_item", refuse), **{spec.ENV_HISTORY_SECONDS: str(SECONDS)})
    alice.send({"type": "publish", "data": "lost?"})

    assert alice.frames()[-1] == protocol.publish_failure(app_module.INTERNAL_ERROR)
    assert messages(bob.frames()) == []


# --- how replay and live delivery meet, forced -----------------------------------------


def test_a_publish_between_the_membership_write_and_the_history_read_arrives_twice_with_one_id(
        install_app: Any, dynamodb: Any, client: Any) -> None:
    """Kept before the read: replayed; and the index already lists the joiner:
    live too. Two copies of one messageId, which ChannelClient drops."""
    alice = client()
    hooked = Hooked(dynamodb)
    install_app(dynamodb=hooked, **{spec.ENV_HISTORY_SECONDS: str(SECONDS)})
    joined(alice, "room")
    since = protocol.position()
    joiner = client()

    def publish_now(number: int, kwargs: dict) -> None:
        if number == 1:  # the joiner's membership transaction has just been written
            alice.send({"type": "publish", "data": "in between"})

    hooked.after("transact_write_items", publish_now)
    reply = joined(joiner, "room", since=since)

    copies = [f for f in joiner.frames() if f["type"] == "message"]
    assert [c["data"] for c in copies] == ["in between", "in between"]
    assert copies[0]["messageId"] == copies[1]["messageId"]
    assert (reply["replayed"], reply["resumed"]) == (1, True)


def test_a_publish_after_the_history_read_reaches_the_joiner_live(install_app: Any, dynamodb: Any,
                                                                 client: Any) -> None:
    alice = client()
    hooked = Hooked(dynamodb)
    install_app(dynamodb=hooked, **{spec.ENV_HISTORY_SECONDS: str(SECONDS)})
    joined(alice, "room")
    joiner = client()

    def publish_now(number: int, kwargs: dict) -> None:
        if kwargs.get("KeyConditionExpression", "").endswith("#s > :s"):  # the joiner's history read
            alice.send({"type": "publish", "data": "after the read"})

    hooked.after("query", publish_now)
    reply = joined(joiner, "room", since=protocol.position())

    assert messages(joiner.frames()) == ["after the read"]  # live, once
    assert (reply["replayed"], reply["resumed"]) == (0, True)


def test_the_one_window_left_open_is_an_index_that_lags_the_join_and_the_next_resume_closes_it(
        install_app: Any, dynamodb: Any, client: Any) -> None:
    """A publish that keeps its message after the join's history read and
    reads the channel index before it lists the new membership (the GSI is
    eventually consistent): neither replayed nor live. The message is kept, so
    the client's next resume from its position (it saw nothing newer) gets it."""
    alice = client()
    install_app(**{spec.ENV_HISTORY_SECONDS: str(SECONDS)})
    joined(alice, "room")
    joiner = client()
    lagging: list[str] = []

    def publish_now(number: int, kwargs: dict) -> None:
        if kwargs.get("KeyConditionExpression", "").endswith("#s > :s") and number == 1:
            lagging.append(joiner.connection_id)  # the index does not list the joiner yet
            alice.send({"type": "publish", "data": "in the window"})

    class LaggingIndex(Hooked):
        def __getattr__(self, name: str) -> Any:
            method = super().__getattr__(name)
            if name != "query":
                return method

            def query(**kwargs: Any) -> Any:
                page = method(**kwargs)
                if kwargs.get("IndexName") == spec.CHANNEL_INDEX and lagging:
                    page = {**page, "Items": [i for i in page["Items"]
                                              if i[spec.CONNECTION_ID]["S"] not in lagging]}
                return page

            return query

    lagged = LaggingIndex(dynamodb).after("query", publish_now)
    install_app(dynamodb=lagged, **{spec.ENV_HISTORY_SECONDS: str(SECONDS)})
    position = joined(joiner, "room", since=protocol.position())["position"]

    assert messages(joiner.frames()) == []  # the window: neither replayed nor live
    later = client()  # the same client, reconnected, resumes from its position
    lagging.clear()
    assert joined(later, "room", since=position)["replayed"] == 1
    assert messages(later.frames()) == ["in the window"]


# --- the reconnect figure: real sockets, local mode ----------------------------------------

CLOSES = 5
LIVE_PUBLISHES = 5  # published while the listener is connected, before each close
GAP_PUBLISHES = 3  # published after each close, while the listener reconnects


@pytest.fixture(scope="module")
def history_world() -> Any:
    from channel_server.local.program import from_component

    return from_component("dev", args={"history_seconds": SECONDS})


def test_a_listener_closed_five_times_receives_every_message_exactly_once_in_order(history_world: Any) -> None:
    """The listener's connection is closed five times by the server (the
    management API's DeleteConnection, as a max lifetime or a deploy would),
    each time between two runs of publishes: some while it is connected,
    some once it has seen the close and before it is back. ChannelClient
    resumes on every rejoin: every message published arrives once, in publish
    order (before history: what was published in each gap was lost). Each step
    waits for the client's own events, never for a time."""
    from channel_server.client import ChannelClient
    from channel_server.local.server import running
    from test_local import management

    async def scenario(server: Any) -> tuple[list[Any], list[Any], int, list[dict]]:
        events: list[dict] = []
        away, back = asyncio.Event(), asyncio.Event()

        def on_event(event: Any) -> None:
            events.append({"kind": event.kind, **event.detail})
            if event.kind == "disconnected":
                away.set()
            elif event.kind == "resumed":
                back.set()

        listener = ChannelClient(server.url, backoff_initial=0.2, reply_timeout=30, on_event=on_event)
        publisher = ChannelClient(server.url, reply_timeout=30)
        api = management(server)
        async with publisher:
            await publisher.join("feed")
            (publisher_id,) = server.gateway.connections
            async with listener:
                await listener.join("feed")
                received: list[Any] = []

                async def listen() -> None:
                    async for message in listener:
                        received.append(message.data)
                        if message.data == "end":
                            return

                reading = asyncio.ensure_future(listen())
                published: list[Any] = []
                for _ in range(CLOSES):
                    for _ in range(LIVE_PUBLISHES):
                        await publisher.publish(len(published))
                        published.append(len(published))
                    (listener_id,) = set(server.gateway.connections) - {publisher_id}
                    away.clear()
                    back.clear()
                    await asyncio.to_thread(api.delete_connection, ConnectionId=listener_id)
                    await away.wait()
                    for _ in range(GAP_PUBLISHES):
                        await publisher.publish(len(published))
                        published.append(len(published))
                    await back.wait()  # rejoined and resumed: the next close is of the new connection
                await publisher.publish("end")
                await asyncio.wait_for(reading, 60)
                return published, received, listener.duplicates, events

    with running(port=0, world=history_world) as server:
        published, received, duplicates, events = asyncio.run(scenario(server))

    assert received == [*published, "end"], "every message exactly once, in order"
    resumes = [e for e in events if e["kind"] == "resumed"]
    assert len(resumes) == CLOSES and all(e["complete"] for e in resumes)
    assert sum(e["replayed"] for e in resumes) > 0, "the gaps were filled from history"
    print(f"{len(published)} messages, {len(resumes)} resumes, "
          f"{sum(e['replayed'] for e in resumes)} replayed, {duplicates} duplicates dropped")
