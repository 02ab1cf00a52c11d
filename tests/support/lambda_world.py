"""The Lambda entry points driven as API Gateway drives them: recorded-shape events in,
replies read back from a fake management API.

The one driver of the entry points in the tests::

    world.send(alice, {"type": "join", "channelId": "lobby"})  # the route API Gateway picks
    world.send(alice, '{"type":"ping"}', route="$default")      # or any route that takes frames
    world.connect(alice), world.disconnect(alice)
    world.rows()                                                # every row, plain values
    world.management.frames(alice)                              # what alice was sent

    alice = world.client()                                      # or one connection at a time
    alice.join("lobby")                                         # its senderId
    alice.send({"type": "publish", "data": 1})
    alice.frames(), alice.disconnect()

conftest's ``world`` fixture drives the app conftest installs as the Lambda
module's app (``app``, ``install_app``): a test that installs another app
drives that one. ``lambda_world(dynamodb, table_definition, env={...})`` makes
a world of its own (table, fake management API, ``ChannelApp``) for longer
than one test function (hypothesis properties, observations shared by a
module's tests); its app is installed as the module's app for the length of
each call only, so worlds never leak into each other or into other tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Mapping

from channel_server.handlers import spec
from support.aws import fake_aws_environment
from support.events import ENTRY_POINTS, event, new_connection_id, route_for
from support.management import FakeManagementApi
from support.table import create_test_table, function_environ, rows


#: What ``$connect`` and ``$disconnect`` return.
OK = {"statusCode": 200}
#: Route keys with a route response: their function's return value reaches the sender.
TWO_WAY = {route.key for route in spec.ROUTES if route.two_way}


def answered(reply: bytes | dict) -> dict:
    """What a message entry point returns after replying ``reply`` (the bytes
    it posted, or the frame): a 200 with the reply as its body, which API
    Gateway discards on a route without a route response."""
    text = reply.decode("utf-8") if isinstance(reply, bytes) else json.dumps(reply, separators=(",", ":"), ensure_ascii=False)
    return {**OK, "body": text}


def new_lambda_context() -> SimpleNamespace:
    """The few attributes of a Lambda context object a handler might read."""
    return SimpleNamespace(
        function_name="test-fn-3f2a9c1",
        function_version="$LATEST",
        aws_request_id="c6af9ac6-7b61-11e6-9a41-93e812345678",
        memory_limit_in_mb=256,
        get_remaining_time_in_millis=lambda: 29_000,
    )


def product_management_client(endpoint: str) -> Any:
    """The management client the handlers build for themselves (same factory,
    same retry and pool configuration), with fake credentials."""
    from channel_server.handlers.sender import management_client

    with fake_aws_environment():
        return management_client(endpoint)


def _frame_body(frame: Any) -> str | None:
    """The text of a frame: a str (or None) as it is, anything else as JSON."""
    return frame if frame is None or isinstance(frame, str) else json.dumps(frame, ensure_ascii=False)


class LambdaWorld:
    """A ChannelApp behind the Lambda entry points, its table and its fake
    management API. ``app`` None: whichever app the Lambda module has."""

    def __init__(
        self, app: Any, management: FakeManagementApi, dynamodb: Any, table: str, environ: Mapping[str, str],
        context: Any = None,
    ):
        self._app = app
        self.management = management
        self.dynamodb = dynamodb
        self.table = table
        self.environ = dict(environ)
        self.context = context if context is not None else new_lambda_context()

    @property
    def app(self) -> Any:
        """The ChannelApp that handles this world's calls."""
        from channel_server.handlers import app as lambda_module

        return lambda_module._app if self._app is None else self._app

    def call(self, entry: str, raw_event: dict, context: Any = None) -> Any:
        """Run entry point ``entry`` on ``raw_event``; what the Lambda returned."""
        from channel_server.handlers import app as lambda_module

        context = self.context if context is None else context
        if self._app is None:
            result = getattr(lambda_module, entry)(raw_event, context)
        else:
            previous = lambda_module._app
            lambda_module._app = self._app
            try:
                result = getattr(lambda_module, entry)(raw_event, context)
            finally:
                lambda_module._app = previous
        self._answer(raw_event, result)
        return result

    def _answer(self, raw_event: dict, result: Any) -> None:
        """What API Gateway does with the result: on a two-way route (a route
        response, as the component declares for every message route) the
        body goes to the sender; on the others it is dropped."""
        request = raw_event.get("requestContext") or {}
        if request.get("routeKey") not in TWO_WAY or not isinstance(result, dict):
            return
        body = result.get("body")
        if isinstance(body, str) and body:
            self.management.route_response(request["connectionId"], body.encode("utf-8"))

    def message_event(
        self, connection_id: str, frame: Any, route: str | None = None, base64_body: bytes | None = None
    ) -> tuple[str, dict]:
        """The entry point and the event for a text frame (a str or None as it
        is, anything else as JSON): through the route API Gateway picks for it
        unless ``route`` names one (its entry point runs, with that route key);
        ``base64_body`` sends raw bytes as an ``isBase64Encoded`` event instead,
        to ``$default`` unless ``route`` says otherwise."""
        body = _frame_body(frame)
        if base64_body is not None:
            route = route or "$default"
        entry = ENTRY_POINTS[route or route_for(body)]
        raw = event(entry, connection_id=connection_id, body=body)
        if route is not None:
            raw["requestContext"]["routeKey"] = route
        if base64_body is not None:
            raw["body"] = base64.b64encode(base64_body).decode("ascii")
            raw["isBase64Encoded"] = True
        return entry, raw

    def send(
        self, connection_id: str, frame: Any, route: str | None = None, base64_body: bytes | None = None,
        context: Any = None,
    ) -> Any:
        """Send one frame (:meth:`message_event`); what the Lambda returned."""
        return self.call(*self.message_event(connection_id, frame, route, base64_body), context=context)

    def join(self, connection_id: str, channel_id: str) -> str:
        """Join through the entry point; the senderId of the reply."""
        before = len(self.management.frames(connection_id))
        self.send(connection_id, {"type": "join", "channelId": channel_id})
        reply = self.management.frames(connection_id)[before]
        assert reply["type"] == "joinSuccess", reply
        return reply["senderId"]

    def connect(self, connection_id: str) -> Any:
        return self.call("connect", event("connect", connection_id=connection_id))

    def disconnect(self, connection_id: str, context: Any = None) -> Any:
        return self.call("disconnect", event("disconnect", connection_id=connection_id), context=context)

    def rows(self) -> list[dict]:
        """Every row in the table, as plain values, sorted by key."""
        return rows(self.dynamodb, self.table)

    def client(self, connection_id: str | None = None) -> Client:
        """One connection (a new id unless given) of this world."""
        return Client(self, connection_id)


class Client:
    """One WebSocket connection of a :class:`LambdaWorld`. Its ``context`` is
    the Lambda context its calls get (the world's unless replaced)."""

    def __init__(self, world: LambdaWorld, connection_id: str | None = None):
        self.world = world
        self.connection_id = connection_id or new_connection_id()
        self.context = world.context

    def send(self, frame: Any, route: str | None = None) -> Any:
        """Send a text frame (a dict is sent as JSON) through the route API
        Gateway would pick, or ``route``; what the Lambda returned."""
        return self.world.send(self.connection_id, frame, route=route, context=self.context)

    def join(self, channel_id: str) -> str:
        """Join and return the senderId the server assigned."""
        return self.world.join(self.connection_id, channel_id)

    def disconnect(self) -> Any:
        return self.world.disconnect(self.connection_id, context=self.context)

    def frames(self) -> list[Any]:
        """The frames this connection was sent, in order."""
        return self.world.management.frames(self.connection_id)


@contextlib.contextmanager
def lambda_world(
    dynamodb: Any,
    table_definition: Any,
    *,
    env: Mapping[str, str] | None = None,
    app_dynamodb: Any = None,
    app_management: Callable[[str], Any] = product_management_client,
    app_queue: Any = None,
) -> Iterator[LambdaWorld]:
    """A fresh table declared as the component declares it, a fake management
    API and a ChannelApp using both (plus ``env``). ``dynamodb`` inspects the
    table; the app uses ``app_dynamodb`` (default: ``dynamodb``), the client
    ``app_management(endpoint)`` builds and ``app_queue`` (the fan-out queue
    ``env`` names, if any)."""
    from channel_server.handlers.app import ChannelApp

    table = create_test_table(dynamodb, table_definition)
    try:
        with FakeManagementApi(stage="dev") as management:
            environ = {**function_environ(table_definition, table, management.endpoint), **(env or {})}
            app = ChannelApp(
                environ, dynamodb=app_dynamodb or dynamodb, management=app_management(management.endpoint),
                queue=app_queue,
            )
            yield LambdaWorld(app, management, dynamodb, table, environ)
    finally:
        dynamodb.delete_table(TableName=table)
