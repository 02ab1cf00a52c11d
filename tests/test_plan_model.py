"""The planner's model against the code: a small workload driven through local mode makes
the requests ``plan.session_requests`` predicts for it, service by service.

Local mode runs the handlers as Lambda runs them (a process per function, the embedded
moto for DynamoDB and SQS, the event source mapping feeding the fan-out function), and
counts what they ask of each service: ``LocalServer.requests`` (DynamoDB and SQS, by
``X-Amz-Target``) and the management API's account quota (posts, by second). The workload:
twelve members of one channel and a connection that never joins; three publishes with an
inline limit of five, so each hands a chunk to the fan-out function through SQS; a member
that moves to another channel, one that disconnects between publishes, and the others'
$disconnects when local mode stops. With the planner's settings as local mode runs them:
once with the component's defaults, once with a sharded channel index and four posts in
flight.

Every request the embedded moto served is accounted for, so an unexpected one fails the
test. Two kinds are not the handlers' and are set aside, each counted: the test's own
(its reads of the budget's rows, counted at its client) and the poller's ``ReceiveMessage``
calls (local mode's stand-in for the event source mapping polls when a chunk is sent and
every second while idle, so their number depends on time; on AWS the mapping's long polls
are not one per chunk either). The mapping's ``DeleteMessageBatch`` is compared: one a chunk.

The budget's grants (``UpdateItem``) are the model's (a request per ``posts_in_flight``
posts of each fan-out part) unless places went unused: a lot of places is good for its
tenth of a second only, and one whose slot ended before its posts started (a busy machine)
costs a request more. The places asked for, summed from the budget's rows, say how many
went unused, so the test allows one request more for each of those and no more.

The test synchronises on frames and replies only. Everything a fan-out function does after
its last post (its chunk's claim finished, the mapping's delete) and the last $disconnects
are waited for by stopping local mode, which waits for every invocation under way; the
counters are read after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections import Counter
from typing import Any

import boto3
import pytest

from channel_server import plan
from channel_server.handlers import spec
from channel_server.local.placeholders import LOCAL_CREDENTIALS, REGION
from channel_server.local.program import from_component
from channel_server.local.server import running
from support.local_mode import served_world

#: Members of the channel; a publish's inline posts (the members beyond go in one chunk).
MEMBERS = 12
INLINE = 5
DYNAMODB = "DynamoDB_20120810."
SQS = "AmazonSQS."
GRANTS = DYNAMODB + "UpdateItem"
#: Requests local mode makes itself, on a schedule of its own: set aside.
LOCAL_MODES_OWN = (SQS + "ReceiveMessage",)


class Counted:
    """A boto3 client for local mode's DynamoDB whose own requests are counted by ``X-Amz-Target``."""

    def __init__(self, endpoint: str):
        self.client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION,
                                   aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        self.requests: Counter[str] = Counter()
        self.client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, request: Any, **_: Any) -> None:
        self.requests[request.headers["X-Amz-Target"].decode()] += 1


def next_frame(ws: Any, kind: str, **fields: Any) -> dict[str, Any]:
    """The next frame, which must be of ``kind`` (with ``fields``)."""
    frame = json.loads(ws.recv(timeout=60))
    assert frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()), (kind, fields, frame)
    return frame


def publish(publisher: Any, recipients: list[Any], channel: str, data: str) -> None:
    """Publish ``data``; wait for its reply (the members beyond the inline limit queued)
    and for every recipient's copy."""
    publisher.send(json.dumps({"type": "publish", "data": data, "requestId": data}))
    reply = next_frame(publisher, "publishSuccess", requestId=data)
    assert reply.get("queued", 0) == max(0, len(recipients) - INLINE), reply
    for ws in recipients:
        next_frame(ws, "message", channelId=channel, data=data)


def asked_places(client: Any, table: str) -> int:
    """Places asked of the account budget so far: every slot's counter in its rows."""
    asked = 0
    scan: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**scan)
        for item in page["Items"]:
            if item[spec.CONNECTION_ID]["S"].startswith(spec.BUDGET_PREFIX):
                asked += sum(int(value["N"]) for name, value in item.items() if name.startswith(spec.BUDGET_TAKEN))
        if "LastEvaluatedKey" not in page:
            return asked
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclasses.dataclass
class Run:
    """What one run of the workload made the services serve."""

    served: Counter[str]
    """By X-Amz-Target: the embedded moto's, less the test's own and local mode's own."""
    set_aside: Counter[str]
    posts: int
    refused: int
    asked: int
    """Places asked of the budget."""


def run_workload(world: Any) -> Run:
    """The workload of the module's docstring, in a local mode serving ``world``.
    Its channels are new (local mode's tables outlive it in this process)."""
    from websockets.sync.client import connect

    channel, elsewhere = f"arena-{uuid.uuid4().hex[:8]}", f"elsewhere-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running(port=0, world=world, inline_fanout_limit=INLINE))
        loop = server.loop
        assert loop is not None
        assert server.gateway is not None
        gateway, account = server.gateway, server.gateway.account
        ours = Counted(server.dynamodb_endpoint)
        asked_before = asked_places(ours.client, server.table_name)
        before, posts_before = server.requests, sum(account.taken.values())
        ours.requests.clear()  # from here on, the test's own requests are set aside
        members, ids = [], []
        for n in range(MEMBERS):
            known = set(gateway.connections)
            ws = stack.enter_context(connect(server.url, open_timeout=30, compression=None))
            ws.send(json.dumps({"type": "join", "channelId": channel, "requestId": f"j{n}"}))
            next_frame(ws, "joinSuccess", requestId=f"j{n}")
            (connection_id,) = set(gateway.connections) - known  # its join came in on it: it is listed
            members.append(ws)
            ids.append(connection_id)
        stack.enter_context(connect(server.url, open_timeout=30, compression=None))  # never joins
        # the first publish: 5 members posted inline, 6 queued in one chunk
        publish(members[0], members[1:], channel, "first")
        # one member moves to another channel, one disconnects (its $disconnect waited for)
        members[11].send(json.dumps({"type": "join", "channelId": elsewhere, "requestId": "move"}))
        next_frame(members[11], "joinSuccess", requestId="move")
        leaving = gateway.connections[ids[10]]
        members[10].close()
        asyncio.run_coroutine_threadsafe(leaving.finished.wait(), loop).result(timeout=60)
        # two publishes to the ten left: 5 inline, 4 queued
        left = members[:10]
        publish(left[1], [ws for ws in left if ws is not left[1]], channel, "second")
        publish(left[2], [ws for ws in left if ws is not left[2]], channel, "third")
        asked = asked_places(ours.client, server.table_name) - asked_before
    # local mode has stopped: every $disconnect and every fan-out invocation has finished
    served = server.requests - before - ours.requests
    set_aside = Counter({target: served.pop(target) for target in LOCAL_MODES_OWN if target in served})
    return Run(served, set_aside, sum(account.taken.values()) - posts_before, account.refused, asked)


#: The workload as the planner sees it: 13 connections, 12 joins and a move, three
#: publishes (11, 9 and 9 recipients), 12 joined $disconnects (one between publishes, the
#: others at the stop: ten in the channel, the one that moved) and the unjoined one.
SESSION = plan.Session(connects=MEMBERS + 1, joins=MEMBERS + 1, publishes=(MEMBERS - 1, 9, 9),
                       disconnects=MEMBERS, unjoined_disconnects=1)


def by_target(predicted: plan.SessionRequests) -> Counter[str]:
    """The prediction by X-Amz-Target, as local mode counts requests."""
    return +Counter({**{DYNAMODB + name: count for name, count in predicted.dynamodb.items()},
                     **{SQS + name: count for name, count in predicted.sqs.items()}})


CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "sharded": {"channel_index_shards": 4, "posts_in_flight": 4},
}


@pytest.mark.parametrize("case", list(CASES))
def test_local_mode_makes_the_requests_the_planner_predicts(case: str) -> None:
    args = CASES[case]
    # a table of its own for each world: the embedded moto's tables outlive a local mode in this process
    world = served_world() if not args else from_component("dev", name=f"plan-model-{case}", args=args)
    settings = dataclasses.replace(plan.default_settings(), inline_fanout_limit=INLINE, **args)
    # what the planner is asked about is what local mode serves
    environment = world.routes["publish"].environment
    assert environment[spec.ENV_INDEX_NAME] == (spec.CHANNEL_SHARD_INDEX if args else spec.CHANNEL_INDEX)
    assert settings.posts_per_second is not None
    predicted = plan.session_requests(SESSION, settings)
    expected = by_target(predicted)
    expected.pop(SQS + "ReceiveMessage")  # local mode's poller receives, on its own schedule
    # the model's grants: one a fan-out part (the inline posts, a chunk) at 64 posts in flight;
    # at 4, two for 5 or 6 posts and one for 4
    grants = expected.pop(GRANTS)
    assert grants == {"defaults": 6, "sharded": 2 + 2 + 2 * (2 + 1)}[case]

    run = run_workload(world)

    assert run.refused == 0
    assert run.posts == predicted.posts == sum(SESSION.publishes)
    assert run.set_aside[SQS + "ReceiveMessage"] >= predicted.sqs["ReceiveMessage"]
    taken = run.served.pop(GRANTS)
    assert run.served == expected, (
        f"served but not predicted {dict(run.served - expected)}, predicted but not served "
        f"{dict(expected - run.served)}")
    # the grants: the model's, unless places went unused (a lot whose slot ended before its
    # posts started, on a busy machine), each such lot costing one request more, at most
    wasted = run.asked - run.posts
    assert wasted >= 0 and taken * settings.posts_in_flight >= run.asked
    assert grants <= taken <= grants + wasted, (taken, grants, wasted)


def test_the_discrete_prediction_agrees_with_the_rate_model() -> None:
    """One publish a second of the session's first publish: the rate model's SQS requests a
    second are the discrete prediction's for one."""
    settings = dataclasses.replace(plan.default_settings(), inline_fanout_limit=INLINE, posts_in_flight=4)
    one = plan.session_requests(plan.Session(publishes=(MEMBERS - 1,)), settings)
    workload = plan.Workload(connections=MEMBERS, channels=1, members=MEMBERS, publishes_per_second=1.0,
                             message_bytes=SESSION.message_bytes)
    (sqs,) = [load.load for load in plan.plan(workload, settings).loads if load.resource == plan.SQS_ROW]
    assert sum(one.sqs.values()) == sqs == 3  # a send, a receive and a delete of one chunk
    # the sender's state, one Query page, the chunk's claim and finish; two grants for the
    # five inline posts and two for the chunk's six, at four posts in flight
    assert one.dynamodb == {"GetItem": 1, "Query": 1, "PutItem": 2, "UpdateItem": 4}
    assert one.posts == MEMBERS - 1
