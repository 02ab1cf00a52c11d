"""The events local mode's API Gateway hands a WebSocket API's integrations,
shaped like API Gateway's, and the ids and times in them.

``$connect`` carries the handshake's headers and query, MESSAGE the frame,
``$disconnect`` the close code and reason; each has a ``requestContext`` as
AWS fills it in.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..handlers.spec import CONNECT_ROUTE, DISCONNECT_ROUTE

if TYPE_CHECKING:
    from aiohttp import web

    from .gateway import Connection

_ID_ALPHABET = string.ascii_letters + string.digits
#: ``requestContext.domainName`` of every event: on AWS it is the API's own
#: domain, never a value the client chose.
DOMAIN_NAME = "localhost"


def new_id() -> str:
    """16 characters in the shape of API Gateway's connection, request and
    message ids (``Jx3uYdT9IAMCJfA=``)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def now_ms() -> int:
    return int(time.time() * 1000)


def request_time(ms: int) -> str:
    """``requestContext.requestTime``: ``dd/MMM/yyyy:HH:mm:ss +0000``."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


def iso(ms: int) -> str:
    """ISO 8601 in UTC to the millisecond, as the management API writes times."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class StageEvents:
    """The events of one stage of one API."""

    stage: str
    api_id: str

    def connect(self, request: web.Request, connection_id: str, connected_at: int, source_ip: str) -> dict:
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers[name] = value
            multi.setdefault(name, []).append(value)
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi,
            "requestContext": self._context(
                # the API's own name, as on AWS, never the client's Host header
                connection_id, CONNECT_ROUTE, "CONNECT", new_id(), connected_at, DOMAIN_NAME, source_ip,
            ),
            "isBase64Encoded": False,
        }
        if request.query:
            event["queryStringParameters"] = {k: v for k, v in request.query.items()}
            event["multiValueQueryStringParameters"] = {k: request.query.getall(k) for k in request.query.keys()}
        return event

    def message(self, connection: Connection, route_key: str, body: str, request_id: str) -> dict:
        context = self._context(
            connection.id, route_key, "MESSAGE", request_id, connection.connected_at,
            DOMAIN_NAME, connection.source_ip,
        )
        context["messageId"] = new_id()
        if connection.authorizer is not None:
            context["authorizer"] = dict(connection.authorizer)
        return {"requestContext": context, "body": body, "isBase64Encoded": False}

    def disconnect(self, connection: Connection, code: int) -> dict:
        context = self._context(
            connection.id, DISCONNECT_ROUTE, "DISCONNECT", new_id(), connection.connected_at,
            DOMAIN_NAME, connection.source_ip,
        )
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = _disconnect_reason(code)
        if connection.authorizer is not None:
            context["authorizer"] = dict(connection.authorizer)
        return {
            "headers": {"Host": "localhost", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {"Host": ["localhost"]},
            "requestContext": context,
            "isBase64Encoded": False,
        }

    def _context(self, connection_id: str, route_key: str, event_type: str, request_id: str,
                 connected_at: int, domain: str, source_ip: str) -> dict:
        now = now_ms()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": source_ip},
            "requestId": request_id,
            "domainName": domain,
            "connectionId": connection_id,
            "apiId": self.api_id,
        }


def _disconnect_reason(code: int) -> str:
    return {
        1000: "Client closed the connection",
        1001: "Going away",
        1003: "Binary frames are not supported",
        1005: "Client-side close frame status not set",
        1006: "Connection was closed abnormally",
        1009: "Message too big",
    }.get(code, f"Connection closed with code {code}")
