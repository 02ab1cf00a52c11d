"""``channel_server.policies`` on plain values: each function's policy is what
its spec entry says, for the options that are on, and nothing else. (That the
handlers call exactly these actions is tests/test_security.py's concern.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from channel_server.handlers import spec
from channel_server.policies import XRAY_ACTIONS, function_policy, invoke_policy, trust_policy

ARNS = {"table_arn": "arn:aws:dynamodb:eu-west-1:123456789012:table/t",
        "execution_arn": "arn:aws:execute-api:eu-west-1:123456789012:abc",
        "log_group_arn": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/f",
        "queue_arn": "arn:aws:sqs:eu-west-1:123456789012:q"}
ROUTE = {route.key: route for route in spec.ROUTES}
POSTS = {"Effect": "Allow", "Action": ["execute-api:ManageConnections"],
         "Resource": ["arn:aws:execute-api:eu-west-1:123456789012:abc/dev/POST/@connections/*"]}


def statements(function: spec.Function, **options: bool) -> list[dict]:
    arguments: dict[str, Any] = {**ARNS, **options}  # the ARNs (str) and the options (bool), by name
    return json.loads(function_policy(function, stage="dev", **arguments))["Statement"]


def on_table(function: spec.Function, **options: bool) -> list[str]:
    return next((s["Action"] for s in statements(function, **options) if s["Resource"] == [ARNS["table_arn"]]), [])


def test_ping_may_only_write_its_own_logs() -> None:
    assert statements(ROUTE["ping"]) == [
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [ARNS["log_group_arn"] + ":*"]}]


def test_a_join_reads_history_and_posts_only_with_history_on() -> None:
    join = ROUTE[spec.JOIN]
    assert "dynamodb:Query" not in on_table(join) and POSTS not in statements(join)
    assert "dynamodb:Query" in on_table(join, history=True) and POSTS in statements(join, history=True)


def test_a_publish_keeps_its_message_only_with_history_on() -> None:
    publish = ROUTE[spec.PUBLISH]
    assert "dynamodb:PutItem" not in on_table(publish)
    assert "dynamodb:PutItem" in on_table(publish, history=True)


@pytest.mark.parametrize("function", [*spec.ROUTES, spec.FANOUT, spec.HEARTBEAT, spec.SERVER_PUBLISH],
                         ids=lambda f: f.function)
def test_no_wildcard_but_x_rays_and_x_ray_only_with_tracing(function: spec.Function) -> None:
    every = {"heartbeats": True, "history": True, "presence": True}
    assert all("*" not in s["Resource"] for s in statements(function, **every))
    assert [s for s in statements(function, **every, tracing=True) if s["Resource"] == ["*"]] == [
        {"Effect": "Allow", "Action": sorted(XRAY_ACTIONS), "Resource": ["*"]}]


def test_the_trust_and_invoke_policies() -> None:
    (trust,) = json.loads(trust_policy("scheduler.amazonaws.com", account="123456789012"))["Statement"]
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert json.loads(invoke_policy("arn:f"))["Statement"] == [
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": ["arn:f"]}]
