"""Local mode serves the component's Lambda function URLs: the server publish
endpoint (``server_publish``) on local mode's own port, at
``/@lambda-url/{function name}/``, SigV4-signed requests only, each one a
payload format 2.0 event for the function, run in its own process.

End to end over real sockets against ``running(world=...)``; the event's and
the response's shapes against the gateway alone, with a stand-in function.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from websockets.sync.client import connect

from channel_server.local import program as local_program
from channel_server.local.access import management_refusal
from channel_server.local.cli import parse_args
from channel_server.local.function_urls import FUNCTION_URL_PREFIX
from channel_server.local.functions import InvocationError, Throttled
from channel_server.local.gateway import Gateway
from channel_server.local.server import LocalServer, running
from channel_server.local.program import ProgramError
from support.frames import ANY_MESSAGE_ID

#: How long a read waits before the test fails: a bound for a broken build,
#: never a measure of speed (every wait ends on a frame or a reply).
TIMEOUT = 20
REPOSITORY = Path(__file__).parent.parent
ACCESS_KEY = "AKIDLOCALPUBLISHER"


@pytest.fixture(scope="module")
def publishing_world():
    """ChannelServer("chat", {"server_publish": True}) as local mode reads it."""
    return local_program.from_component("dev", name="chat", args={"server_publish": True})


@pytest.fixture(scope="module")
def server(publishing_world):
    with running(port=0, world=publishing_world) as server:
        yield server


# --- helpers ---------------------------------------------------------------------------


class Member:
    """A WebSocket client joined to one channel."""

    def __init__(self, url: str, channel: str):
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, open_timeout=TIMEOUT))
        reply = self.request({"type": "join", "channelId": channel})
        assert reply["type"] == "joinSuccess", reply

    def recv(self) -> dict:
        return json.loads(self.ws.recv(timeout=TIMEOUT))

    def request(self, frame: dict) -> dict:
        self.ws.send(json.dumps(frame))
        return self.recv()

    def nothing_more(self) -> bool:
        """No frame is waiting: a ping with a fresh marker is answered first.
        The publish's posts were made before its answer came back, so a frame
        it sent this member would arrive before the pong."""
        marker = uuid.uuid4().hex
        frame = self.request({"type": "ping", "data": marker})
        assert frame == {"type": "pong", "data": marker}, f"unexpected frame {frame}"
        return True

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def members(server):
    opened: list[Member] = []

    def join(channel: str) -> Member:
        member = Member(server.url, channel)
        opened.append(member)
        return member

    yield join
    for member in opened:
        member.close()


def channel() -> str:
    """A channel of this test's own (the module's tests share one server)."""
    return f"room-{uuid.uuid4().hex[:12]}"


def signed(url: str, body: bytes, method: str = "POST", service: str = "lambda",
           headers: dict | None = None) -> dict:
    """The headers botocore signs a request with (SigV4, us-east-1, made-up credentials)."""
    request = AWSRequest(method, url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials(ACCESS_KEY, "any-secret"), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def send(url: str, body: bytes | None, headers: dict, method: str = "POST") -> tuple[int, dict, Any]:
    """The status, headers and body (JSON, when it is) of one HTTP request."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            status, answer_headers, data = response.status, response.headers, response.read()
    except urllib.error.HTTPError as refused:
        status, answer_headers, data = refused.code, refused.headers, refused.read()
    try:
        return status, answer_headers, json.loads(data)
    except ValueError:
        return status, answer_headers, data


def publish(server, message: dict) -> tuple[int, Any]:
    body = json.dumps(message).encode()
    status, _, answer = send(server.publish_url, body, signed(server.publish_url, body))
    return status, answer


# --- end to end: the server publish endpoint --------------------------------------------


def test_a_signed_publish_reaches_every_member_of_the_channel_and_no_one_else(server, members):
    lobby = channel()
    first, second = members(lobby), members(lobby)
    elsewhere = members(channel())

    status, answer = publish(server, {"channelId": lobby, "data": "hi"})

    assert (status, answer) == (200, {"delivered": 2, "failed": 0, "queued": 0})
    frame = {"type": "message", "channelId": lobby, "senderId": "$server", "messageId": ANY_MESSAGE_ID, "data": "hi"}
    assert first.recv() == frame
    assert second.recv() == frame
    assert elsewhere.nothing_more()
    assert first.nothing_more() and second.nothing_more()  # once each


def test_a_large_channels_server_publish_goes_through_the_fan_out_queue(publishing_world):
    # GIVEN local mode with publishes posting to 2 members themselves, and 4 members in a channel
    with running(port=0, world=publishing_world, inline_fanout_limit=2) as small:
        crowd = channel()
        joined = [Member(small.url, crowd) for _ in range(4)]
        try:
            # WHEN a backend publishes there
            status, answer = publish(small, {"channelId": crowd, "data": "to all"})

            # THEN 2 are posted to, 2 handed to the fan-out function, and all 4 get it once
            assert (status, answer) == (200, {"delivered": 2, "failed": 0, "queued": 2})
            for member in joined:
                assert member.recv() == {"type": "message", "channelId": crowd, "senderId": "$server",
                                         "messageId": ANY_MESSAGE_ID, "data": "to all"}
        finally:
            for member in joined:
                member.close()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer token"},
        "signed for execute-api",
        "signed without X-Amz-Date",
    ],
    ids=["unsigned", "not-sigv4", "another-service", "no-date"],
)
def test_a_publish_that_is_not_signed_for_lambda_gets_403_and_sends_nothing(server, members, headers):
    lobby = channel()
    member = members(lobby)
    body = json.dumps({"channelId": lobby, "data": "hi"}).encode()
    if headers == "signed for execute-api":
        headers = signed(server.publish_url, body, service="execute-api")
    elif headers == "signed without X-Amz-Date":
        headers = {k: v for k, v in signed(server.publish_url, body).items() if k != "X-Amz-Date"}

    status, _, answer = send(server.publish_url, body, headers)

    assert (status, answer) == (403, {"Message": "Forbidden"})
    assert member.nothing_more()


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "body is not valid JSON"),
        (b'{"channelId": "lobby"}', "publish needs a data field"),
        (b'{"data": "hi"}', "channelId is required"),
        (b"", "empty body; send a JSON object with channelId and data"),
    ],
    ids=["not-json", "no-data", "no-channel", "empty"],
)
def test_a_malformed_publish_gets_400_with_its_reason_and_sends_nothing(server, members, body, reason):
    member = members("lobby")

    status, _, answer = send(server.publish_url, body, signed(server.publish_url, body))

    assert (status, answer) == (400, {"message": reason})
    assert member.nothing_more()


def test_the_same_idempotency_key_twice_publishes_once_and_replays_the_first_outcome(server, members):
    lobby = channel()
    first, second = members(lobby), members(lobby)
    message = {"channelId": lobby, "data": {"order": 7}, "idempotencyKey": f"order-7-{uuid.uuid4().hex}"}

    assert publish(server, message) == (200, {"delivered": 2, "failed": 0, "queued": 0})
    assert publish(server, message) == (200, {"delivered": 2, "failed": 0, "queued": 0, "replayed": True})

    frame = {"type": "message", "channelId": lobby, "senderId": "$server", "messageId": ANY_MESSAGE_ID, "data": {"order": 7}}
    assert first.recv() == frame and second.recv() == frame
    assert first.nothing_more() and second.nothing_more()  # one message each, not two


def test_any_path_below_the_function_url_reaches_the_function(server, members):
    lobby = channel()
    member = members(lobby)
    url = server.publish_url + "v1/publish?trace=1"
    body = json.dumps({"channelId": lobby, "data": "deep"}).encode()

    status, _, answer = send(url, body, signed(url, body))

    assert (status, answer) == (200, {"delivered": 1, "failed": 0, "queued": 0})
    assert member.recv()["data"] == "deep"


def test_the_method_reaches_the_function_which_decides(server):
    status, headers, answer = send(server.publish_url, None, signed(server.publish_url, b"", method="GET"),
                                   method="GET")

    assert (status, answer) == (405, {"message": "use POST"})  # the function's answer, not local mode's
    assert headers["allow"] == "POST"


def test_an_unknown_function_gets_404_naming_the_function_urls_served(server):
    url = f"http://127.0.0.1:{server.port}{FUNCTION_URL_PREFIX}/nope/"

    status, _, answer = send(url, b"{}", signed(url, b"{}"))

    function = server.publish_url.rstrip("/").rsplit("/", 1)[1]
    assert (status, answer) == (404, {"Message": f"no function URL for a function named 'nope' here; local mode "
                                                 f"serves {FUNCTION_URL_PREFIX}/{function}/"})


# --- the banner and the world -----------------------------------------------------------


def test_the_banner_names_the_publish_url_on_local_modes_own_port(server, publishing_world):
    (url,) = publishing_world.function_urls
    assert url.function.handler == "channel_server.handlers.app.server_publish"
    assert url.authorization_type == "AWS_IAM"
    assert url.url == f"https://{url.url_id}.lambda-url.us-east-1.on.aws/"

    assert server.publish_url == f"http://127.0.0.1:{server.port}/@lambda-url/{url.function.name}/"
    assert f"Publish URL:    {server.publish_url}" in server.extra_lines()


def test_without_server_publish_there_is_no_function_url():
    world = local_program.from_component("dev", name="chat")
    assert world.function_urls == ()
    paths = [resource.canonical for resource in Gateway(world, _never).app().router.resources()]
    assert not [path for path in paths if path.startswith(FUNCTION_URL_PREFIX)]


# --- the event and the response, against the gateway alone -------------------------------


async def _never(*args: Any) -> Any:
    raise AssertionError("no route was to be invoked")


@contextlib.contextmanager
def gateway_alone(world, answer: Callable[[dict], Any]) -> Iterator[tuple[str, list[dict]]]:
    """The gateway on a free port, its function URL answered by ``answer(event)``
    (raise to fail the invocation): the URL, and the events it was given."""
    events: list[dict] = []

    async def invoke_url(name: str, event: dict, request_id: str) -> Any:
        events.append(event)
        return answer(event)

    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(Gateway(world, _never, invoke_url=invoke_url).app(), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    assert isinstance(site._server, asyncio.Server)  # started: a listening server
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        (url,) = world.function_urls
        yield f"http://127.0.0.1:{port}{FUNCTION_URL_PREFIX}/{url.function.name}", events
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=TIMEOUT)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_the_function_gets_a_payload_format_2_0_event_as_lambda_builds_it(publishing_world):
    (declared,) = publishing_world.function_urls
    with gateway_alone(publishing_world, lambda event: {"statusCode": 204}) as (base, events):
        url = base + "/a/b?x=1&x=2&y=3"
        body = b'{"channelId": "lobby", "data": "hi"}'
        headers = {**signed(url, body, headers={"Cookie": "a=1; b=2", "User-Agent": "publisher/1"})}
        status, _, _ = send(url, body, headers)

    assert status == 204
    (event,) = events
    context = event["requestContext"]
    assert {k: v for k, v in event.items() if k not in ("headers", "requestContext")} == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/a/b",
        "rawQueryString": "x=1&x=2&y=3",
        "cookies": ["a=1", "b=2"],
        "queryStringParameters": {"x": "1,2", "y": "3"},
        "body": '{"channelId": "lobby", "data": "hi"}',
        "isBase64Encoded": False,
    }
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["user-agent"] == "publisher/1"
    assert event["headers"]["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "cookie" not in event["headers"] and all(name == name.lower() for name in event["headers"])
    assert {k: v for k, v in context.items() if k not in ("requestId", "time", "timeEpoch", "authorizer")} == {
        "accountId": "123456789012",
        "apiId": declared.url_id,
        "domainName": f"{declared.url_id}.lambda-url.us-east-1.on.aws",
        "domainPrefix": declared.url_id,
        "http": {"method": "POST", "path": "/a/b", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": "publisher/1"},
        "routeKey": "$default",
        "stage": "$default",
    }
    assert uuid.UUID(context["requestId"])
    assert isinstance(context["timeEpoch"], int) and context["time"].endswith(" +0000")
    iam = context["authorizer"]["iam"]
    assert iam["accessKey"] == ACCESS_KEY and iam["accountId"] == "123456789012"
    assert set(iam) == {"accessKey", "accountId", "callerId", "cognitoIdentity", "principalOrgId", "userArn",
                        "userId"}


def test_a_binary_body_arrives_base64_encoded(publishing_world):
    body = bytes(range(256))
    with gateway_alone(publishing_world, lambda event: {"statusCode": 200}) as (url, events):
        send(url + "/", body, signed(url + "/", body, headers={"Content-Type": "application/octet-stream"}))

    (event,) = events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


@pytest.mark.parametrize(
    "answer, status, body, headers",
    [
        ({"statusCode": 201, "headers": {"x-custom": "yes"}, "body": "made"}, 201, b"made", {"x-custom": "yes"}),
        ({"statusCode": 200, "body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True}, 200,
         b"\x00\xff", {}),
        ({"statusCode": 200, "cookies": ["a=1; Max-Age=60", "b=2"]}, 200, b"", {}),
        ({"delivered": 1}, 200, b'{"delivered": 1}', {"Content-Type": "application/json"}),
        ("Hello, world!", 200, b'"Hello, world!"', {"Content-Type": "application/json"}),
        ({"statusCode": "two hundred"}, 502, b'{"Message": "Internal Server Error"}', {}),
    ],
    ids=["custom", "base64", "cookies", "json-without-status", "string", "bad-status"],
)
def test_the_functions_answer_becomes_the_http_response_as_lambda_makes_it(publishing_world, answer, status, body,
                                                                          headers):
    with gateway_alone(publishing_world, lambda event: answer) as (url, _):
        request = urllib.request.Request(url + "/", data=b"{}", headers=signed(url + "/", b"{}"), method="POST")
        try:
            response = urllib.request.urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as failed:
            response = failed
        with response:
            assert (response.status, response.read()) == (status, body)
            for name, value in headers.items():
                assert response.headers[name] == value
            if isinstance(answer, dict) and "cookies" in answer:
                assert response.headers.get_all("Set-Cookie") == answer["cookies"]


@pytest.mark.parametrize(
    "failure, status, message",
    [
        (InvocationError("chat-server-publish raised"), 502, "Internal Server Error"),
        (Throttled("all 100 slots are taken"), 429, "Rate Exceeded."),
    ],
    ids=["error", "throttled"],
)
def test_a_function_that_fails_gets_lambdas_own_answer(publishing_world, failure, status, message):
    def fail(event: dict) -> Any:
        raise failure

    with gateway_alone(publishing_world, fail) as (url, _):
        answer = send(url + "/", b"{}", signed(url + "/", b"{}"))

    assert (answer[0], answer[2]) == (status, {"Message": message})


def test_function_urls_answer_only_loopback_unless_opened():
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/lambda/aws4_request, "
                                "SignedHeaders=host;x-amz-date, Signature=" + "a" * 64,
               "X-Amz-Date": "20261126T000000Z"}
    assert management_refusal("127.0.0.1", headers, service="lambda") is None
    assert management_refusal("10.0.0.7", headers, service="lambda", endpoint="a function URL") == (
        "a function URL answers only loopback addresses, not 10.0.0.7 "
        "(call it on 127.0.0.1, or start local mode with --management-from-anywhere)")
    assert management_refusal("10.0.0.7", headers, True, service="lambda") is None
    # a signature for lambda is not one for the management API, nor the other way round
    assert management_refusal("127.0.0.1", headers) == (
        "the request is not SigV4-signed for execute-api (an AWS SDK such as boto3 signs it)")


# --- --server-publish -------------------------------------------------------------------


def test_the_server_publish_flag_serves_channel_server_with_its_publish_endpoint():
    from support.local_mode import served_world

    assert LocalServer(port=0, server_publish=True)._default_args() == {"server_publish": True}
    (url,) = served_world(server_publish=True).function_urls
    assert url.function.handler == "channel_server.handlers.app.server_publish"


def test_the_server_publish_flag_turns_it_on_in_a_programs_config():
    server = LocalServer(port=0, server_publish=True, program=REPOSITORY)
    assert ("--server-publish", "serverPublish", "true") in server._turn_on()

    world = local_program.from_project(REPOSITORY, "dev", turn_on=server._turn_on())

    assert [url.function.handler for url in world.function_urls] == ["channel_server.handlers.app.server_publish"]


def test_the_server_publish_flag_refuses_a_program_that_cannot_turn_it_on():
    server = LocalServer(port=0, server_publish=True, program=REPOSITORY)
    without = local_program.from_component("dev")

    with pytest.raises(ProgramError) as refused:
        server._check_world(without)

    assert str(refused.value) == (
        "--server-publish: the program's ChannelServer has no server publish endpoint, and the config key "
        "serverPublish does not turn it on (the program does not read it); turn it on in the program's "
        "ChannelServerArgs (server_publish), or set the config key the program reads for this run with "
        "--config KEY=VALUE")


def test_the_server_publish_flag_and_a_backend_are_refused_together(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--server-publish", "--backend", "reference"])
    assert capsys.readouterr().err.endswith(
        "error: --server-publish with --backend: the publish endpoint runs the Lambda handlers' fan-out; "
        "with an HTTP backend, publish from the backend\n")
