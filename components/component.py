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

This module holds the class, the table and the API. The handler functions are
built by ``functions``, the routes, deployment and stage by ``routes``, and each
optional part by a builder of its own in ``features``.

Annotations here are real types, not strings (no ``from __future__ import
annotations``): Pulumi's schema analyzer reads ``__init__``'s ``args``
annotation and the class's public annotations (its outputs) without
evaluating them.
"""

from typing import TYPE_CHECKING, Optional

import pulumi
import pulumi_aws as aws

from . import archive, features
from .args import ChannelServerArgs, ChannelServerArgsError, Settings, resolve
from .features import AccessLogs, ConnectAuthorizer, CustomDomain, FanOutResources, Heartbeat, ServerPublishing
from .functions import Functions
from .handlers import spec
from .routes import Routes, create_http_routes, create_lambda_routes, create_stage
from .scope import Scope

#: The Pulumi package name (``plugin/``, ``pulumi package add``) and the component's type token.
PACKAGE_NAME = "channel-server"
TYPE_TOKEN = f"{PACKAGE_NAME}:index:ChannelServer"


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
        fanout: FanOutResources | None
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
        self._scope = scope = Scope.of(self, name, settings)
        self._publish_grants: dict[int, aws.iam.RolePolicyAttachment] = {}

        self.table = create_table(scope)
        self.api = create_api(scope)
        self.management_endpoint = self.api.api_endpoint.apply(
            lambda endpoint: spec.management_endpoint(endpoint, settings.stage_name)
        )
        self.execute_api_url = self.api.api_endpoint.apply(lambda endpoint: f"{endpoint}/{settings.stage_name}")
        authorizer = None if settings.authorizer is None else features.create_authorizer(
            scope, self.api, settings.authorizer)
        self.authorizer = authorizer.authorizer if authorizer else None
        self.authorizer_permission = authorizer.permission if authorizer else None
        self.fanout = self.heartbeat = self.server_publishing = None
        if settings.backend is not None:
            wiring = create_http_routes(scope, self.api, settings.backend, authorizer)
        else:
            wiring = self._create_handlers(authorizer)
        self._keep_routes(wiring)
        self.access_logs = features.create_access_logs(scope) if settings.access_logs else None
        self.deployment, self.stage = create_stage(scope, self.api, wiring, authorizer, self.access_logs)
        self.domain = None if settings.domain is None else features.create_domain(
            scope, self.api, self.stage, settings.domain)
        self.url = self.execute_api_url if self.domain is None else self.domain.url
        self.domain_target = None if self.domain is None else self.domain.target
        self.alarms = {} if settings.alarm_topic_arn is None else features.create_alarms(
            scope, settings.alarm_topic_arn, self._every_function(), self.api, self.stage)
        self._register_outputs()

    def _create_handlers(self, authorizer: ConnectAuthorizer | None) -> Routes:
        """The handler functions: one per route, the fan-out's, and those of
        heartbeats and server publishing when they are on."""
        settings = self._scope.settings
        queue, dead_letters = features.create_fanout_queues(self._scope)
        functions = Functions(self._scope, archive.handler_archive(), self.table, self.api, self.management_endpoint,
                              queue)
        wiring = create_lambda_routes(functions, authorizer)
        self.fanout = features.create_fanout(functions, dead_letters)
        if settings.heartbeats:
            self.heartbeat = features.create_heartbeat(functions)
        if settings.server_publish:
            self.server_publishing = features.create_server_publishing(functions)
        return wiring

    def _keep_routes(self, wiring: Routes) -> None:
        """The routes' resources as the component's attributes, by route key."""
        self.integrations, self.integration_responses = wiring.integrations, wiring.integration_responses
        self.routes, self.route_responses = wiring.routes, wiring.route_responses
        self.permissions, self.functions, self.roles = wiring.permissions, wiring.functions, wiring.roles
        self.policies, self.log_groups = wiring.policies, wiring.log_groups

    def _every_function(self) -> dict[str, aws.lambda_.Function]:
        """The route functions by route key, then the other functions by name (what the alarms watch)."""
        every = dict(self.functions)
        if self.fanout is not None:
            every[spec.FANOUT.function] = self.fanout.function
        if self.heartbeat is not None:
            every[spec.HEARTBEAT.function] = self.heartbeat.function
        if self.server_publishing is not None:
            every[spec.SERVER_PUBLISH.function.replace("_", "-")] = self.server_publishing.function
        return every

    def _register_outputs(self) -> None:
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

    def grant_publish(self, role: aws.iam.Role) -> aws.iam.RolePolicyAttachment:
        """Let ``role`` (an ``aws.iam.Role`` of the program) publish through
        the server publish endpoint, and do nothing else here: attaches
        ``publish_policy_arn`` to it. Granting the same role again returns
        the same attachment. Other languages attach that output themselves."""
        if self.server_publishing is None:
            raise ChannelServerArgsError(f"ChannelServer {self._scope.name}: grant_publish needs server_publish=True "
                                         "(serverPublish in the stack's config)")
        if not isinstance(role, aws.iam.Role):
            raise TypeError(f"ChannelServer {self._scope.name}: grant_publish takes an aws.iam.Role, not "
                            f"{type(role).__name__}; for a role defined elsewhere, attach publish_policy_arn to it "
                            "with aws.iam.RolePolicyAttachment")
        granted = self._publish_grants.get(id(role))
        if granted is None:
            # named after the component and the role's Pulumi name, a child of the component
            granted = self._publish_grants[id(role)] = aws.iam.RolePolicyAttachment(
                f"{self._scope.name}-publish-{role.pulumi_resource_name}",
                role=role.name,
                policy_arn=self.server_publishing.callers_policy.arn,
                opts=self._scope.child,
            )
        return granted


def create_table(scope: Scope) -> aws.dynamodb.Table:
    """The connections table: on demand, its keys, the channel and heartbeat indexes, TTL."""
    sharded = scope.settings.channel_index_shards > 1
    return aws.dynamodb.Table(
        f"{scope.name}-connections",
        name=scope.settings.table_name,  # None: auto-named, so stacks never collide
        billing_mode="PAY_PER_REQUEST",
        hash_key=spec.CONNECTION_ID,
        range_key=spec.CHANNEL_ID,
        attributes=[
            aws.dynamodb.TableAttributeArgs(name=spec.CONNECTION_ID, type="S"),
            aws.dynamodb.TableAttributeArgs(name=spec.CHANNEL_ID, type="S"),
            aws.dynamodb.TableAttributeArgs(name=spec.HEARTBEAT_SHARD, type="N"),
            *([aws.dynamodb.TableAttributeArgs(name=spec.CHANNEL_SHARD, type="S")] if sharded else []),
        ],
        global_secondary_indexes=[
            # a channel's members: one partition per channel, or channelIndexShards of them
            _index(scope.settings.channel_index, spec.CHANNEL_SHARD if sharded else spec.CHANNEL_ID,
                   spec.INDEX_PROJECTED),
            # sparse: only live state rows carry the shard, and only while
            # heartbeats are on; empty, it costs nothing
            _index(spec.HEARTBEAT_INDEX, spec.HEARTBEAT_SHARD, spec.HEARTBEAT_INDEX_PROJECTED),
        ],
        # rows of connections whose $disconnect never arrived expire after
        # API Gateway's 2-hour connection limit
        ttl=aws.dynamodb.TableTtlArgs(attribute_name=spec.EXPIRES_AT, enabled=True),
        point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
        deletion_protection_enabled=scope.settings.deletion_protection,
        tags=scope.tags,
        opts=scope.options(retain_on_delete=scope.settings.retain_on_delete or None),
    )


def _index(name: str, hash_key: str, projected: tuple[str, ...]) -> aws.dynamodb.TableGlobalSecondaryIndexArgs:
    """A global secondary index on ``hash_key`` projecting ``projected`` besides the keys."""
    return aws.dynamodb.TableGlobalSecondaryIndexArgs(
        name=name,
        key_schemas=[aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name=hash_key, key_type="HASH")],
        projection_type="INCLUDE",
        non_key_attributes=list(projected),
    )


def create_api(scope: Scope) -> aws.apigatewayv2.Api:
    """The WebSocket API, routing on each message's ``type``."""
    return aws.apigatewayv2.Api(
        f"{scope.name}-api",
        protocol_type="WEBSOCKET",
        route_selection_expression=spec.ROUTE_SELECTION_EXPRESSION,
        tags=scope.tags,
        opts=scope.child,
    )


__all__ = ["AccessLogs", "ChannelServer", "ChannelServerArgs", "CustomDomain", "FanOutResources", "Heartbeat",
           "ServerPublishing", "Settings", "TYPE_TOKEN"]
