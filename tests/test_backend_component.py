"""ChannelServer with an HTTP backend (``backend``), under Pulumi's mocks: every
route's non-proxy HTTP integration, its template and integration response, and
nothing of the Lambda handlers."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from channel_server import ChannelServer, ChannelServerArgsError, backend
from channel_server.args import resolve
from channel_server.handlers import spec
from support.failing import deploy_failing
from channel_server.mocks import Deployment, deploy
from channel_server.resource_types import (DEPLOYMENT, FUNCTION, INTEGRATION, INTEGRATION_RESPONSE, MAPPING, PERMISSION, QUEUE,
                                         ROLE, ROLE_POLICY, ROUTE, ROUTE_RESPONSE, SCHEDULE, TABLE)

URL = "https://backend.example.com/channel"
ROUTES = {route.key: route for route in spec.ROUTES}


@pytest.fixture(scope="module")
def deployed() -> Deployment:
    return deploy(lambda: ChannelServer("web", {"backend": {"url": URL, "timeout_ms": 5000}}))


def _integration_of(deployment: Deployment, route_key: str) -> Any:
    (route,) = [r for r in deployment.of_type(ROUTE) if r["routeKey"] == route_key]
    return deployment.by_id(route["target"].removeprefix("integrations/"), INTEGRATION)


@pytest.mark.parametrize("route_key", list(ROUTES))
def test_every_route_posts_the_envelope_to_the_backend(deployed: Deployment, route_key: str) -> None:
    integration = _integration_of(deployed, route_key)
    assert integration["integrationType"] == "HTTP"
    assert integration["integrationMethod"] == "POST"
    assert integration["integrationUri"] == URL
    assert integration["timeoutMilliseconds"] == 5000
    assert integration["requestTemplates"] == {"$default": backend.request_template(route_key)}
    assert integration["templateSelectionExpression"] == "\\$default"
    assert integration["passthroughBehavior"] == "NEVER"
    assert integration["requestParameters"] == {"integration.request.header.Content-Type": "'application/json'"}


@pytest.mark.parametrize("route_key", list(ROUTES))
def test_every_integration_has_one_response_for_any_2xx_and_no_default(deployed: Deployment, route_key: str) -> None:
    integration = _integration_of(deployed, route_key)
    responses = [r for r in deployed.of_type(INTEGRATION_RESPONSE) if r["integrationId"] == integration.id]
    assert [r["integrationResponseKey"] for r in responses] == ["/2\\d\\d/"]
    assert "responseTemplates" not in responses[0].inputs  # the backend's body passes through unchanged


def test_two_way_routes_keep_their_route_responses(deployed: Deployment) -> None:
    routes = {r.id: r["routeKey"] for r in deployed.of_type(ROUTE)}
    answered = {routes[r["routeId"]] for r in deployed.of_type(ROUTE_RESPONSE)}
    assert answered == {key for key, route in ROUTES.items() if route.two_way}


def test_no_lambda_handler_no_queue_no_role_is_built(deployed: Deployment) -> None:
    for kind in (FUNCTION, PERMISSION, ROLE,
                 ROLE_POLICY, QUEUE,
                 MAPPING, SCHEDULE):
        assert deployed.of_type(kind) == [], kind
    # the table stays: the reference backend keeps its memberships there
    assert deployed.one(TABLE)


def test_the_deployment_changes_when_a_template_or_the_timeout_does() -> None:
    def triggers(timeout: int) -> str:
        return deploy(lambda: ChannelServer("web", {"backend": {"url": URL, "timeout_ms": timeout}})).one(
            DEPLOYMENT)["triggers"]["routes"]

    first = triggers(5000)
    assert triggers(5000) == first
    assert triggers(6000) != first
    wired = {row[0]: row for row in json.loads(first)}
    assert {"$default": backend.request_template("publish")} in wired["publish"]


def test_the_url_may_come_from_another_resource() -> None:
    # any resource with a computed output will do: a queue's auto-generated name
    def program() -> None:
        other = aws.sqs.Queue("elsewhere")
        ChannelServer("web", {"backend": {"url": other.name.apply(lambda name: f"https://{name}.example.com/ws")}})

    deployment = deploy(program)
    name = deployment.one(QUEUE)["name"]
    for integration in deployment.of_type(INTEGRATION):
        assert integration["integrationUri"] == f"https://{name}.example.com/ws"


def test_an_output_url_that_resolves_to_something_invalid_fails_with_the_same_message() -> None:
    with pytest.raises(ChannelServerArgsError) as at_construction:
        resolve({"backend": {"url": "ftp://backend.example.com"}})

    def program() -> None:
        ChannelServer("web", {"backend": {"url": pulumi.Output.from_input("ftp://backend.example.com")}})

    assert str(at_construction.value) in str(deploy_failing(program))


@pytest.mark.parametrize(("value", "message"), [
    ({"url": "backend.example.com"}, "url must be an http:// or https:// URL with a host"),
    ({"url": "https://"}, "url must be an http:// or https:// URL with a host"),
    ({"url": 7}, "url must be a string"),
    ({}, "url is required"),
    ({"url": URL, "timeout_ms": 10}, "must be from 50 to 29000 ms"),
    ({"url": URL, "timeout_ms": 30000}, "must be from 50 to 29000 ms"),
    ({"url": URL, "timeoutMs": 5}, "has no field timeoutMs; use url and timeout_ms"),
    ("https://backend.example.com", 'must be {"url": "https://…", "timeout_ms": N}'),
])
def test_an_invalid_backend_is_refused_at_construction_saying_what_to_change(value: Any, message: str) -> None:
    with pytest.raises(ChannelServerArgsError, match="ChannelServerArgs backend") as refused:
        ChannelServer("web", {"backend": value})
    assert message in str(refused.value)


def test_the_timeout_defaults_to_api_gateways_longest() -> None:
    assert resolve({"backend": {"url": URL}}).backend == {"url": URL, "timeout_ms": 29000}
    assert resolve({}).backend is None
