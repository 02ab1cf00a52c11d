"""The WebSocket API's wiring: one route per ``handlers/spec.py`` ``ROUTES`` entry and what
serves it, then the deployment and the throttled stage that serve those routes.

What serves a route is its own handler function, or the HTTP backend."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws

from . import backend as backend_contract
from .features import ACCESS_LOG_FORMAT, AccessLogs, ConnectAuthorizer
from .functions import Functions
from .handlers import spec
from .scope import Scope


@dataclass
class Routes:
    """The API's routes and what serves them, each dict by route key (``$connect``, ``join``, …)."""

    integrations: dict[str, aws.apigatewayv2.Integration] = field(default_factory=dict)
    routes: dict[str, aws.apigatewayv2.Route] = field(default_factory=dict)
    route_responses: dict[str, aws.apigatewayv2.RouteResponse] = field(default_factory=dict)
    """Two-way routes only."""
    integration_responses: dict[str, aws.apigatewayv2.IntegrationResponse] = field(default_factory=dict)
    """The HTTP backend's only."""
    permissions: dict[str, aws.lambda_.Permission] = field(default_factory=dict)
    """The handler functions' only, as are the four below."""
    functions: dict[str, aws.lambda_.Function] = field(default_factory=dict)
    roles: dict[str, aws.iam.Role] = field(default_factory=dict)
    policies: dict[str, aws.iam.RolePolicy] = field(default_factory=dict)
    log_groups: dict[str, aws.cloudwatch.LogGroup] = field(default_factory=dict)


def create_lambda_routes(functions: Functions, authorizer: ConnectAuthorizer | None) -> Routes:
    """Each route served by its own handler function."""
    wiring = Routes()
    for route in spec.ROUTES:
        _add_lambda_route(functions, wiring, route, authorizer)
    return wiring


def _add_lambda_route(functions: Functions, wiring: Routes, route: spec.Route,
                      authorizer: ConnectAuthorizer | None) -> None:
    """The route's function, its AWS_PROXY integration, and API Gateway's
    permission to invoke the function for this stage and route only."""
    scope, api = functions.scope, functions.api
    slug = scope.slug(route)
    function, role, policy, log_group = functions.create(route)
    integration = aws.apigatewayv2.Integration(
        slug,
        api_id=api.id,
        integration_type="AWS_PROXY",
        integration_method="POST",
        integration_uri=function.invoke_arn,
        opts=scope.child,
    )
    _add_route(scope, api, wiring, route, integration, authorizer)
    wiring.permissions[route.key] = aws.lambda_.Permission(
        slug,
        action="lambda:InvokeFunction",
        function=function.name,
        principal="apigateway.amazonaws.com",
        # only this API's stage, only this route
        source_arn=api.execution_arn.apply(lambda arn: f"{arn}/{scope.settings.stage_name}/{route.key}"),
        opts=scope.child,
    )
    wiring.functions[route.key] = function
    wiring.roles[route.key] = role
    wiring.policies[route.key] = policy
    wiring.log_groups[route.key] = log_group


def create_http_routes(scope: Scope, api: aws.apigatewayv2.Api, backend: Mapping[str, Any],
                       authorizer: ConnectAuthorizer | None) -> Routes:
    """Each route served by the HTTP backend: a non-proxy HTTP integration
    that posts the envelope, and one integration response (any 2xx),
    without which API Gateway fails every request after the backend
    answered ("No match for output mapping"), and with which any other
    status refuses a $connect (see channel_server.backend)."""
    wiring = Routes()
    url = pulumi.Output.from_input(backend["url"])  # checked by resolve(), an Output when it resolves
    for route in spec.ROUTES:
        slug = scope.slug(route)
        integration = aws.apigatewayv2.Integration(
            slug,
            api_id=api.id,
            integration_type="HTTP",
            integration_method="POST",
            integration_uri=url,
            timeout_milliseconds=backend["timeout_ms"],
            request_templates={backend_contract.REQUEST_TEMPLATE_KEY: backend_contract.request_template(route.key)},
            template_selection_expression=backend_contract.TEMPLATE_SELECTION_EXPRESSION,
            passthrough_behavior=backend_contract.PASSTHROUGH_BEHAVIOR,
            request_parameters=dict(backend_contract.REQUEST_PARAMETERS),
            opts=scope.child,
        )
        wiring.integration_responses[route.key] = aws.apigatewayv2.IntegrationResponse(
            slug,
            api_id=api.id,
            integration_id=integration.id,
            integration_response_key=backend_contract.INTEGRATION_RESPONSE_KEY,
            opts=scope.child,
        )
        _add_route(scope, api, wiring, route, integration, authorizer)
    return wiring


def _add_route(scope: Scope, api: aws.apigatewayv2.Api, wiring: Routes, route: spec.Route,
               integration: aws.apigatewayv2.Integration, authorizer: ConnectAuthorizer | None) -> None:
    """The route to ``integration``, with its route response when two-way."""
    slug = scope.slug(route)
    connect_authorizer = authorizer.authorizer if authorizer is not None and route.key == spec.CONNECT_ROUTE else None
    wiring.integrations[route.key] = integration
    wiring.routes[route.key] = aws.apigatewayv2.Route(
        slug,
        api_id=api.id,
        route_key=route.key,
        target=integration.id.apply(lambda integration_id: f"integrations/{integration_id}"),
        # API Gateway authorizes a WebSocket connection only on $connect
        authorization_type="CUSTOM" if connect_authorizer is not None else None,
        authorizer_id=connect_authorizer.id if connect_authorizer is not None else None,
        # two-way: the function's return value is the sender's reply
        route_response_selection_expression=spec.ROUTE_RESPONSE_SELECTION_EXPRESSION if route.two_way else None,
        opts=scope.child,
    )
    if route.two_way:
        wiring.route_responses[route.key] = aws.apigatewayv2.RouteResponse(
            slug,
            api_id=api.id,
            route_id=wiring.routes[route.key].id,
            route_response_key=spec.ROUTE_RESPONSE_KEY,
            opts=scope.child,
        )


def create_stage(scope: Scope, api: aws.apigatewayv2.Api, wiring: Routes, authorizer: ConnectAuthorizer | None,
                 access_logs: AccessLogs | None) -> tuple[aws.apigatewayv2.Deployment, aws.apigatewayv2.Stage]:
    """The deployment of the routes, and the stage that serves it."""
    s = scope.settings
    # A WebSocket stage serves only what was deployed: a new deployment
    # whenever a route or its integration changes, created after the routes.
    wiring_rows = pulumi.Output.all(
        *[
            pulumi.Output.all(
                key, wiring.routes[key].id, wiring.integrations[key].id, wiring.integrations[key].integration_uri,
                wiring.integrations[key].request_templates, wiring.integrations[key].timeout_milliseconds,
                wiring.route_responses[key].id if key in wiring.route_responses else "",
                wiring.integration_responses[key].id if key in wiring.integration_responses else "",
            )
            for key in sorted(wiring.routes)
        ]
    )
    triggers = {"routes": wiring_rows.apply(lambda rows: json.dumps(rows, sort_keys=True))}
    authorizer_resources: list[pulumi.Resource] = []
    if authorizer is not None:
        triggers["authorizer"] = pulumi.Output.all(
            authorizer.authorizer.id, authorizer.authorizer.authorizer_uri, authorizer.authorizer.identity_sources
        ).apply(lambda values: json.dumps(values, sort_keys=True))
        authorizer_resources = [authorizer.authorizer, authorizer.permission]
    # ...and after the invoke permissions, so the stage never switches to a
    # function API Gateway may not call yet.
    deployment = aws.apigatewayv2.Deployment(
        f"{scope.name}-deployment",
        api_id=api.id,
        description=f"channel-server routes: {', '.join(sorted(wiring.routes))}",
        triggers=triggers,
        opts=scope.options(
            depends_on=[*wiring.routes.values(), *wiring.route_responses.values(), *wiring.permissions.values(),
                        *wiring.integration_responses.values(), *authorizer_resources],
        ),
    )
    stage = aws.apigatewayv2.Stage(
        f"{scope.name}-stage",
        api_id=api.id,
        name=s.stage_name,
        deployment_id=deployment.id,
        # both limits, always: leaving one out makes it 0 and every message a 429
        default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
            throttling_burst_limit=s.throttling_burst_limit,
            throttling_rate_limit=s.throttling_rate_limit,
        ),
        access_log_settings=None if access_logs is None else aws.apigatewayv2.StageAccessLogSettingsArgs(
            destination_arn=access_logs.log_group.arn, format=ACCESS_LOG_FORMAT,
        ),
        tags=scope.tags,
        # API Gateway refuses access logging until the account has its role
        opts=scope.options(depends_on=[access_logs.account] if access_logs and access_logs.account else None),
    )
    return deployment, stage
