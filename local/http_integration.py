"""API Gateway's non-proxy HTTP integration, for local mode's routes that the
component gave an HTTP backend (``ChannelServerArgs.backend``).

For each event, as API Gateway does: pick the request template by the
integration's template selection expression, render it with a real Velocity
engine (:mod:`velocity`), POST it to the integration's URL with the mapped
static headers, wait at most the integration's timeout, then match the
backend's status against the integration responses' keys (``/regex/`` on the
status code, ``$default`` for anything). A match passes the backend's body
through as the route's answer; no match, a timeout or a connection failure
fails the invocation (:class:`InvocationError`), which the gateway turns into
API Gateway's answers: a refused ``$connect`` or an "Internal server error"
frame.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Mapping

import aiohttp

from ..handlers.spec import DEFAULT_KEY
from . import velocity
from .functions import InvocationError
from .world import HttpIntegration

log = logging.getLogger("channel_server.local")

_HEADER = "integration.request.header."


def request_template(integration: HttpIntegration) -> str:
    """The template API Gateway picks: a WebSocket integration's selection
    expression is evaluated to a template key; ``\\$default`` (escaped) is
    the literal key ``$default``, which is also the fallback."""
    expression = integration.template_selection_expression
    key = expression[1:] if expression.startswith("\\$") else expression
    templates = integration.request_templates
    template = templates.get(key, templates.get(DEFAULT_KEY))
    if template is None:
        raise InvocationError(f"no request template for {key!r}")
    return template


def matches(key: str, status: int) -> bool:
    """Whether integration response ``key`` takes a backend answer of ``status``."""
    if key == DEFAULT_KEY:
        return True
    if len(key) >= 2 and key.startswith("/") and key.endswith("/"):
        return re.fullmatch(key[1:-1], str(status)) is not None
    return False


def select_response(keys: tuple[str, ...], status: int) -> str | None:
    """The integration response for ``status``: a regular expression that
    matches it, else ``$default``, else None (API Gateway then fails the
    request: "No match for output mapping")."""
    for key in keys:
        if key != DEFAULT_KEY and matches(key, status):
            return key
    return DEFAULT_KEY if DEFAULT_KEY in keys else None


class HttpBackendClient:
    """Posts rendered envelopes to the routes' HTTP backends. ``url``
    replaces every integration's URL when given (``--backend``)."""

    def __init__(self, routes: Mapping[str, HttpIntegration], url: str | None = None):
        self._routes = dict(routes)
        self._url = url
        self._session: aiohttp.ClientSession | None = None

    def url_of(self, route_key: str) -> str:
        return self._url or self._routes[route_key].url

    async def invoke(self, route_key: str, event: dict) -> dict:
        """The route's answer, ``{"statusCode": 200, "body": text}``; raises
        InvocationError where API Gateway would fail the request."""
        integration = self._routes[route_key]
        try:
            body = velocity.render(request_template(integration), event)
        except velocity.TemplateError as exc:
            raise InvocationError(f"the request template failed: {exc}") from None
        headers = {name[len(_HEADER):]: value[1:-1] for name, value in integration.request_parameters.items()}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self.url_of(route_key)
        try:
            async with self._session.post(
                url, data=body.encode("utf-8"), headers=headers,
                timeout=aiohttp.ClientTimeout(total=integration.timeout_ms / 1000),
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
        except asyncio.TimeoutError:
            raise InvocationError(f"{url} did not answer within {integration.timeout_ms} ms") from None
        except aiohttp.ClientError as exc:
            raise InvocationError(f"posting to {url} failed: {exc}") from None
        if select_response(integration.response_keys, status) is None:
            raise InvocationError(
                f"No match for output mapping and no default output mapping configured. "
                f"Endpoint Response Status Code: {status}")
        return {"statusCode": 200, "body": text}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
