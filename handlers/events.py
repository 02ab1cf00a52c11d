"""A read-only view of an API Gateway WebSocket (Lambda proxy) event."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping


class WebSocketEvent:
    """Wraps the raw event dict; properties in snake_case, nothing computed
    from client-controlled headers."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw

    @property
    def _context(self) -> Mapping[str, Any]:
        return self.raw.get("requestContext") or {}

    @property
    def connection_id(self) -> str:
        """API Gateway sets it on every WebSocket event: one without it is
        malformed (a hand-written test event) and raises KeyError, as
        Powertools' event classes do, rather than passing ``""`` along."""
        connection_id = self._context.get("connectionId")
        if not connection_id or not isinstance(connection_id, str):
            raise KeyError("the event has no requestContext.connectionId: not an API Gateway WebSocket event")
        return connection_id

    @property
    def route_key(self) -> str:
        route_key: str = self._context.get("routeKey", "")
        return route_key

    @property
    def body(self) -> str | None:
        """The text frame as sent (None on $connect/$disconnect)."""
        body = self.raw.get("body")
        if body is not None and self.raw.get("isBase64Encoded"):
            try:
                return base64.b64decode(body).decode("utf-8")
            except (binascii.Error, ValueError):
                return None
        return body

    @property
    def authorizer(self) -> Mapping[str, Any]:
        """What the $connect authorizer returned: its ``context`` and its
        ``principalId``. API Gateway repeats it in every later event of the
        connection, so a join can read the limits set on $connect; set by
        API Gateway, never by the client. {} without an authorizer."""
        authorizer = self._context.get("authorizer")
        return authorizer if isinstance(authorizer, Mapping) else {}
