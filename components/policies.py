"""The component's IAM policy documents, as pure functions of plain values (ARNs, the
options, a function's spec entry): least privilege, each named resource one by one.

``functions`` and ``features`` apply them to their resources' outputs."""

from __future__ import annotations

import json
from typing import Any, Iterable

from .handlers import spec

VERSION = "2012-10-17"
#: What a function needs to send traces with X-Ray active tracing.
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")


def allow(actions: Iterable[str], resources: list[str]) -> dict[str, Any]:
    """One Allow statement (its actions sorted, so documents compare as text)."""
    return {"Effect": "Allow", "Action": sorted(actions), "Resource": resources}


def document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": VERSION, "Statement": statements})


def trust_policy(service: str, account: str | None = None) -> str:
    """The assume-role policy that lets ``service`` (``lambda.amazonaws.com``)
    take a role; with ``account``, only on behalf of that account (the
    confused-deputy guard AWS documents)."""
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if account is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account}}
    return document([statement])


def invoke_policy(function_arn: str) -> str:
    """Invoking that one function (the heartbeat schedule's role)."""
    return document([allow(["lambda:InvokeFunction"], [function_arn])])


def publish_policy_document(function_arn: str) -> str:
    """What a backend needs to publish: invoke the server publish function
    through its IAM-authenticated URL, on that function only. Function URLs
    created since October 2025 need ``lambda:InvokeFunction`` beside
    ``lambda:InvokeFunctionUrl`` (Lambda's "Control access to Lambda function
    URLs"); the condition key ``lambda:InvokedViaFunctionUrl`` (the Service
    Authorization Reference lists it for InvokeFunction) keeps it to
    invocations through the URL, so the function cannot be invoked directly."""
    return document([
        {**allow(["lambda:InvokeFunctionUrl"], [function_arn]),
         "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}},
        {**allow(["lambda:InvokeFunction"], [function_arn]),
         "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}},
    ])


def function_policy(function: spec.Function, *, table_arn: str, execution_arn: str, log_group_arn: str,
                    queue_arn: str, stage: str, heartbeats: bool = False, history: bool = False,
                    presence: bool = False, tracing: bool = False, channel_index: str = spec.CHANNEL_INDEX) -> str:
    """Least privilege for one function: the DynamoDB actions its handler
    calls on this table and its indexes (those of the options that are on;
    ``channel_index`` is the channel index's name), the SQS actions on the
    fan-out queue, posting to this stage's connections (and taking each
    post's place in the account budget, a row of the table), writing to its
    own log group. No wildcard actions; no wildcard resources but X-Ray's,
    which has no resource-level permissions."""
    statements = []
    posts = function.posts or (history and function.history_posts) or (presence and function.presence.posts)
    table_actions = {*function.table_actions, *(function.heartbeat_table_actions if heartbeats else ()),
                     *(function.history_table_actions if history else ()),
                     *(function.presence.table_actions if presence else ()),
                     *(spec.TAKE_POSTS if posts else ())}
    if table_actions:
        statements.append(allow(table_actions, [table_arn]))
    if function.index_actions:
        statements.append(allow(function.index_actions, [f"{table_arn}/index/{channel_index}"]))
    if function.heartbeat_index_actions:
        statements.append(allow(function.heartbeat_index_actions, [f"{table_arn}/index/{spec.HEARTBEAT_INDEX}"]))
    if function.queue_actions:
        statements.append(allow(function.queue_actions, [queue_arn]))
    if posts:
        statements.append(allow(["execute-api:ManageConnections"], [f"{execution_arn}/{stage}/POST/@connections/*"]))
    statements.append(allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"]))
    if tracing:
        statements.append(allow(XRAY_ACTIONS, ["*"]))
    return document(statements)
