"""What the channel server must never do, checked against what it really does:

- grant its functions more than they use (IAM, per function, exact: every AWS
  call the handlers make is recorded and compared with the component's
  policies);
- show a connection id to a client (local mode, real sockets);
- hand out guessable senderIds;
- log message data;
- take where to post or what table to use from the event instead of from its
  configuration.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import re
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import boto3
import pulumi_aws as aws
import pytest

import channel_server.handlers
from channel_server import ChannelServer
from channel_server.policies import trust_policy
from channel_server.handlers import protocol, spec
from channel_server.handlers.events import WebSocketEvent
from channel_server.handlers.store import Store
from channel_server.mocks import Deployment, deploy
from channel_server.resource_types import (API, FUNCTION, FUNCTION_URL, INTEGRATION, LOG_GROUP, MANAGED_POLICY, MAPPING,
                                         ROLE, ROLE_POLICY, ROLE_POLICY_ATTACHMENT, ROUTE, SCHEDULE, STAGE, TABLE)
from support.aws import FAKE_CREDENTIALS, REGION, fake_aws_environment
from support.events import event, new_connection_id, url_event
from support.lambda_world import OK, LambdaWorld, answered, lambda_world, product_management_client
from support.management import FakeManagementApi

SENDER_ID = re.compile(r"[A-Za-z0-9_-]{22}")

ROUTE_KEYS = [route.key for route in spec.ROUTES]


# --- recording what the handlers call ------------------------------------------------------

#: TransactWriteItems is authorized item by item, as these actions.
TRANSACT_ITEM_ACTIONS = {"Put": "PutItem", "Delete": "DeleteItem", "Update": "UpdateItem",
                         "ConditionCheck": "ConditionCheckItem"}
#: IAM resources, named by what they are to this stack.
ON_TABLE, ON_INDEX, ON_CONNECTIONS, ON_OWN_LOGS = "table", "index", "POST @connections/*", "own log group"
ON_QUEUE = "fan-out queue"
ON_HEARTBEAT_INDEX = "heartbeat index"
#: The deployment these tests read has heartbeats on, so every function that
#: can be built is: $connect then registers connections.
HEARTBEAT_MINUTES = 5
HISTORY_SECONDS = 60
LOG_GRANTS = {("logs:CreateLogStream", ON_OWN_LOGS), ("logs:PutLogEvents", ON_OWN_LOGS)}
#: What Lambda's event source mapping does with the fan-out function's role
#: (the handler never calls these itself).
MAPPING_GRANTS = {("sqs:ReceiveMessage", ON_QUEUE), ("sqs:DeleteMessage", ON_QUEUE),
                  ("sqs:GetQueueAttributes", ON_QUEUE)}


class CallRecorder:
    """Records every API call of the clients it is attached to (botocore's
    ``provide-client-params`` event, or the management client's posts),
    labelled with the entry point running."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str, str, dict]] = []
        self._entry: str | None = None
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params", self._record)
        return client

    def attach_management(self, api: Any) -> Any:
        """Record the posts of the handlers' own management API client (it
        has no botocore events): each is a PostToConnection."""
        attempt = api.attempt

        async def recorded(connection_id: str, payload: bytes) -> Any:
            with self._lock:
                self.calls.append((self._entry, "apigatewaymanagementapi", "PostToConnection",
                                   {"ConnectionId": connection_id}))
            return await attempt(connection_id, payload)

        api.attempt = recorded
        return api

    def attach_own(self, client: Any, service: str) -> Any:
        """Record the calls of one of the handlers' own AWS JSON clients."""
        call = client.call

        def recorded(operation: str, params: Any) -> Any:
            with self._lock:
                self.calls.append((self._entry, service, operation, json.loads(json.dumps(params))))
            return call(operation, params)

        client.call = recorded
        return client

    def _record(self, params: dict, model: Any, **_: Any) -> None:
        with self._lock:  # fan-out posts come from worker threads
            self.calls.append((self._entry, model.service_model.service_name, model.name, json.loads(json.dumps(params, default=repr))))

    @contextlib.contextmanager
    def entry(self, name: str) -> Iterator[None]:
        self._entry = name
        try:
            yield
        finally:
            self._entry = None

    def tables(self) -> set[str]:
        names = set()
        for _, service, operation, params in self.calls:
            if service != "dynamodb":
                continue
            if operation == "TransactWriteItems":
                names |= {body["TableName"] for item in params["TransactItems"] for body in item.values()}
            elif operation == "BatchWriteItem":
                names |= set(params["RequestItems"])
            else:
                names.add(params["TableName"])
        return names


def iam_needs(service: str, operation: str, params: dict, table: str, index: str, queue_url: str) -> set[tuple[str, str]]:
    """The (IAM action, resource) pairs one API call needs."""

    def on_table(name: str) -> str:
        return ON_TABLE if name == table else f"table {name}"

    if service == "sqs":
        # SendMessageBatch is authorised as SendMessage
        action = {"SendMessageBatch": "SendMessage"}.get(operation, operation)
        return {(f"sqs:{action}", ON_QUEUE if params["QueueUrl"] == queue_url else params["QueueUrl"])}
    if service == "apigatewaymanagementapi":
        method = {"PostToConnection": "POST", "GetConnection": "GET", "DeleteConnection": "DELETE"}[operation]
        return {("execute-api:ManageConnections", f"{method} @connections/*")}
    assert service == "dynamodb", service
    if operation == "TransactWriteItems":
        return {
            (f"dynamodb:{TRANSACT_ITEM_ACTIONS[kind]}", on_table(body["TableName"]))
            for item in params["TransactItems"]
            for kind, body in item.items()
        }
    if operation == "BatchWriteItem":
        return {("dynamodb:BatchWriteItem", on_table(name)) for name in params["RequestItems"]}
    if params.get("IndexName"):
        ours = {index: ON_INDEX, spec.HEARTBEAT_INDEX: ON_HEARTBEAT_INDEX} if params["TableName"] == table else {}
        name = ours.get(params["IndexName"], f"index {params['TableName']}/{params['IndexName']}")
        return {(f"dynamodb:{operation}", name)}
    return {(f"dynamodb:{operation}", on_table(params["TableName"]))}


def recording_dynamodb(endpoint: str, recorder: CallRecorder) -> Any:
    return recorder.attach(
        boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, **FAKE_CREDENTIALS)
    )


def drive_every_code_path(world: LambdaWorld, recorder: CallRecorder, take_chunks: Any) -> None:
    """Each entry point down each of its paths, with the replies that show the
    path was really taken. The world's inline fan-out limit is 2;
    ``take_chunks()`` takes what its fan-out queue holds."""
    alice, bob, carol, dave, leaver, stranger = (new_connection_id() for _ in range(6))
    m = world.management

    def types(connection_id: str) -> list[str]:
        return [frame["type"] for frame in m.frames(connection_id)]

    with recorder.entry("connect"):
        assert world.connect(alice) == OK  # registered for heartbeats
    with recorder.entry("disconnect"):
        world.disconnect(leaver)  # before its join below arrives
    with recorder.entry("join"):
        world.send(alice, '{"type":"join","channelId":"lobby"}')  # first join
        world.send(alice, '{"type":"join","channelId":"lobby"}')  # rejoin, same channel
        world.send(alice, '{"type":"join","channelId":"kitchen"}')  # rejoin, other channel
        world.send(alice, '{"type":"join","channelId":"$reserved"}')  # invalid
        world.send(alice, '{"type":"ping"}', route="join")  # not a join at all
        world.send(leaver, '{"type":"join","channelId":"lobby"}')  # after its $disconnect: writes nothing
        world.send(bob, '{"type":"join","channelId":"lobby"}')
        world.send(carol, '{"type":"join","channelId":"lobby"}')
        world.send(dave, '{"type":"join","channelId":"lobby"}')
    assert types(alice) == ["joinSuccess", "joinSuccess", "joinSuccess", "joinFailure", "error"]
    assert types(leaver) == ["joinFailure"]
    assert [r["channelId"] for r in world.rows() if r["connectionId"] == leaver] == [spec.STATE_ROW_PREFIX + leaver]
    with recorder.entry("publish"):
        world.send(stranger, '{"type":"publish","data":1}')  # not joined
        world.send(alice, '{"type":"publish","data":2}')  # alone in kitchen
        world.send(bob, '{"type":"publish","data":3}')  # to carol and dave
        world.send(bob, '{"type":"publish"}')  # no data
        world.send(bob, json.dumps({"type": "publish", "data": "x" * 140_000}))  # over the limit
        m.gone.add(carol)
        m.faults[dave] = (403, "ForbiddenException")
        world.send(bob, '{"type":"publish","data":4}')  # carol gone: her rows go; dave refuses
    assert types(stranger) == ["publishFailure"]
    assert types(bob) == ["joinSuccess", "publishSuccess", "publishFailure", "publishFailure", "publishFailure"]
    assert m.frames(bob)[-1]["failed"] == 1
    assert types(carol) == ["joinSuccess", "message"] and m.statuses(carol)[-1] == 410
    assert [r["channelId"] for r in world.rows() if r["connectionId"] == carol] == [spec.STATE_ROW_PREFIX + carol]
    resumer = new_connection_id()
    with recorder.entry("join"):  # resumes from before the channel's first message: its kept ones come first
        world.send(resumer, '{"type":"join","channelId":"lobby","since":"000000000000-0000000000000000"}')
    assert types(resumer) == ["message", "message", "joinSuccess"]
    crowd = [new_connection_id() for _ in range(4)]
    with recorder.entry("join"):
        for connection_id in crowd:
            world.join(connection_id, "crowd")
    with recorder.entry("publish"):
        world.send(crowd[0], '{"type":"publish","data":5}')  # 3 others: 2 posted, 1 queued
    assert m.frames(crowd[0])[-1] == {"type": "publishSuccess", "queued": 1}
    chunks = take_chunks()
    (queued,) = json.loads(chunks[0]["Body"].partition("\n")[0])["connectionIds"]
    m.gone.add(queued)
    with recorder.entry("fanout"):
        world.call("fanout", {"Records": [
            {"messageId": c["MessageId"], "receiptHandle": c["ReceiptHandle"], "body": c["Body"]} for c in chunks]})
    assert m.statuses(queued) == [410]  # the queued message found it gone (its join reply was no post)
    with recorder.entry("fanout"):  # SQS hands the posted chunks over again: nothing is posted twice
        world.call("fanout", {"Records": [
            {"messageId": c["MessageId"], "receiptHandle": c["ReceiptHandle"], "body": c["Body"]} for c in chunks]})
    assert m.statuses(queued) == [410]
    # a backend's publish to newsroom: 2 posted (both found gone), 1 queued
    newsroom = [new_connection_id() for _ in range(3)]
    with recorder.entry("join"):
        for connection_id in newsroom:
            world.join(connection_id, "newsroom")
    m.gone.update(newsroom)
    request = url_event({"channelId": "newsroom", "data": 6, "idempotencyKey": "sec-1"})
    with recorder.entry("server_publish"):
        first = world.app.server_publish(request, world.context)  # claims the key, records the outcome
        again = world.app.server_publish(request, world.context)  # reads the first outcome
        with pytest.MonkeyPatch.context() as patch:  # fails before its first post: frees its key
            patch.setattr(world.app.store, "members", lambda channel: 1 / 0)
            failed = world.app.server_publish(url_event({"channelId": "newsroom", "data": 7, "idempotencyKey": "sec-2"}),
                                              world.context)
    assert [a["statusCode"] for a in (first, again, failed)] == [200, 200, 500]
    assert json.loads(first["body"]) == {"delivered": 0, "failed": 0, "queued": 1}
    assert len(take_chunks()) == 1  # the queued member's chunk, taken
    with recorder.entry("disconnect"):
        for connection_id in newsroom:
            world.disconnect(connection_id)
    with recorder.entry("ping"):
        world.send(alice, '{"type":"ping"}')
        world.send(stranger, '{"type":"ping","data":{"t":1}}')
    with recorder.entry("default"):
        world.send(alice, "not json")
        world.send(alice, '{"type":"dance"}')
        world.send(alice, '{"type":"join","channelId":"lobby"}', route="$default")
    assert types(alice)[5:] == ["publishSuccess", "pong", "error", "error", "error"]
    with recorder.entry("disconnect"):
        world.disconnect(alice)  # joined
        world.disconnect(stranger)  # never joined
        world.disconnect(alice)  # a second time
    assert [r["channelId"] for r in world.rows() if r["connectionId"] == alice] == [spec.STATE_ROW_PREFIX + alice]
    # heartbeats: the live connections are bob, dave, the resumer and the crowd
    # but the one its queued message found gone; 2 are posted inline, 4 queued, and all of
    # them are found gone, so closed
    live = [r["connectionId"] for r in world.rows()
            if r["channelId"].startswith(spec.STATE_ROW_PREFIX) and spec.CLOSED_AT not in r]
    assert sorted(live) == sorted({bob, dave, resumer, *crowd} - {queued})
    m.gone.update(live)
    with recorder.entry("heartbeat"):
        summary = world.call("heartbeat", {"source": "channel-server.heartbeat", "scheduledTime": "2026-11-26T12:00:00Z"})
    assert summary == {"connections": 6, "delivered": 0, "gone": 2, "failed": 0, "queued": 4}, summary
    chunks = take_chunks()
    assert len(json.loads(chunks[0]["Body"].partition("\n")[0])["connectionIds"]) == 4
    with recorder.entry("fanout"):
        world.call("fanout", {"Records": [
            {"messageId": c["MessageId"], "receiptHandle": c["ReceiptHandle"], "body": c["Body"]} for c in chunks]})
    members = {r["connectionId"] for r in world.rows() if not r["channelId"].startswith("$")}
    assert not members & set(live), "connections a heartbeat found gone are closed, inline or queued"


@pytest.fixture(scope="module")
def observed(dynamodb: Any, table_definition: Any, embedded_dynamodb: Any) -> dict[str, set[tuple[str, str]]]:
    """(IAM action, resource) pairs each entry point was seen to need."""
    from channel_server.handlers import handoff

    recorder = CallRecorder()
    sqs = boto3.client("sqs", endpoint_url=embedded_dynamodb.endpoint, region_name=REGION, **FAKE_CREDENTIALS)
    queue_url = sqs.create_queue(QueueName="security-fanout")["QueueUrl"]

    def take_chunks() -> list[dict]:
        return sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])

    with fake_aws_environment(), pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_SQS", embedded_dynamodb.endpoint)
        queue = handoff.queue(queue_url)
    recorder.attach_own(queue._client, "sqs")
    try:
        with lambda_world(
            dynamodb,
            table_definition,
            env={spec.ENV_FANOUT_QUEUE_URL: queue_url, spec.ENV_INLINE_FANOUT_LIMIT: "2", spec.ENV_HEARTBEATS: "1",
                 spec.ENV_HISTORY_SECONDS: str(HISTORY_SECONDS),
                 spec.ENV_POSTS_PER_SECOND: str(spec.DEFAULT_POSTS_PER_SECOND)},
            app_dynamodb=recording_dynamodb(embedded_dynamodb.endpoint, recorder),
            app_management=lambda endpoint: recorder.attach_management(product_management_client(endpoint)),
            app_queue=queue,
        ) as world:
            drive_every_code_path(world, recorder, take_chunks)
            table, index = world.environ[spec.ENV_TABLE_NAME], world.environ[spec.ENV_INDEX_NAME]
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
    needs: dict[str, set[tuple[str, str]]] = {
        f.function: set() for f in (*spec.ROUTES, spec.FANOUT, spec.HEARTBEAT, spec.SERVER_PUBLISH)}
    for entry, service, operation, params in recorder.calls:
        assert entry is not None, f"{operation} made outside any entry point"
        needs[entry] |= iam_needs(service, operation, params, table, index, queue_url)
    return needs


@pytest.fixture(scope="module")
def deployed() -> Deployment:
    def program() -> None:
        server = ChannelServer("sec", {"heartbeat_interval_minutes": HEARTBEAT_MINUTES, "server_publish": True,
                                       "history_seconds": HISTORY_SECONDS})
        server.grant_publish(aws.iam.Role("backend", assume_role_policy=trust_policy("ecs-tasks.amazonaws.com")))

    return deploy(program)


def _one(resources: list, what: str) -> Any:
    assert len(resources) == 1, f"expected one {what}, found {len(resources)}"
    return resources[0]


def route_function(deployment: Deployment, route_key: str) -> Any:
    """The function API Gateway invokes for ``route_key``, following the wiring."""
    route = _one([r for r in deployment.of_type(ROUTE) if r["routeKey"] == route_key], f"route {route_key}")
    integration = deployment.by_id(route["target"].removeprefix("integrations/"), INTEGRATION)
    return _one([f for f in deployment.of_type(FUNCTION) if f["invokeArn"] == integration["integrationUri"]], "function")


def function_policy(deployment: Deployment, function: Any) -> tuple[list[dict], Any]:
    """The statements of the function's role policy, and its log group."""
    role = _one([r for r in deployment.of_type(ROLE) if r["arn"] == function["role"]], "role")
    policy = _one([p for p in deployment.of_type(ROLE_POLICY) if p["role"] == role.id], "role policy")
    log_group = _one([g for g in deployment.of_type(LOG_GROUP) if g["name"] == function["loggingConfig"]["logGroup"]], "log group")
    return json.loads(policy["policy"])["Statement"], log_group


def resource_names(deployment: Deployment, log_group: Any) -> dict[str, str]:
    """This stack's ARNs a function may be granted, by what they are."""
    table_arn = deployment.one(TABLE)["arn"]
    execution_arn = deployment.one(API)["executionArn"]
    stage = deployment.one(STAGE)["name"]
    return {
        table_arn: ON_TABLE,
        f"{table_arn}/index/{spec.CHANNEL_INDEX}": ON_INDEX,
        f"{table_arn}/index/{spec.HEARTBEAT_INDEX}": ON_HEARTBEAT_INDEX,
        f"{execution_arn}/{stage}/POST/@connections/*": ON_CONNECTIONS,
        f"{log_group['arn']}:*": ON_OWN_LOGS,
        deployment.one(MAPPING)["eventSourceArn"]: ON_QUEUE,
    }


def granted_to(deployment: Deployment, function: Any) -> set[tuple[str, str]]:
    """(IAM action, resource by what it is) pairs the function's policy grants."""
    statements, log_group = function_policy(deployment, function)
    names = resource_names(deployment, log_group)
    return {
        (action, names.get(resource, f"foreign {resource}"))
        for statement in statements
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    }


def fanout_function(deployment: Deployment) -> Any:
    """The function the event source mapping invokes."""
    mapping = deployment.one(MAPPING)
    return _one([f for f in deployment.of_type(FUNCTION) if f["arn"] == mapping["functionName"]], "function")


def heartbeat_function(deployment: Deployment) -> Any:
    """The function the heartbeat schedule invokes."""
    target = deployment.one(SCHEDULE)["target"]
    return _one([f for f in deployment.of_type(FUNCTION) if f["arn"] == target["arn"]], "function")


def server_publish_function(deployment: Deployment) -> Any:
    """The function the server publish endpoint (a function URL) invokes."""
    (url,) = deployment.of_type(FUNCTION_URL)
    return _one([f for f in deployment.of_type(FUNCTION) if f["name"] == url["functionName"]], "function")


def _as_list(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("route_key", ROUTE_KEYS)
def test_each_route_is_granted_exactly_what_its_handler_was_seen_to_call(
    route_key: str, deployed: Deployment, observed: dict[str, set[tuple[str, str]]]
) -> None:
    function = route_function(deployed, route_key)
    granted = granted_to(deployed, function)
    entry_point = function["handler"].removeprefix(spec.HANDLER_MODULE + ".")

    assert granted == observed[entry_point] | LOG_GRANTS


def test_the_fanout_function_is_granted_what_it_was_seen_to_call_and_what_its_queue_mapping_needs(
    deployed: Deployment, observed: dict[str, set[tuple[str, str]]]
) -> None:
    function = fanout_function(deployed)
    granted = granted_to(deployed, function)

    assert function["handler"] == spec.FANOUT.handler
    assert granted == observed["fanout"] | LOG_GRANTS | MAPPING_GRANTS


def test_the_heartbeat_function_is_granted_exactly_what_it_was_seen_to_call(
    deployed: Deployment, observed: dict[str, set[tuple[str, str]]]
) -> None:
    function = heartbeat_function(deployed)
    assert function["handler"] == spec.HEARTBEAT.handler
    assert granted_to(deployed, function) == observed["heartbeat"] | LOG_GRANTS


def test_the_server_publish_function_is_granted_exactly_what_it_was_seen_to_call(
    deployed: Deployment, observed: dict[str, set[tuple[str, str]]]
) -> None:
    (url,) = deployed.of_type(FUNCTION_URL)
    function = server_publish_function(deployed)
    assert (function["handler"], url["authorizationType"]) == (spec.SERVER_PUBLISH.handler, "AWS_IAM")
    assert granted_to(deployed, function) == observed["server_publish"] | LOG_GRANTS


def test_granting_publish_attaches_a_policy_that_allows_only_invoking_that_function_through_its_url(
        deployed: Deployment) -> None:
    function = server_publish_function(deployed)
    (callers,) = deployed.of_type(MANAGED_POLICY)
    assert json.loads(callers["policy"])["Statement"] == [
        {"Effect": "Allow", "Action": ["lambda:InvokeFunctionUrl"], "Resource": [function["arn"]],
         "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}},
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [function["arn"]],
         "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}},
    ]
    (attachment,) = deployed.of_type(ROLE_POLICY_ATTACHMENT)
    backend = deployed.by_name("backend")
    assert (attachment["role"], attachment["policyArn"]) == (backend["name"], callers["arn"])


def test_the_scheduler_may_invoke_only_the_heartbeat_function_and_only_for_this_account(deployed: Deployment) -> None:
    schedule = deployed.one(SCHEDULE)
    function = heartbeat_function(deployed)
    role = _one([r for r in deployed.of_type(ROLE) if r["arn"] == schedule["target"]["roleArn"]], "scheduler role")
    (trust,) = json.loads(role["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": function["arn"].split(":")[4]}}
    (policy,) = [p for p in deployed.of_type(ROLE_POLICY) if p["role"] == role.id]
    assert json.loads(policy["policy"])["Statement"] == [
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [function["arn"]]}]


def test_the_observed_calls_are_the_ones_each_entry_point_needs(observed: dict[str, set[tuple[str, str]]]) -> None:
    # pinned as literals, so a handler that starts calling something new is seen here
    # every post first takes its place in the account budget (UpdateItem of a row of the table)
    posts = {("execute-api:ManageConnections", ON_CONNECTIONS), ("dynamodb:UpdateItem", ON_TABLE)}
    assert observed == {
        # with heartbeats on, $connect registers the connection (without: nothing)
        "connect": {("dynamodb:PutItem", ON_TABLE)},
        "disconnect": {("dynamodb:PutItem", ON_TABLE), ("dynamodb:DeleteItem", ON_TABLE)},
        # with history on, a resuming join reads the kept messages (a Query on the table) and posts them
        "join": {("dynamodb:GetItem", ON_TABLE), ("dynamodb:PutItem", ON_TABLE), ("dynamodb:DeleteItem", ON_TABLE),
                 ("dynamodb:Query", ON_TABLE)} | posts,
        # with history on, a publish keeps its message (PutItem) before the fan-out
        "publish": {("dynamodb:GetItem", ON_TABLE), ("dynamodb:PutItem", ON_TABLE), ("dynamodb:Query", ON_INDEX),
                    ("dynamodb:BatchWriteItem", ON_TABLE), ("sqs:SendMessage", ON_QUEUE)} | posts,
        # a queued chunk: claimed, posted, the members found gone removed, the claim
        # finished; one handed over again reads its claim (GetItem) and is skipped
        # (a heartbeat's chunk names no channel: its gone members are closed, PutItem and DeleteItem)
        "fanout": {("dynamodb:PutItem", ON_TABLE), ("dynamodb:GetItem", ON_TABLE), ("dynamodb:BatchWriteItem", ON_TABLE),
                   ("dynamodb:DeleteItem", ON_TABLE)} | posts,
        # lists the live connections, posts, queues the rest, closes the gone
        "heartbeat": {("dynamodb:Query", ON_HEARTBEAT_INDEX), ("dynamodb:PutItem", ON_TABLE),
                      ("dynamodb:DeleteItem", ON_TABLE), ("sqs:SendMessage", ON_QUEUE)} | posts,
        # claims a key, reads the first outcome, records one, frees a key; lists,
        # posts, removes the gone, queues the rest
        "server_publish": {("dynamodb:PutItem", ON_TABLE), ("dynamodb:GetItem", ON_TABLE),
                           ("dynamodb:DeleteItem", ON_TABLE), ("dynamodb:Query", ON_INDEX),
                           ("dynamodb:BatchWriteItem", ON_TABLE), ("sqs:SendMessage", ON_QUEUE)} | posts,
        # replies are route responses: only a publish's fan-out posts
        "ping": set(),
        "default": set(),
    }


def test_no_policy_statement_has_a_wildcard_or_names_anything_outside_its_own_function(deployed: Deployment) -> None:
    policies = deployed.of_type(ROLE_POLICY)
    functions = {**{key: route_function(deployed, key) for key in ROUTE_KEYS}, "fanout": fanout_function(deployed),
                 "heartbeat": heartbeat_function(deployed), "server_publish": server_publish_function(deployed)}
    assert len(policies) == len(functions) + 1  # and the scheduler's role's (tested above)
    for route_key, function in functions.items():
        statements, log_group = function_policy(deployed, function)
        allowed = resource_names(deployed, log_group)
        for statement in statements:
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement  # no NotAction/NotResource
            assert statement["Effect"] == "Allow"
            for action in _as_list(statement["Action"]):
                assert "*" not in action, (route_key, action)
            for resource in _as_list(statement["Resource"]):
                assert resource != "*", route_key
                assert resource in allowed, (route_key, resource)


def test_roles_get_nothing_beyond_their_one_inline_policy(deployed: Deployment) -> None:
    iam_types = {r.type for r in deployed.resources if r.type.startswith("aws:iam/")}
    # besides: the callers' managed policy, and its one attachment, to the role grant_publish was given
    assert iam_types == {ROLE, ROLE_POLICY, MANAGED_POLICY, ROLE_POLICY_ATTACHMENT}
    (attachment,) = deployed.of_type(ROLE_POLICY_ATTACHMENT)
    assert attachment["role"] == deployed.by_name("backend")["name"]
    for role in deployed.of_type(ROLE):
        assert not role.inputs.get("managedPolicyArns"), role.name
        assert not role.inputs.get("inlinePolicies"), role.name


# --- connection ids never reach a client (local mode) ------------------------------------------


class Socket:
    """A WebSocket client that keeps every text frame it receives, as received."""

    def __init__(self, url: str):
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, open_timeout=5))
        self.received: list[str] = []

    def send(self, frame: Any) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self) -> dict:
        text = self.ws.recv(timeout=5)
        assert isinstance(text, str)  # the server sends text frames only
        self.received.append(text)
        return json.loads(text)

    def request(self, frame: Any) -> dict:
        self.send(frame)
        return self.recv()

    def drain(self) -> None:
        """Everything still on its way, up to the answer of one more ping."""
        self.send({"type": "ping", "data": "last"})
        while self.recv() != {"type": "pong", "data": "last"}:
            pass

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module")
def local_server() -> Iterator[Any]:
    from channel_server.local.server import running
    from support.local_mode import served_world

    with running(port=0, world=served_world()) as server:
        yield server


def test_no_frame_any_client_receives_contains_a_connection_id(local_server: Any) -> None:
    server = local_server
    sockets = [Socket(server.url) for _ in range(5)]
    try:
        alice, bob, carol, dave, eve = sockets
        for socket in sockets:  # a round trip each: every connection is registered
            assert socket.request({"type": "ping"}) == {"type": "pong"}
        issued = set(server.gateway.connections)
        assert len(issued) == len(sockets)

        assert dave.request({"type": "publish", "data": "anyone?"})["type"] == "publishFailure"
        assert alice.request({"type": "join", "channelId": "lobby"})["type"] == "joinSuccess"
        assert bob.request({"type": "join", "channelId": "lobby"})["type"] == "joinSuccess"
        assert carol.request({"type": "join", "channelId": "kitchen"})["type"] == "joinSuccess"
        assert eve.request({"type": "join", "channelId": "lobby"})["type"] == "joinSuccess"
        assert carol.request({"type": "join", "channelId": "$reserved"})["type"] == "joinFailure"
        assert carol.request({"type": "join", "channelId": "x" * 129})["type"] == "joinFailure"
        issued |= {row[spec.CONNECTION_ID]["S"] for row in _scan(server)}
        assert alice.request({"type": "publish", "data": {"hello": "lobby"}}) == {"type": "publishSuccess"}
        assert bob.recv()["type"] == "message" and eve.recv()["type"] == "message"
        assert bob.request({"type": "join", "channelId": "kitchen"})["type"] == "joinSuccess"  # rejoin elsewhere
        assert carol.request({"type": "publish", "data": [1, 2]}) == {"type": "publishSuccess"}
        assert bob.recv()["type"] == "message"
        for malformed in ("not json", "{}", '{"type":5}', '{"type":"dance"}', "[1]", '{"type":"publish"}', ""):
            assert dave.request(malformed)["type"] in ("error", "publishFailure")
        assert alice.request({"type": "ping", "data": {"t": 1}}) == {"type": "pong", "data": {"t": 1}}
        assert bob.request({"type": "join", "channelId": "lobby"})["type"] == "joinSuccess"  # and back
        eve.close()  # gone without a word; alice's publish reaches bob only
        assert alice.request({"type": "publish", "data": "bye"}) == {"type": "publishSuccess"}
        assert bob.recv()["data"] == "bye"
        for socket in sockets[:-1]:
            socket.drain()
    finally:
        for socket in sockets:
            socket.close()

    received = [text for socket in sockets for text in socket.received]
    assert len(received) >= 30
    for text in received:
        frame = json.loads(text)
        assert "type" in frame, f"API Gateway's own error frame reached a client: {text}"
        for connection_id in issued:
            for form in (connection_id, connection_id.rstrip("="), quote(connection_id, safe="")):
                assert form not in text, f"{text} contains connection id {connection_id}"


def _scan(server: Any) -> list[dict]:
    client = boto3.client("dynamodb", endpoint_url=server.dynamodb_endpoint, region_name=REGION,
                          aws_access_key_id="local", aws_secret_access_key="local")
    return client.scan(TableName=server.table_name, ConsistentRead=True)["Items"]


# --- senderIds ------------------------------------------------------------------------------------


def test_a_sender_id_is_exactly_what_secrets_token_urlsafe_makes_of_16_or_more_bytes(
    world: LambdaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    real = secrets.token_urlsafe
    calls: list[tuple[tuple, dict]] = []
    made: list[str] = []

    def spy(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(secrets, "token_urlsafe", spy)
    sender_id = protocol.new_sender_id()
    joined = world.join(new_connection_id(), "lobby")

    assert [sender_id, joined] == made
    for args, kwargs in calls:
        assert (args[0] if args else kwargs.get("nbytes", secrets.DEFAULT_ENTROPY)) >= 16
    assert SENDER_ID.fullmatch(sender_id) and SENDER_ID.fullmatch(joined)


def test_two_hundred_real_joins_get_two_hundred_distinct_sender_ids(world: LambdaWorld) -> None:
    connections = [new_connection_id() for _ in range(50)]
    sender_ids = [world.join(connection_id, channel) for channel in ("lobby", "lobby", "kitchen", "lobby")
                  for connection_id in connections]

    assert len(sender_ids) == 200
    assert len(set(sender_ids)) == 200
    assert all(SENDER_ID.fullmatch(sender_id) for sender_id in sender_ids)
    assert not set(sender_ids) & set(connections)


# --- logs -------------------------------------------------------------------------------------------

MARKER = "m4rker-" + uuid.uuid4().hex


def capture_every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("simulated outage")


def test_logs_never_contain_message_data(
    world: LambdaWorld, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol, dave = (new_connection_id() for _ in range(4))
    for connection_id in (bob, carol, dave):
        world.join(connection_id, "lobby")
    world.management.gone.add(carol)
    world.management.faults[dave] = (403, "ForbiddenException")
    capture_every_logger_at_debug(caplog)

    # the marker in data, in fields the server ignores, in malformed frames
    world.send(alice, json.dumps({"type": "join", "channelId": "lobby", "note": MARKER}))
    world.send(alice, json.dumps({"type": "join", "channelId": "no spaces " + MARKER}))
    world.send(alice, json.dumps({"type": "join", "channelId": MARKER * 10}))
    world.send(alice, json.dumps({"type": "publish", "data": {"secret": MARKER}}))  # bob, carol gone, dave 403
    world.send(alice, json.dumps({"type": "publish", "data": "x" * 140_000 + MARKER}))
    world.send(alice, json.dumps({"type": "publish", "note": MARKER}))
    world.send(alice, json.dumps({"type": "ping", "data": MARKER}))
    world.send(alice, json.dumps({"type": "ping", "data": MARKER}), route="$default")
    world.send(alice, "not json " + MARKER)
    world.send(alice, json.dumps({"type": "dance", "data": MARKER}))
    world.send(alice, json.dumps({"type": MARKER}))
    # and failures inside the handlers
    monkeypatch.setattr(Store, "members", _broken)
    world.send(alice, json.dumps({"type": "publish", "data": MARKER}))
    monkeypatch.setattr(Store, "join", _broken)
    world.send(alice, json.dumps({"type": "join", "channelId": "lobby", "note": MARKER}))
    monkeypatch.setattr(Store, "close_connection", _broken)
    world.disconnect(bob)

    assert world.management.frames(bob)[-1]["data"] == {"secret": MARKER}  # the data did go out
    records = caplog.records  # every logger's, botocore's too, at DEBUG
    assert [r for r in records if r.name == "channel_server" and r.exc_info], "no failure was logged: proves nothing"
    formatter = logging.Formatter()
    leaking = {
        record.name
        for record in records
        if MARKER in record.getMessage()
        or MARKER in repr(vars(record))
        or (record.exc_info and MARKER in formatter.formatException(record.exc_info))
    }
    assert leaking == set()


# --- configuration, never the event -------------------------------------------------------------


def test_posts_and_the_table_come_from_configuration_not_from_the_event(
    install_app: Any, world: LambdaWorld, management: FakeManagementApi, embedded_dynamodb: Any, table: str,
    environ: dict[str, str],
) -> None:
    recorder = CallRecorder()
    install_app(dynamodb=recording_dynamodb(embedded_dynamodb.endpoint, recorder))
    with FakeManagementApi(stage="evil") as trap:
        trap_host = trap.endpoint.split("/")[2]

        def misleading(raw: dict) -> dict:
            """Every place in an event that could name a host, stage or table, pointed elsewhere."""
            context = raw["requestContext"]
            context.update(domainName=trap_host, stage=trap.stage, apiId="evilapi123")
            headers = {"Host": trap_host, "X-Forwarded-Host": "evil.example.com", "X-Forwarded-Proto": "http"}
            raw["headers"] = headers
            raw["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
            raw["stageVariables"] = {spec.ENV_TABLE_NAME: "evil-table", spec.ENV_INDEX_NAME: "evil-index",
                                     spec.ENV_MANAGEMENT_ENDPOINT: trap.endpoint}
            return raw

        alice, bob = new_connection_id(), new_connection_id()
        results = [
            world.call("connect", misleading(event("connect", alice))),
            world.call("connect", misleading(event("connect", bob))),
            world.call(*_misleading_message(world, misleading, alice, '{"type":"join","channelId":"lobby"}')),
            world.call(*_misleading_message(world, misleading, bob, '{"type":"join","channelId":"lobby"}')),
            world.call(*_misleading_message(world, misleading, alice, '{"type":"publish","data":"hi"}')),
            world.call(*_misleading_message(world, misleading, bob, '{"type":"ping"}')),
            world.call(*_misleading_message(world, misleading, alice, "nonsense")),
            world.call("disconnect", misleading(event("disconnect", alice))),
            world.call("disconnect", misleading(event("disconnect", bob))),
        ]

        assert trap.attempts == []
    # $connect and $disconnect answer 200; each frame, 200 with the reply it posted, to the right place
    alice_replies, bob_replies = management.bodies(alice), management.bodies(bob)
    assert [f["type"] for f in management.frames(alice)] == ["joinSuccess", "publishSuccess", "error"]
    assert [f["type"] for f in management.frames(bob)] == ["joinSuccess", "message", "pong"]
    replies = [alice_replies[0], bob_replies[0], alice_replies[1], bob_replies[2], alice_replies[2]]
    assert results == [OK, OK, *map(answered, replies), OK, OK]
    assert recorder.tables() == {table}
    assert {p.get("IndexName") for _, _, _, p in recorder.calls} == {None, environ[spec.ENV_INDEX_NAME]}


def _misleading_message(world: LambdaWorld, misleading: Any, connection_id: str, body: str) -> tuple[str, dict]:
    entry, raw = world.message_event(connection_id, body)
    return entry, misleading(raw)


HANDLERS = Path(channel_server.handlers.__file__).resolve().parent
#: Event fields that name a host, a stage or other configuration: client-controlled.
PLACES_IN_AN_EVENT = {"domainName", "Host", "host", "X-Forwarded-Host", "x-forwarded-host", "stage", "apiId",
                      "headers", "multiValueHeaders", "stageVariables"}


#: What sigv4 may name: the canonical request's Host header.
SIGNER_HEADER_NAMES = {"host"}


def _string_constants(tree: ast.AST) -> set[str]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


@pytest.mark.parametrize("path", sorted(HANDLERS.glob("*.py")), ids=lambda path: path.name)
def test_no_handler_module_reads_a_host_stage_or_headers_from_the_event(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # sigv4 names the "host" header of the requests it signs; it is never given an event
    allowed = SIGNER_HEADER_NAMES if path.name == "sigv4.py" else set()

    # the server publish function answers with a function URL response, whose
    # "headers" it writes as a dict key; it never reads a request's
    written = {key.value for node in ast.walk(tree) if isinstance(node, ast.Dict)
               for key in node.keys if isinstance(key, ast.Constant)}
    read = {node.slice.value for node in ast.walk(tree)
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)}
    read |= {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call) and node.args
             and isinstance(node.args[0], ast.Constant) and getattr(node.func, "attr", "") in ("get", "pop")}
    written_only = written - read if path.name == "server_publish.py" else set()
    assert (_string_constants(tree) & PLACES_IN_AN_EVENT) - written_only == allowed
    if allowed:
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.arg) and "event" in node.arg]
        assert "events" not in path.read_text(encoding="utf-8")
    if path.name != "events.py":  # the raw event is read through WebSocketEvent only
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "raw"]


def test_the_event_view_offers_no_host_stage_or_headers() -> None:
    properties = [name for name, value in vars(WebSocketEvent).items() if isinstance(value, property)]

    assert properties
    assert [name for name in properties if re.search("domain|host|stage|api|header|endpoint|table", name, re.I)] == []
