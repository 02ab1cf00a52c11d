"""Check what a Pulumi program registers against AWS's own API models, before any
``pulumi up``: each input of each resource against the API member it becomes.

Pulumi's mocks accept any value, so a wrong enum, an out-of-range timeout or a
malformed schedule would pass every test and fail minutes into a deployment.
botocore ships every service's model (the rules each API enforces: types,
enums, minimum and maximum, patterns, lengths, required members), and this
module holds each registered input to them::

    from channel_server.mocks import deploy
    from channel_server.api_models import check_deployment

    findings = check_deployment(deploy(lambda: ChannelServer("chat")))
    assert not findings, "\\n".join(map(str, findings))

:data:`RESOURCES` is the one table: for each resource type the component
registers, the API call that creates it and, for each pulumi-aws property, the
member of that call it becomes (or why it becomes none). A property the table
does not map, and a resource type it does not know, are findings too, so nothing
new slips past unchecked. :data:`DOCUMENTED_RULES` adds the few rules that AWS
documents but its models do not encode (a WebSocket integration's 29-second
timeout, log retention's allowed values, a schedule's rate units, Lambda's
timeout); each says where it is written. Policy documents are parsed
and each action is looked up in its service's model.

It needs botocore (the ``check`` extra). ``python -m channel_server.api_models``
checks a Pulumi project's stack the same way.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from . import resource_types as rt
from .backend import MAX_TIMEOUT_MS, MIN_TIMEOUT_MS

if TYPE_CHECKING:
    from botocore.model import ServiceModel, Shape

    from .mocks import Deployment, Registered


# --- what a property becomes ------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """The API member a property becomes: a path in the call's input
    (``GlobalSecondaryIndexes[].KeySchema[].AttributeName``: ``[]`` steps into a
    list's items, ``{}`` into a map's values), in ``operation`` when another
    call than the resource's own sets it (a table's TTL), or in a named
    ``shape`` (``Account.cloudwatchRoleArn``) when the call takes patches."""

    path: str
    operation: str | None = None
    shape: str | None = None
    #: The value is a policy document (JSON): parsed, and its actions looked up.
    policy: bool = False


@dataclass(frozen=True)
class Entries:
    """A map property that becomes a list of name/value pairs (``tags`` →
    ``Tags[].Key``/``Tags[].Value``; an alarm's ``dimensions``)."""

    key: str
    value: str


@dataclass(frozen=True)
class Attribute:
    """A property that becomes one entry of a string-to-string attribute map
    (an SQS queue's ``Attributes``): the key must be one of the map's keys in
    the model, and the value is checked by the documented rules for that key."""

    map: str
    key: str
    json: bool = False


@dataclass(frozen=True)
class NotSent:
    """A property no API member receives, and why (Pulumi's own, such as a
    deployment's ``triggers``)."""

    why: str


Target = Member | Entries | Attribute | NotSent


@dataclass(frozen=True)
class Resource:
    """How one resource type reaches AWS: the call that creates it and what
    each property becomes."""

    service: str
    """botocore's name of the service (``apigatewayv2``)."""
    operation: str
    """The call that creates the resource (``CreateIntegration``)."""
    properties: Mapping[str, Target]
    """Each pulumi-aws property (camelCase, as registered; ``[]`` for a list's
    items) → what it becomes."""
    filled: Mapping[str, str] = field(default_factory=dict)
    """Required members no property sets, each with who sets it (the provider
    names a resource from its Pulumi name, for instance)."""


def _tags_map(member: str = "Tags") -> Member:
    return Member(member)


def _tags_list(member: str = "Tags") -> Entries:
    return Entries(f"{member}[].Key", f"{member}[].Value")


_AUTO_NAMED = "pulumi-aws names the resource from its Pulumi name (auto-naming)"
_API_ID = "apiId"

#: Each resource type the component registers → its API call and the member
#: each of its properties becomes. The properties are pulumi-aws 7's
#: (https://www.pulumi.com/registry/packages/aws/api-docs/), the members
#: botocore's; a property not here fails :func:`check_deployment`.
RESOURCES: dict[str, Resource] = {
    # --- API Gateway v2 ---
    rt.API: Resource("apigatewayv2", "CreateApi", {
        "protocolType": Member("ProtocolType"),
        "routeSelectionExpression": Member("RouteSelectionExpression"),
        "description": Member("Description"),
        "name": Member("Name"),
        "tags": _tags_map(),
    }, filled={"Name": _AUTO_NAMED}),
    rt.ROUTE: Resource("apigatewayv2", "CreateRoute", {
        _API_ID: Member("ApiId"),
        "apiKeyRequired": Member("ApiKeyRequired"),
        "operationName": Member("OperationName"),
        "routeKey": Member("RouteKey"),
        "target": Member("Target"),
        "authorizationType": Member("AuthorizationType"),
        "authorizerId": Member("AuthorizerId"),
        "routeResponseSelectionExpression": Member("RouteResponseSelectionExpression"),
    }),
    rt.ROUTE_RESPONSE: Resource("apigatewayv2", "CreateRouteResponse", {
        _API_ID: Member("ApiId"),
        "routeId": Member("RouteId"),
        "routeResponseKey": Member("RouteResponseKey"),
    }),
    rt.INTEGRATION: Resource("apigatewayv2", "CreateIntegration", {
        _API_ID: Member("ApiId"),
        "integrationType": Member("IntegrationType"),
        "integrationMethod": Member("IntegrationMethod"),
        "integrationUri": Member("IntegrationUri"),
        "timeoutMilliseconds": Member("TimeoutInMillis"),
        "passthroughBehavior": Member("PassthroughBehavior"),
        "requestTemplates": Member("RequestTemplates"),
        "templateSelectionExpression": Member("TemplateSelectionExpression"),
        "contentHandlingStrategy": Member("ContentHandlingStrategy"),
        "requestParameters": Member("RequestParameters"),
        "description": Member("Description"),
        "credentialsArn": Member("CredentialsArn"),
        "payloadFormatVersion": Member("PayloadFormatVersion"),
        "connectionType": Member("ConnectionType"),
        "connectionId": Member("ConnectionId"),
    }),
    rt.INTEGRATION_RESPONSE: Resource("apigatewayv2", "CreateIntegrationResponse", {
        _API_ID: Member("ApiId"),
        "integrationId": Member("IntegrationId"),
        "integrationResponseKey": Member("IntegrationResponseKey"),
        "responseTemplates": Member("ResponseTemplates"),
        "templateSelectionExpression": Member("TemplateSelectionExpression"),
    }),
    rt.AUTHORIZER: Resource("apigatewayv2", "CreateAuthorizer", {
        _API_ID: Member("ApiId"),
        "authorizerType": Member("AuthorizerType"),
        "authorizerUri": Member("AuthorizerUri"),
        "identitySources": Member("IdentitySource"),
        "authorizerResultTtlInSeconds": Member("AuthorizerResultTtlInSeconds"),
        "name": Member("Name"),
    }),
    rt.DEPLOYMENT: Resource("apigatewayv2", "CreateDeployment", {
        _API_ID: Member("ApiId"),
        "description": Member("Description"),
        "triggers": NotSent("pulumi-aws's own: a change in them replaces the deployment"),
    }),
    rt.STAGE: Resource("apigatewayv2", "CreateStage", {
        _API_ID: Member("ApiId"),
        "name": Member("StageName"),
        "deploymentId": Member("DeploymentId"),
        "accessLogSettings.destinationArn": Member("AccessLogSettings.DestinationArn"),
        "accessLogSettings.format": Member("AccessLogSettings.Format"),
        "defaultRouteSettings.throttlingBurstLimit": Member("DefaultRouteSettings.ThrottlingBurstLimit"),
        "defaultRouteSettings.throttlingRateLimit": Member("DefaultRouteSettings.ThrottlingRateLimit"),
        "defaultRouteSettings.dataTraceEnabled": Member("DefaultRouteSettings.DataTraceEnabled"),
        "defaultRouteSettings.loggingLevel": Member("DefaultRouteSettings.LoggingLevel"),
        "defaultRouteSettings.detailedMetricsEnabled": Member("DefaultRouteSettings.DetailedMetricsEnabled"),
        # a list of settings in pulumi-aws, a map by route key in the API
        "routeSettings[].routeKey": NotSent("it becomes the key of the API's RouteSettings map: any route key"),
        "routeSettings[].throttlingBurstLimit": Member("RouteSettings{}.ThrottlingBurstLimit"),
        "routeSettings[].throttlingRateLimit": Member("RouteSettings{}.ThrottlingRateLimit"),
        "routeSettings[].dataTraceEnabled": Member("RouteSettings{}.DataTraceEnabled"),
        "routeSettings[].loggingLevel": Member("RouteSettings{}.LoggingLevel"),
        "routeSettings[].detailedMetricsEnabled": Member("RouteSettings{}.DetailedMetricsEnabled"),
        "autoDeploy": Member("AutoDeploy"),
        "description": Member("Description"),
        "stageVariables": Member("StageVariables"),
        "tags": _tags_map(),
    }),
    rt.DOMAIN_NAME: Resource("apigatewayv2", "CreateDomainName", {
        "domainName": Member("DomainName"),
        # pulumi-aws takes one configuration; the API a list of them
        "domainNameConfiguration.certificateArn": Member("DomainNameConfigurations[].CertificateArn"),
        "domainNameConfiguration.endpointType": Member("DomainNameConfigurations[].EndpointType"),
        "domainNameConfiguration.securityPolicy": Member("DomainNameConfigurations[].SecurityPolicy"),
        "tags": _tags_map(),
    }),
    rt.API_MAPPING: Resource("apigatewayv2", "CreateApiMapping", {
        _API_ID: Member("ApiId"),
        "domainName": Member("DomainName"),
        "stage": Member("Stage"),
        "apiMappingKey": Member("ApiMappingKey"),
    }),
    # UpdateAccount takes JSON patches; the value is the account's member
    rt.API_GATEWAY_ACCOUNT: Resource("apigateway", "UpdateAccount", {
        "cloudwatchRoleArn": Member("cloudwatchRoleArn", shape="Account"),
    }),
    # --- Lambda ---
    rt.FUNCTION: Resource("lambda", "CreateFunction", {
        "runtime": Member("Runtime"),
        "handler": Member("Handler"),
        "role": Member("Role"),
        "code": Member("Code.ZipFile"),
        "memorySize": Member("MemorySize"),
        "timeout": Member("Timeout"),
        "architectures": Member("Architectures"),
        "environment.variables": Member("Environment.Variables"),
        "loggingConfig.logFormat": Member("LoggingConfig.LogFormat"),
        "loggingConfig.logGroup": Member("LoggingConfig.LogGroup"),
        "loggingConfig.applicationLogLevel": Member("LoggingConfig.ApplicationLogLevel"),
        "loggingConfig.systemLogLevel": Member("LoggingConfig.SystemLogLevel"),
        "tracingConfig.mode": Member("TracingConfig.Mode"),
        "reservedConcurrentExecutions": Member("ReservedConcurrentExecutions", operation="PutFunctionConcurrency"),
        "description": Member("Description"),
        "name": Member("FunctionName"),
        "tags": _tags_map(),
        "layers": Member("Layers"),
        "kmsKeyArn": Member("KMSKeyArn"),
        "publish": Member("Publish"),
        "packageType": Member("PackageType"),
        "imageUri": Member("Code.ImageUri"),
        "s3Bucket": Member("Code.S3Bucket"),
        "s3Key": Member("Code.S3Key"),
        "s3ObjectVersion": Member("Code.S3ObjectVersion"),
        "deadLetterConfig.targetArn": Member("DeadLetterConfig.TargetArn"),
        "ephemeralStorage.size": Member("EphemeralStorage.Size"),
        "vpcConfig.subnetIds": Member("VpcConfig.SubnetIds"),
        "vpcConfig.securityGroupIds": Member("VpcConfig.SecurityGroupIds"),
        "vpcConfig.ipv6AllowedForDualStack": Member("VpcConfig.Ipv6AllowedForDualStack"),
        "sourceCodeHash": NotSent("pulumi-aws's own: a change in it updates the code"),
        "capacityProviderConfig": NotSent("Lambda Managed Instances' settings: not mapped member by member"),
    }, filled={"FunctionName": _AUTO_NAMED}),
    rt.PERMISSION: Resource("lambda", "AddPermission", {
        "function": Member("FunctionName"),
        "action": Member("Action"),
        "principal": Member("Principal"),
        "sourceArn": Member("SourceArn"),
        "sourceAccount": Member("SourceAccount"),
        "functionUrlAuthType": Member("FunctionUrlAuthType"),
        "statementId": Member("StatementId"),
    }, filled={"StatementId": _AUTO_NAMED}),
    rt.FUNCTION_URL: Resource("lambda", "CreateFunctionUrlConfig", {
        "functionName": Member("FunctionName"),
        "authorizationType": Member("AuthType"),
        "invokeMode": Member("InvokeMode"),
    }),
    rt.MAPPING: Resource("lambda", "CreateEventSourceMapping", {
        "functionName": Member("FunctionName"),
        "eventSourceArn": Member("EventSourceArn"),
        "batchSize": Member("BatchSize"),
        "maximumBatchingWindowInSeconds": Member("MaximumBatchingWindowInSeconds"),
        "functionResponseTypes": Member("FunctionResponseTypes"),
        "scalingConfig.maximumConcurrency": Member("ScalingConfig.MaximumConcurrency"),
        "tags": _tags_map(),
        "enabled": Member("Enabled"),
        "startingPosition": Member("StartingPosition"),
        "maximumRetryAttempts": Member("MaximumRetryAttempts"),
        "maximumRecordAgeInSeconds": Member("MaximumRecordAgeInSeconds"),
        "bisectBatchOnFunctionError": Member("BisectBatchOnFunctionError"),
        "parallelizationFactor": Member("ParallelizationFactor"),
        "filterCriteria.filters[].pattern": Member("FilterCriteria.Filters[].Pattern"),
    }),
    # --- SQS, EventBridge Scheduler ---
    rt.QUEUE: Resource("sqs", "CreateQueue", {
        "messageRetentionSeconds": Attribute("Attributes", "MessageRetentionPeriod"),
        "visibilityTimeoutSeconds": Attribute("Attributes", "VisibilityTimeout"),
        "sqsManagedSseEnabled": Attribute("Attributes", "SqsManagedSseEnabled"),
        "redrivePolicy": Attribute("Attributes", "RedrivePolicy", json=True),
        "delaySeconds": Attribute("Attributes", "DelaySeconds"),
        "receiveWaitTimeSeconds": Attribute("Attributes", "ReceiveMessageWaitTimeSeconds"),
        "maxMessageSize": Attribute("Attributes", "MaximumMessageSize"),
        "fifoQueue": Attribute("Attributes", "FifoQueue"),
        "contentBasedDeduplication": Attribute("Attributes", "ContentBasedDeduplication"),
        "kmsMasterKeyId": Attribute("Attributes", "KmsMasterKeyId"),
        "policy": Attribute("Attributes", "Policy"),
        "name": Member("QueueName"),
        "tags": _tags_map("tags"),
    }, filled={"QueueName": _AUTO_NAMED}),
    rt.SCHEDULE: Resource("scheduler", "CreateSchedule", {
        "scheduleExpression": Member("ScheduleExpression"),
        "scheduleExpressionTimezone": Member("ScheduleExpressionTimezone"),
        "description": Member("Description"),
        "flexibleTimeWindow.mode": Member("FlexibleTimeWindow.Mode"),
        "flexibleTimeWindow.maximumWindowInMinutes": Member("FlexibleTimeWindow.MaximumWindowInMinutes"),
        "target.arn": Member("Target.Arn"),
        "target.roleArn": Member("Target.RoleArn"),
        "target.input": Member("Target.Input"),
        "target.retryPolicy.maximumEventAgeInSeconds": Member("Target.RetryPolicy.MaximumEventAgeInSeconds"),
        "target.retryPolicy.maximumRetryAttempts": Member("Target.RetryPolicy.MaximumRetryAttempts"),
        "target.deadLetterConfig.arn": Member("Target.DeadLetterConfig.Arn"),
        "name": Member("Name"),
        "groupName": Member("GroupName"),
        "state": Member("State"),
    }, filled={"Name": _AUTO_NAMED}),
    # --- DynamoDB ---
    rt.TABLE: Resource("dynamodb", "CreateTable", {
        "name": Member("TableName"),
        "billingMode": Member("BillingMode"),
        "hashKey": Member("KeySchema[].AttributeName"),
        "rangeKey": Member("KeySchema[].AttributeName"),
        "attributes[].name": Member("AttributeDefinitions[].AttributeName"),
        "attributes[].type": Member("AttributeDefinitions[].AttributeType"),
        "globalSecondaryIndexes[].name": Member("GlobalSecondaryIndexes[].IndexName"),
        "globalSecondaryIndexes[].keySchemas[].attributeName":
            Member("GlobalSecondaryIndexes[].KeySchema[].AttributeName"),
        "globalSecondaryIndexes[].keySchemas[].keyType": Member("GlobalSecondaryIndexes[].KeySchema[].KeyType"),
        "globalSecondaryIndexes[].projectionType": Member("GlobalSecondaryIndexes[].Projection.ProjectionType"),
        "globalSecondaryIndexes[].nonKeyAttributes": Member("GlobalSecondaryIndexes[].Projection.NonKeyAttributes"),
        "deletionProtectionEnabled": Member("DeletionProtectionEnabled"),
        "readCapacity": Member("ProvisionedThroughput.ReadCapacityUnits"),
        "writeCapacity": Member("ProvisionedThroughput.WriteCapacityUnits"),
        "streamEnabled": Member("StreamSpecification.StreamEnabled"),
        "streamViewType": Member("StreamSpecification.StreamViewType"),
        "tableClass": Member("TableClass"),
        "serverSideEncryption.enabled": Member("SSESpecification.Enabled"),
        "serverSideEncryption.kmsKeyArn": Member("SSESpecification.KMSMasterKeyId"),
        "globalSecondaryIndexes[].readCapacity":
            Member("GlobalSecondaryIndexes[].ProvisionedThroughput.ReadCapacityUnits"),
        "globalSecondaryIndexes[].writeCapacity":
            Member("GlobalSecondaryIndexes[].ProvisionedThroughput.WriteCapacityUnits"),
        "localSecondaryIndexes[].name": Member("LocalSecondaryIndexes[].IndexName"),
        "localSecondaryIndexes[].rangeKey": Member("LocalSecondaryIndexes[].KeySchema[].AttributeName"),
        "localSecondaryIndexes[].projectionType": Member("LocalSecondaryIndexes[].Projection.ProjectionType"),
        "localSecondaryIndexes[].nonKeyAttributes": Member("LocalSecondaryIndexes[].Projection.NonKeyAttributes"),
        "ttl.attributeName": Member("TimeToLiveSpecification.AttributeName", operation="UpdateTimeToLive"),
        "ttl.enabled": Member("TimeToLiveSpecification.Enabled", operation="UpdateTimeToLive"),
        "pointInTimeRecovery.enabled": Member(
            "PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled", operation="UpdateContinuousBackups"),
        "tags": _tags_list(),
    }, filled={"TableName": _AUTO_NAMED, "KeySchema[].KeyType": "pulumi-aws: HASH for hashKey, RANGE for rangeKey"}),
    # --- IAM ---
    rt.ROLE: Resource("iam", "CreateRole", {
        "assumeRolePolicy": Member("AssumeRolePolicyDocument", policy=True),
        "description": Member("Description"),
        "name": Member("RoleName"),
        "path": Member("Path"),
        "maxSessionDuration": Member("MaxSessionDuration"),
        "permissionsBoundary": Member("PermissionsBoundary"),
        "tags": _tags_list(),
    }, filled={"RoleName": _AUTO_NAMED}),
    rt.ROLE_POLICY: Resource("iam", "PutRolePolicy", {
        "role": Member("RoleName"),
        "policy": Member("PolicyDocument", policy=True),
        "name": Member("PolicyName"),
    }, filled={"PolicyName": _AUTO_NAMED}),
    rt.MANAGED_POLICY: Resource("iam", "CreatePolicy", {
        "description": Member("Description"),
        "name": Member("PolicyName"),
        "path": Member("Path"),
        "policy": Member("PolicyDocument", policy=True),
        "tags": _tags_list(),
    }, filled={"PolicyName": _AUTO_NAMED}),
    rt.ROLE_POLICY_ATTACHMENT: Resource("iam", "AttachRolePolicy", {
        "role": Member("RoleName"),
        "policyArn": Member("PolicyArn"),
    }),
    # --- CloudWatch ---
    rt.LOG_GROUP: Resource("logs", "CreateLogGroup", {
        "name": Member("logGroupName"),
        # the provider appends a unique suffix to the prefix
        "namePrefix": Member("logGroupName"),
        "retentionInDays": Member("retentionInDays", operation="PutRetentionPolicy"),
        "kmsKeyId": Member("kmsKeyId"),
        "logGroupClass": Member("logGroupClass"),
        "tags": _tags_map("tags"),
    }, filled={"logGroupName": _AUTO_NAMED}),
    rt.ALARM: Resource("cloudwatch", "PutMetricAlarm", {
        "alarmDescription": Member("AlarmDescription"),
        "alarmActions": Member("AlarmActions"),
        "okActions": Member("OKActions"),
        "comparisonOperator": Member("ComparisonOperator"),
        "evaluationPeriods": Member("EvaluationPeriods"),
        "datapointsToAlarm": Member("DatapointsToAlarm"),
        "metricName": Member("MetricName"),
        "namespace": Member("Namespace"),
        "period": Member("Period"),
        "statistic": Member("Statistic"),
        "threshold": Member("Threshold"),
        "treatMissingData": Member("TreatMissingData"),
        "dimensions": Entries("Dimensions[].Name", "Dimensions[].Value"),
        "tags": _tags_list(),
        "name": Member("AlarmName"),
        "insufficientDataActions": Member("InsufficientDataActions"),
        "actionsEnabled": Member("ActionsEnabled"),
        "unit": Member("Unit"),
        "extendedStatistic": Member("ExtendedStatistic"),
    }, filled={"AlarmName": _AUTO_NAMED}),
    # --- Route 53 ---
    rt.RECORD: Resource("route53", "ChangeResourceRecordSets", {
        "zoneId": Member("HostedZoneId"),
        "name": Member("ChangeBatch.Changes[].ResourceRecordSet.Name"),
        "type": Member("ChangeBatch.Changes[].ResourceRecordSet.Type"),
        "aliases[].name": Member("ChangeBatch.Changes[].ResourceRecordSet.AliasTarget.DNSName"),
        "aliases[].zoneId": Member("ChangeBatch.Changes[].ResourceRecordSet.AliasTarget.HostedZoneId"),
        "aliases[].evaluateTargetHealth":
            Member("ChangeBatch.Changes[].ResourceRecordSet.AliasTarget.EvaluateTargetHealth"),
        "ttl": Member("ChangeBatch.Changes[].ResourceRecordSet.TTL"),
        "records[]": Member("ChangeBatch.Changes[].ResourceRecordSet.ResourceRecords[].Value"),
        "setIdentifier": Member("ChangeBatch.Changes[].ResourceRecordSet.SetIdentifier"),
        "allowOverwrite": NotSent("pulumi-aws's own: UPSERT rather than CREATE"),
    }, filled={"ChangeBatch.Changes[].Action": "pulumi-aws: CREATE, UPSERT or DELETE as the resource changes"}),
    # --- what a program hands the component (an alarm topic, a zone and certificate) ---
    rt.TOPIC: Resource("sns", "CreateTopic", {
        "name": Member("Name"),
        "displayName": Attribute("Attributes", "DisplayName"),
        "kmsMasterKeyId": Attribute("Attributes", "KmsMasterKeyId"),
        "policy": Attribute("Attributes", "Policy"),
        "fifoTopic": Attribute("Attributes", "FifoTopic"),
        "tags": _tags_list(),
    }, filled={"Name": _AUTO_NAMED}),
    rt.ZONE: Resource("route53", "CreateHostedZone", {
        "name": Member("Name"),
        "comment": Member("HostedZoneConfig.Comment"),
        "delegationSetId": Member("DelegationSetId"),
        "forceDestroy": NotSent("pulumi-aws's own: delete the zone's records on destroy"),
        "tags": NotSent("set by ChangeTagsForResource once the zone exists"),
    }, filled={"CallerReference": "pulumi-aws: a unique reference of its own"}),
    rt.CERTIFICATE: Resource("acm", "RequestCertificate", {
        "domainName": Member("DomainName"),
        "validationMethod": Member("ValidationMethod"),
        "subjectAlternativeNames": Member("SubjectAlternativeNames"),
        "keyAlgorithm": Member("KeyAlgorithm"),
        "certificateAuthorityArn": Member("CertificateAuthorityArn"),
        "tags": _tags_list(),
    }),
}

#: Properties every pulumi-aws 7 resource has that no API member receives.
COMMON: dict[str, Target] = {
    "region": NotSent("pulumi-aws 7: the Region whose endpoint the call goes to"),
}


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
        api_id = self.resource.inputs.get(_API_ID)
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
    text = _documentation("logs", "PutRetentionPolicy", "retentionInDays")
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
             lambda value, context: _integral(value) and 60 <= int(value) <= 1_209_600,
             quote="An integer from 60 seconds (1 minute) to 1,209,600 seconds (14 days)"),
    ),
    ("sqs", "CreateQueue", "Attributes{VisibilityTimeout}"): (
        Rule("an integer from 0 to 43,200 seconds", "model",
             lambda value, context: _integral(value) and 0 <= int(value) <= 43_200,
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
            and _integral(value["maxReceiveCount"]) and int(value["maxReceiveCount"]) >= 1)


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


def _policy_problems(text: Any) -> list[str]:
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
        return any(pattern.fullmatch(operation) for operation in _model(service).operation_names)

    # the service of the prefix's name first; then those that sign as it (states is
    # stepfunctions; dynamodb is dynamodbstreams too), read from every model only then
    named = [prefix] if prefix in _session().get_available_services() else []
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
    session = _session()
    loader = session.get_component("data_loader")
    index: dict[str, list[str]] = {}
    for service in session.get_available_services():
        metadata = loader.load_service_model(service, "service-2")["metadata"]
        for prefix in {metadata.get("signingName"), metadata.get("endpointPrefix")} - {None}:
            index.setdefault(prefix, []).append(str(service))
    return {prefix: tuple(services) for prefix, services in index.items()}


# --- the check ----------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One input that breaks a rule: which resource, which property, its value,
    and the rule with its source."""

    type: str
    resource: str
    property: str
    value: Any
    rule: str

    def __str__(self) -> str:
        # Pulumi sends every number as a float: 10, not 10.0, as the program wrote it
        shown = int(self.value) if isinstance(self.value, float) and self.value.is_integer() else self.value
        value = repr(shown)
        value = value if len(value) <= 120 else value[:117] + "..."
        return f"{self.type} {self.resource!r}: {self.property} = {value}: {self.rule}"


def check_deployment(deployment: "Deployment", resources: Iterable["Registered"] | None = None) -> list[Finding]:
    """Every finding for ``resources`` (by default every AWS resource ``deployment``
    registered; pass ``deployment.descendants(urn)`` for one component's): an
    empty list when each input keeps its API member's rules."""
    chosen = [r for r in deployment.resources if r.type.startswith("aws:")] if resources is None else list(resources)
    findings: list[Finding] = []
    for resource in chosen:
        findings.extend(check_resource(resource, deployment))
    return findings


def check_resource(resource: "Registered", deployment: "Deployment") -> list[Finding]:
    """The findings for one registered resource."""
    spec = RESOURCES.get(resource.type)
    if spec is None:
        return [Finding(resource.type, resource.name, "(type)", resource.type,
                        "no API mapping for this resource type in channel_server.api_models.RESOURCES")]
    checker = _Checker(resource, deployment, spec)
    for name, value in resource.inputs.items():
        checker.walk(value, name)
    checker.auto_named()
    checker.required()
    return checker.findings


class _Checker:
    def __init__(self, resource: "Registered", deployment: "Deployment", spec: Resource):
        self.resource, self.spec = resource, spec
        self.context = Context(resource, deployment)
        self.findings: list[Finding] = []
        self.hits: set[str] = set()

    def fail(self, path: str, value: Any, rule: str) -> None:
        self.findings.append(Finding(self.resource.type, self.resource.name, path, value, rule))

    def walk(self, value: Any, path: str) -> None:
        target = self.spec.properties.get(path, COMMON.get(path))
        if target is not None:
            self.apply(target, value, path)
        elif value in ({}, []) and any(key.startswith((path + ".", path + "[]")) for key in self.spec.properties):
            return  # an empty object or list whose members are mapped: nothing to send
        elif isinstance(value, dict) and value:
            for key, item in value.items():
                self.walk(item, f"{path}.{key}")
        elif isinstance(value, list) and value:
            for item in value:
                self.walk(item, path + "[]")
        else:
            self.fail(path, value, f"not mapped to a member of {self.spec.service} {self.spec.operation} "
                                   "in channel_server.api_models.RESOURCES")

    def apply(self, target: Target, value: Any, path: str) -> None:
        spec = self.spec
        if isinstance(target, NotSent):
            return
        if isinstance(target, Member):
            operation = target.operation or spec.operation
            if target.operation is None and target.shape is None:
                self.hits.add(target.path)
            where = f"{spec.service} {target.shape or operation}.{target.path}"
            shape = _member_shape(spec.service, operation, target.path, target.shape)
            for problem in _shape_problems(value, shape):
                self.fail(path, value, f"{where}: {problem} (botocore's {spec.service} model)")
            if target.policy:
                for problem in _policy_problems(value):
                    self.fail(path, value, f"{where}: policy document {problem}")
            self.documented(spec.service, operation, target.path, path, value)
        elif isinstance(target, Entries):
            self.hits.update((target.key, target.value))
            for key, item in dict(value).items():
                for member, part in ((target.key, key), (target.value, item)):
                    shape = _member_shape(spec.service, spec.operation, member, None)
                    for problem in _shape_problems(part, shape):
                        self.fail(f"{path}.{key}", part,
                                  f"{spec.service} {spec.operation}.{member}: {problem} (botocore's model)")
        elif isinstance(target, Attribute):
            self.hits.add(target.map)
            shape = _member_shape(spec.service, spec.operation, target.map, None)
            keys = shape.key.enum  # SQS lists its attributes; SNS's map takes any name
            if keys and target.key not in keys:
                self.fail(path, value, f"{spec.service} {spec.operation}.{target.map}: no attribute {target.key!r}")
            member = f"{target.map}{{{target.key}}}"
            if target.json:
                try:
                    parsed = json.loads(value) if isinstance(value, str) else value
                except ValueError as error:
                    self.fail(path, value, f"{spec.service} {spec.operation}.{member}: not valid JSON ({error})")
                    return
                self.documented(spec.service, spec.operation, member, path, parsed, shown=value)
            else:
                self.documented(spec.service, spec.operation, member, path, value)

    def documented(self, service: str, operation: str, member: str, path: str, value: Any,
                   shown: Any = None) -> None:
        """Apply the documented rules for ``member`` to ``value`` (a finding shows
        ``shown``, the value as registered, when it differs: a JSON string)."""
        for rule in DOCUMENTED_RULES.get((service, operation, member), ()):
            if not rule.applies(self.context):
                continue
            try:
                kept = rule.test(value, self.context)
            except (TypeError, ValueError):
                kept = False
            if not kept:
                source = f"the model's documentation of {operation}.{member}" if rule.source == "model" \
                    else rule.source
                says = rule.says if rule.values is None else f"{rule.says}: {', '.join(map(str, rule.values()))}"
                self.fail(path, value if shown is None else shown,
                          f"{service} {operation}.{member}: {says} (documented: {source})")

    def auto_named(self) -> None:
        """The name the provider gives a resource that has none of its own, as the
        mocks compute it (its Pulumi name, ``-`` and 7 random characters; a
        prefix and 26): held to the rules of the member it fills, so that a
        component name too long for its children is found here, not in ``pulumi up``."""
        name = self.resource.outputs.get("name")
        if not isinstance(name, str) or "name" in self.resource.inputs:
            return
        for member, who in self.spec.filled.items():
            if who == _AUTO_NAMED:
                self.apply(Member(member), name, "name (auto-named from the Pulumi name)")

    def required(self) -> None:
        """Required members of the call's input that no property set: at the top,
        and in each structure a property reaches."""
        shape = _model(self.spec.service).operation_model(self.spec.operation).input_shape
        for member in _missing(shape, "", self.hits, set(self.spec.filled)):
            self.fail(member, None, f"{self.spec.service} {self.spec.operation}.{member} is required, "
                                    "and no property sets it")


def _missing(shape: "Shape", prefix: str, hits: set[str], filled: set[str]) -> list[str]:
    reached = hits | filled

    def touched(path: str) -> bool:
        return any(hit == path or hit.startswith((path + ".", path + "[]", path + "{")) for hit in reached)

    missing = []
    members = getattr(shape, "members", {})
    for name in getattr(shape, "required_members", []):
        if not touched(prefix + name):
            missing.append(prefix + name)
    for name, member in members.items():
        path = prefix + name
        if not touched(path):
            continue
        while member.type_name == "list":
            member, path = member.member, path + "[]"
        if member.type_name == "structure":
            missing.extend(_missing(member, path + ".", hits, filled))
    return missing


# --- the models ---------------------------------------------------------------------


@functools.cache
def _session() -> Any:
    try:
        import botocore.session
    except ImportError as error:
        from .extras import install_command

        raise ImportError(f"channel_server.api_models reads botocore's API models: {install_command('check')}") \
            from error
    return botocore.session.get_session()


@functools.cache
def _model(service: str) -> "ServiceModel":
    return _session().get_service_model(service)


def _member_shape(service: str, operation: str, path: str, shape_name: str | None) -> "Shape":
    model = _model(service)
    shape = model.shape_for(shape_name) if shape_name else model.operation_model(operation).input_shape
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


def _documentation(service: str, operation: str, member: str) -> str:
    return str(_member_shape(service, operation, member, None).documentation)


def _integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return value.isdigit()
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java construct Python's re lacks (\p{...}): not checked
        return None


def _shape_problems(value: Any, shape: "Shape") -> list[str]:
    """What keeps ``value`` from being a valid ``shape``: its type, enum, range,
    length and pattern, through lists and maps."""
    kind, meta = shape.type_name, shape.metadata
    if kind == "blob" or value is None:
        return []
    if kind == "string":
        if not isinstance(value, str):
            return [f"a {type(value).__name__}, not a string"]
        problems = []
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            problems.append(f"not one of {', '.join(enum)}")
        if "min" in meta and len(value) < meta["min"]:
            problems.append(f"shorter than {meta['min']} characters")
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"longer than {meta['max']} characters")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and not pattern.fullmatch(value):
            problems.append(f"does not match the pattern {meta['pattern']}")
        return problems
    if kind in ("integer", "long"):
        if not _integral(value) or isinstance(value, str):
            return [f"{value!r} is not an integer"]
        return _range(int(value), meta)
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{value!r} is not a number"]
        return _range(value, meta)
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{value!r} is not a boolean"]
    if kind == "list":
        if not isinstance(value, list):
            return [f"a {type(value).__name__}, not a list"]
        problems = _count(len(value), meta, "items")
        for item in value:
            problems.extend(_shape_problems(item, shape.member))
        return problems
    if kind == "map":
        if not isinstance(value, dict):
            return [f"a {type(value).__name__}, not a map"]
        problems = _count(len(value), meta, "entries")
        for key, item in value.items():
            problems.extend(f"key {key!r}: {p}" for p in _shape_problems(key, shape.key))
            problems.extend(f"[{key!r}]: {p}" for p in _shape_problems(item, shape.value))
        return problems
    return []


def _range(value: float, meta: Mapping[str, Any]) -> list[str]:
    if "min" in meta and value < meta["min"]:
        return [f"below the minimum {meta['min']}"]
    if "max" in meta and value > meta["max"]:
        return [f"above the maximum {meta['max']}"]
    return []


def _count(count: int, meta: Mapping[str, Any], what: str) -> list[str]:
    if "min" in meta and count < meta["min"]:
        return [f"fewer than {meta['min']} {what}"]
    if "max" in meta and count > meta["max"]:
        return [f"more than {meta['max']} {what}"]
    return []


# --- the command ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m channel_server.api_models [PROJECT] [--stack NAME]``: run a
    Pulumi project under the mocks with a stack's config, as ``pulumi up`` would,
    and print every finding; exit 1 when there is one, 2 when the project (or
    botocore) is missing or its program fails."""
    import argparse
    import importlib.util

    from .extras import install_command
    from .mocks import Project, ProjectError

    parser = argparse.ArgumentParser(
        prog="python -m channel_server.api_models",
        description="Check every AWS resource a Pulumi program registers against AWS's API models "
                    "(botocore's), under Pulumi's mocks: no Pulumi CLI, no AWS account.")
    parser.add_argument("project", nargs="?", default=".",
                        help="the project's folder, its Pulumi.yaml or its program (default: this folder)")
    parser.add_argument("--stack", default="dev",
                        help="the stack whose Pulumi.NAME.yaml config the program gets (default: dev)")
    options = parser.parse_args(argv)
    if importlib.util.find_spec("botocore") is None:
        parser.exit(2, f"{parser.prog} reads botocore's API models: {install_command('check')}\n")
    import botocore

    try:
        project = Project.load(options.project)
        # as `pulumi up` does, only a stack that exists: its file, not Pulumi.yaml's defaults alone
        deployment = project.deploy(options.stack, required=True)
    except ProjectError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    except Exception as error:  # the program's own error (a ChannelServerArgsError): what pulumi up would say
        parser.exit(2, f"{parser.prog}: the program failed under Pulumi's mocks: {type(error).__name__}: {error}\n")
    resources = [r for r in deployment.resources if r.type.startswith("aws:")]
    findings = check_deployment(deployment, resources)
    for finding in sorted(findings, key=lambda f: (f.type, f.resource, f.property)):
        print(finding)
    types = len({r.type for r in resources})
    print(f"{project.name} ({options.stack}): {len(resources)} resources of {types} types checked against "
          f"botocore {botocore.__version__}'s API models: "
          f"{len(findings) or 'no'} finding{'' if len(findings) == 1 else 's'}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
