"""The account budget: every post of every function takes its place in
``postsPerSecond`` posts a second, shared through rows of the table.

The budget's arithmetic against moto (both DynamoDB clients, a fixed clock),
then local mode: a small budget and an account quota of the same rate at the
management API (429 beyond it, as API Gateway's), with a publish large
enough to be handed to the fan-out function, a server publish and heartbeats
all at once. Every member gets every message, no request is throttled, and
the management API counts no second with more posts than the quota allows.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from channel_server.handlers import dynamodb as own_dynamodb
from channel_server.handlers import spec
from channel_server.handlers.budget import PostBudget, share
from support.aws import FAKE_CREDENTIALS, REGION
# the large-channel tests' fixtures (sqs, queue_url) and helpers: the hand-off below is theirs
from test_large_channels import big_channel, message, queue_url, queued, run_fanout, sqs  # noqa: F401


class Clock:
    """A clock that stands still until moved."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["boto3", "the handlers' own client"])
def client(request: pytest.FixtureRequest, dynamodb: Any, embedded_dynamodb: Any) -> Any:
    if request.param == "boto3":
        return dynamodb
    environ = {"AWS_ENDPOINT_URL_DYNAMODB": embedded_dynamodb.endpoint, "AWS_REGION": REGION,
               "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
               "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"]}
    return own_dynamodb.client(environ, max_attempts=1, pool_size=8)


@pytest.mark.parametrize("posts_per_second", [1, 7, 10, 64, 5000, 12_345])
def test_the_slots_of_a_second_share_its_budget_exactly_and_evenly(posts_per_second: int) -> None:
    shares = [share(posts_per_second, slot) for slot in range(1000 * spec.BUDGET_SLOTS_PER_SECOND,
                                                              1001 * spec.BUDGET_SLOTS_PER_SECOND)]
    assert sum(shares) == posts_per_second
    assert max(shares) - min(shares) <= 1


def test_a_slot_grants_its_share_and_no_more_then_the_next_slot_grants_again(client: Any, table: str) -> None:
    clock = Clock(1_800_000_000.0)
    budget = PostBudget(client, table, 50, clock)  # 5 posts a slot

    grants = [budget.take(2) for _ in range(4)]
    assert [g.posts for g in grants] == [2, 2, 1, 0]
    assert {g.until for g in grants} == {1_800_000_000.1}

    clock.now = 1_800_000_000.1  # the next slot
    assert budget.take(9).posts == 5
    clock.now = 1_800_000_000.95  # the last slot of the second
    assert budget.take(5).posts == 5
    assert budget.take(1).posts == 0


def test_functions_taking_at_once_are_granted_exactly_the_slots_share(client: Any, table: str) -> None:
    clock = Clock(1_800_000_100.0)
    budgets = [PostBudget(client, table, 2000, clock) for _ in range(8)]  # one per "function"; 200 a slot
    barrier = threading.Barrier(len(budgets))

    def take_until_refused(budget: PostBudget) -> int:
        barrier.wait()
        granted = 0
        while (grant := budget.take(7)).posts:
            granted += grant.posts
        return granted

    with ThreadPoolExecutor(len(budgets)) as pool:
        granted = list(pool.map(take_until_refused, budgets))
    assert sum(granted) == 200
    assert all(granted), granted  # ADD never conflicts: nobody was shut out by the others


def test_a_second_is_one_row_with_a_counter_a_slot_expiring_a_minute_after_it(
        client: Any, table: str, dynamodb: Any) -> None:
    clock = Clock(1_800_000_200.35)
    budget = PostBudget(client, table, 100, clock)
    budget.take(3)
    clock.now = 1_800_000_200.91
    budget.take(4)
    budget.take(2)
    key = f"{spec.BUDGET_PREFIX}1800000200"
    item = dynamodb.get_item(TableName=table, Key={spec.CONNECTION_ID: {"S": key}, spec.CHANNEL_ID: {"S": key}})
    assert {name: value for name, value in item["Item"].items() if name.startswith(spec.BUDGET_TAKEN)} == {
        f"{spec.BUDGET_TAKEN}3": {"N": "3"}, f"{spec.BUDGET_TAKEN}9": {"N": "6"}}
    assert item["Item"][spec.EXPIRES_AT] == {"N": str(1_800_000_200 + spec.BUDGET_ROW_SECONDS)}


def test_a_budget_under_ten_a_second_leaves_some_slots_empty_without_asking(table: str) -> None:
    class Refuses:
        def update_item(self, **_: Any) -> dict:
            raise AssertionError("a slot with no share asks nothing")

    budget = PostBudget(Refuses(), table, 3, Clock(1_800_000_300.0))  # the second's first slot
    assert [share(3, slot) for slot in range(10)] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert budget.take(1).posts == 0


# --- local mode: every fan-out path within the budget --------------------------------------

BUDGET = 40  # posts a second: 4 a slot
MEMBERS = 30


def test_every_fan_out_path_stays_within_the_budget_and_reaches_everyone() -> None:
    from websockets.sync.client import connect

    from channel_server.local.account import AccountQuota
    from channel_server.local.server import running
    from channel_server.publish import Publisher
    from support.local_mode import served_world

    world = served_world(heartbeat_seconds=2.0, server_publish=True)
    with running(port=0, world=world, heartbeat_seconds=2.0, server_publish=True, inline_fanout_limit=5,
                 posts_per_second=BUDGET, account_quota=BUDGET) as server:
        assert server.gateway is not None and server.publish_url is not None
        # the quota's bucket as AWS's, but holding a second's requests: a busy machine may hold posts back
        server.gateway.account = quota = AccountQuota(BUDGET, burst=BUDGET)
        with contextlib.ExitStack() as opened:
            members = [opened.enter_context(connect(server.url, open_timeout=30)) for _ in range(MEMBERS)]
            for n, ws in enumerate(members):
                ws.send(json.dumps({"type": "join", "channelId": "arena", "requestId": str(n)}))
                _next(ws, "joinSuccess")
            # a member's publish: 5 posts inline, the other 24 members in chunks to the fan-out function
            members[0].send(json.dumps({"type": "publish", "data": "from a member"}))
            # ... and a backend's, to all 30, while heartbeats go to all 30 every 2 s
            published = Publisher(server.publish_url, region=REGION).publish("arena", "from the backend")
            assert published.delivered + published.queued == MEMBERS, published
            for n, ws in enumerate(members):
                expected = {"from the backend"} | ({"from a member"} if n else set())
                received: set[str] = set()
                while received != expected:  # in either order, heartbeats between
                    received.add(json.loads(_next(ws, "message"))["data"])
        taken = Counter(quota.taken)
    assert quota.refused == 0, f"the management API throttled {quota.refused} requests"
    # the posts themselves: at least the two messages' 59, in as many seconds as the budget needs
    assert sum(taken.values()) >= 2 * MEMBERS - 1
    assert max(taken.values()) <= 2 * BUDGET, taken  # a second's rate and the bucket's burst, at most
    assert len(taken) >= (2 * MEMBERS - 1) // BUDGET, taken


def _next(ws: Any, kind: str | None, data: str | None = None, request_id: str | None = None) -> str:
    """The next frame of ``kind`` (with ``data``, answering ``request_id``),
    skipping heartbeats and the rest."""
    while True:
        text = ws.recv(timeout=60)
        frame = json.loads(text)
        if ((kind is None or frame.get("type") == kind) and (data is None or frame.get("data") == data)
                and (request_id is None or frame.get("requestId") == request_id)):
            return text


def test_without_the_budget_the_same_quota_throttles_a_fan_out() -> None:
    from websockets.sync.client import connect

    from channel_server.local.account import AccountQuota
    from channel_server.local.server import running

    # a budget far above the quota: posts are not held back, and the quota answers 429
    with running(port=0, posts_per_second=100 * BUDGET) as server:
        assert server.gateway is not None
        server.gateway.account = quota = AccountQuota(BUDGET, burst=BUDGET / 4)
        with contextlib.ExitStack() as opened:
            members = [opened.enter_context(connect(server.url, open_timeout=30)) for _ in range(MEMBERS)]
            for n, ws in enumerate(members):
                ws.send(json.dumps({"type": "join", "channelId": "arena", "requestId": str(n)}))
                _next(ws, "joinSuccess")
            members[0].send(json.dumps({"type": "publish", "data": "unpaced", "requestId": "p"}))
            _next(members[0], None, request_id="p")  # publishSuccess or publishFailure: retries may land
    assert quota.refused > 0


# --- a fan-out the budget makes late is handed on, not lost ------------------------------------


def test_members_whose_posts_cannot_start_in_time_are_handed_to_the_fanout_queue_and_reached_once(
    install_app: Any, world: Any, sqs: Any, queue_url: str, lambda_context: Any,  # noqa: F811
) -> None:
    install_app(**{spec.ENV_FANOUT_QUEUE_URL: queue_url, spec.ENV_POSTS_PER_SECOND: "20"})  # 2 posts a slot
    alice, others, sender_id = big_channel(world, 30)
    world.management.clear()
    # 2 s left: posts may start for 1 s (half the time left is kept for the reply), about 20 of the 29
    lambda_context.get_remaining_time_in_millis = lambda: 2_000

    alice.send({"type": "publish", "data": "late, not lost"})

    (reply,) = alice.frames()
    assert reply["type"] == "publishSuccess"
    # at most a second's budget and a slot's share started: the others were handed on
    assert reply["queued"] >= len(others) - 20 - 2, reply
    lambda_context.get_remaining_time_in_millis = lambda: 29_000
    assert run_fanout(world, queued(sqs, queue_url)) == [{}] * -(-reply["queued"] // spec.FANOUT_CHUNK_MEMBERS)
    for member in others:
        assert member.frames() == [message("big", sender_id, "late, not lost")]  # each exactly once
