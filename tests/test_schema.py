"""ChannelServer as a component package for every Pulumi language: the schema
Pulumi's own analyzer infers from ``ChannelServerArgs`` and ``ChannelServer``
(every input and output, with its type and description), the plugin in
``plugin/`` answering GetSchema over gRPC as ``pulumi package add`` asks it,
and a construct from the provider with inputs as the engine sends them."""

import functools
import json
import subprocess
import sys
import typing
from pathlib import Path

import pulumi
import pytest
from pulumi.provider.experimental import analyzer as pulumi_analyzer
from pulumi.provider.experimental.analyzer import AnalyzeResult, Analyzer, PropertyType
from pulumi.provider.experimental.component import ComponentProvider

from channel_server import ChannelServer, args as args_module
from channel_server.args import ChannelServerArgs
from channel_server.config import OBJECT_FIELDS, field_kinds
from channel_server.component import PACKAGE_NAME, TYPE_TOKEN
from channel_server.handlers import spec
from channel_server.mocks import deploy
from channel_server.resource_types import API, API_MAPPING, AUTHORIZER, FUNCTION, SCHEDULE, STAGE, TABLE

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugin"

#: The schema type of each plain Python type of a field.
SCHEMA_TYPES = {str: PropertyType.STRING, int: PropertyType.INTEGER, float: PropertyType.NUMBER,
                bool: PropertyType.BOOLEAN, list: PropertyType.ARRAY, dict: PropertyType.OBJECT}
#: Outputs every language sees, and the Python type behind each.
OUTPUTS = {"url": str, "executeApiUrl": str, "managementEndpoint": str, "tableName": str, "apiId": str,
           "stageName": str, "domainTarget": str, "publishUrl": str, "publishFunctionArn": str,
           "publishPolicyArn": str}
RESOURCE_OUTPUTS = {"table": TABLE, "api": API,
                    "stage": STAGE}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@functools.cache
def docstrings(kind: type) -> dict[str, str | None]:
    """Each field's docstring, as the analyzer reads it (from the source)."""
    analyzer = Analyzer(PACKAGE_NAME)
    return {name: analyzer.get_docstring(kind, name) for name in kind.__annotations__}


@pytest.fixture(scope="module")
def analyzed() -> AnalyzeResult:
    return Analyzer(PACKAGE_NAME).analyze([ChannelServer])


@pytest.fixture(scope="module")
def component(analyzed):
    return analyzed["component_definitions"]["ChannelServer"]


# --- inputs ------------------------------------------------------------------------------------


def test_every_args_field_is_an_optional_input_named_in_camel_case(component) -> None:
    assert set(component.inputs) == {camel(name) for name in ChannelServerArgs.__annotations__}
    assert component.inputs_mapping == {camel(name): name for name in ChannelServerArgs.__annotations__}
    assert [name for name, prop in component.inputs.items() if not prop.optional] == []


@pytest.mark.parametrize("field", sorted(ChannelServerArgs.__annotations__))
def test_each_input_has_its_fields_type_and_docstring(component, field: str) -> None:
    prop = component.inputs[camel(field)]
    kind = field_kinds()[field]
    if field in OBJECT_FIELDS:
        assert prop.ref == f"#/types/{PACKAGE_NAME}:index:{OBJECT_FIELDS[field][1].__name__}"
    else:
        assert prop.type == SCHEMA_TYPES[kind]
    assert prop.description and prop.description == docstrings(ChannelServerArgs)[field]


def test_inputs_that_may_come_from_other_resources_take_outputs_and_the_rest_are_plain(component, analyzed) -> None:
    # plain (True): the value must be known when the program runs, in every language
    takes_outputs = sorted(name for name, prop in component.inputs.items() if not prop.plain)
    assert takes_outputs == ["alarmTopicArn", "apiGatewayCloudwatchRoleArn", "tags"]
    nested = {
        name: sorted(sub for sub, prop in analyzed["type_definitions"][name].properties.items() if not prop.plain)
        for name in ("HttpBackendArgs", "CustomDomainArgs", "ConnectAuthorizerArgs")
    }
    assert nested == {"HttpBackendArgs": ["url"], "CustomDomainArgs": ["certificateArn", "hostedZoneId", "name"],
                      "ConnectAuthorizerArgs": ["functionArn"]}
    tags = component.inputs["tags"]
    assert tags.additional_properties.type == PropertyType.STRING and not tags.additional_properties.plain


@pytest.mark.parametrize("field", sorted(OBJECT_FIELDS))
def test_each_object_input_is_a_type_with_every_field_typed_and_described(analyzed, field: str) -> None:
    kind = OBJECT_FIELDS[field][1]
    definition = analyzed["type_definitions"][kind.__name__]
    assert definition.description == kind.__doc__
    assert set(definition.properties) == {camel(name) for name in kind.__annotations__}
    for name, sub_kind in field_kinds(kind).items():
        prop = definition.properties[camel(name)]
        assert prop.type == SCHEMA_TYPES[sub_kind], name
        assert prop.description and prop.description == docstrings(kind)[name], name
        assert prop.optional, name  # required ones are checked by resolve(), with a message that says so
    if field == "authorizer":
        assert definition.properties["identitySources"].items.type == PropertyType.STRING


def test_args_input_is_read_as_pulumis_input() -> None:
    # args.Input spells pulumi.Input without importing Pulumi: the analyzer
    # must see the same thing in both
    # a subscript of the alias at run time, which mypy types in annotations only
    ours, theirs = args_module.Input[str], pulumi.Input[str]  # type: ignore[misc]
    assert pulumi_analyzer.is_input(ours) and pulumi_analyzer.is_input(theirs)
    assert pulumi_analyzer.unwrap_input(ours) is pulumi_analyzer.unwrap_input(theirs) is str
    assert [typing.get_origin(a) for a in typing.get_args(ours)][:2] == [None, typing.get_origin(typing.Awaitable[str])]


# --- outputs -----------------------------------------------------------------------------------


def test_outputs_are_the_urls_names_and_the_main_resources_each_described(component) -> None:
    assert set(component.outputs) == set(OUTPUTS) | set(RESOURCE_OUTPUTS)
    for name, kind in OUTPUTS.items():
        prop = component.outputs[name]
        assert prop.type == SCHEMA_TYPES[kind] and prop.description, name
    assert [name for name, prop in component.outputs.items() if prop.optional] == [
        "domainTarget", "publishUrl", "publishFunctionArn", "publishPolicyArn"]
    for name, token in RESOURCE_OUTPUTS.items():
        prop = component.outputs[name]
        assert prop.ref.endswith("/schema.json#/resources/" + token.replace("/", "%2F")) and prop.description
    assert ChannelServer.__doc__ is not None and component.description == ChannelServer.__doc__.strip()


def test_the_package_depends_on_the_installed_aws_provider(analyzed) -> None:
    import pulumi_aws

    plugin = json.loads((Path(pulumi_aws.__file__).parent / "pulumi-plugin.json").read_text())
    assert {(d.name, d.version) for d in analyzed["dependencies"]} == {("aws", plugin["version"])}


# --- the plugin, as pulumi package add runs it -------------------------------------------------


def test_plugin_folder_is_a_python_plugin_that_installs_this_package() -> None:
    import yaml

    plugin = yaml.safe_load((PLUGIN / "PulumiPlugin.yaml").read_text())
    assert plugin["runtime"]["name"] == "python"
    requirements = [line.strip() for line in (PLUGIN / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert requirements == ["../"]
    assert (PLUGIN / requirements[0]).resolve() == ROOT and (ROOT / "pyproject.toml").is_file()


def test_plugin_answers_get_schema_over_grpc_with_the_channel_server_resource() -> None:
    import grpc
    from google.protobuf import empty_pb2  # noqa: F401  (the stubs need it loaded)
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    # GIVEN the plugin started as the Pulumi engine starts it: it prints its port
    process = subprocess.Popen([sys.executable, str(PLUGIN / "__main__.py"), "127.0.0.1:1"], cwd=PLUGIN,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    try:
        port = int(process.stdout.readline())

        # WHEN the engine asks for the package schema
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = provider_pb2_grpc.ResourceProviderStub(channel).GetSchema(provider_pb2.GetSchemaRequest(version=0))
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()

    # THEN it names the package and the component with every input and output
    schema = json.loads(reply.schema)
    assert schema["name"] == PACKAGE_NAME
    resource = schema["resources"][TYPE_TOKEN]
    assert resource["isComponent"] is True
    assert set(resource["inputProperties"]) == {camel(name) for name in ChannelServerArgs.__annotations__}
    assert set(resource["properties"]) == set(OUTPUTS) | set(RESOURCE_OUTPUTS)
    assert "requiredInputs" not in resource or resource["requiredInputs"] == []
    assert resource["inputProperties"]["authorizer"]["$ref"] == f"#/types/{PACKAGE_NAME}:index:ConnectAuthorizerArgs"
    assert schema["types"][f"{PACKAGE_NAME}:index:CustomDomainArgs"]["properties"]["certificateArn"]["description"]


# --- a construct, with inputs as the engine sends them -----------------------------------------


def test_the_provider_constructs_the_component_from_engine_inputs() -> None:
    # GIVEN the inputs a TypeScript or YAML program sends: camelCase names,
    # numbers as floats, objects as maps
    inputs = {
        "stageName": "prod",
        "lambdaMemoryMb": 512.0,
        "throttlingRateLimit": 250.0,
        "heartbeatIntervalMinutes": 5.0,
        "domain": {"name": "chat.example.com", "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/c1",
                   "basePath": "v1"},
        "authorizer": {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:auth",
                       "identitySources": ["route.request.header.Authorization"]},
        "accessLogs": True,
        "serverPublish": True,
        "historySeconds": 600.0,
        "presence": True,
        "presenceMaxMembers": 50.0,
        "tags": {"team": "realtime"},
    }
    provider = ComponentProvider([ChannelServer], PACKAGE_NAME)
    state: dict = {}

    def program() -> None:
        result = provider.construct("chat", TYPE_TOKEN, inputs)
        state.update(result.state)

    # WHEN it constructs under mocks
    deployment = deploy(program)

    # THEN the component got the values under their Python names
    assert deployment.one(STAGE)["name"] == "prod"
    memories = {f["memorySize"] for f in deployment.of_type(FUNCTION)}
    assert 512 in memories
    assert deployment.one(API_MAPPING)["apiMappingKey"] == "v1"
    assert deployment.one(AUTHORIZER)["identitySources"] == [
        "route.request.header.Authorization"]
    assert deployment.one(STAGE)["accessLogSettings"]["format"]
    assert deployment.one(SCHEDULE)["scheduleExpression"] == "rate(5 minutes)"
    environments = [f["environment"]["variables"] for f in deployment.of_type(FUNCTION)]
    assert all(e[spec.ENV_HISTORY_SECONDS] == "600" and e[spec.ENV_PRESENCE_MAX_MEMBERS] == "50" for e in environments)
    # AND the state it returns to the engine has every output
    assert set(state) == set(OUTPUTS) | set(RESOURCE_OUTPUTS)
