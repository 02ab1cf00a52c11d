"""The Pulumi program (__main__.py, Pulumi.yaml, Pulumi.dev.yaml): what `pulumi up`
would run, under mocks with the dev stack's config."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
import yaml

from channel_server import TYPE_TOKEN, backend
from channel_server.args import Settings
from channel_server.config import OBJECT_FIELDS, config_key, field_kinds, object_config_keys
from channel_server.mocks import Deployment, deploy
from channel_server.resource_types import (ALARM, API, API_GATEWAY_ACCOUNT, API_MAPPING, AUTHORIZER, DOMAIN_NAME, FUNCTION,
                                         LOG_GROUP, RECORD, ROLE, SCHEDULE, STAGE, TABLE)

ROOT = Path(__file__).resolve().parents[1]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
DEV_CONFIG = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
DEV_TAGS = {"project": "channel-server", "environment": "dev"}

#: The Pulumi.yaml config type declared for each Python type of an args field.
#: Pulumi declares only string, integer, boolean and array: a float field is
#: declared integer (whole numbers per second), a map field is not declared.
CONFIG_TYPES = {str: "string", int: "integer", float: "integer", bool: "boolean", list: "array"}
PULUMI_CONFIG_TYPES = {"string", "integer", "boolean", "array"}


@pytest.fixture(scope="module")
def dev() -> Deployment:
    return deploy(ROOT / "__main__.py", config=DEV_CONFIG)


# --- the program under mocks ----------------------------------------------------------------


def test_program_builds_one_channel_server_named_after_the_project(dev: Deployment) -> None:
    component = dev.one(TYPE_TOKEN)
    assert component.name == "channel-server"
    children = [r for r in dev.resources if r.type != TYPE_TOKEN]
    assert children
    assert [r.name for r in children if not r.name.startswith("channel-server-")] == []


PROGRAM_EXPORTS = {"url", "managementEndpoint", "tableName", "apiId", "stageName"}


def test_program_exports_the_server_outputs(dev: Deployment) -> None:
    api = dev.one(API)
    host = api["apiEndpoint"].removeprefix("wss://")
    # only the program's own keys: see test_exports_of_an_earlier_run_do_not_leak_into_the_next
    assert {key: dev.exports.get(key) for key in PROGRAM_EXPORTS} == {
        "url": f"wss://{host}/dev",
        "managementEndpoint": f"https://{host}/dev",
        "tableName": dev.one(TABLE)["name"],
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
    stage = dev.one(STAGE)
    assert stage["name"] == "dev"
    assert stage["defaultRouteSettings"] == {"throttlingBurstLimit": 100, "throttlingRateLimit": 50}


@pytest.mark.parametrize(
    "type_token",
    [
        TABLE,
        API,
        STAGE,
        FUNCTION,
        ROLE,
        LOG_GROUP,
    ],
)
def test_dev_tags_reach_every_taggable_resource(dev: Deployment, type_token: str) -> None:
    resources = dev.of_type(type_token)
    assert resources
    assert [r.name for r in resources if r.inputs.get("tags") != DEV_TAGS] == []


def test_dev_log_groups_keep_logs_14_days(dev: Deployment) -> None:
    log_groups = dev.of_type(LOG_GROUP)
    assert log_groups
    assert {g["retentionInDays"] for g in log_groups} == {14}


# --- Pulumi.yaml and Pulumi.dev.yaml ---------------------------------------------------------


def test_project_is_channel_server_on_python_with_a_virtualenv() -> None:
    assert PROJECT["name"] == "channel-server"
    assert PROJECT["runtime"]["name"] == "python"
    # the one that tasks.py creates: a deployer installs once
    import importlib.util

    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    assert PROJECT["runtime"]["options"]["virtualenv"] == tasks.VENV_NAME


DECLARABLE = sorted(f for f, kind in field_kinds().items() if kind in CONFIG_TYPES)
#: Each field of an object field, with its config key: ("backend", "url", "backendUrl"), …
SUBFIELDS = [(name, sub, key) for name in OBJECT_FIELDS for sub, key in object_config_keys(name).items()]


def test_project_declares_one_config_key_per_declarable_args_field() -> None:
    object_keys = {key for _, _, key in SUBFIELDS}
    assert set(PROJECT["config"]) == {config_key(field) for field in DECLARABLE} | object_keys
    # tags is a map (set in the stack file); each object field is declared one key per field of its own
    assert set(field_kinds()) - set(DECLARABLE) == {"tags", *OBJECT_FIELDS}


def test_backend_keys_default_to_the_lambda_handlers_and_the_longest_timeout() -> None:
    keys = object_config_keys("backend")
    assert PROJECT["config"][keys["url"]] == {
        "type": "string", "default": "", "description": PROJECT["config"][keys["url"]]["description"]}
    timeout = PROJECT["config"][keys["timeout_ms"]]
    assert (timeout["type"], timeout["default"]) == ("integer", backend.DEFAULT_TIMEOUT_MS)


@pytest.mark.parametrize("field,sub,key", SUBFIELDS, ids=[key for _, _, key in SUBFIELDS])
def test_object_field_keys_declare_the_fields_type_and_an_unset_or_default_value(field: str, sub: str, key: str) -> None:
    declared = PROJECT["config"][key]
    kind = field_kinds(OBJECT_FIELDS[field][1])[sub]
    assert declared["type"] == CONFIG_TYPES[kind]
    # required keys (the one that turns the object on among them) are unset
    # by default; the others hold resolve()'s default
    from channel_server.args import resolve

    required = {"backend": {"url": "https://b.example.com"},
                "domain": {"name": "chat.example.com",
                           "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/x"},
                "authorizer": {"function_arn": "arn:aws:lambda:us-east-1:123456789012:function:a"}}[field]
    if sub in required:
        assert declared["default"] == ""
    else:
        default = getattr(resolve({field: required}), field)[sub]
        assert declared["default"] == ("" if default is None else list(default) if isinstance(default, tuple) else default)


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
    assert declared["type"] == CONFIG_TYPES[field_kinds()[field]]


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


# --- the production stack example ------------------------------------------------------------

PROD_EXAMPLE = yaml.safe_load((ROOT / "Pulumi.prod.yaml.example").read_text())["config"]


@pytest.fixture(scope="module")
def prod() -> Deployment:
    from channel_server.mocks import Project

    # as `pulumi up` on a stack whose Pulumi.prod.yaml is the example
    config = {**Project.load(ROOT).defaults, **PROD_EXAMPLE}
    return deploy(ROOT / "__main__.py", stack="prod", config=config)


def test_prod_example_sets_only_declared_keys() -> None:
    keys = {key.removeprefix("channel-server:") for key in PROD_EXAMPLE if key.startswith("channel-server:")}
    assert keys <= set(PROJECT["config"]) | {"tags"}
    assert {key for key in PROD_EXAMPLE if not key.startswith("channel-server:")} == {"aws:region"}


#: What only the production stack has.
PROD_ONLY = {
    DOMAIN_NAME: 1,
    API_MAPPING: 1,
    RECORD: 1,
    AUTHORIZER: 1,
    API_GATEWAY_ACCOUNT: 1,
    SCHEDULE: 1,
}


def test_prod_adds_domain_authorizer_account_setting_schedule_and_alarms_that_dev_lacks(dev, prod) -> None:
    for type_token, count in PROD_ONLY.items():
        assert (len(dev.of_type(type_token)), len(prod.of_type(type_token))) == (0, count), type_token
    functions = len(prod.of_type(FUNCTION))
    # errors and throttles per function, two for the API, one for failed deliveries
    assert len(prod.of_type(ALARM)) == 2 * functions + 3
    assert dev.of_type(ALARM) == []


def test_prod_url_is_the_custom_domain_and_the_stage_is_prod(dev, prod) -> None:
    assert prod.exports["url"] == "wss://chat.example.com"
    assert prod.exports["stageName"] == "prod" and dev.exports["stageName"] == "dev"
    assert ".execute-api.eu-west-1.amazonaws.com/prod" in prod.exports["managementEndpoint"]


def test_prod_keeps_and_protects_the_table_and_dev_does_not(dev, prod) -> None:
    prod_table, dev_table = prod.one(TABLE), dev.one(TABLE)
    assert (prod_table.retain_on_delete, prod_table["deletionProtectionEnabled"]) == (True, True)
    assert (dev_table.retain_on_delete, dev_table["deletionProtectionEnabled"]) == (False, False)


def test_prod_logs_traces_and_measures_and_throttles_higher(dev, prod) -> None:
    stage, dev_stage = prod.one(STAGE), dev.one(STAGE)
    assert stage["accessLogSettings"]["format"] and "accessLogSettings" not in dev_stage.inputs
    assert stage["defaultRouteSettings"] == {"throttlingBurstLimit": 2000, "throttlingRateLimit": 5000}
    functions = prod.of_type(FUNCTION)
    assert {f["tracingConfig"]["mode"] for f in functions} == {"Active"}
    assert {f["environment"]["variables"].get("CHANNEL_METRICS") for f in functions} == {"1"}
    assert {f["environment"]["variables"].get("CHANNEL_METRICS") for f in dev.of_type(FUNCTION)} == {None}
    assert {g["retentionInDays"] for g in prod.of_type(LOG_GROUP)} == {90}
    assert {r.inputs.get("tags", {}).get("environment") for r in prod.of_type(FUNCTION)} == {"prod"}


# --- the resources' identities ----------------------------------------------------------------

URNS = ROOT / "tests" / "data"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_programs_resources_keep_their_urns(stack: str, dev: Deployment, prod: Deployment) -> None:
    """A resource whose URN changes is replaced (or orphaned) by the next
    `pulumi up`: refactoring the component must leave every name, type and
    parent as it was. tests/data/urns-<stack>.txt is the set pinned; a change
    that means to add or rename a resource updates it, and says so."""
    deployment = {"dev": dev, "prod": prod}[stack]
    pinned = (URNS / f"urns-{stack}.txt").read_text().split()
    assert sorted(r.urn for r in deployment.resources) == pinned
