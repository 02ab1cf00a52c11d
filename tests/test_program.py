"""The Pulumi program (__main__.py, Pulumi.yaml, Pulumi.dev.yaml): what `pulumi up`
would run, under mocks with the dev stack's config."""

from __future__ import annotations

import typing
from pathlib import Path

import pulumi
import pytest
import yaml

from channel_server import TYPE_TOKEN, backend
from channel_server.args import BACKEND_CONFIG_KEYS, ChannelServerArgs, HttpBackend, Settings, config_key
from channel_server.mocks import Deployment, deploy

ROOT = Path(__file__).resolve().parents[1]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
DEV_CONFIG = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
DEV_TAGS = {"project": "channel-server", "environment": "dev"}

#: The Pulumi.yaml config type declared for each Python type of an args field.
#: Pulumi declares only string, integer, boolean and array: a float field is
#: declared integer (whole numbers per second), a dict field is not declared.
CONFIG_TYPES = {str: "string", int: "integer", float: "integer"}
PULUMI_CONFIG_TYPES = {"string", "integer", "boolean", "array"}


@pytest.fixture(scope="module")
def dev() -> Deployment:
    return deploy(ROOT / "__main__.py", config=DEV_CONFIG)


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(ChannelServerArgs)
    return {name: typing.get_origin(hint) or hint for name, hint in hints.items()}


# --- the program under mocks ----------------------------------------------------------------


def test_program_builds_one_channel_server_named_after_the_project(dev: Deployment) -> None:
    component = dev.one(TYPE_TOKEN)
    assert component.name == "channel-server"
    children = [r for r in dev.resources if r.type != TYPE_TOKEN]
    assert children
    assert [r.name for r in children if not r.name.startswith("channel-server-")] == []


PROGRAM_EXPORTS = {"url", "managementEndpoint", "tableName", "apiId", "stageName"}


def test_program_exports_the_server_outputs(dev: Deployment) -> None:
    api = dev.one("aws:apigatewayv2/api:Api")
    host = api["apiEndpoint"].removeprefix("wss://")
    # only the program's own keys: see test_exports_of_an_earlier_run_do_not_leak_into_the_next
    assert {key: dev.exports.get(key) for key in PROGRAM_EXPORTS} == {
        "url": f"wss://{host}/dev",
        "managementEndpoint": f"https://{host}/dev",
        "tableName": dev.one("aws:dynamodb/table:Table")["name"],
        "apiId": api.id,
        "stageName": "dev",
    }


def test_exports_of_an_earlier_run_do_not_leak_into_the_next() -> None:
    # GIVEN an earlier mocked run in the same process that exported something else
    deploy(lambda: pulumi.export("stale", "from an earlier run"))

    # WHEN the program runs
    exports = deploy(ROOT / "__main__.py", config=DEV_CONFIG).exports

    # THEN its exports are exactly its own
    assert set(exports) == PROGRAM_EXPORTS


def test_program_deploys_to_the_configured_region(dev: Deployment) -> None:
    assert ".execute-api.us-east-1.amazonaws.com/" in dev.exports["url"]


def test_dev_stage_is_throttled_at_100_burst_and_50_per_second(dev: Deployment) -> None:
    stage = dev.one("aws:apigatewayv2/stage:Stage")
    assert stage["name"] == "dev"
    assert stage["defaultRouteSettings"] == {"throttlingBurstLimit": 100, "throttlingRateLimit": 50}


@pytest.mark.parametrize(
    "type_token",
    [
        "aws:dynamodb/table:Table",
        "aws:apigatewayv2/api:Api",
        "aws:apigatewayv2/stage:Stage",
        "aws:lambda/function:Function",
        "aws:iam/role:Role",
        "aws:cloudwatch/logGroup:LogGroup",
    ],
)
def test_dev_tags_reach_every_taggable_resource(dev: Deployment, type_token: str) -> None:
    resources = dev.of_type(type_token)
    assert resources
    assert [r.name for r in resources if r.inputs.get("tags") != DEV_TAGS] == []


def test_dev_log_groups_keep_logs_14_days(dev: Deployment) -> None:
    log_groups = dev.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert log_groups
    assert {g["retentionInDays"] for g in log_groups} == {14}


# --- Pulumi.yaml and Pulumi.dev.yaml ---------------------------------------------------------


def test_project_is_channel_server_on_python_with_a_virtualenv() -> None:
    assert PROJECT["name"] == "channel-server"
    assert PROJECT["runtime"]["name"] == "python"
    assert PROJECT["runtime"]["options"]["virtualenv"]


DECLARABLE = sorted(f for f, kind in _field_types().items() if kind in CONFIG_TYPES)


def test_project_declares_one_config_key_per_declarable_args_field() -> None:
    backend_keys = set(BACKEND_CONFIG_KEYS.values())
    assert set(PROJECT["config"]) == {config_key(field) for field in DECLARABLE} | backend_keys
    # tags is a map (set in the stack file); backend is declared one key per field of HttpBackend
    assert set(ChannelServerArgs.__annotations__) - set(DECLARABLE) == {"tags", "backend"}
    assert set(BACKEND_CONFIG_KEYS) == set(HttpBackend.__annotations__)


def test_backend_keys_default_to_the_lambda_handlers_and_the_longest_timeout() -> None:
    assert PROJECT["config"][BACKEND_CONFIG_KEYS["url"]] == {
        "type": "string", "default": "", "description": PROJECT["config"][BACKEND_CONFIG_KEYS["url"]]["description"]}
    timeout = PROJECT["config"][BACKEND_CONFIG_KEYS["timeout_ms"]]
    assert (timeout["type"], timeout["default"]) == ("integer", backend.DEFAULT_TIMEOUT_MS)


@pytest.mark.parametrize("field", DECLARABLE)
def test_declared_config_default_is_the_components_default(field: str) -> None:
    # a declared key without a default is required by the Pulumi CLI
    declared = PROJECT["config"][config_key(field)]
    default = getattr(Settings(), field)
    assert "default" in declared
    # "" declares "unset" (from_config skips it) where the component's default is None
    assert declared["default"] == ("" if default is None else default)


@pytest.mark.parametrize("field", DECLARABLE)
def test_declared_config_type_is_one_pulumi_accepts_and_fits_the_field(field: str) -> None:
    declared = PROJECT["config"][config_key(field)]
    assert declared["type"] in PULUMI_CONFIG_TYPES
    assert declared["type"] == CONFIG_TYPES[_field_types()[field]]


def test_dev_stack_sets_only_declared_keys() -> None:
    project_keys = {key.removeprefix("channel-server:") for key in DEV_CONFIG if key.startswith("channel-server:")}
    assert project_keys
    assert project_keys <= set(PROJECT["config"]) | {"tags"}
    assert {key for key in DEV_CONFIG if not key.startswith("channel-server:")} == {"aws:region"}


# --- the project as pulumi up reads it -------------------------------------------------------


def test_the_project_reads_declared_defaults_under_the_dev_stacks_config():
    from channel_server.mocks import Project

    project = Project.load(ROOT)
    values, secrets = project.config("dev")

    assert (project.name, project.program) == (PROJECT["name"], ROOT / "__main__.py")
    declared = {f"{PROJECT['name']}:{key}": entry["default"] for key, entry in PROJECT["config"].items()}
    assert values == {**declared, **DEV_CONFIG} and secrets == []
    assert project.deploy("dev").exports["stageName"] == DEV_CONFIG["channel-server:stageName"]


def test_a_stacks_secrets_reach_the_program_as_a_placeholder(tmp_path):
    from channel_server.mocks import SECRET_PLACEHOLDER, Project

    (tmp_path / "Pulumi.yaml").write_text("name: app\nruntime: python\nconfig:\n  region: eu\n")
    (tmp_path / "__main__.py").write_text("")
    (tmp_path / "Pulumi.prod.yaml").write_text(
        "config:\n  app:token:\n    secure: AAABAKxyz\n  app:region: us\n  aws:region: us-west-2\n"
    )

    values, secrets = Project.load(tmp_path / "__main__.py").config("prod")

    assert values == {"app:region": "us", "app:token": SECRET_PLACEHOLDER, "aws:region": "us-west-2"}
    assert secrets == ["app:token"]
