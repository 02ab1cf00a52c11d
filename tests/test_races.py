"""Races and API Gateway's delivery quirks (docs/failure-semantics.md, "Concurrent
joins" and "Delivery quirks"): frames of one connection handled concurrently,
a $disconnect that overtakes a join or a publish, $disconnect delivered twice
or never, and rows that outlive their connection until their TTL.

Interleavings are forced, not hoped for: a wrapper around the DynamoDB client
runs a hook before or after chosen calls (a barrier, another Lambda
invocation), so every run takes the path the test names. No sleeps.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import partial
from typing import Any, Callable

import pytest

from channel_server.handlers import app as app_module
from channel_server.handlers import protocol, spec
from channel_server.handlers.store import JOIN_ATTEMPTS, Store
from support.events import event, new_connection_id
from support.lambda_world import OK, Client, answered
from support.table import closed, rows, rows_of, write_member
from support.frames import ANY_MESSAGE_ID

NOT_IN_CHANNEL = protocol.NOT_IN_CHANNEL
#: Bound on every wait for another thread: a broken interleaving fails, never hangs.
TIMEOUT = 10


Hook = Callable[[int, dict], None]


class Hooked:
    """A DynamoDB client that runs ``hook(number, kwargs)`` before or after the
    calls of one operation (``number`` counts that operation's calls from 1,
    ``kwargs`` are the call's arguments), and counts the hooked operations'
    calls. Everything else goes straight to ``client``."""

    def __init__(self, client: Any):
        self._client = client
        self._before: dict[str, Hook] = {}
        self._after: dict[str, Hook] = {}
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def before(self, operation: str, hook: Hook) -> "Hooked":
        self._before[operation] = hook
        return self

    def after(self, operation: str, hook: Hook) -> "Hooked":
        self._after[operation] = hook
        return self

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self._before and name not in self._after:
            return method

        def call(**kwargs: Any) -> Any:
            with self._lock:
                number = self.calls[name] = self.calls.get(name, 0) + 1
            if name in self._before:
                self._before[name](number, kwargs)
            result = method(**kwargs)
            if name in self._after:
                self._after[name](number, kwargs)
            return result

        return call


def run_together(*tasks: Callable[[], Any]) -> list[Any]:
    """Run each task on its own thread, released at the same moment; returns
    their results, re-raising the first exception."""
    start = threading.Barrier(len(tasks), timeout=TIMEOUT)
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException] = []

    def run(index: int, task: Callable[[], Any]) -> None:
        try:
            start.wait()
            results[index] = task()
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "a concurrent invocation did not finish"
    if errors:
        raise errors[0]
    return results


def memberships(dynamodb: Any, table: str, connection_id: str) -> list[str]:
    """The channels the connection has a membership row in."""
    return [row[spec.CHANNEL_ID] for row in rows_of(dynamodb, table, connection_id)
            if not row[spec.CHANNEL_ID].startswith(spec.STATE_ROW_PREFIX)]


def state_of(dynamodb: Any, table: str, connection_id: str) -> dict | None:
    states = [row for row in rows_of(dynamodb, table, connection_id)
              if row[spec.CHANNEL_ID].startswith(spec.STATE_ROW_PREFIX)]
    assert len(states) <= 1
    return states[0] if states else None


def join_frame(channel_id: str) -> dict:
    return {"type": "join", "channelId": channel_id}


@pytest.fixture
def hooked_app(install_app: Any, dynamodb: Any, management: Any, world: Any) -> Any:
    """``hooked_app()`` installs an app whose DynamoDB client is a fresh
    :class:`Hooked`; returns ``(hooked, client factory)``. The app's management
    client is built before any test thread runs (as in a warm Lambda)."""

    def make() -> tuple[Hooked, Callable[..., Client]]:
        hooked = Hooked(dynamodb)
        install_app(dynamodb=hooked)
        world.client().send({"type": "ping"})  # warm up
        management.clear()
        return hooked, world.client

    return make


# =====================================================================================
# Two joins of one connection at the same time
# =====================================================================================


@pytest.mark.parametrize("previously", [None, "lobby"], ids=["first-join", "moving-from-lobby"])
def test_two_concurrent_joins_leave_the_connection_in_exactly_one_channel(
    previously: str | None, hooked_app: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN carol in "red", dave in "blue", and alice (maybe in "lobby") about
    # to send two joins whose reads both finish before either writes
    hooked, new_client = hooked_app()
    alice, carol, dave = new_client(), new_client(), new_client()
    carol.join("red")
    dave.join("blue")
    if previously:
        alice.join(previously)
    both_read = threading.Barrier(2, timeout=TIMEOUT)

    def wait_for_the_other_read(number: int, kwargs: dict) -> None:
        if number <= 2:  # each join's first write; the loser's retry goes through
            both_read.wait()

    hooked.before("transact_write_items", wait_for_the_other_read)
    hooked.before("get_item", lambda number, kwargs: None)  # counted
    hooked.calls.clear()
    management.clear()

    # WHEN API Gateway runs both joins at once
    results = run_together(lambda: alice.send(join_frame("red")), lambda: alice.send(join_frame("blue")))

    # THEN both read before either wrote, and the loser re-read and wrote again
    by_body = lambda response: response["body"]  # noqa: E731
    assert sorted(results, key=by_body) == sorted(map(answered, management.bodies(alice.connection_id)), key=by_body)
    assert hooked.calls == {"get_item": 3, "transact_write_items": 3}
    # both got joinSuccess naming their own channel
    replies = alice.frames()
    assert sorted(reply["channelId"] for reply in replies) == ["blue", "red"]
    assert {reply["type"] for reply in replies} == {"joinSuccess"}
    # and alice is in exactly one channel, the one her state row names
    (channel,) = memberships(dynamodb, table, alice.connection_id)
    state = state_of(dynamodb, table, alice.connection_id)
    assert state is not None and state[spec.CURRENT_CHANNEL] == channel
    (winner,) = [reply for reply in replies if reply["channelId"] == channel]
    assert state[spec.SENDER_ID] == winner["senderId"]

    # and she hears that channel only
    management.clear()
    carol.send({"type": "publish", "data": "from red"})
    dave.send({"type": "publish", "data": "from blue"})
    (heard,) = alice.frames()
    assert (heard["channelId"], heard["data"]) == (channel, f"from {channel}")
    if previously:  # the old channel is left too
        assert previously not in memberships(dynamodb, table, alice.connection_id)


def test_two_concurrent_joins_settle_in_exactly_one_channel_every_time(
    hooked_app: Any, management: Any, dynamodb: Any, table: str
) -> None:
    """The same race, left to the scheduler: whatever the order, the invariant holds."""
    hooked, new_client = hooked_app()
    for _ in range(20):
        alice = new_client()
        alice.join("lobby")

        run_together(lambda: alice.send(join_frame("red")), lambda: alice.send(join_frame("blue")))

        replies = alice.frames()[1:]
        assert sorted((reply["type"], reply["channelId"]) for reply in replies) == [
            ("joinSuccess", "blue"), ("joinSuccess", "red")
        ]
        (channel,) = memberships(dynamodb, table, alice.connection_id)
        state = state_of(dynamodb, table, alice.connection_id)
        assert state is not None and state[spec.CURRENT_CHANNEL] == channel


def test_a_join_that_loses_every_race_replies_join_failure_and_changes_nothing(
    hooked_app: Any, dynamodb: Any, table: str
) -> None:
    """Each time the join has read, another join of the connection commits
    first (written here straight into the table): after JOIN_ATTEMPTS rounds
    it gives up with a joinFailure, and the winner's rows stand."""
    hooked, new_client = hooked_app()
    alice = new_client()
    alice.join("lobby")

    def another_join_commits(number: int, kwargs: dict) -> None:
        # what a concurrent join's transaction does to the state row: a new version
        dynamodb.update_item(
            TableName=table,
            Key=kwargs["Key"],
            UpdateExpression="SET #v = #v + :one",
            ExpressionAttributeNames={"#v": spec.VERSION},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    hooked.after("get_item", another_join_commits)
    hooked.before("transact_write_items", lambda number, kwargs: None)  # counted

    alice.send(join_frame("kitchen"))

    assert alice.frames()[-1] == {"type": "joinFailure", "data": "could not join right now; try again"}
    assert hooked.calls == {"get_item": JOIN_ATTEMPTS, "transact_write_items": JOIN_ATTEMPTS}
    assert memberships(dynamodb, table, alice.connection_id) == ["lobby"]
    state = state_of(dynamodb, table, alice.connection_id)
    assert state is not None and state[spec.CURRENT_CHANNEL] == "lobby"


# =====================================================================================
# A $disconnect that overtakes a join or a publish
# =====================================================================================


@pytest.mark.parametrize(
    "when, joined",
    [(("before", "get_item"), False), (("before", "transact_write_items"), False),
     (("after", "transact_write_items"), True)],
    ids=["before-the-join-reads", "between-the-join-read-and-write", "after-the-join-wrote"],
)
def test_a_join_racing_its_connections_disconnect_leaves_no_membership_behind(
    when: tuple[str, str], joined: bool, hooked_app: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN alice in "lobby" with bob, sending a join to "kitchen" as her connection closes
    hooked, new_client = hooked_app()
    alice, bob = new_client(), new_client()
    alice.join("lobby")
    bob.join("lobby")
    disconnected: list[dict] = []

    def connection_closes(number: int, kwargs: dict) -> None:
        if number == 1:  # the join's first call of that kind: $disconnect runs to its end
            disconnected.append(alice.disconnect())

    getattr(hooked, when[0])(when[1], connection_closes)
    management.clear()

    # WHEN the join runs, with $disconnect at that point of it
    result = alice.send(join_frame("kitchen"))

    # THEN a join that had not written yet cannot write after $disconnect's
    # tombstone (its reply goes nowhere: the connection is closed), one that
    # had is undone by $disconnect,
    reply = json.loads(result["body"])
    assert reply == ({"type": "joinSuccess", "channelId": "kitchen", "senderId": reply.get("senderId")} if joined
                     else {"type": "joinFailure", "data": "this connection has disconnected"})
    assert disconnected == [OK]
    # no membership of alice survives, bob's rows are untouched, and nothing was posted
    assert closed(dynamodb, table, alice.connection_id)
    assert len(rows_of(dynamodb, table, bob.connection_id)) == 2
    assert management.attempts == []


@pytest.mark.parametrize("disconnect_arrives", ["before-the-post", "after-the-publish"])
def test_a_member_that_disconnects_during_a_publish_is_removed_and_the_others_still_receive_it(
    disconnect_arrives: str, hooked_app: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN alice, bob and carol in "lobby"; bob's connection closes right
    # after the publish listed the channel's members
    hooked, new_client = hooked_app()
    alice, bob, carol = new_client(), new_client(), new_client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    disconnects: list[dict] = []
    listed = threading.Event()

    def bob_leaves_once_the_channel_is_listed(number: int, kwargs: dict) -> None:
        if kwargs.get("IndexName") and not listed.is_set():
            listed.set()
            management.gone.add(bob.connection_id)
            if disconnect_arrives == "before-the-post":
                disconnects.append(bob.disconnect())

    hooked.after("query", bob_leaves_once_the_channel_is_listed)
    management.clear()

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "hi"})

    # THEN the post to bob found him gone, once, and he is closed,
    assert listed.is_set()
    assert management.statuses(bob.connection_id) == [410]
    assert closed(dynamodb, table, bob.connection_id)
    # carol has the message and alice is told it worked
    assert carol.frames()[-1] == {"type": "message", "channelId": "lobby", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": "hi"}
    assert alice.frames() == [{"type": "publishSuccess"}]
    # and a late $disconnect finds nothing to do
    if disconnect_arrives == "after-the-publish":
        disconnects.append(bob.disconnect())
    assert disconnects == [OK]
    assert closed(dynamodb, table, bob.connection_id)
    assert len(rows_of(dynamodb, table, carol.connection_id)) == 2


# =====================================================================================
# $disconnect delivered twice, or for a connection the table never saw
# =====================================================================================


def test_a_disconnect_delivered_twice_at_once_removes_the_rows_without_error(
    hooked_app: Any, dynamodb: Any, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN alice and bob in "lobby", and two $disconnects of alice that both
    # write their tombstone at the same moment
    hooked, new_client = hooked_app()
    alice, bob = new_client(), new_client()
    alice.join("lobby")
    bob.join("lobby")
    both_ready = threading.Barrier(2, timeout=TIMEOUT)
    hooked.before("put_item", lambda number, kwargs: both_ready.wait())

    # WHEN both run
    results = run_together(alice.disconnect, alice.disconnect)

    # THEN both answer 200, alice is closed, nothing was logged as a failure
    assert results == [OK] * 2
    assert hooked.calls == {"put_item": 2}
    assert closed(dynamodb, table, alice.connection_id)
    assert len(rows_of(dynamodb, table, bob.connection_id)) == 2
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("history", ["never-joined", "connect-rejected", "already-disconnected"])
def test_a_disconnect_of_a_connection_without_rows_answers_200_and_logs_no_failure(
    history: str, world: Any, client: Any, dynamodb: Any, table: str, management: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """"connect-rejected": API Gateway may send $disconnect for a connection
    whose $connect was refused (by an authorizer, or a non-2xx status): the
    handlers never saw it, it holds no rows, and its disconnect event says why."""
    bob = client()
    bob.join("lobby")
    connection_id = new_connection_id()
    if history == "already-disconnected":
        alice = client(connection_id)
        alice.join("lobby")
        alice.disconnect()
    raw = event("disconnect", connection_id=connection_id)
    if history == "connect-rejected":
        raw["requestContext"].update(disconnectStatusCode=1006, disconnectReason="")
    before = rows(dynamodb, table)
    management.clear()
    caplog.clear()

    assert world.call("disconnect", raw) == OK

    # only its tombstone is new: a join still in flight cannot write after it
    assert [row for row in rows(dynamodb, table) if row[spec.CONNECTION_ID] != connection_id] == [
        row for row in before if row[spec.CONNECTION_ID] != connection_id
    ]
    assert closed(dynamodb, table, connection_id)
    assert management.attempts == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# =====================================================================================
# TTL: rows outlive a lost $disconnect only until they expire
# =====================================================================================


def expiry_window(before: float, after: float) -> tuple[int, int]:
    """The expiresAt a row written between ``before`` and ``after`` may carry."""
    return int(before) + spec.ROW_TTL_SECONDS, int(after) + spec.ROW_TTL_SECONDS


def test_every_row_carries_a_fresh_expiry_after_each_join_and_rejoin(
    client: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN alice's rows were written long ago and expire in a minute
    alice = client()
    write_member(dynamodb, table, alice.connection_id, "lobby", "a1iceS3nderIdXXXXXXXXX", int(time.time()) + 60)

    for channel in ("kitchen", "kitchen", "lobby"):  # a move, a rejoin of the same channel, a move back
        before = time.time()
        alice.join(channel)
        after = time.time()

        low, high = expiry_window(before, after)
        written = rows_of(dynamodb, table, alice.connection_id)
        assert sorted(row[spec.CHANNEL_ID] for row in written) == sorted([channel, spec.STATE_ROW_PREFIX + alice.connection_id])
        for row in written:
            assert low <= row[spec.EXPIRES_AT] <= high, (channel, row)


@pytest.fixture
def joined_long_ago(app: Any, install_app: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[Client, str, float], str]:
    """``joined_long_ago(client, channel, seconds)``: the client joins through
    the real join route, run by an app whose clock is ``seconds`` behind (a
    connection whose $disconnect never came). The test's app is reinstalled
    afterwards. Returns the senderId."""

    def join(client: Client, channel: str, seconds: float) -> str:
        current = app_module._app
        with monkeypatch.context() as patch:
            patch.setattr(app_module, "Store", partial(Store, clock=lambda: time.time() - seconds))
            install_app()
            sender_id = client.join(channel)
        monkeypatch.setattr(app_module, "_app", current)
        return sender_id

    return join


@pytest.mark.parametrize(
    "age, delivered",
    [(spec.ROW_TTL_SECONDS - 30, True), (spec.ROW_TTL_SECONDS + 5, False)],
    ids=["joined-2h04m30s-ago", "joined-2h05m05s-ago"],
)
def test_a_member_whose_disconnect_was_lost_is_not_delivered_to_once_its_rows_expire(
    age: int, delivered: bool, client: Any, joined_long_ago: Any, management: Any
) -> None:
    # GIVEN bob joined "lobby" long ago and his $disconnect never came
    alice, bob, carol = client(), client(), client()
    joined_long_ago(bob, "lobby", age)
    sender_id = alice.join("lobby")
    carol.join("lobby")
    management.clear()

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "hi"})

    # THEN bob is posted to only while his rows have not expired
    hi = {"type": "message", "channelId": "lobby", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": "hi"}
    assert bob.frames() == ([hi] if delivered else [])
    assert (bob.connection_id in management.recipients()) is delivered
    assert carol.frames()[-1] == hi
    assert alice.frames() == [{"type": "publishSuccess"}]


def test_a_publisher_whose_own_rows_expired_gets_publish_failure_and_nobody_receives_it(
    client: Any, joined_long_ago: Any, management: Any
) -> None:
    alice, bob = client(), client()
    joined_long_ago(alice, "lobby", spec.ROW_TTL_SECONDS + 5)
    bob.join("lobby")
    management.clear()

    alice.send({"type": "publish", "data": "hi"})

    assert management.frames(alice.connection_id) == [{"type": "publishFailure", "data": NOT_IN_CHANNEL}]
    assert management.attempts == []
