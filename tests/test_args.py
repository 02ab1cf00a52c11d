"""ChannelServerArgs: defaults, the checks ``resolve`` makes and their exact messages,
and ``from_config``."""

from __future__ import annotations

from typing import Any

import pytest

from channel_server.args import ChannelServerArgs, ChannelServerArgsError, Settings, resolve
from channel_server.config import config_key, from_config

RETENTIONS = (
    "(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)"
)
FIELDS = ", ".join(sorted(ChannelServerArgs.__annotations__))
BURST = "must be from 1 to 5000 (0 would reject every message)"
RATE = "must be a number above 0 and at most 10000 (0 would reject every message)"
TIMEOUT = "must be from 1 to 29 seconds (API Gateway's integration timeout is 29 s)"
MAX_BYTES = "must be from 1 to 131072 bytes (API Gateway's message limit)"

INVALID = [
    pytest.param({"throttling_burst_limit": -1}, f"ChannelServerArgs throttling_burst_limit=-1: {BURST}", id="negative burst"),
    pytest.param({"throttling_burst_limit": 0}, f"ChannelServerArgs throttling_burst_limit=0: {BURST}", id="zero burst"),
    pytest.param({"throttling_rate_limit": -1}, f"ChannelServerArgs throttling_rate_limit=-1: {RATE}", id="negative rate"),
    pytest.param({"throttling_rate_limit": 0}, f"ChannelServerArgs throttling_rate_limit=0: {RATE}", id="zero rate"),
    pytest.param({"throttling_rate_limit": 0.0}, f"ChannelServerArgs throttling_rate_limit=0.0: {RATE}", id="zero float rate"),
    pytest.param({"lambda_timeout_seconds": 30}, f"ChannelServerArgs lambda_timeout_seconds=30: {TIMEOUT}", id="timeout 30"),
    pytest.param({"lambda_timeout_seconds": 0}, f"ChannelServerArgs lambda_timeout_seconds=0: {TIMEOUT}", id="timeout 0"),
    pytest.param({"lambda_memory_mb": 64}, "ChannelServerArgs lambda_memory_mb=64: must be from 128 to 10240 MB", id="memory 64"),
    pytest.param(
        {"log_retention_days": 13},
        f"ChannelServerArgs log_retention_days=13: CloudWatch accepts only {RETENTIONS}",
        id="retention 13",
    ),
    pytest.param(
        {"lambda_architecture": "x86"}, "ChannelServerArgs lambda_architecture='x86': use one of arm64, x86_64", id="architecture"
    ),
    pytest.param(
        {"lambda_runtime": "nodejs20.x"},
        "ChannelServerArgs lambda_runtime='nodejs20.x': the handlers are Python: use a runtime like 'python3.13'",
        id="runtime nodejs",
    ),
    pytest.param(
        {"channel_id_pattern": "["},
        "ChannelServerArgs channel_id_pattern='[': is not a valid regular expression "
        "(unterminated character set at position 0)",
        id="uncompilable pattern",
    ),
    pytest.param(
        {"channel_id_pattern": ""},
        "ChannelServerArgs channel_id_pattern='': must be a non-empty regular expression",
        id="empty pattern",
    ),
    pytest.param({"max_message_bytes": 0}, f"ChannelServerArgs max_message_bytes=0: {MAX_BYTES}", id="max bytes 0"),
    pytest.param({"max_message_bytes": 131073}, f"ChannelServerArgs max_message_bytes=131073: {MAX_BYTES}", id="max bytes 131073"),
    pytest.param({"posts_in_flight": 0}, "ChannelServerArgs posts_in_flight=0: must be from 1 to 1000", id="in flight 0"),
    pytest.param({"posts_in_flight": 1001}, "ChannelServerArgs posts_in_flight=1001: must be from 1 to 1000",
                 id="in flight 1001"),
    pytest.param({"posts_in_flight": "64"},
                 "ChannelServerArgs posts_in_flight='64': must be a whole number from 1 to 1000", id="in flight text"),
    pytest.param({"inline_fanout_limit": 0}, "ChannelServerArgs inline_fanout_limit=0: must be from 1 to 50000",
                 id="inline limit 0"),
    pytest.param({"inline_fanout_limit": 50001},
                 "ChannelServerArgs inline_fanout_limit=50001: must be from 1 to 50000", id="inline limit 50001"),
    pytest.param(
        {"stage_name": "a b"}, "ChannelServerArgs stage_name='a b': use 1 to 128 letters, digits, '-' or '_'", id="stage name"
    ),
    pytest.param(
        {"table_name": "x"},
        "ChannelServerArgs table_name='x': use 3 to 255 letters, digits, '_', '-' or '.', or leave it unset",
        id="table name",
    ),
    pytest.param({"tags": {"team": 7}}, "ChannelServerArgs tags={'team': 7}: must map strings to strings", id="int tag"),
    pytest.param({"stage": "prod"}, f"ChannelServerArgs has no field stage; valid fields: {FIELDS}", id="unknown field"),
    pytest.param(
        {"lambda_memory_mb": True},
        "ChannelServerArgs lambda_memory_mb=True: must be a whole number from 128 to 10240 MB",
        id="bool memory",
    ),
    pytest.param(
        {"throttling_burst_limit": True},
        "ChannelServerArgs throttling_burst_limit=True: must be a whole number from 1 to 5000 (0 would reject every message)",
        id="bool burst",
    ),
    pytest.param({"throttling_rate_limit": True}, f"ChannelServerArgs throttling_rate_limit=True: {RATE}", id="bool rate"),
    pytest.param(
        {"log_retention_days": False},
        "ChannelServerArgs log_retention_days=False: must be a whole number from 1 to 3653 days",
        id="bool retention",
    ),
    pytest.param(
        {"max_message_bytes": True},
        "ChannelServerArgs max_message_bytes=True: must be a whole number from 1 to 131072 bytes "
        "(API Gateway's message limit)",
        id="bool max bytes",
    ),
    pytest.param(
        {"lambda_timeout_seconds": 14.5},
        "ChannelServerArgs lambda_timeout_seconds=14.5: must be a whole number from 1 to 29 seconds "
        "(API Gateway's integration timeout is 29 s)",
        id="fractional timeout",
    ),
    pytest.param(
        {"lambda_memory_mb": "256"},
        "ChannelServerArgs lambda_memory_mb='256': must be a whole number from 128 to 10240 MB",
        id="string memory",
    ),
]


@pytest.mark.parametrize("args, message", INVALID)
def test_resolve_refuses_invalid_value_with_a_message_that_says_what_to_change(args: dict, message: str) -> None:
    with pytest.raises(ChannelServerArgsError) as caught:
        resolve(args)
    assert str(caught.value) == message


def test_args_error_is_a_value_error() -> None:
    assert issubclass(ChannelServerArgsError, ValueError)


def test_defaults_are_the_documented_ones() -> None:
    assert resolve(None) == resolve({}) == Settings(
        stage_name="dev",
        table_name=None,
        lambda_runtime="python3.13",
        lambda_architecture="arm64",
        lambda_memory_mb=256,
        lambda_timeout_seconds=29,
        log_retention_days=14,
        throttling_burst_limit=500,
        throttling_rate_limit=1000.0,
        channel_id_pattern="[A-Za-z0-9_.:-]+",
        max_message_bytes=131072,
        posts_in_flight=64,
        inline_fanout_limit=1000,
        tags={},
    )


def test_none_values_keep_the_defaults() -> None:
    assert resolve({"stage_name": None, "log_retention_days": None, "tags": None}) == Settings()


def test_whole_floats_are_accepted_as_ints() -> None:
    # Pulumi config and other languages may send 14.0
    settings = resolve({"log_retention_days": 14.0, "lambda_memory_mb": 512.0, "throttling_burst_limit": 100.0})
    assert (settings.log_retention_days, settings.lambda_memory_mb, settings.throttling_burst_limit) == (14, 512, 100)
    assert all(type(v) is int for v in (settings.log_retention_days, settings.lambda_memory_mb, settings.throttling_burst_limit))


def test_an_int_rate_becomes_a_float() -> None:
    settings = resolve({"throttling_rate_limit": 50})
    assert settings.throttling_rate_limit == 50.0
    assert type(settings.throttling_rate_limit) is float


@pytest.mark.parametrize(
    "args",
    [
        {"lambda_timeout_seconds": 1},
        {"lambda_timeout_seconds": 29},
        {"lambda_memory_mb": 128},
        {"lambda_memory_mb": 10240},
        {"max_message_bytes": 1},
        {"max_message_bytes": 131072},
        {"posts_in_flight": 1},
        {"posts_in_flight": 1000},
        {"inline_fanout_limit": 1},
        {"inline_fanout_limit": 50000},
        {"throttling_burst_limit": 1},
        {"throttling_burst_limit": 5000},
        {"throttling_rate_limit": 0.5},
        {"throttling_rate_limit": 10000},
        {"log_retention_days": 1},
        {"log_retention_days": 3653},
        {"lambda_architecture": "x86_64"},
        {"lambda_runtime": "python3.12"},
        {"stage_name": "prod_2-b"},
        {"table_name": "Connections"},
        {"table_name": "my.table-1_x"},
        {"tags": {"team": "realtime"}},
    ],
    ids=lambda args: "-".join(f"{k}={v}" for k, v in args.items()),
)
def test_resolve_accepts_boundary_and_valid_values(args: dict) -> None:
    settings = resolve(args)
    ((name, value),) = args.items()
    assert getattr(settings, name) == value


def test_resolve_copies_the_tags() -> None:
    tags = {"team": "realtime"}
    settings = resolve({"tags": tags})
    tags["team"] = "changed"
    assert settings.tags == {"team": "realtime"}


# --- config keys and from_config ---------------------------------------------------------


@pytest.mark.parametrize(
    "field, key",
    [("stage_name", "stageName"), ("lambda_memory_mb", "lambdaMemoryMb"), ("tags", "tags")],
)
def test_config_key_is_the_camel_case_field_name(field: str, key: str) -> None:
    assert config_key(field) == key


class FakeConfig:
    """Answers like ``pulumi.Config``: typed values from typed getters, None when unset;
    records which getter read which key."""

    def __init__(self, values: dict[str, Any]):
        self.values = values
        self.reads: dict[str, str] = {}

    def _read(self, getter: str, key: str) -> Any:
        self.reads[key] = getter
        return self.values.get(key)

    def get(self, key: str) -> Any:
        return self._read("get", key)

    def get_int(self, key: str) -> Any:
        return self._read("get_int", key)

    def get_float(self, key: str) -> Any:
        return self._read("get_float", key)

    def get_bool(self, key: str) -> Any:
        return self._read("get_bool", key)

    def get_object(self, key: str) -> Any:
        return self._read("get_object", key)


def test_from_config_reads_each_set_key_with_its_fields_type() -> None:
    # GIVEN a config with some keys set
    config = FakeConfig(
        {
            "stageName": "prod",
            "lambdaMemoryMb": 512,
            "throttlingBurstLimit": 100,
            "throttlingRateLimit": 50.0,
            "tags": {"team": "realtime"},
        }
    )

    # WHEN the args are read from it
    args = from_config(config)

    # THEN set keys arrive under their field names, unset keys are left out
    assert args == {
        "stage_name": "prod",
        "lambda_memory_mb": 512,
        "throttling_burst_limit": 100,
        "throttling_rate_limit": 50.0,
        "tags": {"team": "realtime"},
    }
    # AND every field was read with the getter of its type
    assert config.reads == {
        "stageName": "get",
        "tableName": "get",
        "lambdaRuntime": "get",
        "lambdaArchitecture": "get",
        "lambdaMemoryMb": "get_int",
        "publishMemoryMb": "get_int",
        "lambdaTimeoutSeconds": "get_int",
        "logRetentionDays": "get_int",
        "throttlingBurstLimit": "get_int",
        "throttlingRateLimit": "get_float",
        "channelIdPattern": "get",
        "maxMessageBytes": "get_int",
        "postsInFlight": "get_int",
        "inlineFanoutLimit": "get_int",
        "postsPerSecond": "get_int",
        "channelIndexShards": "get_int",
        "fanoutConcurrency": "get_int",
        "heartbeatIntervalMinutes": "get_int",
        "historySeconds": "get_int",
        "backendUrl": "get",
        "backendTimeoutMs": "get_int",
        "domainName": "get",
        "domainCertificateArn": "get",
        "domainBasePath": "get",
        "domainHostedZoneId": "get",
        "authorizerFunctionArn": "get",
        "authorizerIdentitySources": "get_object",
        "authorizerType": "get",
        "authorizerResultTtlSeconds": "get_int",
        "accessLogs": "get_bool",
        "apiGatewayCloudwatchRoleArn": "get",
        "manageApiGatewayAccount": "get_bool",
        "serverPublish": "get_bool",
        "presence": "get_bool",
        "presenceMaxMembers": "get_int",
        "metrics": "get_bool",
        "alarmTopicArn": "get",
        "tracing": "get_bool",
        "retainOnDelete": "get_bool",
        "deletionProtection": "get_bool",
        "tags": "get_object",
    }
    assert resolve(args) == Settings(
        stage_name="prod",
        lambda_memory_mb=512,
        throttling_burst_limit=100,
        throttling_rate_limit=50.0,
        tags={"team": "realtime"},
    )


def test_from_config_of_an_empty_config_gives_the_defaults() -> None:
    args = from_config(FakeConfig({}))
    assert args == {}
    assert resolve(args) == Settings()


def test_every_args_field_has_a_setting() -> None:
    assert set(ChannelServerArgs.__annotations__) == set(Settings.__dataclass_fields__)


def test_from_config_treats_an_empty_table_name_as_unset() -> None:
    # Pulumi.yaml declares tableName with default "" (a declared key needs a default)
    args = from_config(FakeConfig({"tableName": ""}))
    assert "table_name" not in args
    assert resolve(args).table_name is None
