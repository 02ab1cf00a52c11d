"""``ChannelServer``'s optional parts, one builder each: the ``$connect`` authorizer, the fan-out
queue and function, server heartbeats, server publishing, access logs, a custom domain, alarms.

Each builder takes the component's :class:`~channel_server.scope.Scope` (or its
:class:`~channel_server.functions.Functions`) and what it attaches to, and
returns what it registered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws

from . import policies
from .functions import Functions
from .handlers import spec
from .policies import publish_policy_document, trust_policy
from .resource_types import lambda_invoke_uri
from .scope import Scope

# --- $connect authorizer ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectAuthorizer:
    """The user's authorizer on ``$connect`` (``authorizer``)."""

    authorizer: aws.apigatewayv2.Authorizer
    permission: aws.lambda_.Permission
    """API Gateway's permission to invoke the authorizer function, for this API's authorizer only."""


def create_authorizer(scope: Scope, api: aws.apigatewayv2.Api, authorizer: Mapping[str, Any]) -> ConnectAuthorizer:
    """The user's Lambda REQUEST authorizer on $connect, and API Gateway's
    permission to invoke it, for this API's authorizer only."""
    slug = f"{scope.name}-authorizer"
    function_arn = pulumi.Output.from_input(authorizer["function_arn"])
    resource = aws.apigatewayv2.Authorizer(
        slug,
        api_id=api.id,
        name=slug,
        authorizer_type=authorizer["type"],
        authorizer_uri=function_arn.apply(lambda_invoke_uri),
        identity_sources=list(authorizer["identity_sources"]),
        opts=scope.child,
    )
    permission = aws.lambda_.Permission(
        slug,
        action="lambda:InvokeFunction",
        function=function_arn,
        principal="apigateway.amazonaws.com",
        source_arn=pulumi.Output.all(api.execution_arn, resource.id).apply(
            lambda values: f"{values[0]}/authorizers/{values[1]}"),
        opts=scope.child,
    )
    return ConnectAuthorizer(resource, permission)


# --- large channels: the fan-out queue and function ------------------------------------------

#: How often SQS hands a chunk to the fan-out function before moving it to the
#: dead-letter queue. The function fails a chunk only when it cannot claim it
#: (handlers/app.py, ``fanout``), before any post; a chunk that comes back
#: after its claim is skipped.
FANOUT_MAX_RECEIVES = 5
#: How long a chunk stays in the dead-letter queue (SQS's maximum, 14 days).
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 60 * 60
#: The queue's visibility timeout, in fan-out function timeouts (AWS's
#: advice for event source mappings: at least the timeout, better six times).
VISIBILITY_TIMEOUTS = 6


@dataclass(frozen=True)
class FanOutResources:
    """What serves channels larger than a publish's inline limit."""

    queue: aws.sqs.Queue
    """Chunks of members (with the message) that publish hands over."""
    dead_letter_queue: aws.sqs.Queue
    """Chunks that reached the fan-out function FANOUT_MAX_RECEIVES times without being taken."""
    function: aws.lambda_.Function
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    log_group: aws.cloudwatch.LogGroup
    mapping: aws.lambda_.EventSourceMapping
    """The event source mapping that invokes the function with each chunk."""


def create_fanout_queues(scope: Scope) -> tuple[aws.sqs.Queue, aws.sqs.Queue]:
    """The fan-out queue and its dead-letter queue. They come before the
    functions: every function's environment names the queue."""
    dead_letters = aws.sqs.Queue(
        f"{scope.name}-fanout-dlq",
        message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
        sqs_managed_sse_enabled=True,
        tags=scope.tags,
        opts=scope.child,
    )
    queue = aws.sqs.Queue(
        f"{scope.name}-fanout",
        visibility_timeout_seconds=VISIBILITY_TIMEOUTS * scope.settings.lambda_timeout_seconds,
        # a chunk's claim row (Store.claim_chunk) outlives it
        message_retention_seconds=spec.FANOUT_RETENTION_SECONDS,
        redrive_policy=dead_letters.arn.apply(
            lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": FANOUT_MAX_RECEIVES})
        ),
        sqs_managed_sse_enabled=True,
        tags=scope.tags,
        opts=scope.child,
    )
    return queue, dead_letters


def create_fanout(functions: Functions, dead_letter_queue: aws.sqs.Queue) -> FanOutResources:
    """The fan-out function, and the event source mapping that feeds it the
    chunks of ``functions.queue`` one at a time."""
    scope = functions.scope
    function, role, policy, log_group = functions.create(spec.FANOUT)
    mapping = aws.lambda_.EventSourceMapping(
        scope.slug(spec.FANOUT),
        event_source_arn=functions.queue.arn,
        function_name=function.arn,
        batch_size=1,  # one chunk per invocation: a chunk never waits for another
        scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
            maximum_concurrency=scope.settings.fanout_concurrency
        ),
        tags=scope.tags,
        # the role must be allowed to take from the queue before SQS polls for it
        opts=scope.options(depends_on=[policy]),
    )
    return FanOutResources(functions.queue, dead_letter_queue, function, role, policy, log_group, mapping)


# --- server heartbeats: the function and its schedule ----------------------------------------

#: What the schedule passes the heartbeat function: its event. EventBridge
#: Scheduler fills in the context attribute when it invokes the target.
HEARTBEAT_INPUT = json.dumps({"source": "channel-server.heartbeat", "scheduledTime": "<aws.scheduler.scheduled-time>"})
#: How often the scheduler retries a heartbeat invocation that failed to
#: start (throttled, or Lambda unavailable), within the interval.
HEARTBEAT_RETRIES = 2


def heartbeat_rate(minutes: int) -> str:
    """The schedule expression of a heartbeat every ``minutes`` minutes."""
    return f"rate({minutes} minute{'' if minutes == 1 else 's'})"


@dataclass(frozen=True)
class Heartbeat:
    """What sends server heartbeats (``heartbeat_interval_minutes``)."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    log_group: aws.cloudwatch.LogGroup
    schedule: aws.scheduler.Schedule
    """Invokes the function every interval, with HEARTBEAT_INPUT."""
    scheduler_role: aws.iam.Role
    """The role EventBridge Scheduler assumes: it may invoke only the function."""
    scheduler_policy: aws.iam.RolePolicy


def create_heartbeat(functions: Functions) -> Heartbeat:
    """The heartbeat function, and the schedule that invokes it every interval."""
    scope = functions.scope
    minutes = scope.settings.heartbeat_interval_minutes
    slug = scope.slug(spec.HEARTBEAT)
    function, role, policy, log_group = functions.create(spec.HEARTBEAT, timeout=spec.HEARTBEAT_TIMEOUT_SECONDS)
    # Scheduler assumes this role to invoke the function, for schedules of
    # this account only.
    scheduler_role = aws.iam.Role(
        f"{slug}-schedule",
        assume_role_policy=function.arn.apply(
            lambda arn: trust_policy("scheduler.amazonaws.com", account=arn.split(":")[4])),
        tags=scope.tags,
        opts=scope.child,
    )
    scheduler_policy = aws.iam.RolePolicy(
        f"{slug}-schedule",
        role=scheduler_role.id,
        policy=function.arn.apply(policies.invoke_policy),
        opts=scope.child,
    )
    schedule = aws.scheduler.Schedule(
        slug,
        schedule_expression=heartbeat_rate(minutes),
        flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
        target=aws.scheduler.ScheduleTargetArgs(
            arn=function.arn,
            role_arn=scheduler_role.arn,
            input=HEARTBEAT_INPUT,
            # a run that could not start is worth trying only until the next one
            retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=minutes * 60, maximum_retry_attempts=HEARTBEAT_RETRIES,
            ),
        ),
        opts=scope.options(depends_on=[scheduler_policy]),
    )
    return Heartbeat(function, role, policy, log_group, schedule, scheduler_role, scheduler_policy)


# --- server publish: backends publish through a function URL ---------------------------------


@dataclass(frozen=True)
class ServerPublishing:
    """What backends publish through (``server_publish``)."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    log_group: aws.cloudwatch.LogGroup
    url: aws.lambda_.FunctionUrl
    """The function's URL: only SigV4-signed requests of principals IAM allows reach it."""
    callers_policy: aws.iam.Policy
    """The managed policy that lets a principal publish: invoke the function
    through its URL, and nothing else (attach it with ``grant_publish``)."""


def create_server_publishing(functions: Functions) -> ServerPublishing:
    """The server publish function, its URL and the policy its callers need."""
    scope = functions.scope
    slug = scope.slug(spec.SERVER_PUBLISH)
    function, role, policy, log_group = functions.create(spec.SERVER_PUBLISH,
                                                         timeout=spec.SERVER_PUBLISH_TIMEOUT_SECONDS)
    # AWS_IAM: Lambda takes only SigV4-signed requests, from principals
    # whose own policies allow them (the callers' policy below); the
    # function needs no resource policy for principals of its account
    url = aws.lambda_.FunctionUrl(slug, function_name=function.name, authorization_type="AWS_IAM", opts=scope.child)
    callers_policy = aws.iam.Policy(
        f"{slug}-callers",
        description=f"Publish into the channels of channel-server {scope.name} through its publish endpoint",
        policy=function.arn.apply(publish_policy_document),
        tags=scope.tags,
        opts=scope.child,
    )
    return ServerPublishing(function, role, policy, log_group, url, callers_policy)


# --- access logs -----------------------------------------------------------------------------

#: The stage's access log line (JSON): what API Gateway knows of each
#: request of a WebSocket API (its $context variables for access logging).
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "connectionId": "$context.connectionId",
    "status": "$context.status",
    "errorMessage": "$context.error.message",
    "integrationLatency": "$context.integrationLatency",
    "authorizerError": "$context.authorizer.error",
    "sourceIp": "$context.identity.sourceIp",
})
#: The AWS-managed policy API Gateway's CloudWatch role needs (AWS documents
#: it for this role: create and write log groups of any API).
APIGATEWAY_LOGS_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


@dataclass(frozen=True)
class AccessLogs:
    """The stage's access logs (``access_logs``)."""

    log_group: aws.cloudwatch.LogGroup
    role: aws.iam.Role | None
    """The role API Gateway writes CloudWatch logs with, when this stack created it."""
    account: aws.apigateway.Account | None
    """The region's API Gateway account setting, when this stack manages it."""


def create_access_logs(scope: Scope) -> AccessLogs:
    """The access log group and, unless someone else manages it, the
    region's API Gateway account setting with a role that may write logs."""
    s = scope.settings
    slug = f"{scope.name}-access-logs"
    log_group = aws.cloudwatch.LogGroup(
        slug,
        name_prefix=f"/aws/apigateway/{slug}-",
        retention_in_days=s.log_retention_days,
        tags=scope.tags,
        opts=scope.child,
    )
    role = account = None
    if s.manage_api_gateway_account:
        role_arn = s.api_gateway_cloudwatch_role_arn
        if role_arn is None:
            role = aws.iam.Role(
                f"{scope.name}-apigateway-logs",
                assume_role_policy=trust_policy("apigateway.amazonaws.com"),
                tags=scope.tags,
                opts=scope.child,
            )
            attachment = aws.iam.RolePolicyAttachment(
                f"{scope.name}-apigateway-logs", role=role.name, policy_arn=APIGATEWAY_LOGS_POLICY,
                opts=scope.child,
            )
            # the account setting takes the role only once it may write logs
            role_arn = pulumi.Output.all(role.arn, attachment.id).apply(lambda values: values[0])
        account = aws.apigateway.Account(
            f"{scope.name}-apigateway-account",
            cloudwatch_role_arn=role_arn,
            opts=scope.child,
        )
    return AccessLogs(log_group, role, account)


# --- custom domain ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomDomain:
    """The custom domain clients connect to (``domain``)."""

    domain_name: aws.apigatewayv2.DomainName
    """The regional domain name, with its certificate, TLS 1.2."""
    mapping: aws.apigatewayv2.ApiMapping
    """Maps the domain (and base path) to the stage."""
    record: aws.route53.Record | None
    """The alias A record, when a hosted zone was given."""
    url: pulumi.Output[str]
    """``wss://{domain}[/{base path}]``."""
    target: pulumi.Output[str]
    """The regional host name the domain's DNS record points to."""


def create_domain(scope: Scope, api: aws.apigatewayv2.Api, stage: aws.apigatewayv2.Stage,
                  domain: Mapping[str, Any]) -> CustomDomain:
    """A regional domain name (TLS 1.2) mapped to the stage; an alias
    record when a hosted zone was given. The handlers keep posting to the
    execute-api management endpoint, whose URL does not depend on the
    mapping: on a custom domain AWS serves the management API under the
    mapping's base path, not the stage, the detail clients get wrong."""
    slug = f"{scope.name}-domain"
    domain_name = aws.apigatewayv2.DomainName(
        slug,
        domain_name=domain["name"],
        domain_name_configuration=aws.apigatewayv2.DomainNameDomainNameConfigurationArgs(
            certificate_arn=domain["certificate_arn"],
            endpoint_type="REGIONAL",
            security_policy="TLS_1_2",
        ),
        tags=scope.tags,
        opts=scope.child,
    )
    base_path = domain["base_path"]
    mapping = aws.apigatewayv2.ApiMapping(
        slug,
        api_id=api.id,
        domain_name=domain_name.id,
        stage=stage.id,
        api_mapping_key=base_path,
        opts=scope.child,
    )
    target = domain_name.domain_name_configuration.target_domain_name
    record = None
    if domain["hosted_zone_id"] is not None:
        record = aws.route53.Record(
            slug,
            zone_id=domain["hosted_zone_id"],
            name=domain_name.domain_name,
            type="A",
            aliases=[aws.route53.RecordAliasArgs(
                name=target,
                zone_id=domain_name.domain_name_configuration.hosted_zone_id,
                evaluate_target_health=False,
            )],
            opts=scope.child,
        )
    url = domain_name.domain_name.apply(lambda host: f"wss://{host}" + (f"/{base_path}" if base_path else ""))
    # the URL works once the mapping exists
    url = pulumi.Output.all(url, mapping.id).apply(lambda values: values[0])
    return CustomDomain(domain_name, mapping, record, url, target)


# --- alarms ----------------------------------------------------------------------------------

#: Alarms look at sums over this many seconds.
ALARM_PERIOD_SECONDS = 300


def create_alarms(scope: Scope, topic_arn: Any, functions: Mapping[str, aws.lambda_.Function],
                  api: aws.apigatewayv2.Api, stage: aws.apigatewayv2.Stage) -> dict[str, aws.cloudwatch.MetricAlarm]:
    """An alarm per failure worth waking someone for, each to ``topic_arn``
    when it fires and when it clears: the errors and throttles of each of
    ``functions`` (by route key or function name), the stage's execution and
    integration errors, and failed deliveries when the handlers emit metrics."""
    alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}

    def alarm(name: str, namespace: str, metric: str, dimensions: Any, description: str) -> None:
        alarms[name] = aws.cloudwatch.MetricAlarm(
            f"{scope.name}-{name}",
            alarm_description=description,
            namespace=namespace,
            metric_name=metric,
            dimensions=dimensions,
            statistic="Sum",
            period=ALARM_PERIOD_SECONDS,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            tags=scope.tags,
            opts=scope.child,
        )

    for key, function in functions.items():
        label = key.lstrip("$")
        for metric in ("Errors", "Throttles"):
            alarm(f"{label}-{metric.lower()}", "AWS/Lambda", metric,
                  {"FunctionName": function.name}, f"channel-server {label} function {metric.lower()}")
    dimensions = {"ApiId": api.id, "Stage": stage.name}
    alarm("api-execution-errors", "AWS/ApiGateway", "ExecutionError", dimensions,
          "API Gateway could not call an integration")
    alarm("api-integration-errors", "AWS/ApiGateway", "IntegrationError", dimensions,
          "an integration answered 4xx/5xx")
    if scope.settings.metrics:
        alarm("failed-deliveries", spec.METRICS_NAMESPACE, spec.METRIC_FAILED_DELIVERIES,
              {"Server": scope.name}, "messages that could not be delivered to a member after retries")
    return alarms
