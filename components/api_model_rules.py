"""AWS's rules beyond its models' shapes, and the models themselves: the rules AWS
documents for a member (with their sources), IAM policy documents and their actions.

:mod:`channel_server.api_models` applies them; ``model``, ``member_shape`` and
``documentation`` read botocore's service models, which need botocore (the
``check`` extra).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import resource_types as rt
from .api_model_table import API_ID
from .backend import MAX_TIMEOUT_MS, MIN_TIMEOUT_MS

if TYPE_CHECKING:
    from botocore.model import ServiceModel, Shape

    from .mocks import Deployment, Registered


# --- botocore's models --------------------------------------------------------------


@functools.cache
def session() -> Any:
    """botocore's session, which reads the models (with a pip command when botocore is missing)."""
    try:
        import botocore.session
    except ImportError as error:
        from .extras import install_command

        raise ImportError(f"channel_server.api_models reads botocore's API models: {install_command('check')}") \
            from error
    return botocore.session.get_session()


@functools.cache
def model(service: str) -> "ServiceModel":
    """botocore's model of ``service`` (``apigatewayv2``)."""
    return session().get_service_model(service)


def member_shape(service: str, operation: str, path: str, shape_name: str | None) -> "Shape":
    """The shape at ``path`` in ``operation``'s input (or in the shape ``shape_name``)."""
    service_model = model(service)
    shape = service_model.shape_for(shape_name) if shape_name else service_model.operation_model(operation).input_shape
    for step in re.findall(r"[^.\[\]{}]+|\[\]|\{\}", path):
        if step == "[]":
            shape = shape.member
        elif step == "{}":
            shape = shape.value
        else:
            members = getattr(shape, "members", {})
            if step not in members:
                raise KeyError(f"{service} {shape_name or operation} has no member {path!r} ({step!r})")
            shape = members[step]
    return shape


def documentation(service: str, operation: str, member: str) -> str:
    """The model's documentation of a member of ``operation``'s input."""
    return str(member_shape(service, operation, member, None).documentation)


def integral(value: Any) -> bool:
    """A whole number (Pulumi sends every number as a float; a digit string too)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return value.isdigit()
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


# --- rules AWS documents that its models do not encode -----------------------------


@dataclass(frozen=True)
class Rule:
    """A rule AWS documents for an API member beyond what the model encodes."""

    says: str
    """The rule, as a finding states it (``at most 29,000 ms for WebSocket APIs``)."""
    source: str
    """Where it is written: a documentation URL, or ``model`` for the member's
    own documentation in the botocore model (where :attr:`quote` must appear)."""
    test: Callable[[Any, "Context"], bool]
    """True when the value keeps the rule."""
    quote: str = ""
    """Words of the source that state the rule (tests check a model's still do)."""
    applies: Callable[["Context"], bool] = lambda context: True
    """False where the rule does not apply (a WebSocket API's rule, on an HTTP API)."""
    values: Callable[[], Iterable[Any]] | None = None
    """The allowed values, listed after :attr:`says` in a finding (read from the model)."""


@dataclass(frozen=True)
class Context:
    """What a rule may need besides the value: the resource and its deployment."""

    resource: "Registered"
    deployment: "Deployment"

    def api_protocol(self) -> str | None:
        """The protocol of the API the resource belongs to (by its ``apiId``)."""
        api_id = self.resource.inputs.get(API_ID)
        for api in self.deployment.of_type(rt.API):
            if api.id == api_id:
                return str(api.inputs.get("protocolType"))
        return None


def _rate_or_cron(value: Any, context: Context) -> bool:
    text = str(value)
    rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", text)
    if rate:
        return int(rate.group(1)) > 0
    cron = re.fullmatch(r"cron\(([^()]*)\)", text)
    if cron:
        return len(cron.group(1).split()) == 6
    return re.fullmatch(r"at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)", text) is not None


def _rate_number(value: Any) -> bool:
    rate = re.fullmatch(r"rate\((\d+) (minute|hour|day)(s?)\)", str(value))
    return rate is None or (rate.group(1) == "1") == (rate.group(3) == "")


@functools.cache
def retention_days() -> tuple[int, ...]:
    """The retention values CloudWatch Logs allows, as its model's documentation
    of ``PutRetentionPolicy.retentionInDays`` lists them (its shape has no enum)."""
    text = documentation("logs", "PutRetentionPolicy", "retentionInDays")
    listed = text.partition("Possible values are:")[2].partition(".")[0]
    return tuple(int(number) for number in re.findall(r"\d+", listed))


def _environment_bytes(value: Any) -> int:
    return sum(len(str(key).encode()) + len(str(item).encode()) for key, item in dict(value).items())


_LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html (read 2026-12-08)"

#: (service, operation, member path) → the documented rules for that member.
DOCUMENTED_RULES: dict[tuple[str, str, str], tuple[Rule, ...]] = {
    ("apigatewayv2", "CreateIntegration", "TimeoutInMillis"): (
        Rule(f"between {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS:,} ms for a WebSocket API", "model",
             lambda value, context: MIN_TIMEOUT_MS <= value <= MAX_TIMEOUT_MS,
             quote="between 50 and 29,000 milliseconds for WebSocket APIs",
             applies=lambda context: context.api_protocol() == "WEBSOCKET"),
    ),
    ("logs", "PutRetentionPolicy", "retentionInDays"): (
        Rule("one of the values the documentation lists, or 0 (pulumi-aws: never expire, no retention policy)",
             "model", lambda value, context: value == 0 or value in retention_days(), quote="Possible values are:",
             values=retention_days),
    ),
    ("scheduler", "CreateSchedule", "ScheduleExpression"): (
        Rule("at(yyyy-mm-ddThh:mm:ss), rate(value unit) with unit minute(s), hour(s) or day(s), "
             "or cron(six fields)", "model", _rate_or_cron,
             quote="<code>minute</code> | <code>minutes</code> | <code>hour</code>"),
        Rule("a singular unit for a rate of 1 and a plural one above (rate(1 minute), rate(5 minutes))",
             "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rate-expressions.html (read 2026-12-08; "
             "EventBridge's rate expressions, which Scheduler's are)", lambda value, context: _rate_number(value)),
    ),
    ("lambda", "CreateFunction", "FunctionName"): (
        Rule("a function's name (not its ARN) is at most 64 characters", "model",
             lambda value, context: ":" in str(value) or len(str(value)) <= 64,
             quote="it is limited to 64 characters in length"),
    ),
    ("sqs", "CreateQueue", "QueueName"): (
        Rule("at most 80 characters: letters, digits, '-' and '_' (and '.fifo' at the end of a FIFO queue's)",
             "model", lambda value, context: re.fullmatch(r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo",
                                                          str(value)) is not None,
             quote="A queue name can have up to 80 characters."),
    ),
    ("lambda", "CreateFunction", "Timeout"): (
        # The model's documentation says 1,800 s and its shape allows 5,400 (Lambda Managed
        # Instances' asynchronous invocations); the developer guide says 900 for the rest.
        Rule("at most 900 seconds (15 minutes) without Lambda Managed Instances",
             "https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html (read 2026-12-08)",
             lambda value, context: value <= 900,
             applies=lambda context: "capacityProviderConfig" not in context.resource.inputs),
    ),
    ("lambda", "CreateFunction", "MemorySize"): (
        Rule("at most 10,240 MB", _LAMBDA_QUOTAS, lambda value, context: value <= 10_240),
    ),
    ("lambda", "CreateFunction", "Environment.Variables"): (
        Rule("4 KB for all environment variables together", _LAMBDA_QUOTAS,
             lambda value, context: _environment_bytes(value) <= 4096),
    ),
    ("sqs", "CreateQueue", "Attributes{MessageRetentionPeriod}"): (
        Rule("an integer from 60 to 1,209,600 seconds", "model",
             lambda value, context: integral(value) and 60 <= int(value) <= 1_209_600,
             quote="An integer from 60 seconds (1 minute) to 1,209,600 seconds (14 days)"),
    ),
    ("sqs", "CreateQueue", "Attributes{VisibilityTimeout}"): (
        Rule("an integer from 0 to 43,200 seconds", "model",
             lambda value, context: integral(value) and 0 <= int(value) <= 43_200,
             quote="An integer from 0 to 43,200 (12 hours)"),
    ),
    ("sqs", "CreateQueue", "Attributes{RedrivePolicy}"): (
        Rule("a JSON object with deadLetterTargetArn (an SQS queue's ARN) and maxReceiveCount (a positive "
             "integer)", "model", lambda value, context: _redrive_policy(value),
             quote="deadLetterTargetArn"),
    ),
}


def _redrive_policy(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"deadLetterTargetArn", "maxReceiveCount"}
            and str(value["deadLetterTargetArn"]).startswith("arn:")
            and ":sqs:" in str(value["deadLetterTargetArn"])
            and integral(value["maxReceiveCount"]) and int(value["maxReceiveCount"]) >= 1)


# --- IAM actions ------------------------------------------------------------------

_AUTHORIZATION_REFERENCE = "https://docs.aws.amazon.com/service-authorization/latest/reference/"

#: IAM actions that are not an operation in the service's model (a permission
#: of its own, or one that covers other operations), by the page of the Service
#: Authorization Reference (read 2026-12-08) that lists them.
IAM_ONLY_ACTIONS_BY_SOURCE: dict[str, tuple[str, ...]] = {
    # InvokeFunction is the Invoke operation's action
    "list_awslambda.html": ("lambda:InvokeFunction", "lambda:InvokeFunctionUrl"),
    "list_apigatewaymanagementapi.html": ("execute-api:ManageConnections", "execute-api:Invoke",
                                          "execute-api:InvalidateCache"),
    "list_amazonapigatewaymanagement.html": ("apigateway:GET", "apigateway:POST", "apigateway:PUT",
                                             "apigateway:PATCH", "apigateway:DELETE"),
    "list_awsidentityandaccessmanagementiam.html": ("iam:PassRole",),
    "list_awssecuritytokenservice.html": ("sts:TagSession", "sts:SetSourceIdentity"),
    "list_amazondynamodb.html": ("dynamodb:ConditionCheckItem", "dynamodb:PartiQLSelect", "dynamodb:PartiQLInsert",
                                 "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete"),
    "list_amazons3.html": ("s3:ListBucket", "s3:ListAllMyBuckets", "s3:ListBucketVersions",
                           "s3:ListBucketMultipartUploads", "s3:GetObjectVersion", "s3:DeleteObjectVersion"),
}
#: Each IAM-only action (lower case: IAM's action names are case-insensitive) → its source.
IAM_ONLY_ACTIONS: dict[str, str] = {action.lower(): _AUTHORIZATION_REFERENCE + page
                                    for page, actions in IAM_ONLY_ACTIONS_BY_SOURCE.items() for action in actions}
#: The policy language versions IAM accepts (a document without one is read as 2008-10-17).
POLICY_VERSIONS = ("2012-10-17", "2008-10-17")


def policy_problems(text: Any) -> list[str]:
    """What is wrong with a policy document: JSON, version, effects, actions."""
    try:
        document = json.loads(text) if isinstance(text, str) else text
    except ValueError as error:
        return [f"not valid JSON ({error})"]
    if not isinstance(document, dict):
        return ["not a JSON object"]
    problems = []
    if document.get("Version", POLICY_VERSIONS[1]) not in POLICY_VERSIONS:
        problems.append(f"Version is {document.get('Version')!r}, not one of {', '.join(POLICY_VERSIONS)}")
    statements = document.get("Statement")
    statements = [statements] if isinstance(statements, dict) else statements
    if not isinstance(statements, list) or not statements:
        return [*problems, "no Statement"]
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict):
            problems.append(f"Statement[{index}] is not an object")
            continue
        if statement.get("Effect") not in ("Allow", "Deny"):
            problems.append(f"Statement[{index}].Effect is {statement.get('Effect')!r}, not Allow or Deny")
        actions = statement.get("Action", statement.get("NotAction"))
        for action in [actions] if isinstance(actions, str) else list(actions or []):
            why = _unknown_action(str(action))
            if why:
                problems.append(f"Statement[{index}] action {action!r}: {why}")
    return problems


def _unknown_action(action: str) -> str | None:
    if action == "*" or action.lower() in IAM_ONLY_ACTIONS:
        return None
    prefix, colon, name = action.partition(":")
    if not colon or not name:
        return "not service:Action"
    pattern = re.compile(re.escape(name).replace(r"\*", ".*").replace(r"\?", "."), re.IGNORECASE)

    def has_it(service: str) -> bool:
        return any(pattern.fullmatch(operation) for operation in model(service).operation_names)

    # the service of the prefix's name first; then those that sign as it (states is
    # stepfunctions; dynamodb is dynamodbstreams too), read from every model only then
    named = [prefix] if prefix in session().get_available_services() else []
    if any(has_it(service) for service in named):
        return None
    others = [service for service in _prefix_index().get(prefix, ()) if service not in named]
    if any(has_it(service) for service in others):
        return None
    if not named + others:
        return f"no AWS service in botocore's models has the IAM prefix {prefix!r}"
    return (f"no operation {name!r} in the models of {', '.join(named + others)}, nor in IAM_ONLY_ACTIONS "
            "(add an IAM-only action there, with its source)")


@functools.cache
def _prefix_index() -> dict[str, tuple[str, ...]]:
    """Every service by its signing name and endpoint prefix (about 3 s: every model read)."""
    botocore_session = session()
    loader = botocore_session.get_component("data_loader")
    index: dict[str, list[str]] = {}
    for service in botocore_session.get_available_services():
        metadata = loader.load_service_model(service, "service-2")["metadata"]
        for prefix in {metadata.get("signingName"), metadata.get("endpointPrefix")} - {None}:
            index.setdefault(prefix, []).append(str(service))
    return {prefix: tuple(services) for prefix, services in index.items()}
