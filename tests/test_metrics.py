"""CloudWatch metrics (``CHANNEL_METRICS``): one Embedded Metric Format record
per publish, fan-out chunk and heartbeat run (``handlers/metrics.py``).

- Every record is checked against the EMF specification (structure, limits,
  every dimension and metric present at the top level, CloudWatch units from
  botocore's CloudWatch model).
- The values are what happened: real publishes through the entry points,
  against the embedded DynamoDB and the fake management API answering 410
  and 500 for some members, and a real SQS queue for the fan-out function.
- Metrics off writes nothing; a writer (or stdout) that fails never fails
  the request.

Records are taken through ``ChannelApp``'s ``metrics_writer``, which the
handlers call before they reply: the tests read them after the reply, with
no waiting.
"""

from __future__ import annotations

import io
import json
import os
import logging
import sys
import time
from typing import Any, Callable, Iterator

import boto3
import botocore.session
import pytest

from channel_server.handlers import metrics, spec
from channel_server.handlers.app import ChannelApp
from channel_server.handlers.settings import AppSettings
from channel_server.local.queues import sqs_event
from support.aws import FAKE_CREDENTIALS, REGION

SERVER = "chat-prod"
#: CloudWatch's units, from the API's own model (StandardUnit).
CLOUDWATCH_UNITS = frozenset(botocore.session.get_session().get_service_model("cloudwatch").shape_for("StandardUnit").enum)
#: The specification's limits.
MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_NAME_LENGTH = 1024  # Namespace, dimension names and values
MAX_METRIC_NAME_LENGTH = 255
EXPECTED_METRICS = {
    "FanoutSize": "Count", "Delivered": "Count", "Gone": "Count", spec.METRIC_FAILED_DELIVERIES: "Count",
    "Queued": "Count", "FanoutDuration": "Milliseconds",
}
INLINE_LIMIT = 2


# --- the specification, as a check ---------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def assert_valid_emf(record: Any) -> None:
    """``record`` follows the EMF specification: the ``_aws`` metadata with
    only Timestamp (epoch ms) and CloudWatchMetrics; each directive with a
    Namespace, dimension sets (lists of at most 30 names) and metric
    definitions (at most 100, each a Name and a CloudWatch Unit); every name
    they reference a top-level member, a string for a dimension, a number
    (or a list of at most 100 numbers) for a metric."""
    assert isinstance(record, dict)
    meta = record["_aws"]
    assert set(meta) == {"Timestamp", "CloudWatchMetrics"}  # objects of the spec allow no other members
    assert isinstance(meta["Timestamp"], int) and not isinstance(meta["Timestamp"], bool)
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= MAX_NAME_LENGTH
        assert isinstance(directive["Dimensions"], list)
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and 1 <= len(dimension_set) <= MAX_DIMENSIONS_PER_SET
            for name in dimension_set:
                assert isinstance(name, str) and name in record, f"dimension {name!r} is not a top-level member"
                assert isinstance(record[name], str) and 1 <= len(record[name]) <= MAX_NAME_LENGTH
        definitions = directive["Metrics"]
        assert isinstance(definitions, list) and 1 <= len(definitions) <= MAX_METRICS_PER_DIRECTIVE
        names = [definition["Name"] for definition in definitions]
        assert len(set(names)) == len(names)
        for definition in definitions:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            name = definition["Name"]
            assert isinstance(name, str) and 1 <= len(name) <= MAX_METRIC_NAME_LENGTH
            assert definition.get("Unit", "None") in CLOUDWATCH_UNITS
            assert name in record, f"metric {name!r} is not a top-level member"
            value = record[name]
            assert is_number(value) or (isinstance(value, list) and len(value) <= 100 and all(map(is_number, value)))


def values(record: dict) -> dict[str, Any]:
    """The record's dimensions and metric values, without the metadata."""
    return {name: value for name, value in record.items() if name != "_aws"}


def counts(record: dict) -> dict[str, Any]:
    """The record's dimensions and counts: everything but the metadata and the duration."""
    return {name: value for name, value in values(record).items() if name != metrics.FANOUT_DURATION}


# --- the app, with its records taken -------------------------------------------------------


class Records:
    """A metrics writer that keeps every line it was given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.append(text)

    def parsed(self) -> list[dict]:
        """Each line as JSON, after checking it is one whole line."""
        for line in self.lines:
            assert line.endswith("\n") and "\n" not in line[:-1], "a record must be exactly one log line"
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def install(app: Any, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], dynamodb: Any) -> Callable[..., ChannelApp]:
    """``install(writer, **env)``: a ChannelApp for this test's table and
    management API with metrics on for server SERVER (``env`` added or
    overriding; ``metrics=None`` leaves CHANNEL_METRICS unset), writing
    through ``writer``, installed as the Lambda module's app (after
    conftest's ``app``, which it replaces)."""
    from channel_server.handlers import app as lambda_module

    def install_app(writer: Callable[[str], Any] | None, metrics: str | None = "1", **env: str) -> ChannelApp:
        merged = {**os.environ, **environ, spec.ENV_SERVER_NAME: SERVER, **env}  # os.environ: the AWS settings
        if metrics is not None:
            merged[spec.ENV_METRICS] = metrics
        channel_app = ChannelApp(merged, dynamodb=dynamodb, metrics_writer=writer)
        monkeypatch.setattr(lambda_module, "_app", channel_app)
        return channel_app

    return install_app


@pytest.fixture
def records(install: Callable[..., ChannelApp]) -> Records:
    taken = Records()
    install(taken)
    return taken


def channel_with(client: Any, *members: str) -> tuple[Any, dict[str, Any]]:
    """A publisher and the named members, all joined to "room"."""
    publisher = client()
    publisher.join("room")
    joined = {name: client() for name in members}
    for member in joined.values():
        member.join("room")
    return publisher, joined


# --- publish -------------------------------------------------------------------------------


def test_a_publish_writes_one_valid_emf_record(records: Records, client: Any) -> None:
    publisher, _ = channel_with(client, "bob", "carol")
    before = int(time.time() * 1000)

    publisher.send({"type": "publish", "data": "hi"})

    after = int(time.time() * 1000)
    (record,) = records.parsed()
    assert_valid_emf(record)
    assert before <= record["_aws"]["Timestamp"] <= after
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == spec.METRICS_NAMESPACE
    assert directive["Dimensions"] == [["Server"], ["Server", "Function"]]
    assert {d["Name"]: d["Unit"] for d in directive["Metrics"]} == EXPECTED_METRICS
    assert set(values(record)) == {"Server", "Function", *EXPECTED_METRICS}


def test_a_publish_records_what_became_of_each_member(
    records: Records, client: Any, management: Any, no_retry_delay: None
) -> None:
    # GIVEN a channel where one member is gone (410) and one fails every post (500)
    publisher, members = channel_with(client, "bob", "carol", "dave", "erin")
    management.gone.add(members["carol"].connection_id)
    management.fail(members["dave"].connection_id, 500, "InternalServerError")
    records.lines.clear()  # the joins wrote nothing; start from the publish alone

    # WHEN the publisher publishes
    publisher.send({"type": "publish", "data": "hi"})

    # THEN the reply and the record tell the same story
    assert publisher.frames()[-1] == {"type": "publishFailure", "data": "could not deliver to 1 of 3 members; "
                                      "the others received the message", "delivered": 2, "failed": 1}
    (record,) = records.parsed()
    assert_valid_emf(record)
    assert counts(record) == {"Server": SERVER, "Function": "publish", "FanoutSize": 4, "Delivered": 2, "Gone": 1,
                              spec.METRIC_FAILED_DELIVERIES: 1, "Queued": 0}
    assert is_number(record["FanoutDuration"]) and record["FanoutDuration"] >= 0


def test_a_publish_alone_in_its_channel_records_an_empty_fan_out(records: Records, client: Any) -> None:
    alone = client()
    alone.join("quiet")

    alone.send({"type": "publish", "data": 1})

    (record,) = records.parsed()
    assert counts(record)["FanoutSize"] == 0 and counts(record)["Delivered"] == 0


def test_a_publish_that_sends_nothing_writes_no_record(records: Records, client: Any) -> None:
    stranger = client()

    stranger.send({"type": "publish", "data": 1})  # not in a channel: refused before any fan-out

    assert stranger.frames() == [{"type": "publishFailure", "data": "not in a channel; send a join first"}]
    assert records.lines == []


def test_joins_pings_and_connects_write_no_record(records: Records, world: Any, client: Any) -> None:
    alice = client()
    world.connect(alice.connection_id)
    alice.join("room")
    alice.send({"type": "ping"})

    assert [frame["type"] for frame in alice.frames()] == ["joinSuccess", "pong"]
    assert records.lines == []


# --- large channels: queued members and the fan-out function --------------------------------


@pytest.fixture
def queue_url(embedded_dynamodb: Any, monkeypatch: pytest.MonkeyPatch, request: Any) -> Iterator[str]:
    """A fresh queue in the embedded moto, which the handlers' SQS client reaches."""
    sqs = boto3.client("sqs", endpoint_url=embedded_dynamodb.endpoint, region_name=REGION, **FAKE_CREDENTIALS)
    url = sqs.create_queue(QueueName=f"metrics-{abs(hash(request.node.nodeid))}")["QueueUrl"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", embedded_dynamodb.endpoint)
    yield url
    sqs.delete_queue(QueueUrl=url)


def take_chunks(embedded_dynamodb: Any, queue_url: str) -> list[dict]:
    """Every queued chunk, received as the event source mapping receives them."""
    sqs = boto3.client("sqs", endpoint_url=embedded_dynamodb.endpoint, region_name=REGION, **FAKE_CREDENTIALS)
    taken: list[dict] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                       AttributeNames=["All"]).get("Messages", []):
        taken.extend(batch)
    return taken


def test_queued_members_are_counted_by_publish_and_delivered_by_the_fanout_chunk(
    install: Callable[..., ChannelApp], world: Any, client: Any, management: Any, queue_url: str,
    embedded_dynamodb: Any,
) -> None:
    # GIVEN an inline limit of 2 and a channel of 6 other members, one of them gone
    records = Records()
    install(records, **{spec.ENV_FANOUT_QUEUE_URL: queue_url, spec.ENV_INLINE_FANOUT_LIMIT: str(INLINE_LIMIT)})
    publisher, members = channel_with(client, *"abcdef")
    inline, beyond = sorted(m.connection_id for m in members.values())[:INLINE_LIMIT], \
        sorted(m.connection_id for m in members.values())[INLINE_LIMIT:]
    management.gone.add(beyond[0])

    # WHEN the publisher publishes, and the fan-out function runs the queued chunk
    publisher.send({"type": "publish", "data": "big"})
    assert publisher.frames()[-1] == {"type": "publishSuccess", "queued": 4}
    (chunk,) = take_chunks(embedded_dynamodb, queue_url)
    world.call("fanout", sqs_event([chunk], "arn:aws:sqs:us-east-1:123456789012:q", REGION))

    # THEN publish recorded its inline posts and the queued members, the chunk its own posts
    published, fanned_out = records.parsed()
    for record in (published, fanned_out):
        assert_valid_emf(record)
    assert counts(published) == {"Server": SERVER, "Function": "publish", "FanoutSize": 6, "Delivered": 2, "Gone": 0,
                                 spec.METRIC_FAILED_DELIVERIES: 0, "Queued": 4}
    assert counts(fanned_out) == {"Server": SERVER, "Function": "fanout", "FanoutSize": 4, "Delivered": 3, "Gone": 1,
                                  spec.METRIC_FAILED_DELIVERIES: 0, "Queued": 0}
    assert all(management.frames(connection_id) for connection_id in inline)


def test_a_chunk_handed_over_again_writes_no_second_record(
    install: Callable[..., ChannelApp], world: Any, client: Any, queue_url: str, embedded_dynamodb: Any,
) -> None:
    records = Records()
    install(records, **{spec.ENV_FANOUT_QUEUE_URL: queue_url, spec.ENV_INLINE_FANOUT_LIMIT: str(INLINE_LIMIT)})
    publisher, _ = channel_with(client, *"abc")
    publisher.send({"type": "publish", "data": 1})
    (chunk,) = take_chunks(embedded_dynamodb, queue_url)
    event = sqs_event([chunk], "arn:aws:sqs:us-east-1:123456789012:q", REGION)

    world.call("fanout", event)
    world.call("fanout", event)  # SQS delivers at least once: the claim skips it

    assert [record["Function"] for record in records.parsed()] == ["publish", "fanout"]


# --- heartbeat -----------------------------------------------------------------------------


def test_a_heartbeat_run_writes_its_record(install: Callable[..., ChannelApp], world: Any, management: Any) -> None:
    records = Records()
    install(records, **{spec.ENV_HEARTBEATS: "1"})
    live, gone = world.client(), world.client()
    world.connect(live.connection_id)
    world.connect(gone.connection_id)
    management.gone.add(gone.connection_id)

    summary = world.call("heartbeat", {"source": "channel-server.heartbeat", "scheduledTime": "2026-01-01T00:00:00Z"})

    assert summary == {"connections": 2, "delivered": 1, "gone": 1, "failed": 0, "queued": 0}
    (record,) = records.parsed()
    assert_valid_emf(record)
    assert counts(record) == {"Server": SERVER, "Function": "heartbeat", "FanoutSize": 2, "Delivered": 1, "Gone": 1,
                              spec.METRIC_FAILED_DELIVERIES: 0, "Queued": 0}


# --- off, stdout, failures -----------------------------------------------------------------


@pytest.mark.parametrize("setting", [None, "0", "true", "yes", ""])
def test_nothing_is_written_unless_metrics_are_exactly_on(
    setting: str | None, install: Callable[..., ChannelApp], client: Any, capsys: pytest.CaptureFixture[str],
) -> None:
    records = Records()
    install(records, metrics=setting)
    publisher, members = channel_with(client, "bob")

    publisher.send({"type": "publish", "data": "quiet"})

    assert members["bob"].frames()[-1]["data"] == "quiet"
    assert records.lines == []
    assert capsys.readouterr().out == ""


def test_by_default_the_record_goes_to_stdout_as_one_line(
    install: Callable[..., ChannelApp], client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    install(None)
    publisher, _ = channel_with(client, "bob")
    capsys.readouterr()

    publisher.send({"type": "publish", "data": "hi"})

    out = capsys.readouterr().out
    (line,) = out.splitlines()
    assert out == line + "\n"
    assert_valid_emf(json.loads(line))
    assert json.loads(line)["Delivered"] == 1


def test_the_server_dimension_defaults_to_channel_server() -> None:
    records = Records()

    settings = AppSettings.from_environ({spec.ENV_METRICS: "1"})  # no CHANNEL_SERVER_NAME
    metrics.Metrics(settings.metrics, server=settings.server_name, write=records).fan_out("publish", metrics.FanOut(1, 1, 0, 0, 0, 2.5))

    (record,) = records.parsed()
    assert_valid_emf(record)
    assert record["Server"] == "channel-server" and record["FanoutDuration"] == 2.5


def test_a_writer_that_fails_does_not_fail_the_publish(
    install: Callable[..., ChannelApp], client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(text: str) -> None:
        raise OSError(5, "Input/output error")

    install(broken)
    publisher, members = channel_with(client, "bob")

    with caplog.at_level(logging.ERROR, logger="channel_server"):
        publisher.send({"type": "publish", "data": "still sent"})

    assert publisher.frames()[-1] == {"type": "publishSuccess"}
    assert members["bob"].frames()[-1]["data"] == "still sent"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == ["writing the metrics record failed"]


def test_a_closed_stdout_does_not_fail_the_publish(
    install: Callable[..., ChannelApp], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(None)
    publisher, members = channel_with(client, "bob")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)

    publisher.send({"type": "publish", "data": "still sent"})

    assert publisher.frames()[-1] == {"type": "publishSuccess"}
    assert members["bob"].frames()[-1]["data"] == "still sent"


def test_a_heartbeat_with_a_failing_writer_still_returns_its_summary(
    install: Callable[..., ChannelApp], world: Any
) -> None:
    def broken(text: str) -> None:
        raise ValueError("I/O operation on closed file")

    install(broken, **{spec.ENV_HEARTBEATS: "1"})
    live = world.client()
    world.connect(live.connection_id)

    summary = world.call("heartbeat", {})

    assert summary == {"connections": 1, "delivered": 1, "gone": 0, "failed": 0, "queued": 0}
