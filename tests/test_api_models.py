"""Every resource the component registers, checked against AWS's API models
(channel_server.api_models): over the stacks and a matrix of options, and on seeded mistakes.

The matrix takes the component's own bounds from the errors its arguments give
(``must be a whole number from LOW to HIGH``), so a limit changed in args.py
moves the matrix with it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
import yaml

from channel_server import api_model_rules as model_rules, args, resource_types as rt
from channel_server.api_model_table import RESOURCES, Attribute, Entries, Member
from channel_server.api_models import check_deployment, check_resource
from channel_server.component import ChannelServer
from channel_server.local.placeholders import ACCOUNT
from channel_server.mocks import Deployment, Project, deploy

ROOT = Path(__file__).resolve().parent.parent

CERTIFICATE = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/0f1e2d3c-4b5a"
AUTHORIZER = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:chat-auth"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:chat-alarms"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/apigateway-cloudwatch"

#: Each option on alone: what turns a feature on, with what it needs.
ALONE: dict[str, dict[str, Any]] = {
    "domain": {"domain": {"name": "chat.example.com", "certificate_arn": CERTIFICATE, "base_path": "v1"}},
    "domain_with_zone": {"domain": {"name": "chat.example.com", "certificate_arn": CERTIFICATE,
                                    "hosted_zone_id": "Z0123456789ABCDEFGHIJ"}},
    "authorizer": {"authorizer": {"function_arn": AUTHORIZER}},
    "authorizer_header": {"authorizer": {"function_arn": AUTHORIZER,
                                         "identity_sources": ["route.request.header.Authorization"]}},
    "backend": {"backend": {"url": "https://backend.example.com/ws", "timeout_ms": 5000}},
    "access_logs": {"access_logs": True},
    "access_logs_own_role": {"access_logs": True, "api_gateway_cloudwatch_role_arn": ROLE},
    "no_account_settings": {"access_logs": True, "manage_api_gateway_account": False},
    "server_publish": {"server_publish": True},
    "presence": {"presence": True},
    "history": {"history_seconds": 300},
    "heartbeats": {"heartbeat_interval_minutes": 9},
    "heartbeats_every_minute": {"heartbeat_interval_minutes": 1},
    "metrics": {"metrics": True},
    "alarms": {"metrics": True, "alarm_topic_arn": TOPIC},
    "tracing": {"tracing": True},
    "retain_on_delete": {"retain_on_delete": True},
    "deletion_protection": {"deletion_protection": True},
    "sharded_index": {"channel_index_shards": 8},
    "table_name": {"table_name": "chat.connections-prod"},
    "tags": {"tags": {"team": "realtime", "cost-center": "42"}},
    "x86": {"lambda_architecture": "x86_64"},
}

#: What the backend excludes (the Lambda handlers' features) stays out of "all on".
EVERYTHING = {key: value for case, options in ALONE.items() if case != "backend" for key, value in options.items()}
EVERYTHING["domain"] = {**ALONE["domain"]["domain"], **ALONE["domain_with_zone"]["domain"]}
# the account's settings managed, with a role of the program's
EVERYTHING["manage_api_gateway_account"] = True


def options_of_type(kind: type) -> list[str]:
    return [name for name, hint in typing.get_type_hints(args.Settings).items() if hint is kind]


def stated_bounds(options: dict[str, Any]) -> tuple[int, int]:
    """The (lowest, highest) the component's error for ``options`` states."""
    with pytest.raises(args.ChannelServerArgsError) as refused:
        args.resolve(options)
    low, high = re.search(r"from (\d+) to (\d+)", str(refused.value)).groups()  # type: ignore[union-attr]
    return int(low), int(high)


def bounds() -> dict[str, tuple[int, int]]:
    """Each whole-number option's (lowest, highest), as the component states them."""
    found = {}
    for name in options_of_type(int):
        found[name] = stated_bounds({name: "not a number"})
    # CloudWatch takes only some of those days
    found["log_retention_days"] = (min(args.LOG_RETENTION_DAYS), max(args.LOG_RETENTION_DAYS))
    return found


BOUNDS = bounds()
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    **ALONE,
    "everything": EVERYTHING,
    "minimum": {name: low for name, (low, high) in BOUNDS.items()},
    "maximum": {name: high for name, (low, high) in BOUNDS.items()},
    "everything_at_maximum": {**EVERYTHING, **{name: high for name, (low, high) in BOUNDS.items()}},
    "backend_at_its_timeouts_maximum": {"backend": {
        "url": "https://backend.example.com/ws",
        "timeout_ms": stated_bounds({"backend": {"url": "https://backend.example.com/ws", "timeout_ms": "x"}})[1]}},
    "backend_at_minimum": {**ALONE["backend"], **{name: low for name, (low, high) in BOUNDS.items()
                                                  if name not in ("heartbeat_interval_minutes", "history_seconds")}},
}


def component(options: dict[str, Any], name: str = "chat") -> Deployment:
    return deploy(lambda: ChannelServer(name, options))  # type: ignore[arg-type]  # the matrix's dicts


def assert_keeps_the_models(deployment: Deployment) -> None:
    findings = check_deployment(deployment)
    assert not findings, "\n".join(map(str, findings))


def test_the_matrix_has_every_bound_and_every_switch():
    assert {"lambda_memory_mb", "lambda_timeout_seconds", "max_message_bytes", "posts_per_second",
            "channel_index_shards", "fanout_concurrency", "presence_max_members"} <= set(BOUNDS)
    switches = set(options_of_type(bool))
    assert "tracing" in switches
    assert switches <= set(EVERYTHING), f"options no case turns on: {switches - set(EVERYTHING)}"


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_the_component_keeps_aws_api_models(case):
    deployment = component(MATRIX[case])
    assert deployment.resources
    assert_keeps_the_models(deployment)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stacks_keep_aws_api_models(stack):
    project = Project.load(ROOT)
    if stack == "prod":
        # as `pulumi up` on a stack whose Pulumi.prod.yaml is the example
        example = yaml.safe_load((ROOT / "Pulumi.prod.yaml.example").read_text())["config"]
        deployment = deploy(project.program, stack="prod", config={**project.defaults, **example})
    else:
        deployment = project.deploy(stack)
    assert deployment.of_type(rt.DOMAIN_NAME) or stack == "dev"
    assert_keeps_the_models(deployment)


def test_every_type_the_component_registers_is_mapped():
    registered = {r.type for case in ("everything", "backend", "access_logs")
                  for r in component(MATRIX[case]).resources if r.type.startswith("aws:")}
    assert registered == set(RESOURCES) - PROGRAMS_OWN


#: What a program hands the component, mapped too (docs/configuration.md's domain and alarms).
PROGRAMS_OWN = {rt.TOPIC, rt.ZONE, rt.CERTIFICATE}


def test_what_a_program_hands_the_component_keeps_the_models_too():
    def program() -> None:
        certificate = aws.acm.Certificate("cert", domain_name="chat.example.com", validation_method="DNS")
        zone = aws.route53.Zone("zone", name="example.com", force_destroy=True)
        topic = aws.sns.Topic("alarms", display_name="chat alarms")
        ChannelServer("chat", {
            "domain": {"name": "chat.example.com", "certificate_arn": certificate.arn, "hosted_zone_id": zone.zone_id},
            "metrics": True, "alarm_topic_arn": topic.arn,
        })

    deployment = deploy(program)
    assert {r.type for r in deployment.resources} >= PROGRAMS_OWN
    assert_keeps_the_models(deployment)


def test_every_mapped_member_is_in_the_model():
    for token, resource in RESOURCES.items():
        for prop, target in resource.properties.items():
            if isinstance(target, Member):
                model_rules.member_shape(resource.service, target.operation or resource.operation,
                                         target.path, target.shape)
            elif isinstance(target, Entries):
                for path in (target.key, target.value):
                    model_rules.member_shape(resource.service, resource.operation, path, None)
            elif isinstance(target, Attribute):
                shape = model_rules.member_shape(resource.service, resource.operation, target.map, None)
                assert not shape.key.enum or target.key in shape.key.enum, (token, prop)


def test_each_rule_from_a_models_documentation_is_still_written_there():
    for (service, operation, member), rules in model_rules.DOCUMENTED_RULES.items():
        for rule in rules:
            if rule.source == "model":
                path = member.partition("{")[0]
                assert rule.quote and rule.quote in model_rules.documentation(service, operation, path), \
                    (service, operation, member, rule.quote)
            else:
                assert rule.source.startswith("https://docs.aws.amazon.com/"), rule.source


def test_the_components_retention_days_are_the_models():
    assert args.LOG_RETENTION_DAYS == model_rules.retention_days()


# --- seeded mistakes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def everything() -> Deployment:
    return component(EVERYTHING)


def seeded(deployment: Deployment, token: str, **inputs: Any) -> list[str]:
    """The findings for the first resource of type ``token`` with ``inputs`` over its own."""
    resource = deployment.of_type(token)[0]
    wrong = dataclasses.replace(resource, inputs={**resource.inputs, **inputs})
    return [str(finding) for finding in check_resource(wrong, deployment)]


# (type, property, value, words the finding must hold)
SEEDED = [
    pytest.param(rt.INTEGRATION, "integrationType", "LAMBDA", "not one of AWS, HTTP, MOCK, HTTP_PROXY, AWS_PROXY",
                 id="unknown integration type"),
    pytest.param(rt.INTEGRATION, "timeoutMilliseconds", 30000, "between 50 and 29,000 ms for a WebSocket API",
                 id="30 s integration timeout"),
    pytest.param(rt.FUNCTION, "timeout", 901, "at most 900 seconds", id="Lambda timeout over 15 minutes"),
    pytest.param(rt.LOG_GROUP, "retentionInDays", 10, "one of the values the documentation lists, or 0 (pulumi-aws: never expire, no retention policy): 1, 3, 5, 7, 14",
                 id="10-day log retention"),
    pytest.param(rt.SCHEDULE, "scheduleExpression", "rate(30 seconds)", "rate(value unit) with unit minute(s)",
                 id="rate in seconds"),
    pytest.param(rt.SCHEDULE, "scheduleExpression", "rate(1 minutes)", "a singular unit for a rate of 1",
                 id="plural unit for a rate of 1"),
    pytest.param(rt.FUNCTION, "memorySize", 64, "below the minimum 128", id="Lambda memory below the model's"),
    pytest.param(rt.FUNCTION, "memorySize", 10241, "at most 10,240 MB", id="Lambda memory over the quota"),
    pytest.param(rt.QUEUE, "messageRetentionSeconds", 30, "an integer from 60 to 1,209,600 seconds",
                 id="queue retention under a minute"),
    pytest.param(rt.FUNCTION, "runtime", "python2.9", "CreateFunction.Runtime: not one of", id="unknown runtime"),
    pytest.param(rt.FUNCTION, "role", "lambda-role", "does not match the pattern", id="role not an ARN"),
    pytest.param(rt.FUNCTION, "environment", {"variables": {"BIG": "x" * 4096}}, "4 KB",
                 id="environment over 4 KB"),
    pytest.param(rt.TABLE, "billingMode", "ON_DEMAND", "not one of PROVISIONED, PAY_PER_REQUEST",
                 id="unknown billing mode"),
    pytest.param(rt.QUEUE, "visibilityTimeoutSeconds", 50000, "from 0 to 43,200", id="queue visibility over 12 h"),
    pytest.param(rt.QUEUE, "redrivePolicy", '{"deadLetterTargetArn": "x"}', "maxReceiveCount",
                 id="redrive policy without a count"),
    pytest.param(rt.MAPPING, "scalingConfig", {"maximumConcurrency": 1}, "below the minimum 2",
                 id="event source concurrency below 2"),
    pytest.param(rt.ALARM, "comparisonOperator", "GreaterThan", "not one of", id="unknown alarm operator"),
    pytest.param(rt.ROUTE, "authorizationType", "TOKEN", "not one of NONE, AWS_IAM, CUSTOM, JWT",
                 id="unknown route authorization"),
    pytest.param(rt.ROLE_POLICY, "policy", '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
                 '"Action": ["dynamodb:GetItems"], "Resource": ["*"]}]}', "no operation 'GetItems' in the models of "
                 "dynamodb, dynamodbstreams", id="unknown IAM action"),
    pytest.param(rt.ROLE_POLICY, "policy", '{"Version": "2012-10-17", "Statement": [', "not valid JSON",
                 id="policy not JSON"),
    pytest.param(rt.STAGE, "anyNewProperty", True, "not mapped to a member of apigatewayv2 CreateStage",
                 id="a property the table does not map"),
]


@pytest.mark.parametrize(("token", "prop", "value", "words"), SEEDED)
def test_a_seeded_mistake_is_found_with_resource_property_value_and_rule(everything, token, prop, value, words):
    findings = seeded(everything, token, **{prop: value})
    name = everything.of_type(token)[0].name
    assert findings, f"{prop}={value!r} on {token} passed"
    assert any(words in finding for finding in findings), findings
    # the resource, the property and the value are named
    assert all(f"{token} {name!r}: {prop}" in finding for finding in findings), findings
    assert any(repr(value)[:40] in finding for finding in findings) or isinstance(value, dict), findings


#: What a component name too long for its children's names breaks (their names
#: are the provider's: the Pulumi name, "-" and 7 random characters).
LONG_NAME_RULES = {
    rt.ROLE: "iam CreateRole.RoleName: longer than 64 characters",
    rt.FUNCTION: "a function's name (not its ARN) is at most 64 characters",
    rt.QUEUE: "at most 80 characters: letters, digits",
    rt.SCHEDULE: "scheduler CreateSchedule.Name: longer than 64 characters",
}


def test_a_component_name_too_long_for_its_childrens_names_is_found():
    # pulumi-aws refuses it at preview ("name '...' plus 7 random chars is longer
    # than maximum length 64"); the mocks do not, the check does
    deployment = component({"heartbeat_interval_minutes": 1}, name="chat-" + "x" * 70)
    findings = [str(f) for f in check_deployment(deployment)]
    for token, words in LONG_NAME_RULES.items():
        assert any(f.startswith(f"{token} ") and ": name (auto-named from the Pulumi name) = " in f and words in f for f in findings), \
            (token, findings)


def test_each_documented_rule_is_shown_to_catch_a_seeded_mistake():
    seeded_words = [str(case.values[3]) for case in SEEDED] + list(LONG_NAME_RULES.values())
    for rules in model_rules.DOCUMENTED_RULES.values():
        for rule in rules:
            assert any(rule.says in words or words in rule.says for words in seeded_words), \
                f"no seeded mistake for {rule.says!r}"


def test_an_actions_service_is_found_by_its_iam_prefix_and_an_unknown_prefix_is_a_finding(everything):
    def policy(*actions: str) -> str:
        return json.dumps({"Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": ["*"]}]})

    # IAM's prefix is the service's signing name where it is not botocore's name (or not its only one);
    # action names are case-insensitive; IAM-only actions are listed with their source
    valid = ("states:StartExecution", "sqs:sendmessage", "dynamodb:GetRecords", "bedrock:InvokeModel",
             "iam:PassRole", "s3:ListBucket", "dynamodb:ConditionCheckItem", "logs:Put*", "apigateway:GET")
    assert seeded(everything, rt.ROLE_POLICY, policy=policy(*valid)) == []
    # a document without Version is read as 2008-10-17, which IAM accepts
    unversioned = json.dumps({"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]})
    assert seeded(everything, rt.ROLE_POLICY, policy=unversioned) == []
    [finding] = seeded(everything, rt.ROLE_POLICY, policy=policy("dynamdb:GetItem"))
    assert "no AWS service in botocore's models has the IAM prefix 'dynamdb'" in finding


def test_a_required_member_no_property_sets_is_found(everything):
    route = everything.of_type(rt.ROUTE)[0]
    without = dataclasses.replace(route, inputs={k: v for k, v in route.inputs.items() if k != "routeKey"})
    assert [str(f) for f in check_resource(without, everything)] == [
        f"{rt.ROUTE} {route.name!r}: RouteKey = None: apigatewayv2 CreateRoute.RouteKey is required, "
        "and no property sets it"]


def test_a_consumers_own_resources_are_checked_and_an_unknown_type_is_reported():
    def program() -> None:
        api = aws.apigatewayv2.Api("mine", protocol_type="WEBSOCKET", route_selection_expression="$request.body.type")
        aws.apigatewayv2.Integration("mine", api_id=api.id, integration_type="LAMBDA", timeout_milliseconds=30000)
        aws.cloudwatch.LogGroup("mine", retention_in_days=10)
        aws.cloudwatch.LogGroup("forever", retention_in_days=0)  # pulumi-aws: never expire (no retention policy)
        aws.sqs.Queue("mine", tags={}, region="eu-west-1")  # every resource's region, an empty map: nothing sent
        aws.s3.BucketV2("mine")
        pulumi.export("api", api.id)

    findings = [str(f) for f in check_deployment(deploy(program))]

    assert any("integrationType = 'LAMBDA'" in f and "not one of" in f for f in findings), findings
    assert any("timeoutMilliseconds = 30000" in f and "29,000" in f for f in findings), findings
    assert any("retentionInDays = 10" in f for f in findings), findings
    assert any("aws:s3/bucketV2:BucketV2 'mine': (type)" in f and "no API mapping" in f for f in findings), findings
    assert len(findings) == 4, findings


def test_one_components_resources_can_be_checked_alone():
    def program() -> None:
        aws.s3.BucketV2("theirs")
        ChannelServer("chat")

    deployment = deploy(program)
    server = deployment.one("channel-server:index:ChannelServer")
    assert check_deployment(deployment, deployment.descendants(server.urn)) == []
    assert len(check_deployment(deployment)) == 1


def test_the_python_examples_of_the_mocks_section_run():
    """docs/component.md's examples under "Testing your stack with mocks", as a
    user would paste them into a test file."""
    text = (ROOT / "docs" / "component.md").read_text()
    section = text.partition("## Testing your stack with mocks")[2].partition("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    ran = []
    for block in blocks:
        scope: dict[str, Any] = {}
        exec(compile(block, "docs/component.md", "exec"), scope)  # the docs' own example
        for name, function in scope.items():
            if name.startswith("test_"):
                function()
                ran.append(name)
    assert "test_chat_server_keeps_the_aws_api_models" in ran and len(ran) == len(blocks)


# --- the command ------------------------------------------------------------------------

BROKEN_PROGRAM = '''
import pulumi_aws as aws

api = aws.apigatewayv2.Api("api", protocol_type="WEBSOCKET", route_selection_expression="$request.body.type")
aws.apigatewayv2.Integration("lambda", api_id=api.id, integration_type="LAMBDA")
aws.scheduler.Schedule("often", schedule_expression="rate(30 seconds)", flexible_time_window={"mode": "OFF"},
                       target={"arn": "arn:aws:lambda:eu-west-1:123456789012:function:f",
                               "role_arn": "arn:aws:iam::123456789012:role/r"})
'''


def run_command(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "channel_server.api_models", *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_command_passes_the_projects_stack_and_fails_a_broken_program(tmp_path):
    passed = run_command("--stack", "dev")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.fullmatch(r"channel-server \(dev\): \d+ resources of \d+ types checked against botocore [\d.]+'s "
                        r"API models: no findings\n", passed.stdout), passed.stdout

    broken_project(tmp_path)
    failed = run_command(str(tmp_path))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    lines = failed.stdout.splitlines()
    assert lines[-1].startswith("broken (dev): 3 resources of 3 types checked") and lines[-1].endswith("2 findings")
    assert lines[0].startswith(f"{rt.INTEGRATION} 'lambda': integrationType = 'LAMBDA': ")
    assert lines[1].startswith(f"{rt.SCHEDULE} 'often': scheduleExpression = 'rate(30 seconds)': ")

    missing = run_command(str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    # a stack is checked with its own config, as pulumi up would: not Pulumi.yaml's defaults alone
    no_stack = run_command(str(tmp_path), "--stack", "prod")
    assert no_stack.returncode == 2 and no_stack.stdout == ""
    assert "stack prod has no config file" in no_stack.stderr and "the stacks here are dev" in no_stack.stderr

    # the program's own error is said in one line, as pulumi up would say it
    (tmp_path / "__main__.py").write_text("from channel_server import ChannelServer\n"
                                          "ChannelServer('chat', {'lambda_memory_mb': 64})\n")
    refused = run_command(str(tmp_path))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "ChannelServerArgsError: ChannelServerArgs lambda_memory_mb=64" in refused.stderr


def broken_project(folder: Path) -> None:
    (folder / "Pulumi.yaml").write_text("name: broken\nruntime: python\n")
    (folder / "Pulumi.dev.yaml").write_text("config: {}\n")
    (folder / "__main__.py").write_text(BROKEN_PROGRAM)


# --- the page ---------------------------------------------------------------------------

CHECK_PAGE = (ROOT / "docs" / "check.md").read_text()


def test_the_pages_documented_rules_are_the_codes_and_the_models():
    """Each row of docs/check.md's table of documented rules: the figures it quotes
    are in the code's rules for that member, or are the model's bounds."""
    section = CHECK_PAGE.partition("### Rules AWS only documents")[2]
    rows = re.findall(r"^\| `(\w+)\.(\w+)` \| (.*?) \| (.*?) \|$", section, re.M)
    # a row for each member with documented rules, and none for another
    assert {(operation, member) for operation, member, _, _ in rows} == {
        (operation, member.partition(".")[0].partition("{")[0])
        for _, operation, member in model_rules.DOCUMENTED_RULES}, rows
    for operation, member, rule, source in rows:
        keys = [key for key in model_rules.DOCUMENTED_RULES if key[1] == operation and key[2].startswith(member)]
        assert keys, (operation, member)
        stated = " ".join(r.says for key in keys for r in model_rules.DOCUMENTED_RULES[key])
        shape = model_rules.member_shape(keys[0][0], operation, member, None)
        known = set(re.findall(r"\d[\d,]*", stated)) | {f"{shape.metadata.get(b, '')}" for b in ("min", "max")}
        known |= {f"{int(v):,}" for v in (shape.metadata.get("min"), shape.metadata.get("max")) if v is not None}
        known |= set(re.findall(r"\d[\d,]*\d|\d", shape.documentation or ""))  # what the model's text says
        quoted = set(re.findall(r"\d[\d,]*\d|\d", rule.replace("(…)", "")))
        assert quoted <= known, (operation, member, quoted - known)
        sources = {r.source for key in keys for r in model_rules.DOCUMENTED_RULES[key]}
        from_model = "model's documentation" in source
        assert any((s == "model") == from_model for s in sources), (operation, member, source)


def test_the_pages_sample_finding_is_what_the_command_prints(tmp_path):
    sample = CHECK_PAGE.partition("with its source:\n\n```text\n")[2].partition("\n```")[0]
    broken_project(tmp_path)
    failed = run_command(str(tmp_path))
    assert sample in failed.stdout.splitlines()


def test_the_longest_name_the_docs_give_is_the_longest_that_fits_with_every_option_on():
    quoted = re.search(r"a name of up to (\d+)\s+characters fits with every option on",
                       (ROOT / "docs" / "component.md").read_text())
    assert quoted
    longest = int(quoted.group(1))
    assert check_deployment(component(EVERYTHING, name="c" * longest)) == []
    assert check_deployment(component(EVERYTHING, name="c" * (longest + 1)))
