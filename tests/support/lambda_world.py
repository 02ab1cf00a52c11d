"""The Lambda entry points wired to a table and a fake management API of their
own, for tests that need them for longer than one test function (hypothesis
properties, observations shared by a module's tests)::

    with lambda_world(dynamodb, table_definition, env={...}) as world:
        world.send(alice, '{"type":"join","channelId":"lobby"}')   # the route API Gateway picks
        world.send(alice, '{"type":"ping"}', entry="default")      # or any entry point
        world.disconnect(alice)
        world.rows()                                               # every row, plain values
        world.management.frames(alice)

Every call goes through the real entry points of ``channel_server.handlers.app``
with this world's ``ChannelApp`` installed as the module's app for the length
of the call only, so worlds never leak into each other or into tests that use
conftest's ``app`` fixture.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Mapping

import pytest

from support.events import event, route_for
from support.management import FakeManagementApi

#: Entry point (function of ``channel_server.handlers.app``) by route key.
ENTRY_POINTS = {"join": "join", "publish": "publish", "ping": "ping", "$default": "default"}
#: Every entry point that takes a frame, and the recorded event each one gets.
MESSAGE_ENTRY_POINTS = ("join", "publish", "ping", "default")

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
#: Where boto3 could find real credentials or endpoints.
_AWS_ENV = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", "AWS_REGION",
)

LAMBDA_CONTEXT = SimpleNamespace(
    function_name="world-fn-3f2a9c1",
    function_version="$LATEST",
    aws_request_id="c6af9ac6-7b61-11e6-9a41-93e812345678",
    memory_limit_in_mb=256,
    get_remaining_time_in_millis=lambda: 29_000,
)


@contextlib.contextmanager
def fake_aws_environment() -> Iterator[None]:
    """Fake credentials only, for clients built outside a test function (where
    conftest's autouse environment is not in force yet). Clients resolve their
    credentials when built, so they keep the fake ones afterwards."""
    with pytest.MonkeyPatch.context() as env:
        for name in _AWS_ENV:
            env.delenv(name, raising=False)
        for name, value in FAKE_CREDENTIALS.items():
            env.setenv(name, value)
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        yield


def product_management_client(endpoint: str) -> Any:
    """The management client the handlers build for themselves (same factory,
    same retry and pool configuration), with fake credentials."""
    from channel_server.handlers.sender import management_client

    with fake_aws_environment():
        return management_client(endpoint)


def gateway_route(body: str | None) -> str:
    """The route key API Gateway picks for ``body`` (``support.events.route_for``),
    with a body nested too deeply to read a type from going to ``$default``."""
    try:
        return route_for(body)
    except RecursionError:
        return "$default"


def plain_rows(items: list[dict]) -> list[dict]:
    """DynamoDB items as plain values (numbers as ints), sorted by key."""

    def plain(value: dict) -> Any:
        ((kind, raw),) = value.items()
        return int(raw) if kind == "N" else raw

    rows = [{name: plain(value) for name, value in item.items()} for item in items]
    return sorted(rows, key=lambda row: (row["connectionId"], row["channelId"]))


class LambdaWorld:
    """One ChannelApp, its table and its fake management API."""

    def __init__(self, app: Any, management: FakeManagementApi, dynamodb: Any, table: str, environ: Mapping[str, str]):
        self.app = app
        self.management = management
        self.dynamodb = dynamodb
        self.table = table
        self.environ = dict(environ)

    def call(self, entry: str, raw_event: dict) -> Any:
        """Run entry point ``entry`` on ``raw_event`` with this world's app."""
        from channel_server.handlers import app as lambda_module

        previous = lambda_module._app
        lambda_module._app = self.app
        try:
            return getattr(lambda_module, entry)(raw_event, LAMBDA_CONTEXT)
        finally:
            lambda_module._app = previous

    def message_event(self, connection_id: str, body: str | None, entry: str | None = None,
                      base64_body: bytes | None = None) -> tuple[str, dict]:
        """The entry point and the event for a text frame: through the route
        API Gateway picks unless ``entry`` names one; ``base64_body`` sends raw
        bytes as an ``isBase64Encoded`` event instead."""
        route = gateway_route(body) if base64_body is None else "$default"
        entry = entry or ENTRY_POINTS[route]
        raw = event(entry, connection_id=connection_id, body="")
        raw["requestContext"]["routeKey"] = route
        raw["body"] = body
        if base64_body is not None:
            raw["body"] = base64.b64encode(base64_body).decode("ascii")
            raw["isBase64Encoded"] = True
        return entry, raw

    def send(self, connection_id: str, body: str | None, entry: str | None = None,
             base64_body: bytes | None = None) -> Any:
        """Send one text frame; returns what the Lambda returned."""
        entry, raw = self.message_event(connection_id, body, entry, base64_body)
        return self.call(entry, raw)

    def join(self, connection_id: str, channel_id: str) -> str:
        """Join through the entry point; returns the senderId of the reply."""
        before = len(self.management.frames(connection_id))
        self.send(connection_id, json.dumps({"type": "join", "channelId": channel_id}))
        reply = self.management.frames(connection_id)[before]
        assert reply["type"] == "joinSuccess", reply
        return reply["senderId"]

    def connect(self, connection_id: str) -> Any:
        return self.call("connect", event("connect", connection_id=connection_id))

    def disconnect(self, connection_id: str) -> Any:
        return self.call("disconnect", event("disconnect", connection_id=connection_id))

    def raw_rows(self) -> list[dict]:
        items: list[dict] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def rows(self) -> list[dict]:
        """Every row in the table, as plain values, sorted by key."""
        return plain_rows(self.raw_rows())


@contextlib.contextmanager
def lambda_world(
    dynamodb: Any,
    table_definition: Any,
    *,
    env: Mapping[str, str] | None = None,
    app_dynamodb: Any = None,
    app_management: Callable[[str], Any] = product_management_client,
) -> Iterator[LambdaWorld]:
    """A fresh table declared as the component declares it, a fake management
    API and a ChannelApp using both (plus ``env``). ``dynamodb`` inspects the
    table; the app uses ``app_dynamodb`` (default: ``dynamodb``) and the client
    ``app_management(endpoint)`` builds."""
    from channel_server.handlers import spec
    from channel_server.handlers.app import ChannelApp
    from channel_server.local.dynamodb import create_table

    table = f"{table_definition['name']}-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table, dict(table_definition.inputs))
    try:
        with FakeManagementApi(stage="dev") as management:
            (index,) = table_definition.inputs["globalSecondaryIndexes"]
            environ = {
                spec.ENV_TABLE_NAME: table,
                spec.ENV_INDEX_NAME: index["name"],
                spec.ENV_MANAGEMENT_ENDPOINT: management.endpoint,
                **(env or {}),
            }
            app = ChannelApp(
                environ, dynamodb=app_dynamodb or dynamodb, management=app_management(management.endpoint)
            )
            yield LambdaWorld(app, management, dynamodb, table, environ)
    finally:
        dynamodb.delete_table(TableName=table)
