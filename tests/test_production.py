"""The production options under mocks: custom domain, $connect authorizer,
access logs, metrics and alarms, tracing, keeping the table safe, inputs from
other resources, and ``transforms`` as the escape hatch. Each is off by
default; each wrong value fails at construction (or, for an Output, when it
resolves) with a message that says what to change."""

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from channel_server import ChannelServer, ChannelServerArgsError, resource_types
from channel_server.args import resolve
from channel_server.features import ACCESS_LOG_FORMAT, APIGATEWAY_LOGS_POLICY
from channel_server.policies import XRAY_ACTIONS
from channel_server.handlers import spec
from channel_server.local.placeholders import ACCOUNT
from channel_server.mocks import Deployment, deploy
from support.failing import deploy_failing

CERTIFICATE = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/0f1e2d3c-4b5a"
AUTHORIZER = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:chat-auth"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:chat-alarms"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/apigateway-cloudwatch"
DOMAIN = {"name": "chat.example.com", "certificate_arn": CERTIFICATE}



def server(args: dict | None = None, **kwargs: Any) -> tuple[Deployment, dict]:
    """Deploy one ChannelServer and return the deployment and its outputs."""
    outputs: dict = {}

    def program() -> None:
        # args as a program gives them: a dict, or None for every default
        chat = ChannelServer("chat", args, **kwargs)  # type: ignore[arg-type]
        pulumi.Output.all(url=chat.url, execute=chat.execute_api_url, management=chat.management_endpoint,
                          target=chat.domain_target).apply(outputs.update)

    return deploy(program), outputs


@pytest.fixture(scope="module")
def plain() -> Deployment:
    return server()[0]


#: Every option on at once (but the hosted zone, tested on its own): each test
#: below reads the part it is about, which also shows the options do not get
#: in each other's way.
EVERYTHING: dict[str, Any] = {
    "domain": {**DOMAIN, "base_path": "v1"},
    "authorizer": {"function_arn": AUTHORIZER, "identity_sources": ["route.request.header.Authorization"]},
    "access_logs": True,
    "log_retention_days": 30,
    "metrics": True,
    "alarm_topic_arn": TOPIC,
    "tracing": True,
    "heartbeat_interval_minutes": 1,
    "retain_on_delete": True,
    "deletion_protection": True,
}


@pytest.fixture(scope="module")
def everything() -> tuple[Deployment, dict]:
    return server(EVERYTHING)


# --- every option is off by default -----------------------------------------------------------


@pytest.mark.parametrize("type_token", [resource_types.DOMAIN_NAME, resource_types.API_MAPPING, resource_types.RECORD, resource_types.AUTHORIZER, resource_types.API_GATEWAY_ACCOUNT, resource_types.ALARM])
def test_no_option_resource_exists_by_default(plain: Deployment, type_token: str) -> None:
    assert plain.of_type(type_token) == []


def test_by_default_no_tracing_no_metrics_no_access_logs_and_the_table_is_deletable(plain: Deployment) -> None:
    assert [f.name for f in plain.of_type(resource_types.FUNCTION) if f.get("tracingConfig")] == []
    assert [f.name for f in plain.of_type(resource_types.FUNCTION) if spec.ENV_METRICS in f["environment"]["variables"]] == []
    assert "accessLogSettings" not in plain.one(resource_types.STAGE).inputs
    table = plain.one(resource_types.TABLE)
    assert table["deletionProtectionEnabled"] is False and not table.retain_on_delete
    assert [p.name for p in plain.of_type(resource_types.ROLE_POLICY) if "xray:" in p["policy"]] == []


# --- custom domain ------------------------------------------------------------------------------


def test_a_custom_domain_is_regional_tls12_mapped_to_the_stage_and_becomes_the_url(everything) -> None:
    deployment, outputs = everything
    domain = deployment.one(resource_types.DOMAIN_NAME)
    assert domain["domainName"] == "chat.example.com"
    configuration = domain["domainNameConfiguration"]
    assert {key: configuration[key] for key in ("certificateArn", "endpointType", "securityPolicy")} == {
        "certificateArn": CERTIFICATE, "endpointType": "REGIONAL", "securityPolicy": "TLS_1_2"}
    mapping = deployment.one(resource_types.API_MAPPING)
    api, stage = deployment.one(resource_types.API), deployment.one(resource_types.STAGE)
    assert (mapping["apiId"], mapping["stage"], mapping["domainName"], mapping["apiMappingKey"]) == (
        api.id, stage.id, domain.id, "v1")
    assert outputs["url"] == "wss://chat.example.com/v1"
    assert outputs["target"] == domain["domainNameConfiguration"]["targetDomainName"]
    # the handlers post through execute-api, never through the custom domain
    host = api["apiEndpoint"].removeprefix("wss://")
    assert outputs["execute"] == f"wss://{host}/dev" and outputs["management"] == f"https://{host}/dev"
    for function in deployment.of_type(resource_types.FUNCTION):
        assert function["environment"]["variables"][spec.ENV_MANAGEMENT_ENDPOINT] == f"https://{host}/dev"
    assert deployment.of_type(resource_types.RECORD) == []


def test_a_custom_domain_without_base_path_is_the_url_root_and_a_hosted_zone_gets_an_alias() -> None:
    deployment, outputs = server({"domain": {**DOMAIN, "hosted_zone_id": "Z0123456789ABC"}})
    assert outputs["url"] == "wss://chat.example.com"
    assert deployment.one(resource_types.API_MAPPING).get("apiMappingKey") in (None, "")
    record, domain = deployment.one(resource_types.RECORD), deployment.one(resource_types.DOMAIN_NAME)
    assert (record["zoneId"], record["name"], record["type"]) == ("Z0123456789ABC", "chat.example.com", "A")
    assert record["aliases"] == [{
        "name": domain["domainNameConfiguration"]["targetDomainName"],
        "zoneId": domain["domainNameConfiguration"]["hostedZoneId"],
        "evaluateTargetHealth": False,
    }]


# --- $connect authorizer ------------------------------------------------------------------------


def test_an_authorizer_guards_connect_only_and_api_gateway_may_invoke_it_for_this_api(everything) -> None:
    deployment, _ = everything
    authorizer = deployment.one(resource_types.AUTHORIZER)
    assert authorizer["authorizerType"] == "REQUEST"
    assert authorizer["authorizerUri"] == (
        f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{AUTHORIZER}/invocations")
    assert authorizer["identitySources"] == ["route.request.header.Authorization"]
    guarded = {r["routeKey"]: (r.get("authorizationType"), r.get("authorizerId")) for r in deployment.of_type(resource_types.ROUTE)}
    assert guarded.pop("$connect") == ("CUSTOM", authorizer.id)
    assert set(guarded.values()) == {(None, None)}
    (permission,) = [p for p in deployment.of_type(resource_types.PERMISSION) if p["function"] == AUTHORIZER]
    api = deployment.one(resource_types.API)
    assert permission["principal"] == "apigateway.amazonaws.com"
    assert permission["sourceArn"] == f"{api['executionArn']}/authorizers/{authorizer.id}"


def test_changing_the_authorizer_redeploys_the_stage(everything) -> None:
    def triggers(sources: list[str]) -> dict:
        deployment, _ = server({**EVERYTHING, "authorizer": {"function_arn": AUTHORIZER, "identity_sources": sources}})
        return deployment.one(resource_types.DEPLOYMENT)["triggers"]

    first = everything[0].one(resource_types.DEPLOYMENT)["triggers"]
    assert triggers(EVERYTHING["authorizer"]["identity_sources"]) == first
    other = triggers(["route.request.querystring.token"])
    assert other["authorizer"] != first["authorizer"]
    assert other["routes"] == first["routes"]


def test_the_authorizer_defaults_to_the_token_query_parameter() -> None:
    assert resolve({"authorizer": {"function_arn": AUTHORIZER}}).authorizer == {
        "function_arn": AUTHORIZER, "identity_sources": ("route.request.querystring.token",), "type": "REQUEST",
        "result_ttl_seconds": 0}


@pytest.mark.parametrize(("value", "message"), [
    ({"function_arn": AUTHORIZER, "type": "JWT"},
     "authorizer.type='JWT': WebSocket APIs have no JWT authorizer: verify the token in a REQUEST authorizer "
     "function (type REQUEST)"),
    ({"function_arn": AUTHORIZER, "type": "TOKEN"}, "use REQUEST"),
    ({"function_arn": AUTHORIZER, "result_ttl_seconds": 300},
     "authorizer.result_ttl_seconds=300: of the v2 API types, API Gateway caches authorizer results only for HTTP APIs"),
    ({"function_arn": AUTHORIZER, "identity_sources": ["method.request.header.Auth"]}, "must be a non-empty list"),
    ({"function_arn": AUTHORIZER, "identity_sources": []}, "must be a non-empty list"),
    ({"function_arn": AUTHORIZER, "identity_sources": "route.request.querystring.token"}, "must be a non-empty list"),
    ({"identity_sources": ["route.request.querystring.token"]}, "function_arn is required"),
    ({"function_arn": "chat-auth"}, "must be an ARN like arn:aws:lambda:"),
    ({"function_arn": AUTHORIZER, "routes": ["join"]}, "has no field routes; use function_arn, identity_sources"),
])
def test_an_authorizer_api_gateway_cannot_run_on_websockets_is_refused(value: dict, message: str) -> None:
    with pytest.raises(ChannelServerArgsError, match=r"^ChannelServerArgs authorizer") as refused:
        ChannelServer("chat", {"authorizer": value})  # type: ignore[typeddict-item]  # refused: the test
    assert message in str(refused.value)


# --- access logs ----------------------------------------------------------------------------------


def test_access_logs_are_json_in_their_own_log_group_with_the_accounts_role_created(everything) -> None:
    deployment, _ = everything
    stage = deployment.one(resource_types.STAGE)
    (group,) = [g for g in deployment.of_type(resource_types.LOG_GROUP) if g["namePrefix"].startswith("/aws/apigateway/")]
    assert group["retentionInDays"] == 30
    assert stage["accessLogSettings"] == {"destinationArn": group["arn"], "format": ACCESS_LOG_FORMAT}
    fields = json.loads(ACCESS_LOG_FORMAT)
    assert {"requestId", "routeKey", "status", "errorMessage", "integrationLatency", "connectionId"} <= set(fields)
    assert all(value.startswith("$context.") for value in fields.values())
    account = deployment.one(resource_types.API_GATEWAY_ACCOUNT)
    role = deployment.by_name("chat-apigateway-logs")
    assert account["cloudwatchRoleArn"] == role["arn"]
    trust = json.loads(role["assumeRolePolicy"])["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "apigateway.amazonaws.com"}]
    attachment = deployment.one(resource_types.ROLE_POLICY_ATTACHMENT)
    assert (attachment["role"], attachment["policyArn"]) == (role["name"], APIGATEWAY_LOGS_POLICY)


def test_access_logs_take_a_given_role_or_leave_the_account_setting_alone() -> None:
    given, _ = server({"access_logs": True, "api_gateway_cloudwatch_role_arn": ROLE})
    assert given.one(resource_types.API_GATEWAY_ACCOUNT)["cloudwatchRoleArn"] == ROLE
    assert [r.name for r in given.of_type(resource_types.ROLE) if "apigateway" in r.name] == []
    unmanaged, _ = server({"access_logs": True, "manage_api_gateway_account": False})
    assert unmanaged.of_type(resource_types.API_GATEWAY_ACCOUNT) == []
    assert unmanaged.one(resource_types.STAGE)["accessLogSettings"]["format"] == ACCESS_LOG_FORMAT


@pytest.mark.parametrize(("args", "message"), [
    ({"api_gateway_cloudwatch_role_arn": ROLE}, "is used only with access_logs"),
    ({"access_logs": True, "manage_api_gateway_account": False, "api_gateway_cloudwatch_role_arn": ROLE},
     "only with manage_api_gateway_account=True"),
    ({"access_logs": True, "api_gateway_cloudwatch_role_arn": "apigateway-cloudwatch"}, "must be an ARN like"),
    ({"access_logs": "yes"}, "access_logs='yes': must be true or false"),
])
def test_inconsistent_access_log_settings_are_refused(args: dict, message: str) -> None:
    with pytest.raises(ChannelServerArgsError) as refused:
        ChannelServer("chat", args)  # type: ignore[arg-type]  # not a valid ChannelServerArgs: the test
    assert message in str(refused.value)


# --- metrics, alarms, tracing ---------------------------------------------------------------------


def test_metrics_switch_on_the_handlers_emf_with_the_component_name_as_server(everything) -> None:
    deployment, _ = everything
    environments = [f["environment"]["variables"] for f in deployment.of_type(resource_types.FUNCTION)]
    assert len(environments) == len(spec.ROUTES) + 2  # fan-out and heartbeat too
    assert {(e[spec.ENV_METRICS], e[spec.ENV_SERVER_NAME]) for e in environments} == {("1", "chat")}


def test_alarms_cover_every_function_the_api_and_failed_deliveries_to_the_topic(everything) -> None:
    deployment, _ = everything
    alarms = {a.name: a for a in deployment.of_type(resource_types.ALARM)}
    functions = {f.name: f for f in deployment.of_type(resource_types.FUNCTION)}
    per_function = {(a["dimensions"]["FunctionName"], a["metricName"]) for a in alarms.values()
                    if a["namespace"] == "AWS/Lambda"}
    assert per_function == {(f["name"], metric) for f in functions.values() for metric in ("Errors", "Throttles")}
    api, stage = deployment.one(resource_types.API), deployment.one(resource_types.STAGE)["name"]
    assert {a["metricName"]: a["dimensions"] for a in alarms.values() if a["namespace"] == "AWS/ApiGateway"} == {
        "ExecutionError": {"ApiId": api.id, "Stage": stage}, "IntegrationError": {"ApiId": api.id, "Stage": stage}}
    failed = alarms["chat-failed-deliveries"]
    assert (failed["namespace"], failed["metricName"], failed["dimensions"]) == (
        spec.METRICS_NAMESPACE, spec.METRIC_FAILED_DELIVERIES, {"Server": "chat"})
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [TOPIC] and alarm["okActions"] == [TOPIC], alarm.name
        assert (alarm["statistic"], alarm["threshold"], alarm["treatMissingData"]) == ("Sum", 1, "notBreaching")


def test_without_metrics_there_is_no_failed_delivery_alarm() -> None:
    deployment, _ = server({"alarm_topic_arn": TOPIC})
    assert [a.name for a in deployment.of_type(resource_types.ALARM) if a["namespace"] == spec.METRICS_NAMESPACE] == []
    assert deployment.of_type(resource_types.ALARM)


def test_tracing_is_active_on_every_function_whose_role_may_send_traces_and_nothing_else(everything) -> None:
    deployment, _ = everything
    assert {f.name: f["tracingConfig"] for f in deployment.of_type(resource_types.FUNCTION)} == {
        f.name: {"mode": "Active"} for f in deployment.of_type(resource_types.FUNCTION)}
    for policy in deployment.of_type(resource_types.ROLE_POLICY):
        if policy.name.endswith("-schedule"):
            continue  # the scheduler's role invokes; it runs nothing
        statements = json.loads(policy["policy"])["Statement"]
        xray = [s for s in statements if any(a.startswith("xray:") for a in s["Action"])]
        assert xray == [{"Effect": "Allow", "Action": sorted(XRAY_ACTIONS), "Resource": ["*"]}], policy.name


@pytest.mark.parametrize("field", ["metrics", "tracing", "authorizer"])
def test_what_only_the_lambda_handlers_do_is_refused_with_an_http_backend(field: str) -> None:
    value = {"function_arn": AUTHORIZER} if field == "authorizer" else True
    with pytest.raises(ChannelServerArgsError, match=rf"^ChannelServerArgs {field}=.*\(or leave backend unset\)$"):
        # a key mypy cannot check (a parametrized name): each one is refused, which is the test
        ChannelServer("chat", {"backend": {"url": "https://backend.example.com"}, field: value})  # type: ignore[misc]


# --- keeping data safe ------------------------------------------------------------------------------


def test_the_table_can_be_kept_on_delete_and_protected_from_deletion(everything) -> None:
    deployment, _ = everything
    table = deployment.one(resource_types.TABLE)
    assert table.retain_on_delete and table["deletionProtectionEnabled"] is True
    # only the table: the rest is rebuilt from the program at no loss
    assert [r.name for r in deployment.resources if r.retain_on_delete] == [table.name]


def test_protect_on_the_component_reaches_every_child() -> None:
    deployment, _ = server(opts=pulumi.ResourceOptions(protect=True))
    assert deployment.resources and all(r.protect for r in deployment.resources)


# --- transforms: the escape hatch -------------------------------------------------------------------


def test_a_transform_on_the_component_reaches_every_child() -> None:
    # the README's example: a customer-managed key for the table, a property
    # ChannelServerArgs does not have
    seen: list[str] = []

    def customer_managed_key(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        seen.append(args.name)
        if args.type_ == resource_types.TABLE:
            encryption = {"enabled": True, "kmsKeyArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/chat"}
            return pulumi.ResourceTransformResult(props={**args.props, "serverSideEncryption": encryption},
                                                  opts=args.opts)
        return None

    deployment, _ = server(opts=pulumi.ResourceOptions(transforms=[customer_managed_key]))
    assert sorted(seen) == sorted(r.name for r in deployment.resources)
    assert deployment.one(resource_types.TABLE)["serverSideEncryption"]["kmsKeyArn"].endswith(":key/chat")


# --- inputs from other resources ---------------------------------------------------------------------


def test_every_input_field_takes_another_resources_output() -> None:
    def program() -> None:
        certificate = aws.acm.Certificate("cert", domain_name="chat.example.com", validation_method="DNS")
        zone = aws.route53.Zone("zone", name="example.com")
        authorizer = aws.lambda_.Function("auth", runtime="python3.13", handler="auth.handler",
                                          role=ROLE, code=pulumi.AssetArchive({}))
        topic = aws.sns.Topic("alarms")
        role = aws.iam.Role("apigateway-cloudwatch", assume_role_policy="{}")
        team = aws.sqs.Queue("team")  # any computed output will do for a tag
        ChannelServer("chat", {
            "domain": {"name": zone.name.apply(lambda name: f"chat.{name}"), "certificate_arn": certificate.arn,
                       "hosted_zone_id": zone.zone_id},
            "authorizer": {"function_arn": authorizer.arn},
            "alarm_topic_arn": topic.arn,
            "access_logs": True, "api_gateway_cloudwatch_role_arn": role.arn,
            "tags": team.name.apply(lambda name: {"team": name}),
        })

    deployment = deploy(program)
    own = {r.type: r for r in deployment.resources}
    domain = deployment.one(resource_types.DOMAIN_NAME)
    assert domain["domainName"] == "chat.example.com"
    assert domain["domainNameConfiguration"]["certificateArn"] == own[resource_types.CERTIFICATE]["arn"]
    assert deployment.one(resource_types.RECORD)["zoneId"] == own[resource_types.ZONE]["zoneId"]
    assert deployment.one(resource_types.AUTHORIZER)["authorizerUri"].endswith(f"{deployment.by_name('auth')['arn']}/invocations")
    assert {tuple(a["alarmActions"]) for a in deployment.of_type(resource_types.ALARM)} == {(own[resource_types.TOPIC]["arn"],)}
    assert deployment.one(resource_types.API_GATEWAY_ACCOUNT)["cloudwatchRoleArn"] == deployment.by_name("apigateway-cloudwatch")["arn"]
    team = deployment.by_name("team")["name"]
    assert deployment.one(resource_types.TABLE)["tags"] == {"team": team}


#: An Input field, a wrong value for it, and the args that carry it.
OUTPUT_CASES = [
    ("domain certificate", "not-a-certificate", lambda v: {"domain": {"name": "chat.example.com", "certificate_arn": v}}),
    ("domain name", "Chat Example", lambda v: {"domain": {"name": v, "certificate_arn": CERTIFICATE}}),
    ("hosted zone", "example.com", lambda v: {"domain": {**DOMAIN, "hosted_zone_id": v}}),
    ("authorizer", f"arn:aws:sns:us-east-1:{ACCOUNT}:topic", lambda v: {"authorizer": {"function_arn": v}}),
    ("alarm topic", "ops@example.com", lambda v: {"alarm_topic_arn": v}),
    ("cloudwatch role", "role/x", lambda v: {"access_logs": True, "api_gateway_cloudwatch_role_arn": v}),
    ("tags", {"team": 7}, lambda v: {"tags": v}),
    ("backend url", "ftp://backend.example.com", lambda v: {"backend": {"url": v}}),
]


@pytest.mark.parametrize(("value", "args"), [(v, a) for _, v, a in OUTPUT_CASES], ids=[c[0] for c in OUTPUT_CASES])
def test_an_output_that_resolves_to_a_wrong_value_fails_with_the_message_of_the_plain_value(value, args) -> None:
    with pytest.raises(ChannelServerArgsError) as at_construction:
        resolve(args(value))

    def program() -> None:
        ChannelServer("chat", args(pulumi.Output.from_input(value)))

    assert str(at_construction.value) in str(deploy_failing(program))
