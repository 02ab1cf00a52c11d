"""The handler functions: each with its own role, least-privilege inline policy and JSON log
group, all from the one handler archive with the one environment the handlers read.

The policy is ``policies.function_policy``; the environment's names are ``handlers/spec.py``'s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import pulumi
import pulumi_aws as aws

from . import policies
from .handlers import spec
from .policies import trust_policy
from .scope import Scope


class HandlerFunction(NamedTuple):
    """One function and what only it uses."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    log_group: aws.cloudwatch.LogGroup


@dataclass(frozen=True)
class Functions:
    """Builds handler functions against the component's table, API and
    fan-out queue, which every function's environment and policy name."""

    scope: Scope
    code: pulumi.AssetArchive
    """The handler archive (``archive.handler_archive``), shared by every function."""
    table: aws.dynamodb.Table
    api: aws.apigatewayv2.Api
    management_endpoint: pulumi.Output[str]
    queue: aws.sqs.Queue
    """The fan-out queue: publish hands chunks to it, every function is told its URL."""

    def create(self, definition: spec.Function, timeout: int | None = None) -> HandlerFunction:
        """The function ``definition`` describes, with its role, policy and log group."""
        s = self.scope.settings
        slug = self.scope.slug(definition)
        log_group = aws.cloudwatch.LogGroup(
            slug,
            name_prefix=f"/aws/lambda/{slug}-",
            retention_in_days=s.log_retention_days,
            tags=self.scope.tags,
            opts=self.scope.child,
        )
        role = aws.iam.Role(slug, assume_role_policy=trust_policy("lambda.amazonaws.com"), tags=self.scope.tags,
                            opts=self.scope.child)
        policy = aws.iam.RolePolicy(
            slug,
            role=role.id,
            policy=self.policy_document(definition, log_group),
            opts=self.scope.child,
        )
        function = aws.lambda_.Function(
            slug,
            runtime=s.lambda_runtime,
            architectures=[s.lambda_architecture],
            handler=definition.handler,
            code=self.code,
            role=role.arn,
            # a fan-out is bound by CPU, and Lambda's CPU grows with memory
            memory_size=s.publish_memory_mb if definition.fans_out else s.lambda_memory_mb,
            timeout=timeout or s.lambda_timeout_seconds,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=self.environment()),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active") if s.tracing else None,
            tags=self.scope.tags,
            # the role must be able to write logs before the first invocation
            opts=self.scope.options(depends_on=[policy]),
        )
        return HandlerFunction(function, role, policy, log_group)

    def environment(self) -> dict[str, Any]:
        """Every function's environment: the settings the handlers read (``spec.ENV_*``)."""
        s = self.scope.settings
        return {
            spec.ENV_TABLE_NAME: self.table.name,
            spec.ENV_INDEX_NAME: s.channel_index,
            spec.ENV_POSTS_PER_SECOND: str(s.posts_per_second),
            **({spec.ENV_CHANNEL_INDEX_SHARDS: str(s.channel_index_shards)} if s.channel_index_shards > 1 else {}),
            spec.ENV_MANAGEMENT_ENDPOINT: self.management_endpoint,
            spec.ENV_CHANNEL_ID_PATTERN: s.channel_id_pattern,
            spec.ENV_MAX_MESSAGE_BYTES: str(s.max_message_bytes),
            spec.ENV_POSTS_IN_FLIGHT: str(s.posts_in_flight),
            spec.ENV_INLINE_FANOUT_LIMIT: str(s.inline_fanout_limit),
            spec.ENV_FANOUT_QUEUE_URL: self.queue.url,
            **({spec.ENV_HEARTBEATS: "1"} if s.heartbeats else {}),
            **({spec.ENV_HISTORY_SECONDS: str(s.history_seconds)} if s.history_seconds else {}),
            **({spec.ENV_METRICS: "1", spec.ENV_SERVER_NAME: self.scope.name} if s.metrics else {}),
            **({spec.ENV_PRESENCE_MAX_MEMBERS: str(s.presence_max_members)} if s.presence else {}),
        }

    def policy_document(self, definition: spec.Function, log_group: aws.cloudwatch.LogGroup) -> pulumi.Output[str]:
        """Least privilege for one function (:func:`policies.function_policy`)."""
        s = self.scope.settings
        options: dict[str, Any] = {"stage": s.stage_name, "heartbeats": s.heartbeats, "history": s.history_seconds > 0,
                                   "presence": s.presence, "tracing": s.tracing, "channel_index": s.channel_index}
        return pulumi.Output.all(self.table.arn, self.api.execution_arn, log_group.arn, self.queue.arn).apply(
            lambda arns: policies.function_policy(definition, table_arn=arns[0], execution_arn=arns[1],
                                                  log_group_arn=arns[2], queue_arn=arns[3], **options)
        )
