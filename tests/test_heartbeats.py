"""Server heartbeats (``heartbeat_interval_minutes``).

- Under mocks: the schedule (rate, target, input, retries), the heartbeat
  function, what each function may do with heartbeats on and off.
- The store: the sparse heartbeat index lists exactly the live connections
  (registered or joined), never a membership, a tombstone or an expired row.
- The heartbeat entry point on the real embedded DynamoDB with a real
  management API: it posts the heartbeat frame, closes connections found gone.
- Local mode end to end: an idle client receives heartbeats and outlives a
  shortened idle timeout; a vanished connection's rows are removed.
"""

from __future__ import annotations

import asyncio

import json
import time
from typing import Any

import pytest

from channel_server import ChannelServer, ChannelServerArgsError
from channel_server.args import resolve
from channel_server.features import HEARTBEAT_INPUT, HEARTBEAT_RETRIES, heartbeat_rate
from channel_server.handlers import protocol, spec
from channel_server.handlers.store import ConnectionClosed, Store, heartbeat_shard, state_key
from channel_server.mocks import Deployment, deploy
from channel_server.resource_types import FUNCTION, ROLE, ROLE_POLICY, SCHEDULE, TABLE
from support.events import new_connection_id
from support.lambda_world import OK, lambda_world
from support.table import rows_of



@pytest.fixture(scope="module")
def with_heartbeats() -> Deployment:
    return deploy(lambda: ChannelServer("hb", {"heartbeat_interval_minutes": 4}))


@pytest.fixture(scope="module")
def without() -> Deployment:
    return deploy(lambda: ChannelServer("hb"))


def _function(deployment: Deployment, entry: str) -> Any:
    (function,) = [f for f in deployment.of_type(FUNCTION) if f["handler"] == f"{spec.HANDLER_MODULE}.{entry}"]
    return function


def _statements(deployment: Deployment, function: Any) -> list[dict]:
    role = next(r for r in deployment.of_type(ROLE) if r["arn"] == function["role"])
    policy = next(p for p in deployment.of_type(ROLE_POLICY) if p["role"] == role.id)
    return json.loads(policy["policy"])["Statement"]


# --- the component ---------------------------------------------------------------------


def test_heartbeats_are_off_by_default_no_schedule_no_function_no_registration(without: Deployment) -> None:
    assert without.of_type(SCHEDULE) == []
    assert [f for f in without.of_type(FUNCTION) if f["handler"].endswith(".heartbeat")] == []
    for function in without.of_type(FUNCTION):
        assert spec.ENV_HEARTBEATS not in function["environment"]["variables"], function.name
    connect = _statements(without, _function(without, "connect"))
    assert [a for s in connect for a in s["Action"] if a.startswith("dynamodb:")] == []


@pytest.mark.parametrize(("minutes", "expression"), [(1, "rate(1 minute)"), (4, "rate(4 minutes)"), (9, "rate(9 minutes)")])
def test_the_schedule_runs_at_the_interval(minutes: int, expression: str) -> None:
    assert heartbeat_rate(minutes) == expression
    deployed = deploy(lambda: ChannelServer("hb", {"heartbeat_interval_minutes": minutes}))
    schedule = deployed.one(SCHEDULE)
    assert schedule["scheduleExpression"] == expression
    assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    # a run that could not start is retried only while it is still worth it
    assert schedule["target"]["retryPolicy"] == {
        "maximumEventAgeInSeconds": minutes * 60, "maximumRetryAttempts": HEARTBEAT_RETRIES}


def test_the_schedule_invokes_the_heartbeat_function_with_its_input(with_heartbeats: Deployment) -> None:
    schedule = with_heartbeats.one(SCHEDULE)
    function = _function(with_heartbeats, "heartbeat")
    assert schedule["target"]["arn"] == function["arn"]
    assert json.loads(schedule["target"]["input"]) == json.loads(HEARTBEAT_INPUT) == {
        "source": "channel-server.heartbeat", "scheduledTime": "<aws.scheduler.scheduled-time>"}
    assert function["timeout"] == spec.HEARTBEAT_TIMEOUT_SECONDS
    assert function["memorySize"] == resolve({}).publish_memory_mb  # a fan-out, bound by CPU


def test_every_function_knows_heartbeats_are_on(with_heartbeats: Deployment) -> None:
    for function in with_heartbeats.of_type(FUNCTION):
        assert function["environment"]["variables"][spec.ENV_HEARTBEATS] == "1", function.name


def test_with_heartbeats_connect_may_register_and_the_heartbeat_may_only_list_post_queue_and_close(
    with_heartbeats: Deployment,
) -> None:
    table_arn = with_heartbeats.one(TABLE)["arn"]
    connect = _statements(with_heartbeats, _function(with_heartbeats, "connect"))
    assert {"Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": [table_arn]} in connect
    heartbeat = _statements(with_heartbeats, _function(with_heartbeats, "heartbeat"))
    granted = {(a, r) for s in heartbeat for a in s["Action"] for r in s["Resource"]}
    index = f"{table_arn}/index/{spec.HEARTBEAT_INDEX}"
    assert ("dynamodb:Query", index) in granted
    assert ("dynamodb:Query", f"{table_arn}/index/{spec.CHANNEL_INDEX}") not in granted  # never a channel's members
    # closes connections found gone; takes its posts' places in the account budget (UpdateItem)
    assert {a for a, r in granted if r == table_arn} == {"dynamodb:PutItem", "dynamodb:DeleteItem",
                                                          "dynamodb:UpdateItem"}


@pytest.mark.parametrize(("value", "message"), [
    (10, "must be from 0 to 9 minutes (0 is off; API Gateway closes idle connections after 10)"),
    (-1, "must be from 0 to 9 minutes"),
    (True, "must be a whole number from 0 to 9"),
    ("5", "must be a whole number from 0 to 9"),
])
def test_an_interval_out_of_range_is_refused_at_construction(value: Any, message: str) -> None:
    with pytest.raises(ChannelServerArgsError, match="heartbeat_interval_minutes") as refused:
        ChannelServer("hb", {"heartbeat_interval_minutes": value})
    assert message in str(refused.value)


def test_heartbeats_with_an_http_backend_are_refused_with_what_to_do() -> None:
    with pytest.raises(ChannelServerArgsError, match="send them from the backend"):
        resolve({"heartbeat_interval_minutes": 1, "backend": {"url": "https://backend.example.com/ws"}})


# --- the store: the sparse index ---------------------------------------------------------


@pytest.fixture
def store(dynamodb: Any, table: str) -> Store:
    return Store(dynamodb, table, spec.CHANNEL_INDEX, heartbeats=True)


def test_the_index_lists_registered_and_joined_connections_and_nothing_else(
    store: Store, dynamodb: Any, table: str
) -> None:
    registered, joined, moved, closed, expired = (new_connection_id() for _ in range(5))
    assert store.register(registered)
    store.join(joined, "lobby", "s1")
    store.join(moved, "lobby", "s2")
    store.join(moved, "kitchen", "s3")
    store.register(closed)
    store.join(closed, "lobby", "s4")
    store.close_connection(closed)
    Store(dynamodb, table, spec.CHANNEL_INDEX, clock=lambda: time.time() - spec.ROW_TTL_SECONDS - 1,
          heartbeats=True).register(expired)

    assert sorted(store.connections()) == sorted([registered, joined, moved])
    # memberships never carry the shard: only state rows are in the index
    for connection_id in (joined, moved, closed):
        for row in rows_of(dynamodb, table, connection_id):
            has_shard = spec.HEARTBEAT_SHARD in row
            assert has_shard == (row["channelId"] == state_key(connection_id) and spec.CLOSED_AT not in row), row
            if has_shard:
                assert row[spec.HEARTBEAT_SHARD] == heartbeat_shard(connection_id)


def test_every_shard_is_read_and_every_page(store: Store, dynamodb: Any, table: str) -> None:
    # three connections in every shard (random ids, drawn until each shard has three)
    by_shard: dict[int, list[str]] = {shard: [] for shard in range(spec.HEARTBEAT_SHARDS)}
    while any(len(found) < 3 for found in by_shard.values()):
        connection_id = new_connection_id()
        if len(by_shard[heartbeat_shard(connection_id)]) < 3:
            by_shard[heartbeat_shard(connection_id)].append(connection_id)
    ids = [connection_id for found in by_shard.values() for connection_id in found]
    for connection_id in ids:
        store.register(connection_id)
    calls = []
    real_query = dynamodb.query

    def query(**kwargs: Any) -> Any:
        kwargs["Limit"] = 2  # pages of two rows
        assert kwargs["IndexName"] == spec.HEARTBEAT_INDEX
        (shard,) = [v["N"] for k, v in kwargs["ExpressionAttributeValues"].items() if k != ":now"]
        calls.append(shard)
        return real_query(**kwargs)

    store._client = type("Paged", (), {"query": staticmethod(query)})()
    assert sorted(store.connections()) == sorted(ids)
    assert {int(shard) for shard in calls} == set(range(spec.HEARTBEAT_SHARDS))
    assert len(calls) > spec.HEARTBEAT_SHARDS  # more than one page per shard


def test_a_registered_connection_is_in_no_channel_and_joins_as_one_that_never_registered(store: Store) -> None:
    connection_id = new_connection_id()
    assert store.register(connection_id)
    assert store.membership(connection_id) is None
    joined = store.join(connection_id, "lobby", "s1")
    assert (joined.channel_id, joined.version) == ("lobby", 1)
    assert store.register(connection_id) is False  # never replaces a state row
    membership = store.membership(connection_id)
    assert membership is not None and membership.channel_id == "lobby"


def test_a_registered_connection_that_disconnected_cannot_join(store: Store) -> None:
    connection_id = new_connection_id()
    store.register(connection_id)
    store.close_connection(connection_id)
    with pytest.raises(ConnectionClosed):
        store.join(connection_id, "lobby", "s1")
    assert store.connections() == []


def test_a_join_racing_a_disconnect_after_registration_writes_nothing(store: Store, dynamodb: Any, table: str) -> None:
    # the $disconnect's tombstone lands between the join's read and its write
    connection_id = new_connection_id()
    store.register(connection_id)
    real_get = store._raw_state

    def read_then_close(cid: str) -> dict[str, Any] | None:
        state = real_get(cid)
        store.close_connection(cid)
        store._raw_state = real_get  # type: ignore[method-assign]  # once: the store's own read again
        return state

    # the read, then the $disconnect (mypy takes the swap for a change of the method and its signature)
    store._raw_state = read_then_close  # type: ignore[method-assign, assignment]
    with pytest.raises(ConnectionClosed):
        store.join(connection_id, "lobby", "s1")
    assert [r["channelId"] for r in rows_of(dynamodb, table, connection_id)] == [state_key(connection_id)]


# --- the entry points ---------------------------------------------------------------------


def test_connect_registers_only_when_heartbeats_are_on(dynamodb: Any, table_definition: Any) -> None:
    for env, registered in (({}, False), ({spec.ENV_HEARTBEATS: "1"}, True)):
        with lambda_world(dynamodb, table_definition, env=env) as world:
            connection_id = new_connection_id()
            assert world.connect(connection_id) == OK
            rows = world.rows()
            assert bool(rows) == registered
            if registered:
                (row,) = rows
                assert row["channelId"] == state_key(connection_id) and spec.HEARTBEAT_SHARD in row


def test_the_heartbeat_posts_to_every_live_connection_and_closes_the_gone(
    dynamodb: Any, table_definition: Any
) -> None:
    with lambda_world(dynamodb, table_definition, env={spec.ENV_HEARTBEATS: "1"}) as world:
        idle, member, gone, left = (new_connection_id() for _ in range(4))
        for connection_id in (idle, member, gone, left):
            world.connect(connection_id)
        world.join(member, "lobby")
        world.join(gone, "lobby")
        world.disconnect(left)
        world.management.gone.add(gone)

        summary = world.call("heartbeat", json.loads(HEARTBEAT_INPUT))

        assert summary == {"connections": 3, "delivered": 2, "gone": 1, "failed": 0, "queued": 0}
        heartbeat = protocol.heartbeat()
        assert world.management.frames(idle) == [heartbeat]
        assert world.management.frames(member)[-1] == heartbeat
        assert world.management.frames(left) == []
        # the gone connection is closed for good: tombstone, no membership
        (row,) = [r for r in world.rows() if r["connectionId"] == gone]
        assert spec.CLOSED_AT in row and spec.HEARTBEAT_SHARD not in row
        assert world.app.store.connections().count(gone) == 0


# --- local mode, end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def heartbeat_world() -> Any:
    from channel_server.local.program import from_component

    return from_component("dev", args={"heartbeat_interval_minutes": 1})


def test_local_mode_reads_the_schedule_the_component_registered(heartbeat_world: Any) -> None:
    (schedule,) = heartbeat_world.schedules
    assert schedule.expression == "rate(1 minute)" and schedule.interval_seconds == 60
    assert schedule.function.handler == spec.HEARTBEAT.handler
    assert json.loads(schedule.input) == json.loads(HEARTBEAT_INPUT)


def test_the_scheduler_fills_in_its_context_attributes(heartbeat_world: Any) -> None:
    from channel_server.local.schedules import scheduler_input

    (schedule,) = heartbeat_world.schedules
    event = scheduler_input(schedule, "arn:aws:scheduler:us-east-1:123456789012:schedule/default/hb", 1764158400.0)
    assert event == {"source": "channel-server.heartbeat", "scheduledTime": "2025-11-26T12:00:00Z"}


def test_a_stop_ends_the_schedule_even_when_the_running_invocation_swallows_the_cancel(heartbeat_world: Any) -> None:
    """Python 3.11's ``wait_for`` (under every local invocation) returns the
    answer and drops a cancel that meets it; the schedule then ran on and
    Ctrl-C waited for it forever (1 in about 40 stops of the README's
    heartbeat command)."""
    from channel_server.local.schedules import Scheduler

    (schedule,) = heartbeat_world.schedules

    async def scenario() -> tuple[bool, int]:
        entered, ran_again, answer = asyncio.Event(), asyncio.Event(), asyncio.Event()
        calls = 0

        async def invoke(event: dict, request_id: str) -> None:
            nonlocal calls
            calls += 1
            if calls > 1:
                ran_again.set()
                await answer.wait()
                return
            entered.set()
            try:
                await answer.wait()
            except asyncio.CancelledError:
                return  # as wait_for does when the answer and the cancel meet

        scheduler = Scheduler(schedule, invoke, interval=0.001)
        scheduler.start()
        await entered.wait()
        stopping = asyncio.ensure_future(scheduler.stop())
        again = asyncio.ensure_future(ran_again.wait())
        await asyncio.wait([stopping, again], return_when=asyncio.FIRST_COMPLETED)
        stopped_first = stopping.done() and not ran_again.is_set()
        again.cancel()
        if not stopped_first:  # the schedule ran on: end it for good, then report
            while not stopping.done():
                assert scheduler._task is not None
                scheduler._task.cancel()
                await asyncio.wait([stopping], timeout=0.01)
        answer.set()
        await stopping
        return stopped_first, calls

    stopped_first, calls = asyncio.run(scenario())
    assert stopped_first and calls == 1


def test_an_idle_client_gets_heartbeats_and_outlives_the_idle_timeout(heartbeat_world: Any) -> None:
    from websockets.sync.client import connect

    from channel_server.local.server import running

    idle_timeout = 1.5
    with running(port=0, world=heartbeat_world, heartbeat_seconds=0.25, idle_timeout=idle_timeout) as server:
        with connect(server.url, open_timeout=10) as ws:
            opened = time.monotonic()
            heartbeats = 0
            # the client sends nothing: only the server's heartbeats keep it open
            while time.monotonic() - opened < 2 * idle_timeout:
                assert json.loads(ws.recv(timeout=30)) == {"type": "heartbeat"}
                heartbeats += 1
            ws.send('{"type":"ping"}')
            frame = json.loads(ws.recv(timeout=30))
            while frame == {"type": "heartbeat"}:
                frame = json.loads(ws.recv(timeout=30))
            assert frame == {"type": "pong"}
            assert heartbeats >= 2


def test_a_vanished_connections_rows_are_removed_by_a_heartbeat(heartbeat_world: Any, dynamodb: Any) -> None:
    import boto3
    from websockets.sync.client import connect

    from channel_server.local.server import running
    from support.aws import FAKE_CREDENTIALS, REGION

    with running(port=0, world=heartbeat_world, heartbeat_seconds=0.2) as server:
        local = boto3.client("dynamodb", endpoint_url=server.dynamodb_endpoint, region_name=REGION, **FAKE_CREDENTIALS)
        table = server.table_name
        with connect(server.url, open_timeout=10) as watcher:
            # a connection whose $disconnect never arrived: its rows, but no socket
            ghost = new_connection_id()
            Store(local, table, spec.CHANNEL_INDEX, heartbeats=True).join(ghost, "lobby", "s1")
            assert {r["channelId"] for r in rows_of(local, table, ghost)} == {"lobby", state_key(ghost)}
            # Runs never overlap: the third heartbeat after the ghost was
            # written comes from a run that started after a whole run that
            # listed it, posted to it (410) and closed it.
            for _ in range(3):
                assert json.loads(watcher.recv(timeout=30)) == {"type": "heartbeat"}
            rows = rows_of(local, table, ghost)
        assert [r["channelId"] for r in rows] == [state_key(ghost)] and spec.CLOSED_AT in rows[0]
