"""Local mode end to end: a real WebSocket client (websockets) against
``channel_server.local`` on a free loopback port, boto3 against its management
API, and its DynamoDB inspected directly."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from channel_server.handlers import spec
from channel_server.local import world as local_world
from channel_server.local.dynamodb import EmbeddedDynamoDB
from channel_server.local.server import running

LAMBDAS = Path(__file__).parent / "lambdas"
TIMEOUT = 5


# --- helpers ---------------------------------------------------------------------------


class Client:
    """One WebSocket client: send frames, read frames, remember everything."""

    def __init__(self, url: str, **kwargs):
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, open_timeout=TIMEOUT, **kwargs))
        self.received: list[dict] = []

    def send(self, frame) -> None:
        self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    def recv(self, timeout: float = TIMEOUT) -> dict:
        frame = json.loads(self.ws.recv(timeout=timeout))
        self.received.append(frame)
        return frame

    def request(self, frame) -> dict:
        self.send(frame)
        return self.recv()

    def join(self, channel: str) -> dict:
        reply = self.request({"type": "join", "channelId": channel})
        assert reply["type"] == "joinSuccess", reply
        return reply

    def nothing_more(self, wait: float = 0.3) -> bool:
        try:
            frame = self.ws.recv(timeout=wait)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame {frame}")

    def close(self) -> None:
        self._stack.close()


def rows(server, connection_id: str | None = None) -> list[dict]:
    client = dynamodb_client(server.dynamodb_endpoint)
    items = client.scan(TableName=server.table_name)["Items"]
    return [i for i in items if connection_id is None or i[spec.CONNECTION_ID]["S"] == connection_id]


def dynamodb_client(endpoint: str):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def management(server):
    return boto3.client("apigatewaymanagementapi", endpoint_url=server.management_url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"mode": "standard", "max_attempts": 1}))


def connection_ids(server) -> set[str]:
    return set(server.gateway.connections)


def wait_until(condition, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def newest_connection(server, before: set[str]) -> str:
    wait_until(lambda: connection_ids(server) - before)
    (new,) = connection_ids(server) - before
    return new


@pytest.fixture(scope="module")
def server():
    with running(port=0) as server:
        yield server


@pytest.fixture
def clients(server):
    opened: list[Client] = []

    def open_client(**kwargs) -> Client:
        client = Client(server.url, **kwargs)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


# --- the protocol across several clients --------------------------------------------------


def test_publish_reaches_every_other_member_and_not_the_sender(clients):
    alice, bob, carol, outsider = clients(), clients(), clients(), clients()
    alice_id = alice.join("fanout")["senderId"]
    bob.join("fanout")
    carol.join("fanout")
    outsider.join("elsewhere")

    data = {"text": "héllo ✓", "n": [1, 2.5, None, True], "nested": {"deep": ["x"]}}
    alice.send({"type": "publish", "data": data})

    expected = {"type": "message", "channelId": "fanout", "senderId": alice_id, "data": data}
    assert bob.recv() == expected
    assert carol.recv() == expected
    assert alice.recv() == {"type": "publishSuccess"}
    assert outsider.nothing_more()


def test_sender_id_is_stable_within_a_join_and_new_on_rejoin(clients):
    alice, bob = clients(), clients()
    first = alice.join("ids")["senderId"]
    bob.join("ids")
    alice.send({"type": "publish", "data": 1})
    assert bob.recv()["senderId"] == first
    assert alice.recv()["type"] == "publishSuccess"
    alice.send({"type": "publish", "data": 2})
    assert bob.recv()["senderId"] == first
    alice.recv()

    second = alice.join("ids")["senderId"]
    alice.send({"type": "publish", "data": 3})
    assert second != first
    assert bob.recv() == {"type": "message", "channelId": "ids", "senderId": second, "data": 3}


def test_ping_answers_pong_with_and_without_data_joined_or_not(clients):
    client = clients()
    assert client.request({"type": "ping"}) == {"type": "pong"}
    assert client.request({"type": "ping", "data": {"t": 1}}) == {"type": "pong", "data": {"t": 1}}
    client.join("pinging")
    assert client.request({"type": "ping", "data": None}) == {"type": "pong", "data": None}


@pytest.mark.parametrize(
    "frame, reply",
    [
        ({"type": "join"}, {"type": "joinFailure", "data": "channelId is required"}),
        ({"type": "join", "channelId": ""}, {"type": "joinFailure", "data": "channelId must not be empty"}),
        ({"type": "join", "channelId": 7}, {"type": "joinFailure", "data": "channelId must be a string"}),
        ({"type": "join", "channelId": "a b"},
         {"type": "joinFailure", "data": "channelId must match [A-Za-z0-9_.:-]+"}),
        ({"type": "join", "channelId": "x" * 129},
         {"type": "joinFailure", "data": "channelId must be at most 128 characters"}),
        ({"type": "publish", "data": "lonely"}, {"type": "publishFailure", "data": "not in a channel; send a join first"}),
        ("not json", {"type": "error", "data": "frame is not valid JSON"}),
        ("[1, 2]", {"type": "error", "data": "frame must be a JSON object"}),
        ({"data": 1}, {"type": "error", "data": "frame has no type"}),
        ({"type": "dance"}, {"type": "error", "data": "unknown type 'dance'; expected join, publish or ping"}),
        ({"type": 5}, {"type": "error", "data": "type must be a string"}),
    ],
)
def test_bad_frames_get_their_defined_reply(clients, frame, reply):
    assert clients().request(frame) == reply


def test_a_failed_join_changes_nothing(server, clients):
    before = connection_ids(server)
    client = clients()
    connection_id = newest_connection(server, before)
    client.join("stay")
    stored = sorted(r[spec.CHANNEL_ID]["S"] for r in rows(server, connection_id))
    assert client.request({"type": "join", "channelId": "no spaces allowed"})["type"] == "joinFailure"
    assert sorted(r[spec.CHANNEL_ID]["S"] for r in rows(server, connection_id)) == stored


def test_a_connection_moving_between_channels_hears_only_the_new_one(clients):
    mover, old_peer, new_peer = clients(), clients(), clients()
    mover.join("old-room")
    old_peer.join("old-room")
    new_peer.join("new-room")
    mover.join("new-room")

    old_peer.send({"type": "publish", "data": "old"})
    assert old_peer.recv() == {"type": "publishSuccess"}
    new_peer.send({"type": "publish", "data": "new"})
    assert mover.recv()["data"] == "new"
    assert new_peer.recv() == {"type": "publishSuccess"}
    assert mover.nothing_more()


# --- cleanup -------------------------------------------------------------------------------


def test_disconnect_removes_the_connections_rows(server, clients):
    before = connection_ids(server)
    client = clients()
    connection_id = newest_connection(server, before)
    client.join("leaving")
    assert rows(server, connection_id)

    client.close()

    wait_until(lambda: not rows(server, connection_id))


def test_a_member_that_vanished_without_disconnect_is_removed_on_the_next_publish(server, clients):
    # GIVEN rows of a connection API Gateway no longer knows (its $disconnect was lost)
    ghost = "GhostConnAAAAAA="
    dynamodb_client(server.dynamodb_endpoint).put_item(
        TableName=server.table_name,
        Item={spec.CONNECTION_ID: {"S": ghost}, spec.CHANNEL_ID: {"S": "haunted"},
              spec.SENDER_ID: {"S": "g"}, spec.EXPIRES_AT: {"N": str(int(time.time()) + 3600)}},
    )
    alice, bob = clients(), clients()
    alice.join("haunted")
    bob.join("haunted")

    # WHEN someone publishes: the management API answers 410 for the ghost
    alice.send({"type": "publish", "data": "boo"})

    # THEN the live member still hears it, the sender succeeds, the ghost is gone
    assert bob.recv()["data"] == "boo"
    assert alice.recv() == {"type": "publishSuccess"}
    assert rows(server, ghost) == []


# --- the management API ----------------------------------------------------------------------


def test_posting_to_an_unknown_connection_raises_gone_exception(server):
    client = management(server)
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId="NoSuchConnAAAA=", Data=b"{}")


def test_get_connection_describes_it_and_post_reaches_it(server, clients):
    before = connection_ids(server)
    ws = clients(user_agent_header="channel-tests/1.0")
    connection_id = newest_connection(server, before)
    client = management(server)

    described = client.get_connection(ConnectionId=connection_id)
    client.post_to_connection(ConnectionId=connection_id, Data=b'{"type":"hello"}')

    # boto3 names the wire's identity/connectedAt/lastActiveAt in its own style
    assert described["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "channel-tests/1.0"}
    assert described["ConnectedAt"] <= described["LastActiveAt"]
    assert ws.recv() == {"type": "hello"}


def test_delete_connection_closes_the_socket_and_runs_disconnect(server, clients):
    before = connection_ids(server)
    ws = clients()
    connection_id = newest_connection(server, before)
    ws.join("deleted")
    client = management(server)

    client.delete_connection(ConnectionId=connection_id)

    with pytest.raises(ConnectionClosed):
        ws.ws.recv(timeout=TIMEOUT)
    wait_until(lambda: not rows(server, connection_id))
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId=connection_id)


def test_management_api_refuses_unsigned_requests(server):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{server.management_url}/@connections/abc", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=TIMEOUT)
    assert refused.value.code == 403
    assert refused.value.headers["x-amzn-ErrorType"] == "ForbiddenException"


# --- API Gateway's limits ---------------------------------------------------------------------


def test_binary_frames_close_the_connection_with_1003(clients):
    client = clients()
    client.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed) as closed:
        client.ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 1003


def test_messages_over_128_kb_close_the_connection_with_1009(clients):
    client = clients(max_size=None)
    client.send(json.dumps({"type": "publish", "data": "x" * (128 * 1024)}))
    with pytest.raises(ConnectionClosed) as closed:
        client.ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 1009


def test_idle_connections_are_closed_and_traffic_keeps_them_open(server, clients):
    server.gateway.idle_timeout = 0.6
    try:
        quiet, chatty = clients(), clients()
        for _ in range(4):
            assert chatty.request({"type": "ping"}) == {"type": "pong"}
            time.sleep(0.25)
        with pytest.raises(ConnectionClosed) as closed:
            quiet.ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 1001
        assert chatty.request({"type": "ping"}) == {"type": "pong"}
    finally:
        server.gateway.idle_timeout = 600


def test_connections_are_closed_at_the_maximum_lifetime(server, clients):
    server.gateway.max_lifetime = 0.5
    try:
        client = clients()
        # traffic keeps the idle clock at zero, so only the lifetime can close it
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(50):  # 5 s at most
                client.request({"type": "ping"})
                time.sleep(0.1)
        assert closed.value.rcvd.code == 1001
    finally:
        server.gateway.max_lifetime = 7200


# --- events and invocations, with handlers that misbehave on purpose ----------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Where the test handlers record the $connect and $disconnect events they get."""
    return tmp_path_factory.mktemp("events")


@pytest.fixture(scope="module")
def faulty_server(recorded):
    """The component's world plus routes whose handlers come from tests/lambdas:
    a $connect that can refuse, a crashing route, a slow one, one that echoes
    its event, and $connect/$disconnect handlers that record their events."""
    base = local_world.from_component("dev")
    files = {"faulty.py": LAMBDAS / "faulty.py"}
    routes = dict(base.routes)
    handlers = {"$connect": "connect", "$disconnect": "disconnect", "crash": "crash", "slow": "slow",
                "remember": "remember", "noisy": "noisy"}
    for key, handler in handlers.items():
        template = base.routes["ping"]
        routes[key] = dataclasses.replace(
            template, name=f"test-{handler}", handler=f"faulty.{handler}", files=files, timeout_seconds=5,
            environment={**template.environment, "RECORD_DIR": str(recorded)},
        )
    with running(port=0, world=dataclasses.replace(base, routes=routes)) as server:
        yield server


def test_a_non_2xx_connect_rejects_the_handshake_with_its_status(faulty_server):
    with pytest.raises(InvalidStatus) as rejected:
        connect(faulty_server.url + "?reject=403", open_timeout=TIMEOUT)
    assert rejected.value.response.status_code == 403
    with connect(faulty_server.url + "?reject=204", open_timeout=TIMEOUT):
        pass


def test_a_crashing_integration_gets_api_gateways_internal_server_error(faulty_server):
    client = Client(faulty_server.url)
    try:
        frame = client.request({"type": "crash"})
        assert frame["message"] == "Internal server error"
        assert set(frame) == {"message", "connectionId", "requestId"}
        assert client.request({"type": "ping"}) == {"type": "pong"}  # the connection stays open
    finally:
        client.close()


def test_one_connections_frames_are_handled_concurrently(faulty_server):
    client = Client(faulty_server.url)
    try:
        started = time.monotonic()
        client.send({"type": "slow", "seconds": 1.5})
        assert client.request({"type": "ping"}) == {"type": "pong"}
        assert time.monotonic() - started < 1.0
    finally:
        client.close()


def test_a_handler_that_prints_does_not_disturb_its_invocations(faulty_server):
    client = Client(faulty_server.url)
    try:
        for _ in range(3):
            client.send({"type": "noisy"})
        assert client.request({"type": "ping"}) == {"type": "pong"}
        assert client.nothing_more()  # no "Internal server error" for the noisy frames
    finally:
        client.close()


def test_a_function_whose_process_died_starts_again_on_its_next_invocation(server, clients):
    client = clients()
    assert client.request({"type": "ping"}) == {"type": "pong"}
    function = server._functions["ping"]
    wait_until(lambda: not function._pending)  # the pong is out; let its invocation answer too
    process = function._process
    os.kill(process.pid, signal.SIGKILL)
    wait_until(lambda: process.returncode is not None)

    assert client.request({"type": "ping", "data": "again"}) == {"type": "pong", "data": "again"}


def test_message_events_are_shaped_like_api_gateways(faulty_server):
    client = Client(faulty_server.url)
    try:
        seen = client.request({"type": "remember"})
    finally:
        client.close()
    event, context = seen["event"], seen["event"]["requestContext"]
    assert set(event) == {"requestContext", "body", "isBase64Encoded"}
    assert json.loads(event["body"]) == {"type": "remember"}
    assert context["routeKey"] == "remember" and context["eventType"] == "MESSAGE"
    assert context["stage"] == "dev" and context["messageDirection"] == "IN"
    assert context["requestId"] == context["extendedRequestId"]
    assert len(context["connectionId"]) == 16 and context["connectionId"].endswith("=")
    assert {"messageId", "connectedAt", "requestTimeEpoch", "requestTime", "identity", "domainName", "apiId"} <= set(context)
    assert seen["function_name"] == "test-remember"
    assert 0 < seen["remaining_ms"] <= 5000
    assert seen["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "test-remember"
    assert seen["env"]["CHANNEL_TABLE_NAME"] == faulty_server.table_name


EVENTS = Path(__file__).parent / "events"


def _shape(value):
    """The keys of an event, nested, without the values (headers and query
    strings are the client's, so only their presence counts)."""
    if isinstance(value, dict):
        return {
            key: "dict" if key in ("headers", "multiValueHeaders", "queryStringParameters",
                                   "multiValueQueryStringParameters") else _shape(item)
            for key, item in value.items()
        }
    return type(value).__name__


@pytest.mark.parametrize("query, fixture", [("", "connect"), ("?room=1&room=2&x=y", "connect_with_query")])
def test_connect_and_disconnect_events_are_shaped_like_the_recorded_ones(faulty_server, recorded, query, fixture):
    before = connection_ids(faulty_server)
    with connect(faulty_server.url + query, open_timeout=TIMEOUT, user_agent_header="shape-test"):
        connection_id = newest_connection(faulty_server, before)
    wait_until(lambda: (recorded / f"{connection_id}.DISCONNECT.json").exists())

    connect_event = json.loads((recorded / f"{connection_id}.CONNECT.json").read_text())
    disconnect_event = json.loads((recorded / f"{connection_id}.DISCONNECT.json").read_text())

    assert _shape(connect_event) == _shape(json.loads((EVENTS / f"{fixture}.json").read_text()))
    assert _shape(disconnect_event) == _shape(json.loads((EVENTS / "disconnect.json").read_text()))
    assert connect_event["headers"]["User-Agent"] == "shape-test"
    assert disconnect_event["requestContext"]["disconnectStatusCode"] == 1000
    if query:
        assert connect_event["queryStringParameters"] == {"room": "2", "x": "y"}
        assert connect_event["multiValueQueryStringParameters"] == {"room": ["1", "2"], "x": ["y"]}


# --- local mode follows the component ------------------------------------------------------------------


def test_local_mode_serves_the_route_set_the_component_declares(monkeypatch):
    # GIVEN a component whose route set lacks ping and $default
    reduced = tuple(r for r in spec.ROUTES if r.key not in ("ping", "$default"))
    monkeypatch.setattr(spec, "ROUTES", reduced)
    world = local_world.from_component("dev")
    assert set(world.routes) == {r.key for r in reduced}

    # WHEN local mode serves it, THEN a ping is answered as AWS answers a frame with no route
    with running(port=0, world=world) as server:
        client = Client(server.url)
        try:
            frame = client.request({"type": "ping"})
            assert frame["message"] == "Forbidden"
            assert client.join("still-here")["channelId"] == "still-here"
        finally:
            client.close()


def test_local_mode_uses_the_components_handlers_table_and_environment():
    world = local_world.from_component("dev")
    assert {key: f.handler for key, f in world.routes.items()} == {r.key: r.handler for r in spec.ROUTES}
    assert world.table["hashKey"] == spec.CONNECTION_ID and world.table["rangeKey"] == spec.CHANNEL_ID
    assert world.route_selection_expression == spec.ROUTE_SELECTION_EXPRESSION
    for function in world.routes.values():
        assert function.environment[spec.ENV_MANAGEMENT_ENDPOINT] == world.management_endpoint
        assert set(function.files) == {f"channel_server/handlers/{p.name}" for p in (Path(spec.__file__).parent).glob("*.py")}


# --- the command, shutdown and an external DynamoDB --------------------------------------------------------


def test_the_command_serves_and_delivers_disconnect_to_everyone_on_sigterm():
    with EmbeddedDynamoDB() as dynamodb:
        process = subprocess.Popen(
            [sys.executable, "-m", "channel_server.local", "--port", "0", "--dynamodb-endpoint", dynamodb.endpoint],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            url = None
            lines = []
            deadline = time.monotonic() + 30
            while url is None and time.monotonic() < deadline:
                line = process.stdout.readline()
                lines.append(line)
                if "WebSocket URL:" in line:
                    url = line.split("WebSocket URL:")[1].strip()
            assert url, "".join(lines)
            assert url.startswith("ws://127.0.0.1:")
            client = Client(url)
            client.join("shutdown")
            table = dynamodb_client(dynamodb.endpoint).list_tables()["TableNames"][0]
            assert dynamodb_client(dynamodb.endpoint).scan(TableName=table)["Items"]

            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)

            assert process.returncode == 0, output
            assert "disconnect" in output and "stopped" in output
            # $disconnect ran for the open connection: its rows are gone
            assert dynamodb_client(dynamodb.endpoint).scan(TableName=table)["Items"] == []
            with pytest.raises(ConnectionClosed):
                client.ws.recv(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            dynamodb.reset()


def test_management_latency_is_added_to_every_management_call(server, clients):
    before = connection_ids(server)
    clients()
    connection_id = newest_connection(server, before)
    client = management(server)
    server.gateway.management_latency = 0.25
    try:
        started = time.monotonic()
        client.get_connection(ConnectionId=connection_id)
        assert time.monotonic() - started >= 0.25
    finally:
        server.gateway.management_latency = 0
