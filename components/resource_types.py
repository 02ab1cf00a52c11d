"""The Pulumi type tokens of the AWS resources a ChannelServer registers (and
of those a program hands it: certificate, zone, topic), spelled once.

The mock engine (``channel_server.mocks``), local mode, which finds the
component's resources by type (``channel_server.local.program``), and the
tests all use these. Plain strings, each the token pulumi_aws's class
carries: importing this needs neither Pulumi nor pulumi_aws.
"""

# --- API Gateway ------------------------------------------------------------------
API = "aws:apigatewayv2/api:Api"
ROUTE = "aws:apigatewayv2/route:Route"
ROUTE_RESPONSE = "aws:apigatewayv2/routeResponse:RouteResponse"
INTEGRATION = "aws:apigatewayv2/integration:Integration"
INTEGRATION_RESPONSE = "aws:apigatewayv2/integrationResponse:IntegrationResponse"
AUTHORIZER = "aws:apigatewayv2/authorizer:Authorizer"
DEPLOYMENT = "aws:apigatewayv2/deployment:Deployment"
STAGE = "aws:apigatewayv2/stage:Stage"
DOMAIN_NAME = "aws:apigatewayv2/domainName:DomainName"
API_MAPPING = "aws:apigatewayv2/apiMapping:ApiMapping"
#: The account-level settings (the CloudWatch Logs role for access logs).
API_GATEWAY_ACCOUNT = "aws:apigateway/account:Account"

# --- Lambda, SQS, EventBridge Scheduler ----------------------------------------------
FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
QUEUE = "aws:sqs/queue:Queue"
SCHEDULE = "aws:scheduler/schedule:Schedule"

# --- DynamoDB, IAM, CloudWatch ---------------------------------------------------------
TABLE = "aws:dynamodb/table:Table"
ROLE = "aws:iam/role:Role"
#: A role's inline policy.
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
#: A managed policy, and its attachment to a role.
MANAGED_POLICY = "aws:iam/policy:Policy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"

# --- DNS, certificates, notifications -------------------------------------------------
RECORD = "aws:route53/record:Record"
ZONE = "aws:route53/zone:Zone"
CERTIFICATE = "aws:acm/certificate:Certificate"
TOPIC = "aws:sns/topic:Topic"


# --- identifiers ------------------------------------------------------------------
#: What API Gateway invokes a Lambda function by: ``LAMBDA_INVOKE_URI.format(...)``.
LAMBDA_INVOKE_URI = "arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"


def lambda_invoke_uri(function_arn: str) -> str:
    """The URI API Gateway invokes a Lambda function by, from its ARN
    (``arn:{partition}:lambda:{region}:{account}:function:{name}``)."""
    parts = function_arn.split(":")
    return LAMBDA_INVOKE_URI.format(partition=parts[1], region=parts[3], function_arn=function_arn)


def invoked_function_arn(uri: str) -> str | None:
    """The function ARN in a Lambda invoke URI (:func:`lambda_invoke_uri`'s
    inverse); None for a URI of another kind."""
    prefix, _, rest = uri.partition(":apigateway:")
    region, _, path = rest.partition(":lambda:path/2015-03-31/functions/")
    if not prefix.startswith("arn:") or ":" in prefix[4:] or ":" in region or not path.endswith("/invocations"):
        return None
    return path[:-len("/invocations")] or None
