"""Fixtures shared by the handler tests.

- ``embedded_dynamodb``: moto's DynamoDB on a loopback port, once per session.
- ``table_definition``: the ``aws:dynamodb/table:Table`` inputs the component
  registers (``ChannelServer`` under Pulumi's mocks), so the tests run against
  the table the component declares, not a hand-written copy.
- ``table``: a fresh, uniquely named table built from that definition.
- ``management``: a fake management API that records posts (and can answer 410).
- ``app``: a ``ChannelApp`` wired to both, installed as the Lambda module's app,
  so the real entry points (``app.join(event, context)``) run through it.
- ``world``, ``client``: the one driver of those entry points
  (``support.lambda_world``): ``client()`` is a new connection,
  ``alice.send(frame)`` goes through the route API Gateway would pick,
  ``alice.frames()`` reads back what alice was sent.
- ``dynamodb_faults``: DynamoDB's errors on demand (``support.faulty_dynamodb``),
  from a second embedded DynamoDB that sees the same tables; the environment
  points boto3 at it, so an app that builds its own client meets the faults.
- ``no_retry_delay``: every retry backoff (botocore's and the sender's) made instant, so retry
  tests count attempts without waiting for them.

No real AWS credentials are ever used: the environment is scrubbed
(``support.aws``) and every client talks to a loopback endpoint.

The garbage collector runs as local mode's does once it has started
(``channel_server.local.server``): thresholds 10,000/50/50, and what is loaded
by the time the tests are collected (Pulumi, pulumi_aws, moto, hypothesis,
every test module) frozen out of its walks. With Python's defaults a test
process took 8 s of CPU to collect the tests instead of 5, and a tenth longer
to run a module of Pulumi deployments or hypothesis properties, walking those
objects again and again.
"""

from __future__ import annotations

import gc
import os
import uuid
from typing import Any, Iterator

import pytest

from support.aws import FAKE_CREDENTIALS, REGION, scrub_aws_environment
from support.faulty_dynamodb import DynamoDBFaults
from support.lambda_world import LambdaWorld, new_lambda_context
from support.management import FakeManagementApi
from support.table import create_test_table, function_environ


#: local mode's own (``channel_server.local.server.GC_THRESHOLDS``)
GC_THRESHOLDS = (10_000, 50, 50)
gc.set_threshold(*GC_THRESHOLDS)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported to collect the tests stays to the end: keep it out of
    the collector's walks, as local mode does once it has started."""
    gc.collect()
    gc.freeze()


#: The modules that take longest, longest first: with ``--dist loadfile`` each
#: worker takes whole modules, the next when it is free, so the short modules
#: scheduled last even out the end. (xdist's own order, most tests first, left
#: a 17-second module of 11 tests for last while the other worker sat idle.)
#: Only the order depends on it: a module missing here runs after these.
LONGEST_MODULES = (
    "test_doc_commands.py", "test_local.py", "test_doc_features.py", "test_http_backend.py", "test_client_limits.py",
    "test_local_authorizer.py", "test_production.py", "test_faults.py", "test_terminal_client.py",
    "test_heartbeats.py", "test_publisher.py", "test_local_command.py", "test_page.py",
    # mypy: about 11 s on a fresh clone (no cache yet), under a second after
    "test_types.py",
    "test_local_options.py", "test_security.py", "test_page_presence.py", "test_local_gateway_faults.py",
    "test_properties.py", "test_handlers.py", "test_history.py", "test_local_function_urls.py", "test_wheel.py",
    "test_component.py",
)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order set below
        config.option.loadscopereorder = False


@pytest.hookimpl(optionalhook=True)
def pytest_testnodeready(node: Any) -> None:
    """pytest-xdist's controller, while its workers collect: import hypothesis
    now. Its plugin's terminal summary imports it anyway, and there, after the
    last test, it took a second and a half of the run (pytest rewrites the
    asserts of every hypothesis module: the plugin comes from its distribution)."""
    import hypothesis  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first, each module's tests together and in their order."""
    rank = {name: place for place, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials only: boto3 must never find real ones."""
    scrub_aws_environment(monkeypatch)


@pytest.fixture(scope="session")
def embedded_dynamodb() -> Iterator[Any]:
    from channel_server.local.dynamodb import EmbeddedDynamoDB

    server = EmbeddedDynamoDB().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def table_definition() -> Any:
    """The table as the component registers it (keys, index, projection, TTL)."""
    from channel_server import ChannelServer
    from channel_server.mocks import deploy
    from channel_server.resource_types import TABLE

    return deploy(lambda: ChannelServer("test")).one(TABLE)


@pytest.fixture(scope="session")
def dynamodb(embedded_dynamodb: Any) -> Any:
    """A boto3 DynamoDB client for the embedded server (explicit fake credentials)."""
    import boto3

    return boto3.client("dynamodb", endpoint_url=embedded_dynamodb.endpoint, region_name=REGION, **FAKE_CREDENTIALS)


@pytest.fixture
def table(dynamodb: Any, table_definition: Any) -> Iterator[str]:
    """A fresh table, declared as the component declares it; yields its name."""
    name = create_test_table(dynamodb, table_definition)
    yield name
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def sharded_table(dynamodb: Any, table_definition: Any) -> Iterator[str]:
    """The component's table with a third index, the sharded channel index
    (keyed on ``channelShard``), beside ``byChannel``: both kinds of channel
    index in one table; yields its name."""
    from channel_server.handlers import spec
    from channel_server.local.dynamodb import create_table

    inputs = dict(table_definition.inputs)
    inputs["attributes"] = [*inputs["attributes"], {"name": spec.CHANNEL_SHARD, "type": "S"}]
    inputs["globalSecondaryIndexes"] = [*inputs["globalSecondaryIndexes"], {
        "name": spec.CHANNEL_SHARD_INDEX, "hashKey": spec.CHANNEL_SHARD, "projectionType": "INCLUDE",
        "nonKeyAttributes": [spec.EXPIRES_AT]}]
    name = f"sharded-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, name, inputs)
    yield name
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def management() -> Iterator[FakeManagementApi]:
    with FakeManagementApi(stage="dev") as api:
        yield api


@pytest.fixture
def environ(table: str, table_definition: Any, management: FakeManagementApi) -> dict[str, str]:
    """The functions' environment, by the variable names the handlers read."""
    return function_environ(table_definition, table, management.endpoint)


@pytest.fixture
def install_app(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], dynamodb: Any) -> Any:
    """``install_app(**env)``: build a ChannelApp from the process's
    environment as it is then (its AWS settings: the fake credentials, and any
    endpoint a fixture set) plus the test environment plus ``env``, as a
    function's environment holds both (``dynamodb=`` swaps the client), and
    install it as the Lambda module's app; returns the Lambda module."""
    from channel_server.handlers import app as lambda_module

    def install(*, dynamodb: Any = dynamodb, **env: str) -> Any:
        channel_app = lambda_module.ChannelApp({**os.environ, **environ, **env}, dynamodb=dynamodb)
        monkeypatch.setattr(lambda_module, "_app", channel_app)
        return lambda_module

    return install


@pytest.fixture
def app(install_app: Any) -> Any:
    """The Lambda module, with a ChannelApp for this test's table and endpoint
    installed as its app: call ``app.join(event, context)`` and the rest."""
    return install_app()


@pytest.fixture
def lambda_context() -> Any:
    """The few attributes of a Lambda context object a handler might read."""
    return new_lambda_context()


@pytest.fixture
def world(
    app: Any, management: FakeManagementApi, dynamodb: Any, table: str, environ: dict[str, str], lambda_context: Any
) -> LambdaWorld:
    """The entry points with whichever app is installed (``app``, or the last
    ``install_app``), this test's table and fake management API."""
    return LambdaWorld(None, management, dynamodb, table, environ, context=lambda_context)


@pytest.fixture
def client(world: LambdaWorld) -> Any:
    """``client()`` makes a new connection (``client(connection_id)`` one with that id)."""
    return world.client


@pytest.fixture(scope="session")
def faulty_dynamodb_server() -> Iterator[tuple[Any, DynamoDBFaults]]:
    """A second embedded DynamoDB with :class:`DynamoDBFaults` in front of moto.
    moto's state is process-wide, so it serves the same tables as
    ``embedded_dynamodb``: create them there, break calls here."""
    from channel_server.local.dynamodb import EmbeddedDynamoDB

    faults = DynamoDBFaults()
    server = EmbeddedDynamoDB(middleware=faults).start()
    try:
        yield server, faults
    finally:
        server.stop()


@pytest.fixture
def dynamodb_faults(
    faulty_dynamodb_server: tuple[Any, DynamoDBFaults], monkeypatch: pytest.MonkeyPatch
) -> Iterator[DynamoDBFaults]:
    """No faults yet, counts at zero, and ``AWS_ENDPOINT_URL_DYNAMODB`` and
    ``AWS_REGION`` set to the faulty server: a ``ChannelApp`` built without a
    ``dynamodb`` client (``install_app(dynamodb=None)``) builds its own, with its
    own retry configuration, and meets the faults the test sets."""
    server, faults = faulty_dynamodb_server
    faults.clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", server.endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    yield faults
    faults.clear()


@pytest.fixture
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries happen at once: the backoff of the handlers' own clients
    (DynamoDB's and the management API's) and of botocore's standard retry
    mode (boto3 clients that tests build) waits 0 s. Which errors are
    retried, and how often, is unchanged."""
    from botocore.retries import standard

    from channel_server.handlers import aws

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    monkeypatch.setattr(aws, "backoff_delay", lambda attempt: 0)
