"""DynamoDB requests per operation: a join and a $disconnect take two, a
publish two plus a query page per megabyte of members, and members found gone
are closed together in batches, with no read per member.

Each count is asserted against the capacity planner's table
(``channel_server.plan_figures.REQUESTS``), so the test checks the model the planner
prices and limits with. Counted twice over: with botocore's event hooks on a
boto3 client given to the app, and at the server, request by request, for the
handlers' own DynamoDB client (``handlers/awsjson.py``, what runs in Lambda)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
import pytest

from channel_server import plan_figures
from channel_server.handlers import handoff, protocol, spec
from channel_server.handlers.budget import PostBudget
from support.aws import FAKE_CREDENTIALS, REGION


class Counted:
    """A DynamoDB client whose requests are counted by operation (every HTTP
    request botocore sends, retries included)."""

    def __init__(self, endpoint: str):
        self.client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, **FAKE_CREDENTIALS)
        self.requests: Counter[str] = Counter()
        self.client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, request: Any, **_: Any) -> None:
        self.requests[request.headers["X-Amz-Target"].decode().rsplit(".", 1)[-1]] += 1

    def take(self) -> Counter[str]:
        taken, self.requests = self.requests, Counter()
        return taken


class CountedAtTheServer:
    """The requests the embedded DynamoDB received, by operation (support.faulty_dynamodb)."""

    def __init__(self, faults: Any):
        self._faults = faults

    def take(self) -> Counter[str]:
        taken = Counter(self._faults.requests)
        self._faults.clear()
        return taken


@pytest.fixture(params=["botocore hooks", "the handlers' own client"])
def counting(request: pytest.FixtureRequest, install_app: Any, embedded_dynamodb: Any, world: Any) -> Any:
    """``counting(**env)``: install an app with ``env`` in its environment whose
    DynamoDB requests are counted; returns the counter. Installed after the
    world's own app (which it replaces)."""

    def install(**env: str) -> Any:
        if request.param == "botocore hooks":
            counter = Counted(embedded_dynamodb.endpoint)
            install_app(dynamodb=counter.client, **env)
            return counter
        faults = request.getfixturevalue("dynamodb_faults")  # points the app's own client at the counting server
        install_app(dynamodb=None, **env)
        return CountedAtTheServer(faults)

    return install


@pytest.fixture
def counted(counting: Any) -> Any:
    return counting()


def test_a_join_takes_two_requests_first_time_and_after(counted: Counted, client: Any) -> None:
    alice = client()
    alice.join("lobby")
    assert counted.take() == plan_figures.REQUESTS["join"]
    alice.join("kitchen")
    assert counted.take() == plan_figures.REQUESTS["join"]


def test_a_disconnect_takes_two_requests_and_one_when_never_joined(counted: Counted, client: Any) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    counted.take()

    alice.disconnect()
    assert counted.take() == plan_figures.REQUESTS["disconnect"]
    bob.disconnect()
    assert counted.take() == plan_figures.REQUESTS["disconnect_unjoined"]


def test_a_publish_takes_two_requests(counted: Counted, client: Any) -> None:
    alice, bob, carol = client(), client(), client()
    for member in (alice, bob, carol):
        member.join("lobby")
    counted.take()

    alice.send({"type": "publish", "data": "hi"})

    assert counted.take() == plan_figures.publish_requests(2) == plan_figures.REQUESTS["publish"]


@pytest.mark.parametrize("gone", [1, 12, 13, 30])
def test_members_found_gone_are_closed_together_in_batches_without_a_read_each(
    gone: int, counted: Counted, client: Any, management: Any
) -> None:
    alice = client()
    alice.join("lobby")
    members = [client() for _ in range(gone + 2)]
    for member in members:
        member.join("lobby")
    management.gone.update(member.connection_id for member in members[:gone])
    counted.take()

    alice.send({"type": "publish", "data": "hi"})

    # two items per gone member (its tombstone, its membership's delete), 25 to a batch
    assert counted.take() == plan_figures.publish_requests(gone + 2, gone=gone)


def test_a_publish_with_history_keeps_its_message_first(counting: Any, client: Any) -> None:
    counted = counting(**{spec.ENV_HISTORY_SECONDS: "60"})
    alice, bob = client(), client()
    for member in (alice, bob):
        member.join("lobby")
    counted.take()

    alice.send({"type": "publish", "data": "hi"})

    assert counted.take() == plan_figures.publish_requests(1, history=True)


def test_with_heartbeats_a_connect_registers_and_a_run_reads_each_shard(counting: Any, client: Any, world: Any) -> None:
    counted = counting(**{spec.ENV_HEARTBEATS: "1"})
    alice, bob = client(), client()
    world.connect(alice.connection_id)
    assert counted.take() == plan_figures.REQUESTS["connect_heartbeats"]
    world.connect(bob.connection_id)
    for member in (alice, bob):
        member.join("lobby")
    counted.take()

    world.call("heartbeat", {"scheduledTime": "2026-12-08T00:00:00Z"})

    # one page of each heartbeat shard, and posts (no DynamoDB request) to both
    assert counted.take() == plan_figures.REQUESTS["heartbeat"]
    assert [frame["type"] for frame in alice.frames()][-1] == "heartbeat"


def test_a_fanout_chunk_is_claimed_and_its_claim_finished(counted: Any, client: Any, world: Any) -> None:
    alice, bob = client(), client()
    for member in (alice, bob):
        member.join("lobby")
    counted.take()
    frame = protocol.encode(protocol.message("lobby", protocol.new_sender_id(), "hi", protocol.new_message_id()))
    body = handoff.encode("lobby", [alice.connection_id, bob.connection_id], frame.decode("utf-8"))

    world.call("fanout", {"Records": [{"messageId": "chunk-1", "body": body}]})

    assert counted.take() == plan_figures.REQUESTS["chunk"]
    assert bob.frames()[-1]["data"] == "hi"


def test_a_budget_grant_takes_one_request(embedded_dynamodb: Any, world: Any) -> None:
    counter = Counted(embedded_dynamodb.endpoint)
    budget = PostBudget(counter.client, world.table, spec.DEFAULT_POSTS_PER_SECOND)

    grant = budget.take(spec.DEFAULT_POSTS_IN_FLIGHT)

    assert grant.posts > 0
    assert counter.take() == plan_figures.REQUESTS["grant"]
