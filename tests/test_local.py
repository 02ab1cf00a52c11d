"""Local mode end to end: a real WebSocket client (websockets) against
``channel_server.local`` on a free loopback port, boto3 against its management
API, and its DynamoDB inspected directly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from channel_server.handlers import spec
from channel_server.local import program as local_program
from channel_server.local import world as local_world
from channel_server.local.server import running
from support.frames import ANY_MESSAGE_ID
from support.local_mode import served_world
from support.processes import running_from

LAMBDAS = Path(__file__).parent / "lambdas"
EVENTS = Path(__file__).parent / "events"
#: How long a read waits before the test fails: a bound for a broken build,
#: never a measure of speed (every wait ends on a frame, a marker or a condition).
TIMEOUT = 20


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

    def nothing_more(self) -> bool:
        """No frame is waiting: a ping with a fresh marker is answered before
        anything else arrives. Frames are posted before the publish or join
        that caused them answers its sender, so any stray frame caused so far
        would come before the pong."""
        marker = uuid.uuid4().hex
        self.send({"type": "ping", "data": marker})
        frame = self.recv()
        assert frame == {"type": "pong", "data": marker}, f"unexpected frame {frame}"
        return True

    def close(self) -> None:
        self._stack.close()


def rows(server, connection_id: str | None = None) -> list[dict]:
    """The table's rows (of one connection), but the tombstones of closed connections."""
    client = dynamodb_client(server.dynamodb_endpoint)
    items = client.scan(TableName=server.table_name)["Items"]
    return [i for i in items if (connection_id is None or i[spec.CONNECTION_ID]["S"] == connection_id)
            and spec.CLOSED_AT not in i]


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


@contextlib.contextmanager
def behind_the_reference_http_backend():
    """Local mode serving ChannelServer with ``backend``: every route posts its
    envelope to the reference backend (``channel_server.http_backend``), which
    keeps its memberships in local mode's table and posts through its
    management API, as a team's deployment would with the real ones."""
    from channel_server.handlers import dynamodb as dynamodb_module
    from channel_server.handlers.app import ChannelApp
    from channel_server.handlers.sender import management_client
    from channel_server.http_backend import HttpBackend
    from channel_server.local.server import LOCAL_CREDENTIALS

    with HttpBackend(port=0) as backend:  # its URL first: local mode posts to it
        with running(port=0, backend=backend.url, world=served_world(backend=backend.url)) as server:
            aws = {"AWS_ENDPOINT_URL_DYNAMODB": server.dynamodb_endpoint, "AWS_REGION": "us-east-1", **LOCAL_CREDENTIALS}
            environ = {spec.ENV_TABLE_NAME: server.table_name, spec.ENV_INDEX_NAME: spec.CHANNEL_INDEX,
                       spec.ENV_MANAGEMENT_ENDPOINT: server.management_url}
            backend.set_app(ChannelApp(
                environ,
                dynamodb=dynamodb_module.client(aws, max_attempts=5, pool_size=32, read_timeout=15),
                management=management_client(server.management_url, environ=aws),
            ))
            yield server


#: One protocol suite, two ways to serve it: the tests that take ``server``
#: run against the Lambda handlers and against the reference HTTP backend.
#: Served by the Lambda handlers with every option this protocol's clients
#: never ask for turned on: a client that knows only the seed's frames must
#: see no difference (issue 22).
EVERY_OPTION = {"history_seconds": 60, "presence": True, "server_publish": True}
SERVED_BY = ["lambda handlers", "HTTP backend", "lambda handlers, every option on"]


@pytest.fixture(scope="module", params=SERVED_BY)
def server(request):
    if request.param == "HTTP backend":
        with behind_the_reference_http_backend() as server:
            yield server
    elif request.param == "lambda handlers, every option on":
        from channel_server.local.program import from_component

        with running(port=0, world=from_component("dev", args=EVERY_OPTION)) as server:
            yield server
    else:
        with running(port=0, world=served_world()) as server:
            yield server


def lambda_only(server) -> None:
    """For tests of local Lambda itself (its processes): nothing to see with a backend."""
    if server.world.http_routes:
        pytest.skip("tests local mode's Lambda functions, which an HTTP backend replaces")


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


# --- an HTTP backend's answers decide, as API Gateway's integration response does -----------


class ScriptedBackend:
    """An HTTP backend that answers each route with the status the test gives
    it (a pong body on 2xx), and keeps every envelope it got."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.status = {"$connect": 200}
        self.envelopes: list[dict] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                envelope = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                backend.envelopes.append({**envelope, "contentType": self.headers["Content-Type"]})
                status = backend.status.get(envelope["routeKey"], 200)
                body = b'{"type":"pong"}' if 200 <= status < 300 else b'{"message":"no"}'
                body = b"" if status == 204 else body  # no content, by definition
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def scripted():
    backend = ScriptedBackend()
    try:
        with running(port=0, backend=backend.url, world=served_world(backend=backend.url)) as server:
            yield server, backend
    finally:
        backend.close()


@pytest.mark.parametrize("status", [403, 401, 500, 302])
def test_a_backend_that_answers_connect_with_anything_but_2xx_refuses_the_handshake(scripted, status):
    server, backend = scripted
    backend.status["$connect"] = status
    try:
        with pytest.raises(InvalidStatus) as refused:
            Client(server.url)
        assert refused.value.response.status_code == 500
    finally:
        backend.status["$connect"] = 200
    assert backend.envelopes[-1]["routeKey"] == "$connect" and backend.envelopes[-1]["body"] is None


@pytest.mark.parametrize("status", [200, 201, 204])
def test_a_backend_that_answers_connect_with_2xx_accepts_it(scripted, status):
    server, backend = scripted
    backend.status["$connect"] = status
    try:
        client = Client(server.url)
        assert client.request({"type": "ping"}) == {"type": "pong"}
        client.close()
    finally:
        backend.status["$connect"] = 200


def test_a_backend_that_fails_a_message_gets_the_client_api_gateways_internal_server_error(scripted):
    server, backend = scripted
    client = Client(server.url)
    try:
        backend.status["publish"] = 500
        frame = client.request({"type": "publish", "data": 1})
        assert frame["message"] == "Internal server error"
        assert client.request({"type": "ping"}) == {"type": "pong"}  # the connection stays open
    finally:
        backend.status.pop("publish", None)
        client.close()


HOSTILE = ['{"type":"publish","data":"it\'s \\\" $util #set($a=1) ${context.connectionId} \u2028 😀"}',
           "not json at all: ' \" \\ \n\t\u0001 </script>", ""]


@pytest.mark.parametrize("body", HOSTILE)
def test_the_backend_gets_an_envelope_with_the_frame_exactly_as_sent(scripted, body):
    server, backend = scripted
    client = Client(server.url)
    try:
        assert client.request(body) == {"type": "pong"}
        envelope = backend.envelopes[-1]
        assert envelope["body"] == body
        assert envelope["eventType"] == "MESSAGE" and envelope["contentType"] == "application/json"
        assert envelope["connectionId"] in server.gateway.connections
        assert isinstance(envelope["requestTimeEpoch"], int) and envelope["identity"]["sourceIp"] == "127.0.0.1"
    finally:
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

    expected = {"type": "message", "channelId": "fanout", "senderId": alice_id, "messageId": ANY_MESSAGE_ID, "data": data}
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
    assert bob.recv() == {"type": "message", "channelId": "ids", "senderId": second, "messageId": ANY_MESSAGE_ID, "data": 3}


def test_ping_answers_pong_with_and_without_data_joined_or_not(clients):
    client = clients()
    assert client.request({"type": "ping"}) == {"type": "pong"}
    assert client.request({"type": "ping", "data": {"t": 1}}) == {"type": "pong", "data": {"t": 1}}
    client.join("pinging")
    assert client.request({"type": "ping", "data": None}) == {"type": "pong", "data": None}


def test_replies_come_from_the_route_response_and_a_one_way_route_drops_its_answer(caplog):
    """Local mode sends a function's answer only on routes the component made
    two-way, as API Gateway does; the pong never goes through the management API."""
    caplog.set_level(logging.INFO, logger="channel_server.local")
    world = served_world()
    assert world.two_way == {"join", "publish", "ping", "$default"}
    one_way_ping = dataclasses.replace(world, two_way=world.two_way - {"ping"})
    with running(port=0, world=one_way_ping) as server:
        client = Client(server.url)
        try:
            client.send({"type": "ping", "data": "dropped"})
            # the line is logged after the answer would have been sent...
            wait_until(lambda: _routed(caplog, "ping"))
            assert "ping → pong (dropped: the route is one-way)" in _routed(caplog, "ping")[0]
            # ...so the first frame to arrive after it is the join's: no pong came
            assert client.request({"type": "join", "channelId": "one-way"})["type"] == "joinSuccess"
        finally:
            client.close()


def test_a_frame_nested_too_deep_to_parse_goes_to_default_and_gets_its_error(clients):
    # 1,000 levels: deeper than Python's parser goes, so route selection cannot read a type
    assert clients().request("[" * 1000 + "]" * 1000) == {
        "type": "error", "data": "frame nests deeper than 64 levels"}


def test_a_ping_whose_pong_would_be_too_large_gets_an_error_instead_of_nothing(clients):
    client = clients(max_size=None)
    reply = client.request('{"type":"ping","data":[' + ",".join(["1e15"] * 25_000) + "]}")
    assert reply["type"] == "error" and reply["data"].endswith("the limit is 131072")


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


def test_the_log_names_each_replys_type_and_never_the_payload(server, clients, caplog):
    caplog.set_level(logging.INFO, logger="channel_server.local")
    secret = f"payload-{uuid.uuid4().hex}"
    before = connection_ids(server)
    client = clients()
    connection_id = newest_connection(server, before)
    assert client.request({"type": "publish", "data": secret})["type"] == "publishFailure"  # not joined
    client.join("logged")
    assert client.request({"type": "publish", "data": secret}) == {"type": "publishSuccess"}
    assert client.request({"type": "dance", "data": secret})["type"] == "error"

    # each line is logged once the invocation has answered, just after its reply went out
    mine = lambda: [line for line in _routed(caplog) if line.split(" ")[1] == connection_id]  # noqa: E731
    wait_until(lambda: len(mine()) == 4)
    outcomes = [line.split(" ", 2)[2].rsplit(" in ", 1)[0] for line in mine()]
    assert sorted(outcomes) == sorted(["publish → publishFailure", "join → joinSuccess",
                                       "publish → publishSuccess", "$default → error"])
    assert not any(secret in r.getMessage() for r in caplog.records)


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


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "Missing Authentication Token"),
        ({"Authorization": "x"}, "the request is not SigV4-signed"),
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=a/20261126/us-east-1/execute-api/aws4_request, "
                           "SignedHeaders=host, Signature=" + "0" * 64}, "the request is not SigV4-signed"),  # no X-Amz-Date
    ],
    ids=["unsigned", "forged", "no-date"],
)
def test_management_api_refuses_requests_that_are_not_sigv4_signed(server, clients, headers, reason):
    import urllib.error
    import urllib.request

    before = connection_ids(server)
    target = clients()
    connection_id = newest_connection(server, before)
    for method, data in (("POST", b'{"type":"forged"}'), ("GET", None), ("DELETE", None)):
        request = urllib.request.Request(f"{server.management_url}/@connections/{connection_id}", data=data,
                                         method=method, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=TIMEOUT)
        assert refused.value.code == 403
        assert refused.value.headers["x-amzn-ErrorType"] == "ForbiddenException"
        assert json.loads(refused.value.read())["message"].startswith(reason)
    assert target.nothing_more()  # nothing was posted, and the connection is still open


def test_the_management_api_answers_only_loopback_unless_opened():
    from channel_server.local.access import management_refusal

    signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/execute-api/aws4_request, "
                               "SignedHeaders=host;x-amz-date, Signature=" + "a" * 64, "X-Amz-Date": "20261126T000000Z"}
    for loopback in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert management_refusal(loopback, signed) is None, loopback
    # this machine's own other addresses are refused too: the check is loopback-only
    for elsewhere in ("10.0.0.7", "192.168.1.2", "2001:db8::1"):
        assert management_refusal(elsewhere, signed) == (
            f"the management API answers only loopback addresses, not {elsewhere} "
            "(call it on 127.0.0.1, or start local mode with --management-from-anywhere)")
        assert management_refusal(elsewhere, signed, from_anywhere=True) is None
    unknown = management_refusal(None, signed)
    assert unknown is not None and unknown.startswith(
        "the management API answers only loopback addresses, not an unknown address ")


# --- API Gateway's limits ---------------------------------------------------------------------


def test_binary_frames_close_the_connection_with_1003(clients):
    client = clients()
    client.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed) as closed:
        client.ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_messages_over_128_kb_close_the_connection_with_1009(clients):
    client = clients(max_size=None)
    client.send(json.dumps({"type": "publish", "data": "x" * (128 * 1024)}))
    with pytest.raises(ConnectionClosed) as closed:
        client.ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_idle_connections_are_closed_and_traffic_keeps_them_open():
    # a second of silence closes a connection: many times a round trip, even on a busy machine
    with running(port=0, idle_timeout=1, world=served_world()) as server:
        quiet, chatty = Client(server.url), Client(server.url)
        try:
            # chatty talks without pause until quiet's idle timeout closes it:
            # chatty is never idle for more than one round trip
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(100_000):
                    assert chatty.request({"type": "ping"}) == {"type": "pong"}
                    with contextlib.suppress(TimeoutError):
                        quiet.ws.recv(timeout=0)  # raises ConnectionClosed once closed
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert chatty.request({"type": "ping"}) == {"type": "pong"}
        finally:
            quiet.close()
            chatty.close()


def test_connections_are_closed_at_the_maximum_lifetime():
    with running(port=0, max_lifetime=0.5, world=served_world()) as server:
        client = Client(server.url)
        try:
            # traffic keeps the idle clock at zero, so only the lifetime can close it
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(100_000):
                    client.request({"type": "ping"})
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            assert closed.value.rcvd.reason == "Going away"
        finally:
            client.close()


# --- events and invocations, with handlers that misbehave on purpose ----------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Where the test handlers record the $connect and $disconnect events they get."""
    return tmp_path_factory.mktemp("events")


def faulty_world(recorded: Path) -> local_world.World:
    """The component's world plus routes whose handlers come from tests/lambdas:
    a $connect that can refuse, a crashing route, one that holds until released,
    one that echoes its event, one that prints, and $connect/$disconnect handlers
    that record their events in ``recorded``."""
    base = served_world()
    files = {"faulty.py": (LAMBDAS / "faulty.py").read_text(encoding="utf-8")}
    routes = dict(base.routes)
    handlers = {"$connect": "connect", "$disconnect": "disconnect", "crash": "crash", "held": "held",
                "remember": "remember", "noisy": "noisy"}
    for key, handler in handlers.items():
        template = base.routes["ping"]
        routes[key] = dataclasses.replace(
            template, name=f"test-{handler}", handler=f"faulty.{handler}", files=files,
            environment={**template.environment, "RECORD_DIR": str(recorded)},
        )
    return dataclasses.replace(base, routes=routes)


@pytest.fixture(scope="module")
def faulty_server(recorded):
    with running(port=0, world=faulty_world(recorded)) as server:
        yield server


def recorded_disconnect(recorded: Path, connection_id: str) -> dict:
    """The $disconnect event the recording handler got for the connection."""
    path = recorded / f"{connection_id}.DISCONNECT.json"
    wait_until(path.exists)
    return json.loads(path.read_text())["requestContext"]


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


def test_one_connections_frames_are_handled_concurrently(faulty_server, recorded):
    client = Client(faulty_server.url)
    try:
        # a frame whose handler holds until the test releases it...
        key = uuid.uuid4().hex
        client.send({"type": "held", "key": key})
        # ...does not keep the same connection's next frame waiting
        assert client.request({"type": "ping"}) == {"type": "pong"}
        (recorded / f"release-{key}").touch()
        assert client.recv() == {"type": "released"}
    finally:
        client.close()


def test_a_frame_beyond_a_functions_concurrency_is_throttled_at_once_and_answered_once(recorded):
    """Lambda does not queue a synchronous invocation: at its concurrency limit
    it throttles. A queue would start the gateway's clock before the handler's
    and give a frame two replies (an error, then the real one)."""
    with running(port=0, world=faulty_world(recorded), function_concurrency=1) as server:
        client = Client(server.url)
        try:
            # GIVEN the held function's one slot is taken
            first = uuid.uuid4().hex
            client.send({"type": "held", "key": first})
            wait_until((recorded / f"started-{first}").exists)

            # WHEN another frame for it arrives, it is answered at once, while the first still holds
            second = uuid.uuid4().hex
            throttled = client.request({"type": "held", "key": second})
            assert throttled["message"] == "Internal server error"
            assert server._functions["held"].running == 1
            assert client.request({"type": "ping"}) == {"type": "pong"}  # other functions are not affected

            # THEN the first frame gets its reply, the second never runs and gets nothing more
            (recorded / f"release-{first}").touch()
            (recorded / f"release-{second}").touch()
            assert client.recv() == {"type": "released"}
            assert client.nothing_more()
            assert not (recorded / f"started-{second}").exists()
        finally:
            client.close()


def test_closing_more_connections_than_disconnect_runs_at_once_runs_every_disconnect(recorded):
    ids = []
    with running(port=0, world=faulty_world(recorded), function_concurrency=1) as server:
        clients_ = [Client(server.url) for _ in range(6)]
        for client in clients_:
            client.request({"type": "ping"})  # the connection is open and known
        ids = sorted(connection_ids(server))
        assert len(ids) == 6
    # stopping closed all six at once; each $disconnect ran, one at a time
    for client in clients_:
        client.close()
    for connection_id in ids:
        assert recorded_disconnect(recorded, connection_id)["connectionId"] == connection_id


def test_a_handler_that_prints_does_not_disturb_its_invocations(faulty_server, caplog):
    caplog.set_level(logging.INFO, logger="channel_server.local")
    client = Client(faulty_server.url)
    try:
        for number in range(3):
            client.send({"type": "noisy", "number": number})
        # each noisy invocation posts its number after printing, then returns
        assert sorted(client.recv()["noisy"] for _ in range(3)) == [0, 1, 2]
        wait_until(lambda: len(_routed(caplog, "noisy")) == 3)
        assert all(" noisy → no reply in " in line for line in _routed(caplog, "noisy")), _routed(caplog, "noisy")
        assert client.nothing_more()  # no "Internal server error" for the noisy frames
    finally:
        client.close()


def _routed(caplog, route_key: str | None = None) -> list[str]:
    """Local mode's log lines for routed frames (``route {id} {route} → {reply} in N ms``)."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("route ")]
    return [line for line in lines if route_key is None or line.split(" ")[2] == route_key]


def test_a_function_whose_process_died_starts_again_on_its_next_invocation(server, clients):
    lambda_only(server)
    client = clients()
    assert client.request({"type": "ping"}) == {"type": "pong"}
    function = server._functions["ping"]
    wait_until(lambda: function.in_flight == 0)  # the pong is out; let its invocation answer too
    os.kill(function.pid, signal.SIGKILL)
    wait_until(lambda: function.pid is None)

    assert client.request({"type": "ping", "data": "again"}) == {"type": "pong", "data": "again"}


def test_invocations_racing_a_start_or_a_restart_get_one_process_that_stop_ends(tmp_path):
    from channel_server.local.functions import LocalFunction

    definition = served_world().routes["$connect"]  # answers without I/O
    connect_event = json.loads((EVENTS / "connect.json").read_text())

    async def scenario():
        function = LocalFunction(definition, tmp_path / "connect", definition.environment)
        # invocations that arrive while the process starts wait for it
        answers = await asyncio.gather(function.start(), *(function.invoke(connect_event) for _ in range(5)))
        first = function.pid
        assert first is not None
        running_after_start = running_from(tmp_path)

        os.kill(first, signal.SIGKILL)
        while function.pid is not None:  # until local mode has seen it end
            await asyncio.sleep(0.01)
        # invocations that arrive while its replacement starts all wait for that one
        answers += await asyncio.gather(*(function.invoke(connect_event) for _ in range(5)))
        second = function.pid
        running_after_restart = running_from(tmp_path)

        await function.stop()
        return answers[1:], first, second, running_after_start, running_after_restart

    answers, first, second, after_start, after_restart = asyncio.run(scenario())

    assert answers == [{"statusCode": 200}] * 10
    assert after_start == [first]
    assert second != first and after_restart == [second]
    assert running_from(tmp_path) == []  # stop ended it: no orphans


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
    assert 0 < seen["remaining_ms"] <= faulty_server.world.routes["remember"].timeout_seconds * 1000
    assert seen["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "test-remember"
    assert seen["env"]["CHANNEL_TABLE_NAME"] == faulty_server.table_name



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


def _close_with_4001(ws) -> None:
    ws.close(code=4001, reason="done here")


def _send_200_kb(ws) -> None:
    ws.send(json.dumps({"type": "publish", "data": "x" * 200_000}))


def _send_binary(ws) -> None:
    ws.send(b"\x00\x01")


@pytest.mark.parametrize(
    "close, code",
    [(_close_with_4001, 4001), (_send_200_kb, 1009), (_send_binary, 1003)],
    ids=["client-4001", "message-too-big", "binary-frame"],
)
def test_disconnect_carries_the_close_code_the_client_saw(faulty_server, recorded, close, code):
    before = connection_ids(faulty_server)
    with connect(faulty_server.url, open_timeout=TIMEOUT, max_size=None) as ws:
        connection_id = newest_connection(faulty_server, before)
        close(ws)
        with contextlib.suppress(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    # the close frame that started the closing handshake: the client's own, or the gateway's
    first = ws.protocol.close_sent if not ws.protocol.close_rcvd_then_sent else ws.protocol.close_rcvd
    assert first is not None and first.code == code  # what the client saw...
    context = recorded_disconnect(recorded, connection_id)
    assert context["disconnectStatusCode"] == code  # ...is what $disconnect says


def test_disconnect_after_delete_connection_and_at_shutdown_carries_the_servers_code(recorded):
    with contextlib.ExitStack() as clients:
        with running(port=0, world=faulty_world(recorded)) as server:
            before = connection_ids(server)
            deleted = clients.enter_context(connect(server.url, open_timeout=TIMEOUT))
            deleted_id = newest_connection(server, before)
            management(server).delete_connection(ConnectionId=deleted_id)
            with pytest.raises(ConnectionClosed):
                deleted.recv(timeout=TIMEOUT)

            before = connection_ids(server)
            staying = clients.enter_context(connect(server.url, open_timeout=TIMEOUT))
            staying_id = newest_connection(server, before)
        # the server stopped: it closed the connection that was still open
        with pytest.raises(ConnectionClosed):
            staying.recv(timeout=TIMEOUT)

    assert (deleted.close_code, recorded_disconnect(recorded, deleted_id)["disconnectStatusCode"]) == (1000, 1000)
    assert (staying.close_code, recorded_disconnect(recorded, staying_id)["disconnectStatusCode"]) == (1001, 1001)
    assert recorded_disconnect(recorded, staying_id)["disconnectReason"] == "Going away"


# --- local mode follows the component ------------------------------------------------------------------


def test_local_mode_serves_the_route_set_the_component_declares(monkeypatch):
    # GIVEN a component whose route set lacks ping and $default
    reduced = tuple(r for r in spec.ROUTES if r.key not in ("ping", "$default"))
    monkeypatch.setattr(spec, "ROUTES", reduced)
    world = local_program.from_component("dev")
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
    world = served_world()
    assert {key: f.handler for key, f in world.routes.items()} == {r.key: r.handler for r in spec.ROUTES}
    assert world.table["hashKey"] == spec.CONNECTION_ID and world.table["rangeKey"] == spec.CHANNEL_ID
    assert world.route_selection_expression == spec.ROUTE_SELECTION_EXPRESSION
    for function in world.routes.values():
        assert function.environment[spec.ENV_MANAGEMENT_ENDPOINT] == world.management_endpoint
        assert set(function.files) == {f"channel_server/handlers/{p.name}" for p in (Path(spec.__file__).parent).glob("*.py")}


# --- any Pulumi program, not only the defaults -------------------------------------------------------------

CONSUMER = """
import pulumi
from channel_server import ChannelServer

config = pulumi.Config()
chat = ChannelServer("chat", {
    "stage_name": config.require("stage"),
    "channel_id_pattern": config.get("roomPattern") or "[a-z]+",
    "max_message_bytes": config.require_int("maxBytes"),
})
pulumi.export("url", chat.url)
"""


def consumer_project(folder: Path, program: str = CONSUMER, stacks: dict[str, str] | None = None) -> Path:
    """A Pulumi project of a team that imports the component: Pulumi.yaml with
    a declared default, its program, and stack files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Pulumi.yaml").write_text(
        "name: consumer\nruntime: python\nconfig:\n  maxBytes:\n    type: integer\n    default: 200\n"
    )
    (folder / "__main__.py").write_text(program)
    for stack, text in (stacks or {"qa": "config:\n  consumer:stage: qa\n  consumer:roomPattern: room-[0-9]+\n"}).items():
        (folder / f"Pulumi.{stack}.yaml").write_text(text)
    return folder


def test_local_mode_serves_a_consumer_program_with_its_stacks_limits(tmp_path):
    project = consumer_project(tmp_path / "consumer")
    with running(port=0, program=project, stack="qa", stack_required=True) as server:
        assert server.url.endswith("/qa")  # the stage from the stack's config
        alice, bob = Client(server.url), Client(server.url)
        try:
            # the channel id pattern from the stack file holds...
            assert alice.request({"type": "join", "channelId": "lobby"}) == {
                "type": "joinFailure", "data": "channelId must match room-[0-9]+"}
            alice.join("room-1")
            bob.join("room-1")
            # ...and so does the message limit declared in Pulumi.yaml
            refused = alice.request({"type": "publish", "data": "x" * 300})
            assert refused["type"] == "publishFailure" and refused["data"].endswith("the limit is 200")
            alice.send({"type": "publish", "data": "hi"})
            assert bob.recv()["data"] == "hi"
            assert alice.recv() == {"type": "publishSuccess"}
            assert bob.nothing_more()
        finally:
            alice.close()
            bob.close()


TWO_SERVERS = """
from channel_server import ChannelServer

ChannelServer("chat", {"stage_name": "chat"})
ChannelServer("games", {"stage_name": "games", "channel_id_pattern": "game-[0-9]+"})
"""


def test_a_program_with_several_servers_needs_component_to_pick_one(tmp_path):
    project = consumer_project(tmp_path / "two", TWO_SERVERS, stacks={})
    with pytest.raises(local_program.ProgramError) as ambiguous:
        local_program.from_project(project)
    assert str(ambiguous.value) == (
        f"{project / '__main__.py'} declares 2 ChannelServers (chat, games); pick one with --component NAME"
    )

    games = local_program.from_project(project, component="games")
    assert games.stage == "games"
    assert {f.environment[spec.ENV_CHANNEL_ID_PATTERN] for f in games.routes.values()} == {"game-[0-9]+"}
    assert all(f.name.startswith("games-") for f in games.routes.values())  # none of chat's

    with pytest.raises(local_program.ProgramError, match=r"declares no ChannelServer named 'lobby'; it declares: chat, games"):
        local_program.from_project(project, component="lobby")


@pytest.mark.parametrize(
    "program, stack, message",
    [
        ("import pulumi\n", "qa", r"__main__.py declares no ChannelServer; local mode serves one"),
        ("from channel_server import ChannelServer\nChannelServer('x', {'lambda_timeout_seconds': 30})\n", "qa",
         r"__main__.py failed: channel_server.args.ChannelServerArgsError: ChannelServerArgs "
         r"lambda_timeout_seconds=30: must be from 1 to 29 seconds .* \(line 2\)"),
        (CONSUMER, "prod", r"stack prod has no config file: .*Pulumi.prod.yaml does not exist"),
    ],
    ids=["no-server", "bad-args", "no-stack-file"],
)
def test_a_program_local_mode_cannot_serve_gets_a_clear_error(tmp_path, program, stack, message):
    project = consumer_project(tmp_path / "broken", program)
    with pytest.raises(local_program.ProgramError, match=message):
        local_program.from_project(project, stack, stack_required=True)


def test_the_command_serves_the_project_in_its_folder_by_default(tmp_path):
    from channel_server.local.cli import default_program, parse_args

    project = consumer_project(tmp_path / "here")
    assert default_program(project) == project / "__main__.py"
    assert default_program(tmp_path) is None  # no Pulumi.yaml: ChannelServer with its defaults
    repo = Path(__file__).resolve().parents[1]
    program = default_program(repo)
    assert program is not None
    world = local_program.from_project(program, "dev", stack_required=True)
    assert world.stage == "dev" and set(world.routes) == {r.key for r in spec.ROUTES}
    with pytest.raises(SystemExit):
        parse_args(["--program", str(tmp_path / "nowhere"), "--stage", "no spaces"])


# --- the management API's simulated round trip ---------------------------------------------------------


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


def test_a_server_with_a_management_latency_past_the_handlers_timeout_is_refused():
    from channel_server.local.server import LocalServer

    with pytest.raises(ValueError, match="must be from 0 to below 1000"):
        LocalServer(port=0, management_latency_ms=1500)


def test_a_stop_ends_the_queue_poller_even_when_its_wait_swallows_the_cancel(monkeypatch):
    """The poller's idle wait is a ``wait_for``, which (Python 3.11) can drop a
    cancel that meets a wake-up: the poller must stop anyway."""
    from types import SimpleNamespace

    from channel_server.local import queues

    class Client:
        def receive_message(self, **_: object) -> dict:
            return {}

    waits: list[int] = []
    swallowed: list[int] = []

    async def swallowing_wait_for(awaitable, timeout):
        waits.append(1)
        task = asyncio.ensure_future(awaitable)
        try:
            return await task
        except asyncio.CancelledError:
            task.cancel()
            if swallowed:
                raise
            swallowed.append(1)
            return None  # the cancel met the answer: the answer wins (once)

    async def scenario() -> bool:
        monkeypatch.setattr(queues.asyncio, "wait_for", swallowing_wait_for)
        subscription = SimpleNamespace(batch_size=10, queue=SimpleNamespace(name="q"), function=SimpleNamespace(name="f"))
        # duck-typed stand-ins: the poller reads only these fields, and with the queue empty invokes no function
        poller = queues.Poller(subscription, "http://127.0.0.1/q", None,  # type: ignore[arg-type]
                               Client(), "us-east-1", concurrency=2)
        poller.start()
        while not waits:  # it found the queue empty, and now waits
            await asyncio.sleep(0)
        stopping = asyncio.ensure_future(poller.stop())
        for _ in range(1000):  # far more turns of the loop than a stop takes
            if stopping.done():
                return True
            await asyncio.sleep(0)
        while not stopping.done():  # it ran on: end it for good, then report
            assert poller._task is not None
            poller._task.cancel()
            await asyncio.sleep(0.01)
        return False

    assert asyncio.run(scenario())
