"""Local mode's ``$connect`` authorizer, as API Gateway runs a WebSocket API's
Lambda REQUEST authorizer (``channel_server.local.authorizer``).

- End to end: real WebSocket clients against local mode serving ChannelServer
  with ``--authorizer auth.py`` (no program), whose file allows ``alice`` with a
  ``channelPattern`` and refuses the others in every way an authorizer can;
  the join rule then holds alice to her channels.
- A program that defines its own authorizer function (an ``AssetArchive``)
  beside its ChannelServer: local mode runs that function.
- The events' ``requestContext.authorizer``, through the local API Gateway
  with recording functions.
- What local mode refuses, and what API Gateway decides for each answer.

Every wait ends on a reply, a status or a recorded event; TIMEOUT only bounds a
broken build.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from channel_server.handlers import spec
from channel_server.local import authorizer as local_authorizer
from channel_server.local import program as local_program
from channel_server.local import world as local_world
from channel_server.local.cli import parse_args
from channel_server.local.functions import FunctionError, InvocationError, Throttled
from channel_server.local.program import load_world
from channel_server.local.server import LocalServer, running
from test_local import newest_connection

TIMEOUT = 20
ARN = "arn:aws:execute-api:us-east-1:123456789012:local/dev/$connect"

#: The authorizer users write: allow alice (her channels only), refuse the rest.
#: Each event it gets is recorded in RECORD (by request id) for the test to read.
AUTHORIZER = '''
import json, os

RECORD = {record!r}


def _policy(principal, effect, resource, context=None):
    answer = {{"principalId": principal, "policyDocument": {{"Version": "2012-10-17", "Statement": [
        {{"Effect": effect, "Action": "execute-api:Invoke", "Resource": resource}}]}}}}
    if context is not None:
        answer["context"] = context
    return answer


def {function}(event, context):
    if RECORD:
        name = os.path.join(RECORD, event["requestContext"]["requestId"] + ".json")
        with open(name + ".part", "w") as file:
            json.dump(event, file)
        os.replace(name + ".part", name)
    token = (event.get("queryStringParameters") or {{}}).get("token") or \\
        {{k.lower(): v for k, v in event["headers"].items()}}.get("x-token")
    if token == "alice":
        return _policy("alice", "Allow", event["methodArn"],
                       {{"channelPattern": "alice\\\\..*", "level": 3, "admin": False}})
    if token == "everyone":  # a wildcard resource
        return _policy("everyone", "Allow", "arn:aws:execute-api:*:*:*/*/*")
    if token == "nobody":
        raise Exception("Unauthorized")
    if token == "crash":
        raise RuntimeError("the token service is down")
    if token == "sloppy":
        return {{"principalId": "sloppy"}}
    return _policy(token, "Deny", event["methodArn"])
'''


def write_authorizer(folder: Path, record: Path | None = None, function: str = "handler") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "auth.py"
    path.write_text(AUTHORIZER.format(record=str(record) if record else "", function=function))
    return path


def status_of(url: str, **kwargs: Any) -> int:
    """The handshake's HTTP status: 101 when the connection is made."""
    try:
        with connect(url, open_timeout=TIMEOUT, **kwargs):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def join(ws, channel: str) -> dict:
    ws.send(json.dumps({"type": "join", "channelId": channel}))
    return json.loads(ws.recv(timeout=TIMEOUT))


# --- ChannelServer with --authorizer auth.py, no program ----------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("authorizer-events")


@pytest.fixture(scope="module")
def server(tmp_path_factory, recorded):
    """Local mode as ``python -m channel_server.local --authorizer auth.py`` runs it."""
    auth = write_authorizer(tmp_path_factory.mktemp("auth"), recorded)
    with running(port=0, authorizer=str(auth)) as server:
        yield server


def test_without_a_program_it_serves_channel_server_with_the_authorizer_and_says_so(server):
    authorizer = server.world.authorizer
    assert authorizer is not None and authorizer.function is None  # the default ChannelServer names no code...
    assert authorizer.function_arn == local_authorizer.PLACEHOLDER_FUNCTION_ARN  # ...but the placeholder ARN
    assert authorizer.identity_sources == ("route.request.querystring.token",)
    (line,) = [line for line in server.extra_lines() if line.startswith("Authorizer:")]
    assert line.endswith("auth.py:handler on $connect (identity: route.request.querystring.token)")


def test_the_placeholder_arn_is_in_the_mocks_account_and_region():
    from channel_server import mocks
    from channel_server.args import resolve

    defaults = mocks.AwsMocks()  # the mocks' own region and account
    assert local_authorizer.PLACEHOLDER_FUNCTION_ARN.split(":")[3:5] == [defaults.region, defaults.account]
    resolve({"authorizer": {"function_arn": local_authorizer.PLACEHOLDER_FUNCTION_ARN}})  # an ARN the component takes


@pytest.mark.parametrize("query", ["", "?token=", "?other=alice"], ids=["no-token", "empty-token", "other-param"])
def test_a_handshake_without_the_identity_source_gets_401_and_the_function_is_not_called(server, recorded, query):
    before = set(recorded.iterdir())
    assert status_of(server.url + query) == 401
    # the refusal came after the decision: had the function run, its record would be there
    assert set(recorded.iterdir()) == before


@pytest.mark.parametrize(
    "token, status",
    [("mallory", 403), ("nobody", 401), ("crash", 500), ("sloppy", 500)],
    ids=["denied", "raises-Unauthorized", "raises-anything-else", "no-policy"],
)
def test_a_handshake_the_authorizer_does_not_allow_is_refused_with_api_gateways_status(server, token, status):
    before = set(server.gateway.connections)
    assert status_of(f"{server.url}?token={token}") == status
    assert not set(server.gateway.connections) - before  # no connection was made


def test_an_allowed_connection_may_join_only_the_channels_its_pattern_allows(server):
    with connect(f"{server.url}?token=alice", open_timeout=TIMEOUT) as ws:
        assert join(ws, "alice.room")["type"] == "joinSuccess"
        refused = join(ws, "bob.room")
        assert refused["type"] == "joinFailure", refused
        assert join(ws, "alice.other")["type"] == "joinSuccess"


def test_a_wildcard_resource_allows_and_without_channel_pattern_joins_are_not_limited(server):
    with connect(f"{server.url}?token=everyone", open_timeout=TIMEOUT) as ws:
        assert join(ws, "bob.room")["type"] == "joinSuccess"


def test_the_function_gets_the_request_event_websocket_apis_send(server, recorded):
    before = set(server.gateway.connections)
    with connect(f"{server.url}?token=alice&room=1&room=2", open_timeout=TIMEOUT,
                 additional_headers={"X-Custom": "yes"}, user_agent_header="authorizer-test"):
        # the gateway registers a connection just after its handshake answer: wait for it
        connection_id = newest_connection(server, before)
    (event,) = [e for e in map(lambda p: json.loads(p.read_text()), sorted(recorded.glob("*.json")))
                if e["requestContext"]["connectionId"] == connection_id]
    assert set(event) == {"type", "methodArn", "headers", "multiValueHeaders", "queryStringParameters",
                          "multiValueQueryStringParameters", "stageVariables", "requestContext"}
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == f"arn:aws:execute-api:us-east-1:123456789012:{event['requestContext']['apiId']}/dev/$connect"
    assert event["headers"]["X-Custom"] == "yes" and event["multiValueHeaders"]["User-Agent"] == ["authorizer-test"]
    # the last of a repeated parameter, as in $connect's event; every one in the multi-value map
    assert event["queryStringParameters"] == {"token": "alice", "room": "2"}
    assert event["multiValueQueryStringParameters"] == {"token": ["alice"], "room": ["1", "2"]}
    assert event["stageVariables"] == {}
    context = event["requestContext"]
    assert context["routeKey"] == "$connect" and context["eventType"] == "CONNECT" and context["stage"] == "dev"
    assert "authorizer" not in context


# --- a program with its own authorizer function ------------------------------------------------

PROGRAM = '''
import pulumi
import pulumi_aws as aws
from channel_server import ChannelServer

# the authorizer is the program's own function, beside the ChannelServer, not under it
auth = aws.lambda_.Function(
    "auth",
    runtime="python3.12",
    handler="authorizer.check",
    role="arn:aws:iam::123456789012:role/authorizer",
    timeout=5,
    code=pulumi.AssetArchive({{"authorizer.py": pulumi.StringAsset({code!r})}}),
)
ChannelServer("chat", {{"authorizer": {{"function_arn": auth.arn, "identity_sources": ["route.request.header.X-Token"]}}}})
'''


def project(folder: Path, program: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Pulumi.yaml").write_text(f"name: {folder.name}\nruntime: python\n")
    (folder / "__main__.py").write_text(program)
    return folder


def test_a_program_that_defines_its_authorizer_function_gets_it_run(tmp_path):
    code = AUTHORIZER.format(record="", function="check")
    with running(port=0, program=project(tmp_path / "own", PROGRAM.format(code=code))) as server:
        assert server.world is not None
        authorizer = server.world.authorizer
        assert authorizer is not None and authorizer.function is not None
        assert authorizer.function.handler == "authorizer.check"
        assert any(line.startswith("Authorizer:") and f"function {authorizer.function.name} of the program" in line
                   for line in server.extra_lines())
        assert status_of(server.url) == 401  # no X-Token header
        assert status_of(server.url, additional_headers={"X-Token": "mallory"}) == 403
        # headers are matched in any case, as HTTP has them
        with connect(server.url, open_timeout=TIMEOUT, additional_headers={"x-token": "alice"}) as ws:
            assert join(ws, "alice.room")["type"] == "joinSuccess"
            assert join(ws, "bob.room")["type"] == "joinFailure"


# --- what local mode refuses -------------------------------------------------------------------

NO_AUTHORIZER = "from channel_server import ChannelServer\nChannelServer('chat')\n"
ELSEWHERE = ("from channel_server import ChannelServer\nChannelServer('chat', {'authorizer': "
             "{'function_arn': 'arn:aws:lambda:us-east-1:123456789012:function:shared-auth'}})\n")


def test_authorizer_with_a_program_without_an_authorizer_is_refused(tmp_path):
    # what start() checks once it has read the program (the next test starts one for real)
    auth = write_authorizer(tmp_path / "auth")
    plain = project(tmp_path / "plain", NO_AUTHORIZER)
    server = LocalServer(port=0, program=plain, authorizer=str(auth))
    with pytest.raises(local_program.ProgramError, match=r"^--authorizer: the program's ChannelServer has no "
                       r"authorizer on \$connect, and the config key authorizerFunctionArn does not turn it on"):
        server._check_world(local_program.from_project(plain))


def test_an_authorizer_function_the_program_does_not_define_needs_authorizer_to_start(tmp_path):
    folder = project(tmp_path / "elsewhere", ELSEWHERE)
    started = subprocess.run(
        [sys.executable, "-m", "channel_server.local", "--program", str(folder), "--port", "0"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert started.returncode == 1
    assert started.stderr.splitlines()[-1] == (
        "cannot start: the authorizer on $connect cannot be run: its function "
        "arn:aws:lambda:us-east-1:123456789012:function:shared-auth is not defined by the program; give its code "
        "with --authorizer PATH[:FUNCTION] (a Python file and its handler, default handler)"
    )


def test_an_authorizer_on_a_route_other_than_connect_is_a_wiring_error():
    import pulumi
    import pulumi_aws as aws

    from channel_server import ChannelServer

    def program() -> None:
        server = ChannelServer("chat", {"authorizer": {"function_arn": local_authorizer.PLACEHOLDER_FUNCTION_ARN}})
        assert server.authorizer is not None
        aws.apigatewayv2.Route(
            "chat-join-authorized", api_id=server.api.id, route_key="join2",
            target=server.integrations["join"].id.apply(lambda i: f"integrations/{i}"),
            authorization_type="CUSTOM", authorizer_id=server.authorizer.id,
            opts=pulumi.ResourceOptions(parent=server),
        )

    with pytest.raises(local_world.WiringError, match=r"route join2: API Gateway authorizes a WebSocket API's "
                       r"\$connect route only"):
        local_program.from_program(program)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--authorizer-identity-source", "route.request.header.Auth"], "give the authorizer's code with --authorizer"),
        (["--authorizer", "{auth}", "--backend", "http://127.0.0.1:9/"], "--authorizer with --backend"),
        (["--authorizer", "{missing}"], "no such file"),
        (["--authorizer", "{auth}:"], "name the function after the colon"),
        (["--authorizer", "{auth}", "--authorizer-identity-source", "route.request.cookie.x"],
         "must be route.request.querystring.NAME"),
        (["--authorizer", "{auth}", "--authorizer-identity-source", "route.request.header.Auth", "--program", "{plain}"],
         "the program declares its authorizer's identity sources"),
    ],
    ids=["source-without-authorizer", "with-backend", "missing-file", "empty-function", "bad-source", "source-with-program"],
)
def test_the_command_line_refuses_authorizer_flags_it_cannot_serve(tmp_path, capsys, argv, message):
    auth = write_authorizer(tmp_path / "auth")
    plain = project(tmp_path / "plain", NO_AUTHORIZER)
    argv = [arg.format(auth=auth, missing=tmp_path / "missing.py", plain=plain) for arg in argv]
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_the_command_line_takes_a_function_and_repeated_identity_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no Pulumi.yaml here: no program, the default ChannelServer
    auth = write_authorizer(tmp_path / "auth", function="check")
    options = parse_args(["--authorizer", f"{auth}:check", "--authorizer-identity-source", "route.request.header.Auth",
                          "--authorizer-identity-source", "route.request.querystring.room"])
    server = LocalServer(port=0, authorizer=options.authorizer,
                         authorizer_identity_sources=options.authorizer_identity_sources)
    assert server._default_args()["authorizer"] == {
        "function_arn": local_authorizer.PLACEHOLDER_FUNCTION_ARN,
        "identity_sources": ["route.request.header.Auth", "route.request.querystring.room"],
    }
    world = load_world(None, "dev", None, False, None, server._default_args())
    assert world.authorizer is not None
    assert world.authorizer.identity_sources == ("route.request.header.Auth", "route.request.querystring.room")
    definition = local_authorizer.function_from_file(auth, "check", world.authorizer.function_arn)
    assert definition.handler == "auth.check" and set(definition.files) == {"auth.py"}


# --- the events of an authorized connection, through the local API Gateway ---------------------------


@contextlib.contextmanager
def gateway_serving(world: local_world.World, invoke, authorize) -> Iterator[str]:
    """The local API Gateway alone on a free loopback port, its functions
    replaced by ``invoke`` and ``authorize``; yields the clients' URL."""
    from aiohttp import web

    from channel_server.local.gateway import Gateway
    from channel_server.local.ports import bind

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
    thread.start()

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(TIMEOUT)

    gateway = Gateway(world, invoke, authorize=authorize)
    runner = web.AppRunner(gateway.app(), access_log=None, handle_signals=False)
    run(runner.setup())
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    run(web.SockSite(runner, sock).start())
    try:
        yield f"ws://127.0.0.1:{port}/{world.stage}"
    finally:
        run(gateway.close_all())
        run(runner.cleanup())
        sock.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


def small_world(sources: tuple[str, ...]) -> local_world.World:
    function = local_world.FunctionDef("f", "f.handler", {}, {}, 3.0, 128, "arn:aws:lambda:us-east-1:1:function:f", "/f")
    return local_world.World(
        stage="dev", route_selection_expression="$request.body.type", table_name="t", table={},
        routes={"$connect": function, "$disconnect": function, "ping": function}, two_way=frozenset({"ping"}),
        authorizer=local_world.AuthorizerDef("auth", sources, local_authorizer.PLACEHOLDER_FUNCTION_ARN),
        stage_variables={"tier": "gold", "empty": ""},
    )


def test_every_event_of_an_authorized_connection_carries_the_authorizer_context():
    events: dict[str, dict] = {}
    disconnected = threading.Event()
    asked: list[dict] = []

    async def invoke(route_key: str, event: dict, request_id: str) -> Any:
        events[event["requestContext"]["eventType"]] = event
        if route_key == "$disconnect":
            disconnected.set()
        return {"statusCode": 200, "body": json.dumps({"type": "pong"})}

    async def authorize(event: dict, request_id: str) -> Any:
        asked.append(event)
        return {"principalId": "alice", "context": {"channelPattern": "alice\\..*", "level": 3, "admin": True},
                "policyDocument": {"Statement": [{"Effect": "Allow", "Action": ["execute-api:*"],
                                                  "Resource": ["arn:aws:execute-api:*:*:*/dev/*"]}]}}

    sources = ("route.request.header.Auth", "stageVariables.tier", "context.identity.sourceIp")
    with gateway_serving(small_world(sources), invoke, authorize) as url:
        assert status_of(url) == 401 and not asked  # no Auth header: the function is not called
        with connect(url, open_timeout=TIMEOUT, additional_headers={"AUTH": "token"}) as ws:
            ws.send(json.dumps({"type": "ping"}))
            assert json.loads(ws.recv(timeout=TIMEOUT)) == {"type": "pong"}
        assert disconnected.wait(TIMEOUT)

    (request,) = asked
    assert request["stageVariables"] == {"tier": "gold", "empty": ""}
    assert request["methodArn"] == f"arn:aws:execute-api:us-east-1:123456789012:{request['requestContext']['apiId']}/dev/$connect"
    expected = {"channelPattern": "alice\\..*", "level": "3", "admin": "true", "principalId": "alice"}
    for kind in ("CONNECT", "MESSAGE", "DISCONNECT"):
        assert events[kind]["requestContext"]["authorizer"] == expected, kind
    assert events["CONNECT"]["requestContext"]["requestId"] == request["requestContext"]["requestId"]


def test_an_empty_stage_variable_is_a_missing_identity_source():
    async def authorize(event: dict, request_id: str) -> Any:
        raise AssertionError("not called")

    async def invoke(route_key: str, event: dict, request_id: str) -> Any:
        return None

    with gateway_serving(small_world(("stageVariables.empty",)), invoke, authorize) as url:
        assert status_of(url) == 401


# --- API Gateway's decision on each answer --------------------------------------------------------------


def allow(resource: Any = ARN, **extra: Any) -> dict:
    return {"principalId": "p", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": resource}]}, **extra}


def with_statements(*statements: dict) -> dict:
    return {"principalId": "p", "policyDocument": {"Statement": list(statements)}}


def decide(answer: Any) -> local_authorizer.Decision:
    async def invoke(event: dict, request_id: str) -> Any:
        if isinstance(answer, Exception):
            raise answer
        return answer

    authorizer = local_world.AuthorizerDef("auth", ("route.request.querystring.token",), "arn")
    event = {"queryStringParameters": {"token": "t"}, "requestContext": {"requestId": "r", "connectionId": "c"}}
    return asyncio.run(local_authorizer.authorize(authorizer, event, ARN, {}, invoke))


@pytest.mark.parametrize(
    "answer, status",
    [
        (allow(), 200),
        (allow("arn:aws:execute-api:us-east-1:123456789012:*"), 200),
        (allow("arn:aws:execute-api:us-east-1:123456789012:local/???/$connect"), 200),
        (allow("arn:aws:execute-api:us-east-1:123456789012:local/prod/$connect"), 403),  # another stage: implicit deny
        (allow("ARN:AWS:EXECUTE-API:us-east-1:123456789012:local/dev/$connect"), 403),  # resources are case-sensitive
        (with_statements({"Effect": "Allow", "Action": "EXECUTE-API:invoke", "Resource": "*"}), 200),
        (with_statements({"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": "*"}), 403),
        (with_statements({"Effect": "Allow", "Action": "*", "Resource": "*"},
                         {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": ARN}), 403),  # deny wins
        (with_statements({"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:execute-api:*:*:*/prod/*"}), 200),
        (with_statements({"Effect": "Allow", "NotAction": "execute-api:Invoke", "Resource": "*"}), 403),
        (allow(context={"n": 1.5, "ok": False, "s": ""}), 200),
        (FunctionError("auth: Exception: Unauthorized", "Exception", "Unauthorized"), 401),
        (FunctionError("auth: Exception: unauthorized", "Exception", "unauthorized"), 500),
        (FunctionError("auth: RuntimeError: boom", "RuntimeError", "boom"), 500),
        (Throttled("auth throttled"), 500),
        (InvocationError("auth timed out after 10 s"), 500),
        ("Unauthorized", 500),  # returned, not raised: an answer API Gateway cannot use
        (None, 500),
        ({"policyDocument": allow()["policyDocument"]}, 500),  # no principalId
        ({"principalId": "p"}, 500),  # no policy
        (with_statements(), 500),
        (with_statements({"Effect": "allow", "Action": "*", "Resource": "*"}), 500),
        (with_statements({"Effect": "Allow", "Resource": "*"}), 500),
        (with_statements({"Effect": "Allow", "Action": "*"}), 500),
        (allow(context={"roles": ["admin"]}), 500),  # context values are strings, numbers or booleans
        (allow(context={"missing": None}), 500),
        (allow(context="alice"), 500),
    ],
)
def test_api_gateways_decision_on_the_functions_answer(answer, status):
    decision = decide(answer)
    assert decision.status == status, decision.reason
    if status != 200:
        assert decision.context is None
        assert json.loads(decision.body) == {
            "message": {401: "Unauthorized", 403: "Forbidden", 500: "Internal server error"}[status]}


def test_the_connection_keeps_the_context_stringified_and_the_principal():
    decision = decide(allow(context={"channelPattern": "a.*", "n": 1.5, "ok": False, "principalId": "spoofed"}))
    assert decision.context == {"channelPattern": "a.*", "n": "1.5", "ok": "false", "principalId": "p"}
    assert spec.CHANNEL_PATTERN_CONTEXT_KEY == "channelPattern"


@pytest.mark.parametrize("function_arn", ["arn:aws:lambda:eu-west-1:123456789012:function:auth",
                                          "arn:aws-cn:lambda:cn-north-1:123456789012:function:auth:live"])
def test_an_invoke_uri_is_built_and_read_back_the_same_way(function_arn: str) -> None:
    from channel_server.resource_types import invoked_function_arn, lambda_invoke_uri

    uri = lambda_invoke_uri(function_arn)
    assert uri.startswith(f"arn:{function_arn.split(':')[1]}:apigateway:{function_arn.split(':')[3]}:lambda:path/")
    assert invoked_function_arn(uri) == function_arn
    assert invoked_function_arn(uri.replace(":lambda:path/", ":s3:path/")) is None
    assert invoked_function_arn(function_arn) is None
