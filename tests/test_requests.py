"""DynamoDB requests per operation: a join and a $disconnect take two, a
publish two plus a query page per megabyte of members, and members found gone
are closed together in batches, with no read per member.

Counted twice over: with botocore's event hooks on a boto3 client given to the
app, and at the server, request by request, for the handlers' own DynamoDB
client (``handlers/awsjson.py``, what runs in Lambda)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import boto3
import pytest

from channel_server.handlers import store
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
def counted(request: pytest.FixtureRequest, install_app: Any, embedded_dynamodb: Any, world: Any) -> Any:
    """Installed after the world's own app (which it replaces)."""
    if request.param == "botocore hooks":
        counter = Counted(embedded_dynamodb.endpoint)
        install_app(dynamodb=counter.client)
        return counter
    faults = request.getfixturevalue("dynamodb_faults")  # points the app's own client at the counting server
    install_app(dynamodb=None)
    return CountedAtTheServer(faults)


def test_a_join_takes_two_requests_first_time_and_after(counted: Counted, client: Any) -> None:
    alice = client()
    alice.join("lobby")
    assert counted.take() == {"GetItem": 1, "TransactWriteItems": 1}
    alice.join("kitchen")
    assert counted.take() == {"GetItem": 1, "TransactWriteItems": 1}


def test_a_disconnect_takes_two_requests_and_one_when_never_joined(counted: Counted, client: Any) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    counted.take()

    alice.disconnect()
    assert counted.take() == {"PutItem": 1, "DeleteItem": 1}
    bob.disconnect()
    assert counted.take() == {"PutItem": 1}


def test_a_publish_takes_two_requests(counted: Counted, client: Any) -> None:
    alice, bob, carol = client(), client(), client()
    for member in (alice, bob, carol):
        member.join("lobby")
    counted.take()

    alice.send({"type": "publish", "data": "hi"})

    assert counted.take() == {"GetItem": 1, "Query": 1}


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
    batches = math.ceil(2 * gone / store.BATCH_LIMIT)
    assert counted.take() == {"GetItem": 1, "Query": 1, "BatchWriteItem": batches}
