"""What local mode serves: the channel server as its component registered it, in plain
dataclasses.

A :class:`World` holds its routes, functions, table, queues, schedules, authorizer and function
URLs. :mod:`.program` reads a World from what a ChannelServer registered under
Pulumi's mock engine; the rest of local mode serves it. Nothing here imports
Pulumi: local mode keeps only these, without Pulumi's memory.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .placeholders import ACCOUNT, REGION


class WiringError(Exception):
    """The component registered something API Gateway could not serve."""


@dataclass(frozen=True)
class FunctionDef:
    """One Lambda function as the component declared it."""

    name: str
    handler: str
    environment: Mapping[str, str]
    files: Mapping[str, str]
    """Archive path → the file's text: the function's code archive."""
    timeout_seconds: float
    memory_mb: int
    arn: str
    log_group: str

    def unpack(self, into: Path) -> Path:
        """Lay the archive out as Lambda does under /var/task."""
        for name, content in self.files.items():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        return into


@dataclass(frozen=True)
class QueueDef:
    """One SQS queue as the component declared it."""

    name: str
    url: str
    """Its URL in AWS: local mode points every environment value equal to it at its own queue."""
    arn: str
    visibility_timeout_seconds: int
    dead_letter_arn: str | None = None
    """The queue its redrive policy moves messages to, and after how many receives."""
    max_receives: int | None = None


@dataclass(frozen=True)
class Subscription:
    """An event source mapping: ``function`` invoked with ``queue``'s messages."""

    queue: QueueDef
    function: FunctionDef
    batch_size: int


@dataclass(frozen=True)
class HttpIntegration:
    """A route's non-proxy HTTP integration, as the component declared it."""

    url: str
    timeout_ms: int
    request_templates: Mapping[str, str]
    template_selection_expression: str
    request_parameters: Mapping[str, str]
    """``integration.request.header.X`` → a static value (``'text'``)."""
    response_keys: tuple[str, ...]
    """The integration responses' keys: ``$default`` or ``/regex/`` on the status."""


@dataclass(frozen=True)
class ScheduleDef:
    """An EventBridge Scheduler schedule that invokes one of the functions."""

    name: str
    expression: str
    """``rate(N minute|minutes|hour|hours|day|days)``."""
    function: FunctionDef
    input: str
    """The event the function gets, before the scheduler fills in its context attributes."""

    @property
    def interval_seconds(self) -> float:
        match = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", self.expression)
        if match is None:
            raise WiringError(f"schedule {self.name}: local mode runs rate(…) schedules, not {self.expression!r}")
        return int(match.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[match.group(2)]


@dataclass(frozen=True)
class AuthorizerDef:
    """The Lambda REQUEST authorizer on ``$connect``, as the component declared it."""

    name: str
    identity_sources: tuple[str, ...]
    function_arn: str
    """The ARN inside its ``authorizerUri``: the function API Gateway invokes."""
    function: FunctionDef | None = None
    """That function, when the program defines it (anywhere, not only under
    the ChannelServer) with code local mode can run; else None, and
    ``unavailable`` says why."""
    unavailable: str = ""


@dataclass(frozen=True)
class FunctionUrlDef:
    """A Lambda function URL, as the component declared it: its function
    answers HTTP requests (payload format 2.0) on an endpoint of its own."""

    function: FunctionDef
    url_id: str
    """The URL's id (``requestContext.apiId`` and ``domainPrefix`` of its events)."""
    url: str
    """Its URL in AWS, ``https://{url_id}.lambda-url.{region}.on.aws/``."""
    authorization_type: str
    """``AWS_IAM`` (only SigV4-signed requests reach the function) or ``NONE``."""


@dataclass(frozen=True)
class World:
    """The channel server as registered: what local mode builds and serves."""

    stage: str
    route_selection_expression: str
    routes: Mapping[str, FunctionDef]
    """Route key → the function behind it."""
    table_name: str
    table: Mapping[str, Any] = field(repr=False)
    """The registered inputs of the Table (keys, attributes, indexes, TTL)."""
    management_endpoint: str = ""
    """The stage's management API in AWS (``https://{api}.execute-api…/{stage}``):
    local mode points every environment value equal to it at its own."""
    two_way: frozenset[str] = frozenset()
    """Route keys with a ``$default`` route response (and the route response
    selection expression that picks it): their function's return value is sent
    to the client. On the other routes it is dropped, as API Gateway drops it."""
    queues: tuple[QueueDef, ...] = ()
    """Every queue, dead-letter queues before the queues that name them."""
    subscriptions: tuple[Subscription, ...] = ()
    http_routes: Mapping[str, HttpIntegration] = field(default_factory=dict)
    """Route key → its HTTP integration (the component's ``backend``)."""
    schedules: tuple[ScheduleDef, ...] = ()
    authorizer: AuthorizerDef | None = None
    """The authorizer ``$connect`` runs, if any."""
    stage_variables: Mapping[str, str] = field(default_factory=dict)
    function_urls: tuple[FunctionUrlDef, ...] = ()
    """Each function URL of the component (the server publish endpoint)."""
    region: str = REGION
    """The API's region and account (from its execution ARN): the authorizer's method ARN is in them."""
    account: str = ACCOUNT

    @property
    def route_keys(self) -> set[str]:
        """Every route's key, whatever serves it."""
        return set(self.routes) | set(self.http_routes)

    @property
    def message_routes(self) -> set[str]:
        """Route keys a frame can select (everything but $connect/$disconnect/$default)."""
        return {key for key in self.route_keys if not key.startswith("$")}


def scratch_dir() -> Path:
    """A private folder for unpacked archives; removed by the caller."""
    return Path(tempfile.mkdtemp(prefix="channel-server-local-"))
