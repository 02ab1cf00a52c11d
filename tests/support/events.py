"""API Gateway WebSocket events, shaped like recorded ones (``tests/events/``).

``event("publish", connection_id=alice, body='{"type":"publish","data":1}')``
loads ``tests/events/publish.json`` and returns a fresh copy for that
connection and frame, with the route key API Gateway's route selection
(``$request.body.type``) would pick for that body.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from channel_server.handlers import spec

EVENTS = Path(__file__).resolve().parent.parent / "events"

#: Entry point (function of ``channel_server.handlers.app``) by route key; the
#: recorded event of each route is ``tests/events/{entry point}.json``.
ENTRY_POINTS = {route.key: route.function for route in spec.ROUTES}
#: The route keys a frame's type selects: every key but API Gateway's own ($...).
MESSAGE_ROUTES = tuple(route.key for route in spec.ROUTES if not route.key.startswith("$"))
#: Where a frame can arrive: the message routes and ``$default``.
FRAME_ROUTES = (*MESSAGE_ROUTES, "$default")

_UNSET: Any = object()
_ID_ALPHABET = string.ascii_letters + string.digits


@lru_cache(maxsize=None)
def _fixture(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def route_for(body: str | None) -> str:
    """The route key API Gateway selects for ``body``: the value of its "type"
    when that is exactly one of the route keys, else ``$default``."""
    try:
        frame = json.loads(body) if body is not None else None
    except (ValueError, RecursionError):
        return "$default"
    if isinstance(frame, dict) and isinstance(frame.get("type"), str) and frame["type"] in MESSAGE_ROUTES:
        return frame["type"]
    return "$default"


def event(name: str, connection_id: str | None = None, body: Any = _UNSET) -> dict:
    """A deep copy of fixture ``name`` with its connection id and, for message
    events, its body replaced (a dict body is sent as compact JSON)."""
    raw = copy.deepcopy(_fixture(name))
    context = raw["requestContext"]
    if connection_id is not None:
        context["connectionId"] = connection_id
    if body is not _UNSET:
        if context["eventType"] != "MESSAGE":
            raise ValueError(f"{name} is a {context['eventType']} event: it has no body")
        raw["body"] = body if body is None or isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    if context["eventType"] == "MESSAGE":
        context["routeKey"] = route_for(raw["body"])
    return raw


def new_connection_id() -> str:
    """A connection id shaped like API Gateway's: 15 base64-like characters and '='."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def url_event(body: Any, *, method: str = "POST", base64_body: bool = False) -> dict:
    """A function URL's request event (payload format 2.0), as Lambda sends it."""
    import base64

    text = body if isinstance(body, str) or body is None else json.dumps(body)
    if base64_body and text is not None:
        text = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc.lambda-url.us-east-1.on.aws"},
        "requestContext": {"http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9",
                                    "userAgent": "test"},
                           "requestId": "r1", "routeKey": "$default", "stage": "$default", "timeEpoch": 0},
        "body": text, "isBase64Encoded": base64_body,
    }
