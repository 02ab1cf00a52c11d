"""``ChannelServer``: a complete WebSocket channel server on AWS in one component.

What it builds (every child parented to the component, named from its name):

- a DynamoDB table of connections (``{name}-connections``) with the channel index
  and TTL, on-demand, point-in-time recovery on;
- an API Gateway WebSocket API (``{name}-api``) routing on ``$request.body.type``,
  one route per entry in ``handlers.spec.ROUTES``, each an AWS_PROXY integration to
  its own Lambda function, with its own role, log group and invoke permission;
- a deployment that is replaced whenever a route or integration changes, and the
  stage that serves it, throttled;
- for channels larger than one publish serves itself (``inline_fanout_limit``):
  an SQS queue of fan-out chunks with its dead-letter queue, and the fan-out
  function (``handlers.spec.FANOUT``) behind an event source mapping;
- with ``heartbeat_interval_minutes``: the heartbeat function
  (``handlers.spec.HEARTBEAT``) and an EventBridge Scheduler schedule, with a
  role that may invoke only that function;
- with ``backend`` (an HTTP server instead of the handlers): each route's
  integration is a non-proxy HTTP one with the request template and
  integration response of ``channel_server.backend``; no functions, no queues;
- with ``domain``: a regional custom domain (TLS 1.2) mapped to the stage, and
  an alias record when a hosted zone is given;
- with ``authorizer``: a Lambda REQUEST authorizer on ``$connect`` and API
  Gateway's permission to invoke it;
- with ``access_logs``: the stage's JSON access logs in their own log group,
  and API Gateway's account-level CloudWatch role;
- with ``alarm_topic_arn``: CloudWatch alarms on handler errors and throttles,
  API errors and (with ``metrics``) failed deliveries, to that topic.

Annotations here are real types, not strings (no ``from __future__ import
annotations``): Pulumi's schema analyzer reads ``__init__``'s ``args``
annotation and the class's public annotations (its outputs) without
evaluating them.
"""

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

import pulumi
import pulumi_aws as aws

from . import archive, policies
from .policies import publish_policy_document, trust_policy
from . import backend as backend_contract
from .args import ChannelServerArgs, ChannelServerArgsError, Settings, resolve
from .handlers import spec

#: The Pulumi package name (``plugin/``, ``pulumi package add``) and the component's type token.
PACKAGE_NAME = "channel-server"
TYPE_TOKEN = f"{PACKAGE_NAME}:index:ChannelServer"

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



#: What the schedule passes the heartbeat function: its event. EventBridge
#: Scheduler fills in the context attribute when it invokes the target.
HEARTBEAT_INPUT = json.dumps({"source": "channel-server.heartbeat", "scheduledTime": "<aws.scheduler.scheduled-time>"})
#: How often the scheduler retries a heartbeat invocation that failed to
#: start (throttled, or Lambda unavailable), within the interval.
HEARTBEAT_RETRIES = 2


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
#: Alarms look at sums over this many seconds.
ALARM_PERIOD_SECONDS = 300


def lambda_invoke_uri(function_arn: str) -> str:
    """The URI API Gateway invokes a Lambda function by, from its ARN
    (``arn:{partition}:lambda:{region}:{account}:function:{name}``)."""
    parts = function_arn.split(":")
    partition, region = parts[1], parts[3]
    return f"arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"


def heartbeat_rate(minutes: int) -> str:
    """The schedule expression of a heartbeat every ``minutes`` minutes."""
    return f"rate({minutes} minute{'' if minutes == 1 else 's'})"


@dataclass(frozen=True)
class FanOut:
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


@dataclass(frozen=True)
class AccessLogs:
    """The stage's access logs (``access_logs``)."""

    log_group: aws.cloudwatch.LogGroup
    role: aws.iam.Role | None
    """The role API Gateway writes CloudWatch logs with, when this stack created it."""
    account: aws.apigateway.Account | None
    """The region's API Gateway account setting, when this stack manages it."""


class ChannelServer(pulumi.ComponentResource):
    """A WebSocket channel server: clients join a channel and publish to it.

    ``ChannelServer(name, args=None, opts=None)``; see :class:`ChannelServerArgs`
    for the settings. Invalid settings raise ``ChannelServerArgsError`` here,
    before any resource is registered.
    """

    # The public annotations below are the component's outputs in every
    # language (Pulumi's schema analyzer reads them); the Python-only
    # attributes are annotated for type checkers only, further down.

    url: pulumi.Output[str]
    """The clients' WebSocket URL: ``wss://{api}.execute-api.{region}.amazonaws.com/{stage}``,
    or ``wss://{domain}[/{base path}]`` with a custom domain."""
    execute_api_url: pulumi.Output[str]
    """The stage's execute-api WebSocket URL, with or without a custom domain."""
    management_endpoint: pulumi.Output[str]
    """The stage's management API (``@connections``) base URL, ``https://…/{stage}``;
    always the execute-api host, never the custom domain."""
    table_name: pulumi.Output[str]
    """Name of the connections table."""
    api_id: pulumi.Output[str]
    """The WebSocket API's id."""
    stage_name: pulumi.Output[str]
    """The stage's name."""
    domain_target: Optional[pulumi.Output[str]]
    """With a custom domain: the regional host name its DNS record must point
    to (an alias or CNAME), for DNS outside Route 53."""
    table: aws.dynamodb.Table
    """The connections table (keys, channel index, TTL)."""
    api: aws.apigatewayv2.Api
    """The WebSocket API."""
    stage: aws.apigatewayv2.Stage
    """The throttled stage clients connect to."""
    publish_url: Optional[pulumi.Output[str]]
    """With ``server_publish``: the HTTPS endpoint backends POST
    ``{"channelId", "data", "idempotencyKey"?}`` to, signed with SigV4 for
    the service ``lambda``."""
    publish_function_arn: Optional[pulumi.Output[str]]
    """With ``server_publish``: the ARN of the function behind that endpoint."""
    publish_policy_arn: Optional[pulumi.Output[str]]
    """With ``server_publish``: a managed IAM policy that allows publishing
    through the endpoint and nothing else; attach it to the roles of the
    backends that publish."""

    if TYPE_CHECKING:  # Python-only attributes: not outputs in other languages
        deployment: aws.apigatewayv2.Deployment
        """The deployment the stage serves; replaced whenever a route or integration changes."""
        functions: dict[str, aws.lambda_.Function]
        """Handler functions by route key (``$connect``, ``join``, …); likewise the dicts below."""
        roles: dict[str, aws.iam.Role]
        """Each function's execution role."""
        policies: dict[str, aws.iam.RolePolicy]
        """Each role's inline least-privilege policy."""
        log_groups: dict[str, aws.cloudwatch.LogGroup]
        """Each function's log group (with retention)."""
        integrations: dict[str, aws.apigatewayv2.Integration]
        """Each route's integration: AWS_PROXY to its function, or HTTP to the backend."""
        integration_responses: dict[str, aws.apigatewayv2.IntegrationResponse]
        """With an HTTP backend: each route's integration response (any 2xx answer)."""
        routes: dict[str, aws.apigatewayv2.Route]
        """The API's routes."""
        route_responses: dict[str, aws.apigatewayv2.RouteResponse]
        """The ``$default`` route response of each two-way route (the message routes):
        the function's return value is the reply to the sender."""
        permissions: dict[str, aws.lambda_.Permission]
        """API Gateway's permission to invoke each function, scoped to its stage and route."""
        fanout: FanOut | None
        """The fan-out queue and function, for channels beyond the inline limit
        (None with an HTTP backend)."""
        heartbeat: Heartbeat | None
        """The heartbeat function and its schedule (None while heartbeats are off)."""
        server_publishing: ServerPublishing | None
        """The server publish endpoint, its function and callers' policy (None without ``server_publish``)."""
        domain: CustomDomain | None
        """The custom domain, its API mapping and DNS record (None without ``domain``)."""
        authorizer: aws.apigatewayv2.Authorizer | None
        """The $connect authorizer (None without ``authorizer``)."""
        authorizer_permission: aws.lambda_.Permission | None
        """API Gateway's permission to invoke the authorizer function."""
        access_logs: AccessLogs | None
        """The access log group and account setting (None without ``access_logs``)."""
        alarms: dict[str, aws.cloudwatch.MetricAlarm]
        """The alarms by name (empty without ``alarm_topic_arn``)."""

    def __init__(
        self,
        name: str,
        # None: every default. Annotated without Optional: the schema analyzer
        # reads this annotation as the component's input type.
        args: ChannelServerArgs = None,  # type: ignore[assignment]
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        settings = resolve(args)  # fail before anything is registered
        super().__init__(TYPE_TOKEN, name, None, opts)
        self._name = name
        self._settings = settings
        self._tags = settings.tags or None  # a dict, or an Output of one
        self._child = pulumi.ResourceOptions(parent=self)

        self.table = self._create_table()
        self.api = aws.apigatewayv2.Api(
            f"{name}-api",
            protocol_type="WEBSOCKET",
            route_selection_expression=spec.ROUTE_SELECTION_EXPRESSION,
            tags=self._tags,
            opts=self._child,
        )
        self.management_endpoint = self.api.api_endpoint.apply(
            lambda endpoint: spec.management_endpoint(endpoint, settings.stage_name)
        )
        self.execute_api_url = self.api.api_endpoint.apply(lambda endpoint: f"{endpoint}/{settings.stage_name}")

        self.functions, self.roles, self.policies, self.log_groups = {}, {}, {}, {}
        self.integrations, self.routes, self.route_responses, self.permissions = {}, {}, {}, {}
        self.integration_responses, self.alarms = {}, {}
        self.fanout = self.heartbeat = self.domain = self.access_logs = self.server_publishing = None
        self._publish_grants: dict[int, aws.iam.RolePolicyAttachment] = {}
        self.authorizer = self.authorizer_permission = None
        if settings.authorizer is not None:
            self.authorizer, self.authorizer_permission = self._create_authorizer(settings.authorizer)
        if settings.backend is not None:
            for route in spec.ROUTES:
                self._create_http_route(route, settings.backend)
        else:
            code = archive.handler_archive()
            self._queues = self._create_queues()
            for route in spec.ROUTES:
                self._create_route(route, code)
            self.fanout = self._create_fanout(code)
            if settings.heartbeats:
                self.heartbeat = self._create_heartbeat(code)
            if settings.server_publish:
                self.server_publishing = self._create_server_publishing(code)
        if settings.access_logs:
            self.access_logs = self._create_access_logs()
        self.deployment, self.stage = self._create_stage()
        self.url, self.domain_target = self.execute_api_url, None
        if settings.domain is not None:
            self.domain = self._create_domain(settings.domain)
            self.url, self.domain_target = self.domain.url, self.domain.target
        if settings.alarm_topic_arn is not None:
            self.alarms = self._create_alarms(settings.alarm_topic_arn)

        self.table_name = self.table.name
        self.api_id = self.api.id
        self.stage_name = self.stage.name
        publishing = self.server_publishing
        self.publish_url = publishing.url.function_url if publishing else None
        self.publish_function_arn = publishing.function.arn if publishing else None
        self.publish_policy_arn = publishing.callers_policy.arn if publishing else None
        self.register_outputs(
            {
                "url": self.url,
                "execute_api_url": self.execute_api_url,
                "management_endpoint": self.management_endpoint,
                "table_name": self.table_name,
                "api_id": self.api_id,
                "stage_name": self.stage_name,
                "domain_target": self.domain_target,
                "publish_url": self.publish_url,
                "publish_function_arn": self.publish_function_arn,
                "publish_policy_arn": self.publish_policy_arn,
                "table": self.table,
                "api": self.api,
                "stage": self.stage,
            }
        )

    # --- table ---------------------------------------------------------------------

    def _create_table(self) -> aws.dynamodb.Table:
        return aws.dynamodb.Table(
            f"{self._name}-connections",
            name=self._settings.table_name,  # None: auto-named, so stacks never collide
            billing_mode="PAY_PER_REQUEST",
            hash_key=spec.CONNECTION_ID,
            range_key=spec.CHANNEL_ID,
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=spec.CONNECTION_ID, type="S"),
                aws.dynamodb.TableAttributeArgs(name=spec.CHANNEL_ID, type="S"),
                aws.dynamodb.TableAttributeArgs(name=spec.HEARTBEAT_SHARD, type="N"),
            ],
            global_secondary_indexes=[
                _index(spec.CHANNEL_INDEX, spec.CHANNEL_ID, spec.INDEX_PROJECTED),
                # sparse: only live state rows carry the shard, and only while
                # heartbeats are on; empty, it costs nothing
                _index(spec.HEARTBEAT_INDEX, spec.HEARTBEAT_SHARD, spec.HEARTBEAT_INDEX_PROJECTED),
            ],
            # rows of connections whose $disconnect never arrived expire after
            # API Gateway's 2-hour connection limit
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=spec.EXPIRES_AT, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            deletion_protection_enabled=self._settings.deletion_protection,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=self._settings.retain_on_delete or None),
        )

    # --- large channels: the fan-out queue and function ------------------------------

    def _create_queues(self) -> tuple[aws.sqs.Queue, aws.sqs.Queue]:
        s = self._settings
        dead_letters = aws.sqs.Queue(
            f"{self._name}-fanout-dlq",
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            tags=self._tags,
            opts=self._child,
        )
        queue = aws.sqs.Queue(
            f"{self._name}-fanout",
            visibility_timeout_seconds=VISIBILITY_TIMEOUTS * s.lambda_timeout_seconds,
            # a chunk's claim row (Store.claim_chunk) outlives it
            message_retention_seconds=spec.FANOUT_RETENTION_SECONDS,
            redrive_policy=dead_letters.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": FANOUT_MAX_RECEIVES})
            ),
            sqs_managed_sse_enabled=True,
            tags=self._tags,
            opts=self._child,
        )
        return queue, dead_letters

    def _create_fanout(self, code: pulumi.AssetArchive) -> FanOut:
        queue, dead_letters = self._queues
        function, role, policy, log_group = self._create_function(spec.FANOUT, code)
        mapping = aws.lambda_.EventSourceMapping(
            f"{self._name}-{spec.FANOUT.function}",
            event_source_arn=queue.arn,
            function_name=function.arn,
            batch_size=1,  # one chunk per invocation: a chunk never waits for another
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
                maximum_concurrency=spec.FANOUT_MAX_CONCURRENCY
            ),
            tags=self._tags,
            # the role must be allowed to take from the queue before SQS polls for it
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        return FanOut(queue, dead_letters, function, role, policy, log_group, mapping)

    # --- server heartbeats: the function and its schedule ------------------------------

    def _create_heartbeat(self, code: pulumi.AssetArchive) -> Heartbeat:
        minutes = self._settings.heartbeat_interval_minutes
        slug = f"{self._name}-{spec.HEARTBEAT.function}"
        function, role, policy, log_group = self._create_function(
            spec.HEARTBEAT, code, timeout=spec.HEARTBEAT_TIMEOUT_SECONDS)
        # Scheduler assumes this role to invoke the function, for schedules of
        # this account only.
        scheduler_role = aws.iam.Role(
            f"{slug}-schedule",
            assume_role_policy=function.arn.apply(
                lambda arn: trust_policy("scheduler.amazonaws.com", account=arn.split(":")[4])),
            tags=self._tags,
            opts=self._child,
        )
        scheduler_policy = aws.iam.RolePolicy(
            f"{slug}-schedule",
            role=scheduler_role.id,
            policy=function.arn.apply(policies.invoke_policy),
            opts=self._child,
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[scheduler_policy]),
        )
        return Heartbeat(function, role, policy, log_group, schedule, scheduler_role, scheduler_policy)

    # --- server publish: backends publish through a function URL -----------------------

    def _create_server_publishing(self, code: pulumi.AssetArchive) -> ServerPublishing:
        slug = self._slug(spec.SERVER_PUBLISH)
        function, role, policy, log_group = self._create_function(
            spec.SERVER_PUBLISH, code, timeout=spec.SERVER_PUBLISH_TIMEOUT_SECONDS)
        # AWS_IAM: Lambda takes only SigV4-signed requests, from principals
        # whose own policies allow them (the callers' policy below); the
        # function needs no resource policy for principals of its account
        url = aws.lambda_.FunctionUrl(slug, function_name=function.name, authorization_type="AWS_IAM", opts=self._child)
        callers_policy = aws.iam.Policy(
            f"{slug}-callers",
            description=f"Publish into the channels of channel-server {self._name} through its publish endpoint",
            policy=function.arn.apply(publish_policy_document),
            tags=self._tags,
            opts=self._child,
        )
        return ServerPublishing(function, role, policy, log_group, url, callers_policy)

    def grant_publish(self, role: aws.iam.Role) -> aws.iam.RolePolicyAttachment:
        """Let ``role`` (an ``aws.iam.Role`` of the program) publish through
        the server publish endpoint, and do nothing else here: attaches
        ``publish_policy_arn`` to it. Granting the same role again returns
        the same attachment. Other languages attach that output themselves."""
        if self.server_publishing is None:
            raise ChannelServerArgsError(f"ChannelServer {self._name}: grant_publish needs server_publish=True "
                                         "(serverPublish in the stack's config)")
        if not isinstance(role, aws.iam.Role):
            raise TypeError(f"ChannelServer {self._name}: grant_publish takes an aws.iam.Role, not "
                            f"{type(role).__name__}; for a role defined elsewhere, attach publish_policy_arn to it "
                            "with aws.iam.RolePolicyAttachment")
        granted = self._publish_grants.get(id(role))
        if granted is None:
            # named after the component and the role's Pulumi name, a child of the component
            granted = self._publish_grants[id(role)] = aws.iam.RolePolicyAttachment(
                f"{self._name}-publish-{role.pulumi_resource_name}",
                role=role.name,
                policy_arn=self.server_publishing.callers_policy.arn,
                opts=self._child,
            )
        return granted

    # --- one function: role, policy, logs ----------------------------------------------

    def _slug(self, definition: spec.Function) -> str:
        """The names of a function's resources: ``{component}-{function}``, in
        resource names' own spelling (``server_publish`` → ``server-publish``)."""
        return f"{self._name}-{definition.function.replace('_', '-')}"

    def _create_function(
        self, definition: spec.Function, code: pulumi.AssetArchive, timeout: int | None = None
    ) -> tuple[aws.lambda_.Function, aws.iam.Role, aws.iam.RolePolicy, aws.cloudwatch.LogGroup]:
        s = self._settings
        slug = self._slug(definition)
        log_group = aws.cloudwatch.LogGroup(
            slug,
            name_prefix=f"/aws/lambda/{slug}-",
            retention_in_days=s.log_retention_days,
            tags=self._tags,
            opts=self._child,
        )
        role = aws.iam.Role(slug, assume_role_policy=trust_policy("lambda.amazonaws.com"), tags=self._tags,
                            opts=self._child)
        policy = aws.iam.RolePolicy(
            slug,
            role=role.id,
            policy=self._policy_document(definition, log_group),
            opts=self._child,
        )
        function = aws.lambda_.Function(
            slug,
            runtime=s.lambda_runtime,
            architectures=[s.lambda_architecture],
            handler=definition.handler,
            code=code,
            role=role.arn,
            # a fan-out is bound by CPU, and Lambda's CPU grows with memory
            memory_size=s.publish_memory_mb if definition.fans_out else s.lambda_memory_mb,
            timeout=timeout or s.lambda_timeout_seconds,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=self._environment()),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active") if s.tracing else None,
            tags=self._tags,
            # the role must be able to write logs before the first invocation
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        return function, role, policy, log_group

    # --- one route: its function, integration, route response, permission ----------

    def _create_route(self, route: spec.Route, code: pulumi.AssetArchive) -> None:
        s = self._settings
        slug = f"{self._name}-{route.function}"
        function, role, policy, log_group = self._create_function(route, code)
        integration = aws.apigatewayv2.Integration(
            slug,
            api_id=self.api.id,
            integration_type="AWS_PROXY",
            integration_method="POST",
            integration_uri=function.invoke_arn,
            opts=self._child,
        )
        self._add_route(route, integration)
        self.permissions[route.key] = aws.lambda_.Permission(
            slug,
            action="lambda:InvokeFunction",
            function=function.name,
            principal="apigateway.amazonaws.com",
            # only this API's stage, only this route
            source_arn=self.api.execution_arn.apply(lambda arn: f"{arn}/{s.stage_name}/{route.key}"),
            opts=self._child,
        )
        self.functions[route.key] = function
        self.roles[route.key] = role
        self.policies[route.key] = policy
        self.log_groups[route.key] = log_group

    def _add_route(self, route: spec.Route, integration: aws.apigatewayv2.Integration) -> None:
        """The route to ``integration``, with its route response when two-way."""
        slug = f"{self._name}-{route.function}"
        authorizer = self.authorizer if route.key == spec.CONNECT_ROUTE else None
        self.integrations[route.key] = integration
        self.routes[route.key] = aws.apigatewayv2.Route(
            slug,
            api_id=self.api.id,
            route_key=route.key,
            target=integration.id.apply(lambda integration_id: f"integrations/{integration_id}"),
            # API Gateway authorizes a WebSocket connection only on $connect
            authorization_type="CUSTOM" if authorizer is not None else None,
            authorizer_id=authorizer.id if authorizer is not None else None,
            # two-way: the function's return value is the sender's reply
            route_response_selection_expression=spec.ROUTE_RESPONSE_SELECTION_EXPRESSION if route.two_way else None,
            opts=self._child,
        )
        if route.two_way:
            self.route_responses[route.key] = aws.apigatewayv2.RouteResponse(
                slug,
                api_id=self.api.id,
                route_id=self.routes[route.key].id,
                route_response_key=spec.ROUTE_RESPONSE_KEY,
                opts=self._child,
            )

    def _create_http_route(self, route: spec.Route, backend: Mapping[str, Any]) -> None:
        """The route, served by the HTTP backend: a non-proxy HTTP integration
        that posts the envelope, and one integration response (any 2xx),
        without which API Gateway fails every request after the backend
        answered ("No match for output mapping"), and with which any other
        status refuses a $connect (see channel_server.backend)."""
        slug = f"{self._name}-{route.function}"
        url = pulumi.Output.from_input(backend["url"])  # checked by resolve(), an Output when it resolves
        integration = aws.apigatewayv2.Integration(
            slug,
            api_id=self.api.id,
            integration_type="HTTP",
            integration_method="POST",
            integration_uri=url,
            timeout_milliseconds=backend["timeout_ms"],
            request_templates={backend_contract.REQUEST_TEMPLATE_KEY: backend_contract.request_template(route.key)},
            template_selection_expression=backend_contract.TEMPLATE_SELECTION_EXPRESSION,
            passthrough_behavior=backend_contract.PASSTHROUGH_BEHAVIOR,
            request_parameters=dict(backend_contract.REQUEST_PARAMETERS),
            opts=self._child,
        )
        self.integration_responses[route.key] = aws.apigatewayv2.IntegrationResponse(
            slug,
            api_id=self.api.id,
            integration_id=integration.id,
            integration_response_key=backend_contract.INTEGRATION_RESPONSE_KEY,
            opts=self._child,
        )
        self._add_route(route, integration)

    def _environment(self) -> dict[str, Any]:
        s = self._settings
        return {
            spec.ENV_TABLE_NAME: self.table.name,
            spec.ENV_INDEX_NAME: spec.CHANNEL_INDEX,
            spec.ENV_MANAGEMENT_ENDPOINT: self.management_endpoint,
            spec.ENV_CHANNEL_ID_PATTERN: s.channel_id_pattern,
            spec.ENV_MAX_MESSAGE_BYTES: str(s.max_message_bytes),
            spec.ENV_POSTS_IN_FLIGHT: str(s.posts_in_flight),
            spec.ENV_INLINE_FANOUT_LIMIT: str(s.inline_fanout_limit),
            spec.ENV_FANOUT_QUEUE_URL: self._queues[0].url,
            **({spec.ENV_HEARTBEATS: "1"} if s.heartbeats else {}),
            **({spec.ENV_HISTORY_SECONDS: str(s.history_seconds)} if s.history_seconds else {}),
            **({spec.ENV_METRICS: "1", spec.ENV_SERVER_NAME: self._name} if s.metrics else {}),
            **({spec.ENV_PRESENCE_MAX_MEMBERS: str(s.presence_max_members)} if s.presence else {}),
        }

    def _policy_document(self, function: spec.Function, log_group: aws.cloudwatch.LogGroup) -> pulumi.Output[str]:
        """Least privilege for one function (:func:`policies.function_policy`)."""
        s = self._settings
        options: dict[str, Any] = {"stage": s.stage_name, "heartbeats": s.heartbeats, "history": s.history_seconds > 0,
                   "presence": s.presence, "tracing": s.tracing}
        return pulumi.Output.all(self.table.arn, self.api.execution_arn, log_group.arn, self._queues[0].arn).apply(
            lambda arns: policies.function_policy(function, table_arn=arns[0], execution_arn=arns[1],
                                                  log_group_arn=arns[2], queue_arn=arns[3], **options)
        )

    # --- deployment and stage ----------------------------------------------------------

    def _create_stage(self) -> tuple[aws.apigatewayv2.Deployment, aws.apigatewayv2.Stage]:
        s = self._settings
        # A WebSocket stage serves only what was deployed: a new deployment
        # whenever a route or its integration changes, created after the routes.
        wiring = pulumi.Output.all(
            *[
                pulumi.Output.all(
                    key, self.routes[key].id, self.integrations[key].id, self.integrations[key].integration_uri,
                    self.integrations[key].request_templates, self.integrations[key].timeout_milliseconds,
                    self.route_responses[key].id if key in self.route_responses else "",
                    self.integration_responses[key].id if key in self.integration_responses else "",
                )
                for key in sorted(self.routes)
            ]
        )
        triggers = {"routes": wiring.apply(lambda rows: json.dumps(rows, sort_keys=True))}
        authorizer_resources: list[pulumi.Resource] = []
        if self.authorizer is not None:
            triggers["authorizer"] = pulumi.Output.all(
                self.authorizer.id, self.authorizer.authorizer_uri, self.authorizer.identity_sources
            ).apply(lambda values: json.dumps(values, sort_keys=True))
            assert self.authorizer_permission is not None  # made with the authorizer
            authorizer_resources = [self.authorizer, self.authorizer_permission]
        # ...and after the invoke permissions, so the stage never switches to a
        # function API Gateway may not call yet.
        deployment = aws.apigatewayv2.Deployment(
            f"{self._name}-deployment",
            api_id=self.api.id,
            description=f"channel-server routes: {', '.join(sorted(self.routes))}",
            triggers=triggers,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.routes.values(), *self.route_responses.values(), *self.permissions.values(),
                            *self.integration_responses.values(), *authorizer_resources],
            ),
        )
        logs = self.access_logs
        stage = aws.apigatewayv2.Stage(
            f"{self._name}-stage",
            api_id=self.api.id,
            name=s.stage_name,
            deployment_id=deployment.id,
            # both limits, always: leaving one out makes it 0 and every message a 429
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=s.throttling_burst_limit,
                throttling_rate_limit=s.throttling_rate_limit,
            ),
            access_log_settings=None if logs is None else aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=logs.log_group.arn, format=ACCESS_LOG_FORMAT,
            ),
            tags=self._tags,
            # API Gateway refuses access logging until the account has its role
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs.account] if logs and logs.account else None),
        )
        return deployment, stage

    # --- $connect authorizer ---------------------------------------------------------------

    def _create_authorizer(
        self, authorizer: Mapping[str, Any]
    ) -> tuple[aws.apigatewayv2.Authorizer, aws.lambda_.Permission]:
        """The user's Lambda REQUEST authorizer on $connect, and API Gateway's
        permission to invoke it, for this API's authorizer only."""
        slug = f"{self._name}-authorizer"
        function_arn = pulumi.Output.from_input(authorizer["function_arn"])
        resource = aws.apigatewayv2.Authorizer(
            slug,
            api_id=self.api.id,
            name=slug,
            authorizer_type=authorizer["type"],
            authorizer_uri=function_arn.apply(lambda_invoke_uri),
            identity_sources=list(authorizer["identity_sources"]),
            opts=self._child,
        )
        permission = aws.lambda_.Permission(
            slug,
            action="lambda:InvokeFunction",
            function=function_arn,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.all(self.api.execution_arn, resource.id).apply(
                lambda values: f"{values[0]}/authorizers/{values[1]}"),
            opts=self._child,
        )
        return resource, permission

    # --- custom domain -----------------------------------------------------------------------

    def _create_domain(self, domain: Mapping[str, Any]) -> CustomDomain:
        """A regional domain name (TLS 1.2) mapped to the stage; an alias
        record when a hosted zone was given. The handlers keep posting to the
        execute-api management endpoint, whose URL does not depend on the
        mapping: on a custom domain AWS serves the management API under the
        mapping's base path, not the stage, the detail clients get wrong."""
        slug = f"{self._name}-domain"
        domain_name = aws.apigatewayv2.DomainName(
            slug,
            domain_name=domain["name"],
            domain_name_configuration=aws.apigatewayv2.DomainNameDomainNameConfigurationArgs(
                certificate_arn=domain["certificate_arn"],
                endpoint_type="REGIONAL",
                security_policy="TLS_1_2",
            ),
            tags=self._tags,
            opts=self._child,
        )
        base_path = domain["base_path"]
        mapping = aws.apigatewayv2.ApiMapping(
            slug,
            api_id=self.api.id,
            domain_name=domain_name.id,
            stage=self.stage.id,
            api_mapping_key=base_path,
            opts=self._child,
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
                opts=self._child,
            )
        url = domain_name.domain_name.apply(lambda host: f"wss://{host}" + (f"/{base_path}" if base_path else ""))
        # the URL works once the mapping exists
        url = pulumi.Output.all(url, mapping.id).apply(lambda values: values[0])
        return CustomDomain(domain_name, mapping, record, url, target)

    # --- access logs -------------------------------------------------------------------------

    def _create_access_logs(self) -> AccessLogs:
        """The access log group and, unless someone else manages it, the
        region's API Gateway account setting with a role that may write logs."""
        s = self._settings
        slug = f"{self._name}-access-logs"
        log_group = aws.cloudwatch.LogGroup(
            slug,
            name_prefix=f"/aws/apigateway/{slug}-",
            retention_in_days=s.log_retention_days,
            tags=self._tags,
            opts=self._child,
        )
        role = account = None
        if s.manage_api_gateway_account:
            role_arn = s.api_gateway_cloudwatch_role_arn
            if role_arn is None:
                role = aws.iam.Role(
                    f"{self._name}-apigateway-logs",
                    assume_role_policy=trust_policy("apigateway.amazonaws.com"),
                    tags=self._tags,
                    opts=self._child,
                )
                attachment = aws.iam.RolePolicyAttachment(
                    f"{self._name}-apigateway-logs", role=role.name, policy_arn=APIGATEWAY_LOGS_POLICY,
                    opts=self._child,
                )
                # the account setting takes the role only once it may write logs
                role_arn = pulumi.Output.all(role.arn, attachment.id).apply(lambda values: values[0])
            account = aws.apigateway.Account(
                f"{self._name}-apigateway-account",
                cloudwatch_role_arn=role_arn,
                opts=self._child,
            )
        return AccessLogs(log_group, role, account)

    # --- alarms ------------------------------------------------------------------------------

    def _create_alarms(self, topic_arn: Any) -> dict[str, aws.cloudwatch.MetricAlarm]:
        """An alarm per failure worth waking someone for, each to ``topic_arn``
        when it fires and when it clears: every function's errors and
        throttles, the stage's execution and integration errors, and failed
        deliveries when the handlers emit metrics."""
        alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}

        def alarm(name: str, namespace: str, metric: str, dimensions: Any, description: str) -> None:
            alarms[name] = aws.cloudwatch.MetricAlarm(
                f"{self._name}-{name}",
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
                tags=self._tags,
                opts=self._child,
            )

        functions = dict(self.functions)
        if self.fanout is not None:
            functions[spec.FANOUT.function] = self.fanout.function
        if self.heartbeat is not None:
            functions[spec.HEARTBEAT.function] = self.heartbeat.function
        if self.server_publishing is not None:
            functions[spec.SERVER_PUBLISH.function.replace("_", "-")] = self.server_publishing.function
        for key, function in functions.items():
            label = key.lstrip("$")
            for metric in ("Errors", "Throttles"):
                alarm(f"{label}-{metric.lower()}", "AWS/Lambda", metric,
                      {"FunctionName": function.name}, f"channel-server {label} function {metric.lower()}")
        stage = {"ApiId": self.api.id, "Stage": self.stage.name}
        alarm("api-execution-errors", "AWS/ApiGateway", "ExecutionError", stage,
              "API Gateway could not call an integration")
        alarm("api-integration-errors", "AWS/ApiGateway", "IntegrationError", stage,
              "an integration answered 4xx/5xx")
        if self._settings.metrics:
            alarm("failed-deliveries", spec.METRICS_NAMESPACE, spec.METRIC_FAILED_DELIVERIES,
                  {"Server": self._name}, "messages that could not be delivered to a member after retries")
        return alarms


def _index(name: str, hash_key: str, projected: tuple[str, ...]) -> aws.dynamodb.TableGlobalSecondaryIndexArgs:
    """A global secondary index on ``hash_key`` projecting ``projected`` besides the keys."""
    return aws.dynamodb.TableGlobalSecondaryIndexArgs(
        name=name,
        key_schemas=[aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name=hash_key, key_type="HASH")],
        projection_type="INCLUDE",
        non_key_attributes=list(projected),
    )


__all__ = ["AccessLogs", "ChannelServer", "ChannelServerArgs", "CustomDomain", "FanOut", "Heartbeat",
           "ServerPublishing", "Settings", "TYPE_TOKEN"]
