"""The reference HTTP backend (``channel_server.http_backend``) as API Gateway
uses it: envelopes (``backend.envelope_of`` of recorded-shape events) POSTed
to a real port, the embedded DynamoDB behind it, the fake management API
receiving what other members are sent.

Every wait is for a reply, an event or a line the process prints, bounded by
TIMEOUT only so that a broken build fails instead of hanging. Servers listen
on 127.0.0.1 and stop at the end of their test.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect as open_websocket

from channel_server import backend as contract
from channel_server import http_backend
from channel_server.handlers import protocol, spec
from channel_server.handlers.app import ChannelApp
from channel_server.http_backend import HttpBackend, PortInUse, RequestContext
from channel_server.local.server import running
from support.events import ENTRY_POINTS, event, new_connection_id
from support.local_mode import served_world
from support.processes import threads_taking
from support.management import FakeManagementApi
from support.recorder import RecordingAws
from support.table import closed, rows_of
from support.frames import message

TIMEOUT = 30
COMMAND = [sys.executable, "-m", "channel_server.http_backend"]


# --- talking to it ------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)


def _read(connection: http.client.HTTPConnection) -> Reply:
    response = connection.getresponse()
    return Reply(response.status, {name.lower(): value for name, value in response.getheaders()}, response.read())


def request(url: str, method: str = "POST", body: bytes | None = None, headers: dict | None = None,
            path: str | None = None) -> Reply:
    """One request on a connection of its own."""
    parts = urlsplit(url)
    assert parts.hostname is not None, url
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        connection.request(method, path or parts.path or "/", body=body, headers=headers or {})
        return _read(connection)
    finally:
        connection.close()


def deliver(backend: HttpBackend | str, raw_event: dict) -> Reply:
    """What API Gateway does for ``raw_event``: POST its envelope."""
    url = backend if isinstance(backend, str) else backend.url
    return request(url, body=contract.envelope_of(raw_event).encode(), headers={"Content-Type": "application/json"})


def send(backend: HttpBackend | str, connection_id: str, frame: Any) -> Reply:
    """``frame`` from ``connection_id``, on the route API Gateway selects for it."""
    return deliver(backend, event("default", connection_id, body=frame))


def connect(backend: HttpBackend | str, connection_id: str) -> Reply:
    return deliver(backend, event("connect", connection_id))


def join(backend: HttpBackend | str, connection_id: str, channel: str) -> dict:
    """Connect and join; the joinSuccess frame."""
    assert connect(backend, connection_id).status == 200
    frame = send(backend, connection_id, {"type": "join", "channelId": channel}).json()
    assert frame["type"] == "joinSuccess", frame
    return frame


def envelope(**changes: Any) -> bytes:
    """A well-formed ping envelope with ``changes`` (a None value drops the field)."""
    document = json.loads(contract.envelope_of(event("ping", new_connection_id())))
    for name, value in changes.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    return json.dumps(document).encode()


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture
def channel_environ(environ: dict[str, str], embedded_dynamodb: Any) -> dict:
    """The app's whole environment, as a function's holds it: the process's
    AWS settings (fake credentials, region), the test's table and management
    API, and DynamoDB's endpoint, where the app's own client finds it. The
    app reads nothing else: the process's environment is left as it is."""
    return {**os.environ, **environ, "AWS_ENDPOINT_URL_DYNAMODB": embedded_dynamodb.endpoint}


@pytest.fixture
def backend(channel_environ: dict[str, str]) -> Iterator[HttpBackend]:
    """The backend on a free port, serving a ChannelApp it builds from the
    environment on the first request."""
    with HttpBackend(channel_environ) as server:
        yield server


# --- the routes ---------------------------------------------------------------------


def test_the_routes_are_the_specs_and_each_is_a_channel_app_method():
    assert dict(http_backend.ROUTE_METHODS) == {route.key: route.function for route in spec.ROUTES}
    for method in http_backend.ROUTE_METHODS.values():
        assert callable(getattr(ChannelApp, method))
    assert http_backend.DEFAULT_ROUTE in http_backend.ROUTE_METHODS
    # only what takes Lambda's context gets one: the publish, whose fan-out it
    # bounds, and the join, whose resume it bounds
    assert http_backend.TAKES_CONTEXT == {"publish", "join"}


def test_connect_is_accepted_with_an_empty_200(backend):
    reply = connect(backend, new_connection_id())

    assert reply.status == 200
    assert reply.body == b""
    assert "content-type" not in reply.headers


def test_join_answers_join_success_and_writes_the_membership(backend, dynamodb, table):
    alice = new_connection_id()
    assert connect(backend, alice).status == 200

    reply = send(backend, alice, {"type": "join", "channelId": "lobby"})

    assert reply.status == 200
    frame = reply.json()
    assert frame["type"] == "joinSuccess"
    assert frame["channelId"] == "lobby" and frame["senderId"]
    written = sorted(row[spec.CHANNEL_ID] for row in rows_of(dynamodb, table, alice))
    assert written == sorted([spec.STATE_ROW_PREFIX + alice, "lobby"])  # its state row and its membership


def test_a_publish_reaches_the_other_member_and_the_sender_gets_publish_success(backend, management):
    alice, bob = new_connection_id(), new_connection_id()
    alice_joined = join(backend, alice, "lobby")
    join(backend, bob, "lobby")

    reply = send(backend, alice, {"type": "publish", "data": {"text": "hello"}})

    assert reply.status == 200
    assert reply.json() == protocol.publish_success()
    assert management.frames(bob) == [
        message("lobby", alice_joined["senderId"], {"text": "hello"})
    ]
    # the sender's reply travels as the HTTP answer (the route response), never as a post
    assert management.frames(alice) == []


def test_ping_is_answered_pong(backend):
    reply = send(backend, new_connection_id(), {"type": "ping", "data": 42})

    assert reply.status == 200
    assert reply.json() == {"type": "pong", "data": 42}


def test_a_malformed_frame_gets_the_protocols_error_reply(backend):
    reply = send(backend, new_connection_id(), "{not json")

    assert reply.status == 200  # a protocol reply, not an HTTP failure: the client is told
    frame = reply.json()
    assert frame["type"] == "error" and frame["data"]


@pytest.mark.parametrize("frame", [
    {"type": "ping"},
    {"type": "ping", "data": {"nested": [1, "two", None]}},
    "{not json",
    "",
    {"type": "subscribe", "channelId": "lobby"},
    {"type": "join"},
    {"type": "join", "channelId": "$nope"},
    {"type": "publish", "data": "before any join"},
])
def test_a_frame_gets_exactly_the_reply_the_lambda_handler_gives(backend, app, lambda_context, frame):
    raw = event("default", new_connection_id(), body=frame)
    handler = getattr(app, ENTRY_POINTS[raw["requestContext"]["routeKey"]])

    expected = handler(raw, lambda_context)
    reply = deliver(backend, raw)

    assert reply.status == expected["statusCode"]
    assert reply.body.decode("utf-8") == expected["body"]


def test_a_route_key_it_does_not_know_is_served_as_default(backend, app, lambda_context):
    raw = event("default", new_connection_id(), body={"type": "ping"})
    as_default = app.default(raw, lambda_context)
    raw["requestContext"]["routeKey"] = "subscribe"  # a route the API has and this table lacks

    reply = deliver(backend, raw)

    assert reply.status == 200
    assert reply.body.decode() == as_default["body"]
    assert reply.json()["type"] == "error"


def test_disconnect_answers_200_and_closes_the_connections_rows(backend, dynamodb, table):
    alice = new_connection_id()
    join(backend, alice, "lobby")
    assert rows_of(dynamodb, table, alice)

    reply = deliver(backend, event("disconnect", alice))

    assert reply.status == 200 and reply.body == b""
    assert closed(dynamodb, table, alice)


def test_the_path_is_not_read(backend):
    reply = request(backend.url, body=envelope(), path="/some/integration/path?x=1")

    assert reply.status == 200 and reply.json()["type"] == "pong"


def test_many_requests_at_once_are_all_served(channel_environ, management):
    members = [new_connection_id() for _ in range(12)]
    with HttpBackend(channel_environ, workers=3) as backend:  # more requests than workers: they wait their turn
        with ThreadPoolExecutor(len(members)) as pool:
            joined = dict(zip(members, pool.map(lambda member: join(backend, member, "busy"), members), strict=True))

        reply = send(backend, members[0], {"type": "publish", "data": "to all"})

    assert reply.json() == protocol.publish_success()
    expected = message("busy", joined[members[0]]["senderId"], "to all")
    assert {member: management.frames(member) for member in members[1:]} == {
        member: [expected] for member in members[1:]
    }


def test_requests_share_a_kept_alive_connection_even_after_a_refusal(backend):
    connection = http.client.HTTPConnection(backend.host, backend.port, timeout=TIMEOUT)
    try:
        connection.request("POST", "/", body=envelope())
        first = _read(connection)
        connection.request("POST", "/", body=b"not json")
        refused = _read(connection)
        connection.request("POST", "/", body=envelope())
        again = _read(connection)
    finally:
        connection.close()

    assert (first.status, refused.status, again.status) == (200, 400, 200)
    assert first.headers.get("connection", "").lower() != "close"


# --- the publish's time ---------------------------------------------------------------


class RecordingApp(ChannelApp):
    """A ChannelApp that notes the context each publish gets."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.contexts: list[tuple[Any, int]] = []

    def publish(self, event, context=None):
        self.contexts.append((context, context.get_remaining_time_in_millis()))
        return super().publish(event, context)


def test_a_publish_gets_the_integrations_timeout_as_its_time(channel_environ):
    app = RecordingApp(channel_environ)
    with HttpBackend(app, timeout_ms=5000) as backend:
        reply = send(backend, new_connection_id(), {"type": "publish", "data": 1})

    assert reply.json() == protocol.publish_failure(protocol.NOT_IN_CHANNEL)
    ((context, remaining),) = app.contexts
    assert isinstance(context, RequestContext)
    assert 0 < remaining <= 5000


def test_the_time_already_spent_on_a_request_is_taken_off_the_publishs_time(channel_environ):
    app = RecordingApp(channel_environ)
    backend = HttpBackend(app, timeout_ms=2500)
    try:
        body = contract.envelope_of(event("default", new_connection_id(), body={"type": "publish", "data": 1}))
        backend.answer(body.encode(), started=time.monotonic() - 2.0)
    finally:
        backend.stop()

    ((_, remaining),) = app.contexts
    assert remaining <= 500


def test_a_publish_whose_time_is_up_starts_no_post(channel_environ, management):
    backend = HttpBackend(channel_environ, timeout_ms=contract.MIN_TIMEOUT_MS).start()
    try:
        alice, bob = new_connection_id(), new_connection_id()
        join(backend, alice, "late")
        join(backend, bob, "late")
        body = contract.envelope_of(event("default", alice, body={"type": "publish", "data": "too late"}))

        # API Gateway gave up on this request long ago: the fan-out starts nothing
        answer = backend.answer(body.encode(), started=time.monotonic() - 10)
    finally:
        backend.stop()

    assert answer.body is not None
    frame = json.loads(answer.body)
    assert frame["type"] == "publishFailure" and frame["failed"] == 1 and frame["delivered"] == 0
    assert management.frames(bob) == []


def test_the_request_context_counts_down_from_when_the_request_arrived():
    now = time.monotonic()

    assert RequestContext(1500, now - 1.0).get_remaining_time_in_millis() <= 500
    assert RequestContext(1000, now - 5.0).get_remaining_time_in_millis() == 0
    assert 0 < RequestContext(29_000, now).get_remaining_time_in_millis() <= 29_000


# --- bad input ----------------------------------------------------------------------


def assert_refused(reply: Reply, status: int) -> str:
    """A refusal with a JSON message; the message."""
    assert reply.status == status, reply
    message = reply.json()["message"]
    assert isinstance(message, str) and message
    return message


@pytest.mark.parametrize("body", [b"not json", b"", b"\xff\xfe\x00garbage", b'{"connectionId": ', b"[" * 100_000])
def test_a_body_that_is_not_json_is_refused_400_and_the_server_serves_on(backend, body):
    assert_refused(request(backend.url, body=body), 400)

    assert send(backend, new_connection_id(), {"type": "ping"}).json() == {"type": "pong"}


@pytest.mark.parametrize("field", [name for name, _, _ in contract.CONTEXT_FIELDS])
def test_an_envelope_without_a_field_is_refused_400_naming_it(backend, field):
    message = assert_refused(request(backend.url, body=envelope(**{field: None})), 400)

    assert field in message


@pytest.mark.parametrize("body", [b"[]", b'"ping"', b"42", b"null"])
def test_json_that_is_not_an_object_is_refused_400(backend, body):
    assert_refused(request(backend.url, body=body), 400)


def test_a_body_field_that_is_not_a_string_is_refused_400(backend):
    message = assert_refused(request(backend.url, body=envelope(body={"type": "ping"})), 400)

    assert "body" in message


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_a_method_other_than_post_is_refused_405(backend, method):
    reply = request(backend.url, method=method)

    assert_refused(reply, 405)
    assert reply.headers["allow"] == "POST"


def test_head_is_refused_405_without_a_body(backend):
    reply = request(backend.url, method="HEAD")

    assert reply.status == 405 and reply.headers["allow"] == "POST"
    assert reply.body == b""


def test_a_body_over_the_limit_is_refused_413_and_the_server_serves_on(backend):
    reply = request(backend.url, body=b"x" * (http_backend.MAX_BODY_BYTES + 1))

    assert_refused(reply, 413)
    assert send(backend, new_connection_id(), {"type": "ping"}).status == 200


def test_an_envelope_of_the_largest_frame_api_gateway_sends_is_within_the_limit(backend, app, lambda_context):
    # every character of a control-character frame escapes to six
    data = "\x01" * (protocol.API_GATEWAY_MAX_MESSAGE_BYTES - 100)
    raw = event("default", new_connection_id(), body=json.dumps({"type": "ping", "data": data}, ensure_ascii=False))
    body = contract.envelope_of(raw).encode()
    assert len(body) > 5 * protocol.API_GATEWAY_MAX_MESSAGE_BYTES

    reply = request(backend.url, body=body)

    # served, as the Lambda handler serves it (whose pong of it would be too large)
    assert reply.status == 200
    assert reply.body.decode() == app.ping(raw, lambda_context)["body"]


def test_a_post_without_a_content_length_is_refused_411(backend):
    connection = http.client.HTTPConnection(backend.host, backend.port, timeout=TIMEOUT)
    try:
        connection.putrequest("POST", "/")
        connection.endheaders()
        reply = _read(connection)
    finally:
        connection.close()

    assert_refused(reply, 411)


def test_http_servers_own_refusals_are_json_too(backend):
    with socket.create_connection((backend.host, backend.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())

    assert_refused(reply, 414)


def test_a_client_that_hangs_up_mid_body_loses_nothing_for_the_others(backend):
    with socket.create_connection((backend.host, backend.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"connection")

    assert send(backend, new_connection_id(), {"type": "ping"}).json() == {"type": "pong"}


class BrokenApp(ChannelApp):
    def ping(self, event):
        raise RuntimeError("the route broke")


def test_an_exception_in_a_route_is_answered_500_and_the_server_serves_on(channel_environ, caplog):
    with HttpBackend(BrokenApp(channel_environ)) as backend:
        reply = send(backend, new_connection_id(), {"type": "ping"})
        after = connect(backend, new_connection_id())

    message = assert_refused(reply, 500)
    assert "the route broke" not in message  # nothing internal reaches API Gateway
    assert after.status == 200
    assert any("the route broke" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


def test_an_app_factory_that_fails_is_answered_500_and_tried_again(channel_environ):
    attempts = []

    def build() -> ChannelApp:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("not yet")
        return ChannelApp(channel_environ)

    with HttpBackend(build) as backend:
        first = connect(backend, new_connection_id())
        second = connect(backend, new_connection_id())

    assert_refused(first, 500)
    assert second.status == 200 and len(attempts) == 2


# --- life cycle ---------------------------------------------------------------------


def test_the_app_can_come_after_the_port_is_known(channel_environ):
    # as local mode needs it: the port first (for the integration's URL), the app later
    with HttpBackend() as backend:
        assert backend.url == f"http://127.0.0.1:{backend.port}/" and backend.port > 0
        before = send(backend, new_connection_id(), {"type": "ping"})

        backend.set_app(lambda: ChannelApp(channel_environ))
        after = send(backend, new_connection_id(), {"type": "ping"})

    assert_refused(before, 503)
    assert after.json() == {"type": "pong"}


def test_a_port_in_use_is_refused_with_the_way_out():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        with pytest.raises(PortInUse) as raised:
            HttpBackend(port=port)

    assert str(raised.value) == f"127.0.0.1:{port} is already in use; choose another --port, or --port 0 for a free one"


def test_the_timeout_must_be_one_api_gateway_allows():
    for timeout in (contract.MIN_TIMEOUT_MS - 1, contract.MAX_TIMEOUT_MS + 1):
        with pytest.raises(ValueError, match="timeout_ms"):
            HttpBackend(timeout_ms=timeout)


class HeldApp(ChannelApp):
    """A ChannelApp whose pings wait for the test's go."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.entered, self.go = threading.Event(), threading.Event()

    def ping(self, event):
        self.entered.set()
        assert self.go.wait(TIMEOUT)
        return super().ping(event)


def test_stop_lets_the_request_in_flight_finish_then_closes_the_port(channel_environ):
    app = HeldApp(channel_environ)
    backend = HttpBackend(app).start()
    with ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(send, backend, new_connection_id(), {"type": "ping"})
        assert app.entered.wait(TIMEOUT)

        stopping = pool.submit(backend.stop)
        assert not stopping.done()  # waits for the ping it is serving
        app.go.set()

        assert in_flight.result(TIMEOUT).json() == {"type": "pong"}
        stopping.result(TIMEOUT)

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((backend.host, backend.port), timeout=TIMEOUT)
    backend.stop()  # again: nothing to do


def test_one_log_line_per_request_with_route_connection_and_status_and_never_the_payload(backend, caplog):
    caplog.set_level(logging.DEBUG)
    alice = new_connection_id()
    secret = "the-payload-never-logged"

    join(backend, alice, "logged")
    send(backend, alice, {"type": "publish", "data": secret})
    request(backend.url, method="GET")

    lines = [record for record in caplog.records if record.name == "channel_server.http_backend"]
    assert [(record.routeKey, record.connectionId, record.status, record.levelno) for record in lines] == [
        ("$connect", alice, 200, logging.INFO),
        ("join", alice, 200, logging.INFO),
        ("publish", alice, 200, logging.INFO),
        ("-", "-", 405, logging.INFO),
    ]
    assert all(record.getMessage().startswith(("POST ", "GET ")) for record in lines)
    assert "publish " + alice in lines[2].getMessage() and "-> 200" in lines[2].getMessage()
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert secret not in logged


# --- the command ----------------------------------------------------------------------


def test_help_names_every_flag_and_its_environment_variable():
    result = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=TIMEOUT)

    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--table", "--management-endpoint", "--index", "--dynamodb-endpoint",
                 "--timeout-ms", "--workers", "--handler-log-level"):
        assert flag in result.stdout
    for variable in (spec.ENV_TABLE_NAME, spec.ENV_MANAGEMENT_ENDPOINT, spec.ENV_INDEX_NAME, "AWS_ENDPOINT_URL_DYNAMODB"):
        assert variable in result.stdout
    assert f"{contract.MIN_TIMEOUT_MS} to {contract.MAX_TIMEOUT_MS}" in result.stdout


def command_environ(**changes: str | None) -> dict[str, str]:
    """This process's (scrubbed, fake-credential) environment without any
    CHANNEL_* variable, with ``changes`` (None removes)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CHANNEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@pytest.mark.parametrize("args, env, named", [
    (["--port", "0", "--management-endpoint", "http://127.0.0.1:9/dev"], {}, ["--table", spec.ENV_TABLE_NAME]),
    (["--port", "0", "--table", "t"], {}, ["--management-endpoint", spec.ENV_MANAGEMENT_ENDPOINT]),
    (["--port", "0"], {spec.ENV_TABLE_NAME: "t", spec.ENV_MANAGEMENT_ENDPOINT: "ftp://nowhere"},
     ["--management-endpoint", spec.ENV_MANAGEMENT_ENDPOINT, "ftp://nowhere"]),
    (["--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev"], {}, ["--port"]),
    (["--port", "65536", "--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev"], {}, ["--port"]),
    (["--port", "0", "--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev", "--timeout-ms", "30000"], {},
     ["--timeout-ms", "50 to 29000"]),
    (["--port", "0", "--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev",
      "--dynamodb-endpoint", "localhost:8000"], {}, ["--dynamodb-endpoint"]),
    (["--port", "0", "--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev"],
     {spec.ENV_MAX_MESSAGE_BYTES: "lots"}, [spec.ENV_MAX_MESSAGE_BYTES]),
    (["--port", "0", "--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev"],
     {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, ["AWS_ACCESS_KEY_ID"]),
    (["--port", "0", "--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev"],
     {"AWS_REGION": None, "AWS_DEFAULT_REGION": None}, ["AWS_REGION"]),
    # local placeholders only when every endpoint is on loopback: never for AWS's management API ...
    (["--port", "0", "--table", "t", "--dynamodb-endpoint", "http://127.0.0.1:9/",
      "--management-endpoint", "https://k7x2mq9ehd.execute-api.us-east-1.amazonaws.com/dev"],
     {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, ["AWS_ACCESS_KEY_ID"]),
    # ... nor for one on another host, nor for a fan-out queue in AWS
    (["--port", "0", "--table", "t", "--dynamodb-endpoint", "http://127.0.0.1:9/",
      "--management-endpoint", "http://10.0.0.1:9/dev"],
     {"AWS_REGION": None, "AWS_DEFAULT_REGION": None}, ["AWS_REGION"]),
    (["--port", "0", "--table", "t", "--dynamodb-endpoint", "http://127.0.0.1:9/",
      "--management-endpoint", "http://127.0.0.1:9/dev"],
     {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
      spec.ENV_FANOUT_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/fanout"}, ["AWS_ACCESS_KEY_ID"]),
    # credentials set in part are an error, not a traceback, on loopback too
    (["--port", "0", "--table", "t", "--dynamodb-endpoint", "http://127.0.0.1:9/",
      "--management-endpoint", "http://127.0.0.1:9/dev"],
     {"AWS_SECRET_ACCESS_KEY": None}, ["missing: AWS_SECRET_ACCESS_KEY"]),
])
def test_a_missing_or_invalid_setting_is_an_argparse_error_naming_what_to_set(args, env, named):
    result = subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=TIMEOUT,
                            env=command_environ(**env))

    assert result.returncode == 2, result
    assert "usage:" in result.stderr and "Traceback" not in result.stderr
    for text in named:
        assert text in result.stderr
    assert result.stdout == ""


def test_a_port_in_use_is_one_line_and_exit_status_1():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = subprocess.run(
            [*COMMAND, "--port", str(port), "--table", "t", "--management-endpoint", "http://127.0.0.1:9/dev"],
            capture_output=True, text=True, timeout=TIMEOUT, env=command_environ(),
        )

    assert result.returncode == 1
    assert result.stderr == (f"cannot start: 127.0.0.1:{port} is already in use; "
                             "choose another --port, or --port 0 for a free one\n")
    assert result.stdout == ""


def read_line(process: subprocess.Popen, what: str) -> str:
    """The next line the process prints on stdout, waiting at most TIMEOUT."""
    assert process.stdout is not None  # started with stdout=PIPE
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
    assert ready, f"{what}: nothing printed in {TIMEOUT} s"
    line = process.stdout.readline()
    assert line, f"{what}: the process exited ({process.wait()})"
    return line


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_the_channel_and_stops_cleanly_on_a_signal(
    stop_signal, embedded_dynamodb, table, environ, management: FakeManagementApi, dynamodb, tmp_path: Path,
):
    env = command_environ(**{
        spec.ENV_TABLE_NAME: "no-such-table",  # the flag wins
        spec.ENV_MANAGEMENT_ENDPOINT: management.endpoint,  # no flag: the environment's
        spec.ENV_INDEX_NAME: environ[spec.ENV_INDEX_NAME],
        spec.ENV_MAX_MESSAGE_BYTES: "300",  # passed through to the channel code
    })
    log_file = tmp_path / "stderr.log"
    with log_file.open("w") as stderr:
        process = subprocess.Popen(
            [*COMMAND, "--port", "0", "--table", table, "--dynamodb-endpoint", embedded_dynamodb.endpoint],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
        )
    assert process.stdout is not None
    try:
        line = read_line(process, "the ready line")
        assert line.startswith("channel-server HTTP backend on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()
        assert (urlsplit(url).port or 0) > 0 and url.endswith("/")

        alice, bob = new_connection_id(), new_connection_id()
        alice_joined = join(url, alice, "command")
        join(url, bob, "command")
        published = send(url, alice, {"type": "publish", "data": "hi"}).json()
        too_large = send(url, alice, {"type": "publish", "data": "x" * 400}).json()
        pong = send(url, bob, {"type": "ping", "data": 7}).json()
        # a process-directed signal goes to any thread that does not block it;
        # only the main thread's wait is woken by its handler, so only it may take one
        assert threads_taking(process.pid, stop_signal) == [process.pid]

        process.send_signal(stop_signal)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()

    assert published == protocol.publish_success()
    assert management.frames(bob) == [message("command", alice_joined["senderId"], "hi")]
    assert too_large["type"] == "publishFailure"
    assert pong == {"type": "pong", "data": 7}
    assert process.stdout.closed
    logged = log_file.read_text()
    assert "Traceback" not in logged
    assert f"POST join {alice} -> 200" in logged and f"POST ping {bob} -> 200" in logged
    assert "stopped" in logged
    assert rows_of(dynamodb, table, alice)  # the flag's table, not the environment's


# --- against endpoints on this machine: no AWS account needed ---------------------------


@pytest.mark.parametrize("url, local", [
    ("http://127.0.0.1:8000", True),
    ("http://127.8.9.10:8000/dev", True),
    ("http://[::1]:8000/dev", True),
    ("http://localhost:8000/", True),
    ("http://LocalHost.:8000/", True),
    ("http://[::ffff:127.0.0.1]:8000/", True),
    ("https://dynamodb.us-east-1.amazonaws.com", False),
    ("https://k7x2mq9ehd.execute-api.us-east-1.amazonaws.com/dev", False),
    ("http://10.0.0.1:8000/", False),
    ("http://0.0.0.0:8000/", False),
    ("http://localhost.example.com:8000/", False),
    ("http://127.0.0.1.nip.io/", False),
    ("http://[::2]:8000/", False),
])
def test_only_loopback_hosts_are_this_machines_endpoints(url, local):
    assert http_backend.is_loopback(url) is local


@pytest.mark.parametrize("found", [
    {"DynamoDB": None, "management API": "http://127.0.0.1:9/dev"},  # AWS's DynamoDB
    {"DynamoDB": "http://127.0.0.1:9/", "management API": "https://k7x2mq9ehd.execute-api.us-east-1.amazonaws.com/dev"},
    {"DynamoDB": "http://127.0.0.1:9/", "management API": "http://127.0.0.1:9/dev", "SQS": None},
])
def test_placeholders_are_never_added_when_any_endpoint_is_elsewhere(found):
    def has_credentials() -> bool:
        raise AssertionError("credentials are looked for by the app's clients only")

    assert http_backend.local_placeholders(found, {}, has_credentials) == {}


def bare_environ(home: Path) -> dict[str, str]:
    """A shell with no AWS anything: this process's environment without any
    AWS_* or CHANNEL_* variable, HOME an empty folder (no ~/.aws), and no
    PYTHONUNBUFFERED (the ready line must be flushed by the command itself).
    The one AWS_* variable set keeps botocore off the instance metadata
    service, so that a run on an EC2 machine never meets its role's real
    credentials (it supplies neither credentials nor a region)."""
    home.mkdir(exist_ok=True)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("AWS_", "CHANNEL_")) and name != "PYTHONUNBUFFERED"}
    env["HOME"] = str(home)
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A free loopback port, bound until the block ends but never listening:
    no other socket is given it, yet the backend (which binds with
    SO_REUSEADDR too) can listen on it. Local mode needs the backend's URL
    before the backend can be given local mode's endpoints."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


#: The ready line, exactly: local mode reads the URL from it.
READY_LINE = re.compile(r"channel-server HTTP backend on (http://127\.0\.0\.1:(\d+)/)\n")


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, then its exit status; killed if it does not stop."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_against_local_mode_the_command_serves_a_shell_with_no_aws_credentials_or_region(tmp_path: Path):
    # GIVEN local mode posting its routes to the backend's port, and the
    # command started as README's "HTTP backend" says, in a shell without AWS
    with held_port() as port:
        url = f"http://127.0.0.1:{port}/"
        log_file = tmp_path / "stderr.log"
        process: subprocess.Popen | None = None
        try:
            with running(port=0, backend=url, world=served_world(backend=url)) as server:
                with log_file.open("w") as stderr:
                    process = subprocess.Popen(
                        [*COMMAND, "--port", str(port), "--table", server.table_name,
                         "--dynamodb-endpoint", server.dynamodb_endpoint,
                         "--management-endpoint", server.management_url],
                        stdout=subprocess.PIPE, stderr=stderr, text=True, env=bare_environ(tmp_path / "home"),
                    )
                ready = read_line(process, "the ready line")

                # WHEN, the moment the ready line is read, two WebSocket clients join a
                # channel and one of them publishes
                with open_websocket(server.url, open_timeout=TIMEOUT) as alice, \
                        open_websocket(server.url, open_timeout=TIMEOUT) as bob:
                    alice.send(json.dumps({"type": "join", "channelId": "no-aws"}))
                    alice_joined = json.loads(alice.recv(timeout=TIMEOUT))
                    bob.send(json.dumps({"type": "join", "channelId": "no-aws"}))
                    bob_joined = json.loads(bob.recv(timeout=TIMEOUT))
                    alice.send(json.dumps({"type": "publish", "data": "hello"}))
                    published = json.loads(alice.recv(timeout=TIMEOUT))
                    delivered = json.loads(bob.recv(timeout=TIMEOUT))
            # the backend stops last: local mode's stop posts $disconnects to it
            status = stop(process)
        finally:
            if process is not None and process.poll() is None:
                stop(process)

    # THEN it served them through local mode's DynamoDB and management API
    ready_line = READY_LINE.fullmatch(ready)
    assert ready_line and ready_line.group(1) == url, ready
    assert alice_joined["type"] == "joinSuccess" and bob_joined["type"] == "joinSuccess", (alice_joined, bob_joined)
    assert published == protocol.publish_success()
    assert delivered == message("no-aws", alice_joined["senderId"], "hello")
    assert status == 0
    # AND said once, at start, what it took from local mode
    logged = log_file.read_text()
    assert "Traceback" not in logged and " ERROR " not in logged, logged
    assert logged.count("INFO channel_server.http_backend: every endpoint is on loopback and the environment has "
                        "no AWS credentials and no region: using local mode's placeholder credentials ('local') "
                        "and region us-east-1\n") == 1, logged


PROFILE = "[default]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = profile-secret\n"
ENV_KEYS = {"AWS_ACCESS_KEY_ID": "AKIDFROMENV", "AWS_SECRET_ACCESS_KEY": "env-secret"}


@pytest.mark.parametrize("env, profile, signed_as, line", [
    ({}, None, "local/us-east-1",
     "no AWS credentials and no region: using local mode's placeholder credentials ('local') and region us-east-1"),
    (ENV_KEYS, None, "AKIDFROMENV/us-east-1", "no region: using region us-east-1"),
    ({}, PROFILE, "AKIDFROMPROFILE/us-east-1", "no region: using region us-east-1"),
    ({"AWS_DEFAULT_REGION": "ap-south-1"}, None, "local/ap-south-1",
     "no AWS credentials: using local mode's placeholder credentials ('local')"),
    ({**ENV_KEYS, "AWS_REGION": "eu-west-1"}, None, "AKIDFROMENV/eu-west-1", None),
], ids=["nothing", "keys", "a-profile", "a-region", "keys-and-region"])
def test_against_loopback_endpoints_what_the_environment_lacks_comes_from_local_mode(
    env, profile, signed_as, line, tmp_path: Path,
):
    home = tmp_path / "home"
    if profile is not None:  # botocore's chain finds it: credentials found anywhere are still used
        (home / ".aws").mkdir(parents=True)
        (home / ".aws" / "credentials").write_text(profile)
    log_file = tmp_path / "stderr.log"
    with RecordingAws() as dynamodb:
        with log_file.open("w") as stderr:
            process = subprocess.Popen(
                [*COMMAND, "--port", "0", "--table", "t", "--dynamodb-endpoint", dynamodb.url,
                 "--management-endpoint", "http://localhost:9/dev"],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env={**bare_environ(home), **env},
            )
        try:
            ready = READY_LINE.fullmatch(read_line(process, "the ready line"))
            assert ready, "the ready line"
            url = ready.group(1)
            # a join writes to DynamoDB: the request shows what it was signed with
            joined = send(url, new_connection_id(), {"type": "join", "channelId": "signed"}).json()
        finally:
            status = stop(process)

    assert joined["type"] == "joinFailure", joined  # the recorder refuses every write
    assert dynamodb.scopes() == {f"{signed_as}/dynamodb"}
    assert status == 0
    said = [text for text in log_file.read_text().splitlines() if "every endpoint is on loopback" in text]
    expected = [] if line is None else [f"every endpoint is on loopback and the environment has {line}"]
    assert [text.split("channel_server.http_backend: ", 1)[1] for text in said] == expected
