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
  integration response of ``channel_server.backend``; no functions, no queues.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from . import archive
from . import backend as backend_contract
from .args import ChannelServerArgs, Settings, check_backend_url, resolve
from .handlers import spec

TYPE_TOKEN = "channel-server:index:ChannelServer"

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

_LAMBDA_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)

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


class ChannelServer(pulumi.ComponentResource):
    """A WebSocket channel server: clients join a channel and publish to it.

    ``ChannelServer(name, args=None, opts=None)``; see :class:`ChannelServerArgs`
    for the settings. Invalid settings raise ``ChannelServerArgsError`` here,
    before any resource is registered.
    """

    url: pulumi.Output[str]
    """The clients' WebSocket URL, ``wss://{api}.execute-api.{region}.amazonaws.com/{stage}``."""
    management_endpoint: pulumi.Output[str]
    """The stage's management API (``@connections``) base URL, ``https://…/{stage}``."""
    table_name: pulumi.Output[str]
    """Name of the connections table."""
    api_id: pulumi.Output[str]
    """The WebSocket API's id."""
    stage_name: pulumi.Output[str]
    """The stage's name."""

    table: aws.dynamodb.Table
    """The connections table (keys, channel index, TTL)."""
    api: aws.apigatewayv2.Api
    """The WebSocket API."""
    deployment: aws.apigatewayv2.Deployment
    """The deployment the stage serves; replaced whenever a route or integration changes."""
    stage: aws.apigatewayv2.Stage
    """The throttled stage clients connect to."""
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

    def __init__(
        self,
        name: str,
        args: ChannelServerArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        settings = resolve(args)  # fail before anything is registered
        super().__init__(TYPE_TOKEN, name, None, opts)
        self._name = name
        self._settings = settings
        self._tags = dict(settings.tags) or None
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
        self.url = self.api.api_endpoint.apply(lambda endpoint: f"{endpoint}/{settings.stage_name}")

        self.functions, self.roles, self.policies, self.log_groups = {}, {}, {}, {}
        self.integrations, self.routes, self.route_responses, self.permissions = {}, {}, {}, {}
        self.integration_responses = {}
        self.fanout = self.heartbeat = None
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
        self.deployment, self.stage = self._create_stage()

        self.table_name = self.table.name
        self.api_id = self.api.id
        self.stage_name = self.stage.name
        self.register_outputs(
            {
                "url": self.url,
                "management_endpoint": self.management_endpoint,
                "table_name": self.table_name,
                "api_id": self.api_id,
                "stage_name": self.stage_name,
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
            tags=self._tags,
            opts=self._child,
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
        # this account only (the confused-deputy guard AWS documents).
        scheduler_role = aws.iam.Role(
            f"{slug}-schedule",
            assume_role_policy=function.arn.apply(lambda arn: json.dumps({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "scheduler.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": arn.split(":")[4]}},
                }],
            })),
            tags=self._tags,
            opts=self._child,
        )
        scheduler_policy = aws.iam.RolePolicy(
            f"{slug}-schedule",
            role=scheduler_role.id,
            policy=function.arn.apply(lambda arn: json.dumps(
                {"Version": "2012-10-17", "Statement": [_allow(["lambda:InvokeFunction"], [arn])]})),
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

    # --- one function: role, policy, logs ----------------------------------------------

    def _create_function(
        self, definition: spec.Function, code: pulumi.AssetArchive, timeout: int | None = None
    ) -> tuple[aws.lambda_.Function, aws.iam.Role, aws.iam.RolePolicy, aws.cloudwatch.LogGroup]:
        s = self._settings
        slug = f"{self._name}-{definition.function}"
        log_group = aws.cloudwatch.LogGroup(
            slug,
            name_prefix=f"/aws/lambda/{slug}-",
            retention_in_days=s.log_retention_days,
            tags=self._tags,
            opts=self._child,
        )
        role = aws.iam.Role(slug, assume_role_policy=_LAMBDA_TRUST_POLICY, tags=self._tags, opts=self._child)
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
        self.integrations[route.key] = integration
        self.routes[route.key] = aws.apigatewayv2.Route(
            slug,
            api_id=self.api.id,
            route_key=route.key,
            target=integration.id.apply(lambda integration_id: f"integrations/{integration_id}"),
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

    def _create_http_route(self, route: spec.Route, backend: dict[str, Any]) -> None:
        """The route, served by the HTTP backend: a non-proxy HTTP integration
        that posts the envelope, and one integration response (any 2xx),
        without which API Gateway fails every request after the backend
        answered ("No match for output mapping"), and with which any other
        status refuses a $connect (see channel_server.backend)."""
        slug = f"{self._name}-{route.function}"
        url = pulumi.Output.from_input(backend["url"]).apply(check_backend_url)
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
        }

    def _policy_document(self, function: spec.Function, log_group: aws.cloudwatch.LogGroup) -> pulumi.Output[str]:
        """Least privilege for one function: the DynamoDB actions its handler
        calls on this table and index, the SQS actions on the fan-out queue,
        posting to this stage's connections, writing to its own log group. No
        wildcard actions, no wildcard resources."""
        stage = self._settings.stage_name
        heartbeats = self._settings.heartbeats

        def document(table_arn: str, execution_arn: str, log_group_arn: str, queue_arn: str) -> str:
            statements = []
            table_actions = {*function.table_actions, *(function.heartbeat_table_actions if heartbeats else ())}
            if table_actions:
                statements.append(_allow(table_actions, [table_arn]))
            if function.index_actions:
                statements.append(_allow(function.index_actions, [f"{table_arn}/index/{spec.CHANNEL_INDEX}"]))
            if function.heartbeat_index_actions:
                statements.append(
                    _allow(function.heartbeat_index_actions, [f"{table_arn}/index/{spec.HEARTBEAT_INDEX}"]))
            if function.queue_actions:
                statements.append(_allow(function.queue_actions, [queue_arn]))
            if function.posts:
                statements.append(
                    _allow(["execute-api:ManageConnections"], [f"{execution_arn}/{stage}/POST/@connections/*"])
                )
            statements.append(_allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"]))
            return json.dumps({"Version": "2012-10-17", "Statement": statements})

        return pulumi.Output.all(self.table.arn, self.api.execution_arn, log_group.arn, self._queues[0].arn).apply(
            lambda arns: document(*arns)
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
        # ...and after the invoke permissions, so the stage never switches to a
        # function API Gateway may not call yet.
        deployment = aws.apigatewayv2.Deployment(
            f"{self._name}-deployment",
            api_id=self.api.id,
            description=f"channel-server routes: {', '.join(sorted(self.routes))}",
            triggers={"routes": wiring.apply(lambda rows: json.dumps(rows, sort_keys=True))},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.routes.values(), *self.route_responses.values(), *self.permissions.values(),
                            *self.integration_responses.values()],
            ),
        )
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
            tags=self._tags,
            opts=self._child,
        )
        return deployment, stage


def _index(name: str, hash_key: str, projected: tuple[str, ...]) -> aws.dynamodb.TableGlobalSecondaryIndexArgs:
    """A global secondary index on ``hash_key`` projecting ``projected`` besides the keys."""
    return aws.dynamodb.TableGlobalSecondaryIndexArgs(
        name=name,
        key_schemas=[aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name=hash_key, key_type="HASH")],
        projection_type="INCLUDE",
        non_key_attributes=list(projected),
    )


def _allow(actions: Any, resources: list[str]) -> dict:
    return {"Effect": "Allow", "Action": sorted(actions), "Resource": resources}


__all__ = ["ChannelServer", "ChannelServerArgs", "FanOut", "Heartbeat", "Settings", "TYPE_TOKEN"]
