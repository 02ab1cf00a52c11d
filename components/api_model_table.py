"""The table :mod:`channel_server.api_models` checks with: for each resource type, the AWS
call that creates it and what each pulumi-aws property becomes in that call.

The types are those a ChannelServer registers and those a program hands it (an
alarm topic, a hosted zone, a certificate).

A property the table does not map is a finding of the check, so a resource or a
property added to the component cannot slip past unchecked; the members are
botocore's (``tests/test_api_models.py`` resolves every one in its model). Plain
data: importing this needs neither botocore nor Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from . import resource_types as rt


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


#: Who fills a required name member that no property sets: the provider, from the Pulumi name.
AUTO_NAMED = "pulumi-aws names the resource from its Pulumi name (auto-naming)"
#: The property by which an API Gateway v2 resource names its API.
API_ID = "apiId"

#: Each resource type the component registers → its API call and the member
#: each of its properties becomes. The properties are pulumi-aws 7's
#: (https://www.pulumi.com/registry/packages/aws/api-docs/), the members
#: botocore's; a property not here is a finding of :func:`channel_server.api_models.check_deployment`.
RESOURCES: dict[str, Resource] = {
    # --- API Gateway v2 ---
    rt.API: Resource("apigatewayv2", "CreateApi", {
        "protocolType": Member("ProtocolType"),
        "routeSelectionExpression": Member("RouteSelectionExpression"),
        "description": Member("Description"),
        "name": Member("Name"),
        "tags": _tags_map(),
    }, filled={"Name": AUTO_NAMED}),
    rt.ROUTE: Resource("apigatewayv2", "CreateRoute", {
        API_ID: Member("ApiId"),
        "apiKeyRequired": Member("ApiKeyRequired"),
        "operationName": Member("OperationName"),
        "routeKey": Member("RouteKey"),
        "target": Member("Target"),
        "authorizationType": Member("AuthorizationType"),
        "authorizerId": Member("AuthorizerId"),
        "routeResponseSelectionExpression": Member("RouteResponseSelectionExpression"),
    }),
    rt.ROUTE_RESPONSE: Resource("apigatewayv2", "CreateRouteResponse", {
        API_ID: Member("ApiId"),
        "routeId": Member("RouteId"),
        "routeResponseKey": Member("RouteResponseKey"),
    }),
    rt.INTEGRATION: Resource("apigatewayv2", "CreateIntegration", {
        API_ID: Member("ApiId"),
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
        API_ID: Member("ApiId"),
        "integrationId": Member("IntegrationId"),
        "integrationResponseKey": Member("IntegrationResponseKey"),
        "responseTemplates": Member("ResponseTemplates"),
        "templateSelectionExpression": Member("TemplateSelectionExpression"),
    }),
    rt.AUTHORIZER: Resource("apigatewayv2", "CreateAuthorizer", {
        API_ID: Member("ApiId"),
        "authorizerType": Member("AuthorizerType"),
        "authorizerUri": Member("AuthorizerUri"),
        "identitySources": Member("IdentitySource"),
        "authorizerResultTtlInSeconds": Member("AuthorizerResultTtlInSeconds"),
        "name": Member("Name"),
    }),
    rt.DEPLOYMENT: Resource("apigatewayv2", "CreateDeployment", {
        API_ID: Member("ApiId"),
        "description": Member("Description"),
        "triggers": NotSent("pulumi-aws's own: a change in them replaces the deployment"),
    }),
    rt.STAGE: Resource("apigatewayv2", "CreateStage", {
        API_ID: Member("ApiId"),
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
        API_ID: Member("ApiId"),
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
    }, filled={"FunctionName": AUTO_NAMED}),
    rt.PERMISSION: Resource("lambda", "AddPermission", {
        "function": Member("FunctionName"),
        "action": Member("Action"),
        "principal": Member("Principal"),
        "sourceArn": Member("SourceArn"),
        "sourceAccount": Member("SourceAccount"),
        "functionUrlAuthType": Member("FunctionUrlAuthType"),
        "statementId": Member("StatementId"),
    }, filled={"StatementId": "pulumi-aws: one of its own (a prefix and a unique suffix)"}),
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
    }, filled={"QueueName": AUTO_NAMED}),
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
    }, filled={"Name": AUTO_NAMED}),
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
    }, filled={"TableName": AUTO_NAMED, "KeySchema[].KeyType": "pulumi-aws: HASH for hashKey, RANGE for rangeKey"}),
    # --- IAM ---
    rt.ROLE: Resource("iam", "CreateRole", {
        "assumeRolePolicy": Member("AssumeRolePolicyDocument", policy=True),
        "description": Member("Description"),
        "name": Member("RoleName"),
        "path": Member("Path"),
        "maxSessionDuration": Member("MaxSessionDuration"),
        "permissionsBoundary": Member("PermissionsBoundary"),
        "tags": _tags_list(),
    }, filled={"RoleName": AUTO_NAMED}),
    rt.ROLE_POLICY: Resource("iam", "PutRolePolicy", {
        "role": Member("RoleName"),
        "policy": Member("PolicyDocument", policy=True),
        "name": Member("PolicyName"),
    }, filled={"PolicyName": AUTO_NAMED}),
    rt.MANAGED_POLICY: Resource("iam", "CreatePolicy", {
        "description": Member("Description"),
        "name": Member("PolicyName"),
        "path": Member("Path"),
        "policy": Member("PolicyDocument", policy=True),
        "tags": _tags_list(),
    }, filled={"PolicyName": AUTO_NAMED}),
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
    }, filled={"logGroupName": AUTO_NAMED}),
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
    }, filled={"AlarmName": AUTO_NAMED}),
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
    }, filled={"Name": AUTO_NAMED}),
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
