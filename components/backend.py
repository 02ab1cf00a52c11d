"""The HTTP backend's contract: what API Gateway posts to it, and how its answers
are read (``ChannelServerArgs.backend``; docs/architecture.md, "HTTP backend").

Every route gets a non-proxy ``HTTP`` integration that POSTs one JSON
*envelope*, rendered by API Gateway from :func:`request_template`::

    {"connectionId": "…", "eventType": "MESSAGE", "routeKey": "publish",
     "domainName": "…", "stage": "dev", "requestId": "…",
     "requestTimeEpoch": 1764158400000, "identity": {"sourceIp": "…"},
     "body": "<the frame, as a JSON string>"}

``body`` is null on ``$connect`` and ``$disconnect``. The envelope carries
the fields of a Lambda event's ``requestContext`` under the same names, so a
backend can hand it to the same code (:func:`lambda_event`).

The backend's HTTP status decides: every integration has one integration
response, keyed :data:`INTEGRATION_RESPONSE_KEY` (any 2xx), and no
``$default`` one. A 2xx answer's body is the sender's reply on a two-way
route (passed through unchanged: no response template). Any other status
matches no integration response, so API Gateway fails the request: a
``$connect`` is refused, a message gets API Gateway's "Internal server
error" frame, as when a Lambda handler fails.

This module is plain data and text: the component, local mode and the
reference backend (``channel_server.http_backend``) all read it.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .handlers import spec

#: The integration request template's key, and the integration's template
#: selection expression that always picks it (escaped: ``$default`` unescaped
#: would be read as a selection expression).
REQUEST_TEMPLATE_KEY = spec.DEFAULT_KEY
TEMPLATE_SELECTION_EXPRESSION = "\\" + REQUEST_TEMPLATE_KEY
#: The only integration response: the backend's status must be 2xx.
INTEGRATION_RESPONSE_KEY = "/2\\d\\d/"
#: A request that matches no template is refused rather than passed raw: the
#: backend only ever receives envelopes.
PASSTHROUGH_BEHAVIOR = "NEVER"
#: API Gateway's limits on a WebSocket integration's timeout, and our default.
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 50, spec.INTEGRATION_TIMEOUT_SECONDS * 1000
DEFAULT_TIMEOUT_MS = MAX_TIMEOUT_MS
#: The envelope is JSON; API Gateway sends the header given here.
REQUEST_PARAMETERS = {"integration.request.header.Content-Type": "'application/json'"}

#: The envelope's fields taken from ``$context`` (name, context variable, is
#: a number). These are API Gateway's own values (ids, route keys, names,
#: addresses, epoch milliseconds), whose characters need no escaping in a
#: JSON string; only the body comes from the client.
CONTEXT_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("connectionId", "connectionId", False),
    ("eventType", "eventType", False),
    ("routeKey", "routeKey", False),
    ("domainName", "domainName", False),
    ("stage", "stage", False),
    ("requestId", "requestId", False),
    ("requestTimeEpoch", "requestTimeEpoch", True),
)
#: The envelope's ``identity`` object, from ``$context.identity``.
IDENTITY_FIELDS = ("sourceIp",)

#: The frame as one JSON string. ``$util.escapeJavaScript`` escapes as
#: JavaScript does, which is JSON's escaping plus one difference: a single
#: quote becomes ``\\'``, which JSON does not allow. ``replaceAll`` (a Java
#: regular expression: a backslash, then a quote) takes those backslashes out
#: again; every other backslash it wrote is doubled or starts an escape JSON
#: knows (``\\"``, ``\\\\``, ``\\/``, ``\\n``, ``\\uXXXX``), so the result
#: parses as JSON and decodes to the frame as sent. The frame is a value in
#: the template, never template text: ``$`` and ``#`` in it are not evaluated.
BODY_EXPRESSION = '"$util.escapeJavaScript($input.body).replaceAll("\\\\\'","\'")"'

#: Routes whose events carry no frame: their envelope's body is null.
NO_BODY_ROUTES = (spec.CONNECT_ROUTE, spec.DISCONNECT_ROUTE)


def request_template(route_key: str) -> str:
    """The Velocity template that renders the envelope for ``route_key``."""
    parts = [
        f'"{name}":{"" if number else chr(34)}$context.{variable}{"" if number else chr(34)}'
        for name, variable, number in CONTEXT_FIELDS
    ]
    identity = ",".join(f'"{name}":"$context.identity.{name}"' for name in IDENTITY_FIELDS)
    parts.append(f'"identity":{{{identity}}}')
    parts.append(f'"body":{"null" if route_key in NO_BODY_ROUTES else BODY_EXPRESSION}')
    return "{" + ",".join(parts) + "}"


def lambda_event(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The Lambda proxy event that carries the same facts as ``envelope``:
    what the handlers' :class:`WebSocketEvent` reads. Raises ValueError for a
    document that is not an envelope."""
    if not isinstance(envelope, Mapping):
        raise ValueError("the envelope must be a JSON object")
    context = {name: envelope.get(name) for name, _, _ in CONTEXT_FIELDS}
    for name, _, number in CONTEXT_FIELDS:
        value = context[name]
        if number and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"envelope field {name} must be a number")
        if not number and not isinstance(value, str):
            raise ValueError(f"envelope field {name} must be a string")
    identity = envelope.get("identity")
    context["identity"] = dict(identity) if isinstance(identity, Mapping) else {}
    body = envelope.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("envelope field body must be a string or null")
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def envelope_of(event: Mapping[str, Any]) -> str:
    """The envelope API Gateway would post for a Lambda proxy ``event`` (what
    tests compare rendered templates with), as compact JSON."""
    context = event.get("requestContext") or {}
    document: dict[str, Any] = {name: context.get(name) for name, _, _ in CONTEXT_FIELDS}
    document["identity"] = {name: (context.get("identity") or {}).get(name) for name in IDENTITY_FIELDS}
    document["body"] = None if context.get("routeKey") in NO_BODY_ROUTES else (event.get("body") or "")
    return json.dumps(document, separators=(",", ":"))
