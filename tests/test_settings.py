"""The app's settings (``channel_server.handlers.settings``): a function's
environment parsed once, and the only place ``ChannelApp`` and its clients
take their configuration from, AWS's endpoints, region and credentials
included; and what each route loads, as app.py's opening comment says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Iterator

import pytest

from channel_server.handlers import protocol, spec
from channel_server.handlers.app import ChannelApp
from channel_server.handlers.settings import AppSettings
from support.recorder import RecordingAws


def test_an_empty_environment_gives_every_default() -> None:
    settings = AppSettings.from_environ({})

    assert settings == AppSettings()
    assert settings.rules() == protocol.Rules()
    assert settings.inline_limit is None  # no queue: a publish posts to every member itself
    assert (settings.table_name, settings.management_endpoint, settings.fanout_queue_url) == (None, None, None)
    assert not settings.heartbeats and not settings.metrics and settings.history_seconds == 0


def test_every_setting_is_read_from_its_spec_variable() -> None:
    environ = {
        spec.ENV_TABLE_NAME: "chat-connections", spec.ENV_INDEX_NAME: "byChannel",
        spec.ENV_MANAGEMENT_ENDPOINT: "https://k7x2mq9ehd.execute-api.eu-west-1.amazonaws.com/dev",
        spec.ENV_CHANNEL_ID_PATTERN: "room-[0-9]+", spec.ENV_MAX_MESSAGE_BYTES: "4096",
        spec.ENV_POSTS_IN_FLIGHT: "8", spec.ENV_FANOUT_QUEUE_URL: "https://sqs.eu-west-1.amazonaws.com/1/fanout",
        spec.ENV_INLINE_FANOUT_LIMIT: "50", spec.ENV_HEARTBEATS: "1", spec.ENV_HISTORY_SECONDS: "60",
        spec.ENV_METRICS: "1", spec.ENV_SERVER_NAME: "chat", spec.ENV_PRESENCE_MAX_MEMBERS: "20",
        spec.ENV_DYNAMODB_READ_TIMEOUT: "15", spec.ENV_POSTS_PER_SECOND: "2500", spec.ENV_CHANNEL_INDEX_SHARDS: "4",
        "AWS_REGION": "eu-west-1", "PATH": "/usr/bin",
    }

    settings = AppSettings.from_environ(environ)

    assert settings == AppSettings(
        table_name="chat-connections", index_name="byChannel",
        management_endpoint="https://k7x2mq9ehd.execute-api.eu-west-1.amazonaws.com/dev",
        channel_id_pattern="room-[0-9]+", max_message_bytes=4096, posts_in_flight=8,
        fanout_queue_url="https://sqs.eu-west-1.amazonaws.com/1/fanout", inline_fanout_limit=50, heartbeats=True,
        history_seconds=60, metrics=True, server_name="chat", presence_max_members=20, dynamodb_read_timeout=15.0,
        posts_per_second=2500, channel_index_shards=4,
        aws={"AWS_REGION": "eu-west-1"},  # the AWS_* variables only
    )
    assert settings.rules() == protocol.Rules("room-[0-9]+", 4096, presence_max_members=20)
    assert settings.inline_limit == 50
    # every CHANNEL_* variable spec names is read
    assert {value for name, value in vars(spec).items() if name.startswith("ENV_")} <= set(environ)


@pytest.mark.parametrize("variable", [
    spec.ENV_MAX_MESSAGE_BYTES, spec.ENV_POSTS_IN_FLIGHT, spec.ENV_INLINE_FANOUT_LIMIT, spec.ENV_HISTORY_SECONDS,
    spec.ENV_PRESENCE_MAX_MEMBERS, spec.ENV_DYNAMODB_READ_TIMEOUT, spec.ENV_POSTS_PER_SECOND,
    spec.ENV_CHANNEL_INDEX_SHARDS,
])
def test_a_number_that_is_not_one_is_refused_naming_its_variable(variable: str) -> None:
    with pytest.raises(ValueError, match=f"^{variable}: 'lots' is not a "):
        AppSettings.from_environ({variable: "lots"})


def test_a_missing_table_is_named_when_the_store_is_needed() -> None:
    app = ChannelApp({})  # ping needs no table

    with pytest.raises(ValueError, match=f"^{spec.ENV_TABLE_NAME} is not set$"):
        app.store  # noqa: B018


# --- AWS's settings: from the mapping given, never the process's ------------------------------


@pytest.fixture
def recording_aws() -> Iterator[RecordingAws]:
    with RecordingAws() as recorder:
        yield recorder


def test_the_clients_take_endpoint_region_and_credentials_from_the_settings_not_the_process(
    recording_aws: RecordingAws, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a process whose environment names other credentials, another region and another endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    app = ChannelApp({
        spec.ENV_TABLE_NAME: "t", spec.ENV_INDEX_NAME: spec.CHANNEL_INDEX,
        spec.ENV_MANAGEMENT_ENDPOINT: f"{recording_aws.endpoint}/dev",
        spec.ENV_FANOUT_QUEUE_URL: f"{recording_aws.endpoint}/123456789012/fanout",
        "AWS_ENDPOINT_URL": recording_aws.endpoint, "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIDFROMSETTINGS", "AWS_SECRET_ACCESS_KEY": "secret",
    })

    # WHEN each client makes a request
    with pytest.raises(Exception, match="recorded"):
        app.store.membership("Ab1cD2eF3gH4iJ=")
    app.sender.post("Ab1cD2eF3gH4iJ=", b"{}", None)
    try:
        app.queue.send("room", ["Ab1cD2eF3gH4iJ="], b"{}", None)
    except Exception:  # refused: what was sent is what counts
        pass

    # THEN each went where the settings say, signed with their credentials for their region
    assert recording_aws.scopes() == {"AKIDFROMSETTINGS/eu-west-1/dynamodb", "AKIDFROMSETTINGS/eu-west-1/execute-api",
                                      "AKIDFROMSETTINGS/eu-west-1/sqs"}


# --- what each route loads --------------------------------------------------------------------

LOADS = r'''
import json, sys
from channel_server.handlers import app

HEAVY = ("asyncio", "ssl", "channel_server.handlers.sender", "channel_server.handlers.dynamodb")
environ = {"CHANNEL_TABLE_NAME": "t", "CHANNEL_INDEX_NAME": "byChannel",
           "CHANNEL_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9/dev", "AWS_ENDPOINT_URL": "http://127.0.0.1:9/",
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class EmptyTable:
    """No rows, and every write succeeds."""

    def get_item(self, **params):
        return {}

    def transact_write_items(self, **params):
        return {}


class Context:
    def get_remaining_time_in_millis(self):
        return 3000


def event(route, body=None):
    return {"requestContext": {"connectionId": "Ab1cD2eF3gH4iJ=", "routeKey": route, "requestId": "r",
                               "eventType": "MESSAGE"}, "body": body}


def loaded():
    return sorted(name for name in HEAVY if name in sys.modules)


found = {"imported": loaded()}
served = app.ChannelApp(environ)
served.ping(app.WebSocketEvent(event("ping", '{"type":"ping"}')))
served.connect(app.WebSocketEvent(event("$connect")))
found["ping, $connect"] = loaded()
joined = app.ChannelApp(environ, dynamodb=EmptyTable()).join(
    app.WebSocketEvent(event("join", '{"type":"join","channelId":"room"}')), Context())
found["join"] = loaded() if json.loads(joined["body"])["type"] == "joinSuccess" else joined
print(json.dumps(found))
'''


def test_ping_and_connect_load_no_client_and_a_join_that_posts_nothing_loads_no_sender() -> None:
    result = subprocess.run([sys.executable, "-c", LOADS], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"imported": [], "ping, $connect": [], "join": []}
