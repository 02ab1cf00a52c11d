"""``ChannelServerArgs``: the component's settings, their defaults and their checks.

The args type is a ``TypedDict``, the form Pulumi's component provider host
needs to infer the package schema that TypeScript, Go, C#, YAML and Python
programs use (``pulumi package add``; see ``plugin/``). Its annotations are
real types, not strings, because the schema analyzer reads them without
evaluating them; the field docstrings are the descriptions users see in their
IDEs in every language.

Every field is optional; :func:`resolve` applies defaults and refuses invalid
values with a message that names the field and says what to change, before any
resource is registered. Fields typed ``Input[...]`` may also be a
``pulumi.Output`` (another resource's ARN, say): a value known at construction
is checked at once, an Output when it resolves, with the same message.

Each field is also a stack config key of this project (camelCase, declared in
Pulumi.yaml); :func:`from_config` reads them. An object field has one key per
field of its own (``domain.certificate_arn`` is ``domainCertificateArn``).

This module does not import Pulumi (local mode's process never loads it).
"""

import re
import sys
import urllib.parse
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence, TypedDict, TypeVar, Union

from . import backend as backend_contract
from .handlers import protocol, spec

if TYPE_CHECKING:
    from pulumi import Output

T = TypeVar("T")
#: ``pulumi.Input[T]``, spelled as the Pulumi SDK spells it (a plain value, an
#: awaitable, or an ``Output``, named by a forward reference), so that this
#: module loads without importing Pulumi. The schema analyzer reads it as
#: pulumi.Input (tests/test_schema.py checks the two are read alike).
Input = Union[T, Awaitable[T], "Output[T]"]


class HttpBackendArgs(TypedDict, total=False):
    """An HTTP server that serves the routes instead of the Lambda handlers
    (``ChannelServerArgs.backend``)."""

    url: Input[str]
    """Where API Gateway POSTs each event's envelope: an ``http://`` or
    ``https://`` URL. Required."""

    timeout_ms: int
    """How long API Gateway waits for the backend's answer, 50 to 29000 ms.
    Default 29000."""


class CustomDomainArgs(TypedDict, total=False):
    """A custom domain for the clients' URL (``ChannelServerArgs.domain``): an
    API Gateway regional domain name (TLS 1.2) mapped to the stage."""

    name: Input[str]
    """The domain clients connect to, for example ``chat.example.com``. Required."""

    certificate_arn: Input[str]
    """ARN of an ACM certificate for ``name``, in the stack's region. Required."""

    base_path: str
    """The API mapping key: the URL becomes ``wss://{name}/{base_path}``. One path
    segment of letters, digits, ``-``, ``_``, ``.`` or ``~``. Default: none, the
    URL is ``wss://{name}``."""

    hosted_zone_id: Input[str]
    """A Route 53 hosted zone id (``Z…``): an alias A record for ``name`` is
    created in it. Default: none, create the DNS record yourself (the
    ``domain_target`` output)."""


class ConnectAuthorizerArgs(TypedDict, total=False):
    """A Lambda REQUEST authorizer that API Gateway runs on ``$connect``
    (``ChannelServerArgs.authorizer``). The only kind WebSocket APIs have, and
    only on ``$connect``: its ``context`` then reaches every later event of the
    connection."""

    function_arn: Input[str]
    """ARN of your authorizer function. Required. It returns an IAM policy that
    allows or denies ``execute-api:Invoke`` and a ``context``; a string
    ``channelPattern`` in that context is a regular expression every channel
    the connection joins must match in full."""

    identity_sources: Sequence[str]
    """Where the identity is read from: ``route.request.querystring.NAME``,
    ``route.request.header.NAME``, ``stageVariables.NAME`` or ``context.NAME``.
    A connection missing any of them is refused (401) without calling the
    function. Default ``["route.request.querystring.token"]``."""

    type: str
    """``REQUEST`` (default), the only authorizer type WebSocket APIs have."""

    result_ttl_seconds: int
    """Result caching: of the v2 API types, API Gateway caches authorizer
    results only for HTTP APIs, so 0 (default) is the only value; a connection
    is authorized once, on ``$connect``."""


class ChannelServerArgs(TypedDict, total=False):
    """Settings of one channel server. All optional."""

    stage_name: str
    """API Gateway stage name; part of the URL (``wss://…/{stage_name}``). Default ``dev``."""

    table_name: str
    """Fixed name for the connections table (for example ``Connections``). Default:
    auto-named from the component name, so stacks never collide."""

    lambda_runtime: str
    """Lambda runtime of every handler function. Default ``python3.13``."""

    lambda_architecture: str
    """``arm64`` (default) or ``x86_64``."""

    lambda_memory_mb: int
    """Memory of every handler function but publish's, 128 to 10240 MB. Default 256."""

    publish_memory_mb: int
    """Memory of the publish function, 128 to 10240 MB. Default 1024. Lambda's CPU
    grows with memory (1769 MB is one full vCPU), and a large fan-out is bound by
    CPU once enough posts are in flight: each post costs about 50 to 80 µs of a
    full core (bench/post_cpu.py)."""

    lambda_timeout_seconds: int
    """Timeout of every handler function, 1 to 29 seconds (API Gateway stops waiting
    for an integration after 29 s). Default 29."""

    log_retention_days: int
    """Retention of each function's log group (and the access logs'), one of
    CloudWatch's allowed values (1, 3, 5, 7, 14, 30, …). Default 14."""

    throttling_burst_limit: int
    """Stage throttling: burst of messages, 1 to 5000. Default 500."""

    throttling_rate_limit: float
    """Stage throttling: steady messages per second, above 0 and at most 10000.
    Default 1000."""

    channel_id_pattern: str
    """Regular expression a whole channelId must match. Default ``[A-Za-z0-9_.:-]+``.
    Channel ids are always at most 128 characters and never start with ``$``."""

    max_message_bytes: int
    """Largest ``message`` frame (UTF-8 JSON, as delivered) a publish may produce,
    1 to 131072 bytes (API Gateway's 128 KB limit). Larger publishes get a
    publishFailure and reach nobody. Default 131072."""

    posts_in_flight: int
    """Posts to members one publish keeps in flight at once, 1 to 1000. Default 64.
    With a round trip of R ms to the management API, one publish reaches about
    posts_in_flight × 1000 / R members a second, until its CPU is the limit."""

    inline_fanout_limit: int
    """Members one publish posts to itself, 1 to 50000. Default 1000 (about
    1 s of posting at 20 ms a post). A publish to a larger channel hands the
    other members, in chunks, to the fan-out function through an SQS queue,
    then posts to the first ones itself: its publishSuccess then says how
    many were queued, for whom the message is accepted for delivery rather
    than delivered."""

    posts_per_second: int
    """The account budget: management API posts a second that all of this
    server's functions together send at most, 1 to 1000000. Default 5000,
    half of API Gateway's default account quota (10,000 requests a second per
    account and Region, shared by every API and by these posts), the other
    half left to clients' frames and your other APIs. A fan-out larger than a
    second's budget takes longer instead of drawing 429s; posts that cannot
    start before a function's time runs out are handed to the fan-out queue.
    Lower it in Regions whose quota is 2,500, and when other stacks in the
    account post too; raise it with your quota (docs/capacity.md)."""

    channel_index_shards: int
    """Partitions of the channel index a channel spreads over, 1 to 64.
    Default 1: the index is keyed on the channel, so one channel's joins
    (about 1,000 a second) and publish reads (3,000 read units a second) are
    one DynamoDB partition's. With more, joins and reads spread over that
    many, and a publish reads them all at once (one query each). Set it
    before a large event: members who joined before a change are found again
    only once they join again (docs/capacity.md)."""

    fanout_concurrency: int
    """Fan-out function invocations running at once, at most (the queue's
    event source mapping's maximum concurrency), 2 to 1000. Default 50.
    Each posts one chunk of members at posts_in_flight posts at a time, all
    within the account budget; more matters only with a raised quota."""

    heartbeat_interval_minutes: int
    """Server heartbeats: every this many minutes, 1 to 9, a scheduled function
    sends ``{"type": "heartbeat"}`` to every live connection and closes those
    found gone, so idle clients stay connected up to API Gateway's 2-hour
    limit without pinging. 0 or unset: off (default). Costs one API Gateway
    message per connection per interval (docs/architecture.md, "Heartbeats")."""

    history_seconds: int
    """History: every message published is kept this many seconds, 1 to
    86400 (a day), and a join may resume after the last message its client
    saw (``"since"``): it is sent what it missed, then live messages. 0 or
    unset: off (default). Costs one DynamoDB write per publish, of the
    message's size (docs/architecture.md, "History and resume")."""

    backend: HttpBackendArgs
    """Serve the routes from an HTTP server instead of the Lambda handlers:
    ``{"url": "https://…", "timeout_ms": 29000}``. Every route gets an HTTP
    integration that POSTs a JSON envelope (docs/architecture.md, "HTTP
    backend"); no handler functions and no fan-out queue are built. Unset:
    the Lambda handlers (default)."""

    domain: CustomDomainArgs
    """A custom domain: ``{"name": "chat.example.com", "certificate_arn":
    "arn:aws:acm:…"}``. The ``url`` output becomes ``wss://{name}`` (plus the
    base path); the handlers keep posting to the execute-api management
    endpoint. Unset: the execute-api URL (default)."""

    authorizer: ConnectAuthorizerArgs
    """Authorize each connection on ``$connect`` with your Lambda REQUEST
    authorizer: ``{"function_arn": "arn:aws:lambda:…", "identity_sources":
    ["route.request.querystring.token"]}``. Unset: anyone may connect (default)."""

    access_logs: bool
    """JSON access logs of the stage (request id, route, status, error message,
    integration latency, connection id) in a log group kept
    ``log_retention_days``. Default off."""

    api_gateway_cloudwatch_role_arn: Input[str]
    """With ``access_logs``: the role API Gateway writes logs with, set once per
    account and region. Default: a role is created for it."""

    manage_api_gateway_account: bool
    """With ``access_logs``: set the region's API Gateway account setting to that
    role (default on). Turn off when another stack or team manages it."""

    server_publish: bool
    """An HTTPS endpoint backends publish into channels through (a Lambda
    function URL that takes only SigV4-signed requests; who may call it is
    IAM's decision: ``grant_publish`` or the ``publishPolicyArn`` output).
    Members get the message from the senderId ``$server``; a request may
    carry an idempotency key that publishes once within its window. Default
    off."""

    presence: bool
    """Presence: every join is listed in its channel (up to
    ``presence_max_members``), a ``{"type": "members"}`` request lists a
    channel's members, and a join with ``"presence": true`` is told of
    members joining and leaving (``memberJoined``, ``memberLeft``). Default
    off (docs/protocol.md, "Presence")."""

    presence_max_members: int
    """With ``presence``: members listed and announced per channel, 1 to 1000.
    Default 100. Members who join a full channel are neither listed nor
    announced, and do not watch: each listed join and leave costs one post
    per watching member."""

    metrics: bool
    """CloudWatch metrics from the handlers (Embedded Metric Format, namespace
    ``ChannelServer``): fan-out size, deliveries, gone and failed posts and
    duration of each publish, fan-out chunk and heartbeat. Default off."""

    alarm_topic_arn: Input[str]
    """An SNS topic for alarms: handler errors and throttles, API execution and
    integration errors, and (with ``metrics``) failed deliveries. Default: no
    alarms."""

    tracing: bool
    """X-Ray active tracing on every function. Default off. (API Gateway traces
    only REST APIs: a WebSocket stage has no tracing.)"""

    retain_on_delete: bool
    """Keep the connections table in AWS when it is deleted from the stack
    (``pulumi destroy`` or a replacement). Default off."""

    deletion_protection: bool
    """DynamoDB deletion protection on the table: AWS refuses to delete it until
    this is turned off. Default off."""

    tags: Input[Mapping[str, Input[str]]]
    """Tags on every resource that takes tags."""


#: CloudWatch Logs' accepted retention periods, in days.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)
#: API Gateway's integration timeout: a handler may not run longer.
INTEGRATION_TIMEOUT_SECONDS = spec.INTEGRATION_TIMEOUT_SECONDS
ARCHITECTURES = ("arm64", "x86_64")


class ChannelServerArgsError(ValueError):
    """An argument of ChannelServer is invalid; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """ChannelServerArgs with defaults applied and every value checked.

    An ``Input`` field's value may be a ``pulumi.Output``, already wrapped so
    that it is checked when it resolves."""

    stage_name: str = "dev"
    table_name: str | None = None
    lambda_runtime: str = "python3.13"
    lambda_architecture: str = "arm64"
    lambda_memory_mb: int = 256
    publish_memory_mb: int = 1024
    lambda_timeout_seconds: int = INTEGRATION_TIMEOUT_SECONDS
    log_retention_days: int = 14
    throttling_burst_limit: int = 500
    throttling_rate_limit: float = 1000.0
    channel_id_pattern: str = protocol.DEFAULT_CHANNEL_ID_PATTERN
    max_message_bytes: int = protocol.API_GATEWAY_MAX_MESSAGE_BYTES
    posts_in_flight: int = spec.DEFAULT_POSTS_IN_FLIGHT
    inline_fanout_limit: int = spec.DEFAULT_INLINE_FANOUT_LIMIT
    posts_per_second: int = spec.DEFAULT_POSTS_PER_SECOND
    channel_index_shards: int = spec.DEFAULT_CHANNEL_INDEX_SHARDS
    fanout_concurrency: int = spec.DEFAULT_FANOUT_CONCURRENCY
    heartbeat_interval_minutes: int = 0
    history_seconds: int = 0
    backend: Mapping[str, Any] | None = None
    """None: the Lambda handlers; else {"url": str or Output, "timeout_ms": int}."""
    domain: Mapping[str, Any] | None = None
    """None: the execute-api URL; else every CustomDomainArgs field (None when unset)."""
    authorizer: Mapping[str, Any] | None = None
    """None: no authorizer; else {"function_arn", "identity_sources" (a tuple), "type", "result_ttl_seconds"}."""
    access_logs: bool = False
    api_gateway_cloudwatch_role_arn: Any = None
    manage_api_gateway_account: bool = True
    server_publish: bool = False
    presence: bool = False
    presence_max_members: int = spec.DEFAULT_PRESENCE_MAX_MEMBERS
    metrics: bool = False
    alarm_topic_arn: Any = None
    tracing: bool = False
    retain_on_delete: bool = False
    deletion_protection: bool = False
    tags: Any = field(default_factory=dict)
    """A dict of strings, or an Output of one."""

    @property
    def heartbeats(self) -> bool:
        return self.heartbeat_interval_minutes > 0

    @property
    def channel_index(self) -> str:
        """The channel index's name: keyed on the channel, or on its shards."""
        return spec.CHANNEL_SHARD_INDEX if self.channel_index_shards > 1 else spec.CHANNEL_INDEX


def _fail(name: str, value: Any, what: str) -> ChannelServerArgsError:
    return ChannelServerArgsError(f"ChannelServerArgs {name}={value!r}: {what}")


def _int(name: str, value: Any, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Pulumi config and other languages may send 14.0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, f"must be a whole number from {low} to {high}{unit}")
    if not low <= value <= high:
        raise _fail(name, value, f"must be from {low} to {high}{unit}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "must be true or false")
    return value


def checked(value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)`` now for a plain value; for a ``pulumi.Output``, an Output
    that runs ``check`` when the value resolves (a failure then stops the
    deployment with the same message)."""
    if _is_output(value):
        return value.apply(check)
    return check(value)


def _arn(name: str, service: str, resource: str, example: str) -> Callable[[Any], str]:
    """A check that a value is an ARN of ``service`` whose resource part matches ``resource``."""
    pattern = re.compile(rf"arn:aws[a-z-]*:{service}:[a-z0-9-]*:(\d{{12}})?:{resource}")

    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise _fail(name, value, f"must be an ARN like {example}")
        return value

    return check


_check_certificate = _arn("domain.certificate_arn", "acm", r"certificate/[A-Za-z0-9-]+",
                          "arn:aws:acm:us-east-1:123456789012:certificate/…, in the stack's region")
_check_authorizer_function = _arn("authorizer.function_arn", "lambda",
                                  r"function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]+)?",
                                  "arn:aws:lambda:us-east-1:123456789012:function:NAME")
_check_alarm_topic = _arn("alarm_topic_arn", "sns", r"[A-Za-z0-9_-]{1,256}(\.fifo)?",
                          "arn:aws:sns:us-east-1:123456789012:TOPIC")
_check_cloudwatch_role = _arn("api_gateway_cloudwatch_role_arn", "iam", r"role/[\w+=,.@/-]{1,512}",
                              "arn:aws:iam::123456789012:role/NAME")
#: A DNS name API Gateway accepts for a regional custom domain (lower case; a
#: wildcard first label is allowed).
_DOMAIN_NAME = re.compile(r"(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_BASE_PATH = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_HOSTED_ZONE_ID = re.compile(r"Z[A-Z0-9]{1,31}")
#: Where a WebSocket REQUEST authorizer may read the identity from.
IDENTITY_SOURCE = re.compile(r"(route\.request\.(header|querystring)|stageVariables|context)\.[A-Za-z0-9_.-]+")
DEFAULT_IDENTITY_SOURCES = ("route.request.querystring.token",)


def _check_domain_name(value: Any) -> str:
    if not isinstance(value, str) or not _DOMAIN_NAME.fullmatch(value):
        raise _fail("domain.name", value, "must be a lower-case DNS name like chat.example.com")
    return value


def _check_hosted_zone_id(value: Any) -> str:
    if not isinstance(value, str) or not _HOSTED_ZONE_ID.fullmatch(value):
        raise _fail("domain.hosted_zone_id", value, "must be a Route 53 hosted zone id like Z0123456789ABCDEFGHIJ")
    return value


def _check_tags(value: Any) -> dict[str, Any]:
    """The tags, each value checked (when it resolves, for an Output)."""
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise _fail("tags", value, "must map strings to strings")
    return {key: checked(tag, _check_tag(key)) for key, tag in value.items()}


def _check_tag(key: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _fail("tags", {key: value}, "must map strings to strings")
        return value

    return check


def resolve(args: Mapping[str, Any] | None) -> Settings:
    """Apply defaults to ``args`` and check every value.

    Raises :class:`ChannelServerArgsError` naming the first invalid field.
    """
    args = dict(args or {})
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ChannelServerArgsError(
            f"ChannelServerArgs has no field {', '.join(unknown)}; valid fields: {', '.join(sorted(known))}"
        )
    values = {k: v for k, v in args.items() if v is not None}
    s = Settings(**values)

    if not isinstance(s.stage_name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", s.stage_name):
        raise _fail("stage_name", s.stage_name, "use 1 to 128 letters, digits, '-' or '_'")
    if s.table_name is not None and (
        not isinstance(s.table_name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", s.table_name)
    ):
        raise _fail("table_name", s.table_name, "use 3 to 255 letters, digits, '_', '-' or '.', or leave it unset")
    if not isinstance(s.lambda_runtime, str) or not re.fullmatch(r"python3\.\d+", s.lambda_runtime):
        raise _fail("lambda_runtime", s.lambda_runtime, "the handlers are Python: use a runtime like 'python3.13'")
    if s.lambda_architecture not in ARCHITECTURES:
        raise _fail("lambda_architecture", s.lambda_architecture, f"use one of {', '.join(ARCHITECTURES)}")
    memory = _int("lambda_memory_mb", s.lambda_memory_mb, 128, 10240, " MB")
    publish_memory = _int("publish_memory_mb", s.publish_memory_mb, 128, 10240, " MB")
    timeout = _int(
        "lambda_timeout_seconds", s.lambda_timeout_seconds, 1, INTEGRATION_TIMEOUT_SECONDS,
        f" seconds (API Gateway's integration timeout is {INTEGRATION_TIMEOUT_SECONDS} s)",
    )
    retention = _int("log_retention_days", s.log_retention_days, 1, 3653, " days")
    if retention not in LOG_RETENTION_DAYS:
        raise _fail("log_retention_days", retention, f"CloudWatch accepts only {LOG_RETENTION_DAYS}")
    burst = _int("throttling_burst_limit", s.throttling_burst_limit, 1, 5000, " (0 would reject every message)")
    rate = s.throttling_rate_limit
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 10000:
        raise _fail("throttling_rate_limit", rate,
                    "must be a number above 0 and at most 10000 (0 would reject every message)")
    if not isinstance(s.channel_id_pattern, str) or not s.channel_id_pattern:
        raise _fail("channel_id_pattern", s.channel_id_pattern, "must be a non-empty regular expression")
    try:
        re.compile(s.channel_id_pattern)
    except re.error as exc:
        raise _fail("channel_id_pattern", s.channel_id_pattern, f"is not a valid regular expression ({exc})") from None
    max_bytes = _int(
        "max_message_bytes", s.max_message_bytes, 1, protocol.API_GATEWAY_MAX_MESSAGE_BYTES,
        " bytes (API Gateway's message limit)",
    )
    posts_in_flight = _int("posts_in_flight", s.posts_in_flight, 1, spec.MAX_POSTS_IN_FLIGHT)
    inline_fanout_limit = _int("inline_fanout_limit", s.inline_fanout_limit, 1, spec.MAX_INLINE_FANOUT_LIMIT)
    posts_per_second = _int("posts_per_second", s.posts_per_second, 1, spec.MAX_POSTS_PER_SECOND,
                            " (API Gateway's default account quota is 10,000 requests a second)")
    index_shards = _int("channel_index_shards", s.channel_index_shards, 1, spec.MAX_CHANNEL_INDEX_SHARDS)
    fanout_concurrency = _int("fanout_concurrency", s.fanout_concurrency, spec.MIN_FANOUT_CONCURRENCY,
                              spec.MAX_FANOUT_CONCURRENCY, " (the event source mapping's maximum concurrency)")
    heartbeat = _int("heartbeat_interval_minutes", s.heartbeat_interval_minutes, 0, spec.MAX_HEARTBEAT_MINUTES,
                     " minutes (0 is off; API Gateway closes idle connections after 10)")
    history = _int("history_seconds", s.history_seconds, 0, spec.MAX_HISTORY_SECONDS,
                   " seconds (0 is off; at most a day)")
    presence = _bool("presence", s.presence)
    presence_max_members = _int("presence_max_members", s.presence_max_members, spec.MIN_PRESENCE_MAX_MEMBERS,
                                spec.MAX_PRESENCE_MAX_MEMBERS, " (each listed join and leave is posted to every "
                                "watching member: a channel filling at once costs up to its square in posts)")
    http_backend = _backend(s.backend)
    domain = _domain(s.domain)
    authorizer = _authorizer(s.authorizer)
    switches = {name: _bool(name, getattr(s, name)) for name in (
        "access_logs", "manage_api_gateway_account", "server_publish", "metrics", "tracing", "retain_on_delete",
        "deletion_protection")}
    role_arn = None if s.api_gateway_cloudwatch_role_arn is None else checked(
        s.api_gateway_cloudwatch_role_arn, _check_cloudwatch_role)
    topic_arn = None if s.alarm_topic_arn is None else checked(s.alarm_topic_arn, _check_alarm_topic)
    tags = checked(s.tags, _check_tags)

    if http_backend is not None:
        # what only the Lambda handlers do
        lambda_only = {
            "heartbeat_interval_minutes": (heartbeat, "server heartbeats come from the Lambda handlers; with an "
                                                      "HTTP backend, send them from the backend"),
            "metrics": (switches["metrics"], "the metrics come from the Lambda handlers; with an HTTP backend, "
                                             "emit them from the backend"),
            "tracing": (switches["tracing"], "X-Ray traces the Lambda handlers; with an HTTP backend there are none"),
            "server_publish": (switches["server_publish"], "the publish endpoint runs the Lambda handlers' fan-out; "
                                                           "with an HTTP backend, publish from the backend"),
            "history_seconds": (history, "history is kept and replayed by the Lambda handlers; with an HTTP "
                                         "backend, keep it in the backend"),
            "presence": (presence, "presence is kept and announced by the Lambda handlers; with an HTTP "
                                   "backend, keep it in the backend"),
            "authorizer": (authorizer, "the authorizer's context reaches Lambda events only (the backend's "
                                       "envelope does not carry it); authorize in the backend"),
        }
        for name, (value, why) in lambda_only.items():
            if value:
                raise _fail(name, value, f"{why} (or leave backend unset)")
    if role_arn is not None and not switches["access_logs"]:
        raise _fail("api_gateway_cloudwatch_role_arn", _shown(role_arn),
                    "is used only with access_logs: set access_logs=True or leave it unset")
    if role_arn is not None and not switches["manage_api_gateway_account"]:
        raise _fail("api_gateway_cloudwatch_role_arn", _shown(role_arn), "is set as the account's role only with "
                    "manage_api_gateway_account=True; leave one of them unset")
    return Settings(
        stage_name=s.stage_name,
        table_name=s.table_name,
        lambda_runtime=s.lambda_runtime,
        lambda_architecture=s.lambda_architecture,
        lambda_memory_mb=memory,
        publish_memory_mb=publish_memory,
        lambda_timeout_seconds=timeout,
        log_retention_days=retention,
        throttling_burst_limit=burst,
        throttling_rate_limit=float(rate),
        channel_id_pattern=s.channel_id_pattern,
        max_message_bytes=max_bytes,
        posts_in_flight=posts_in_flight,
        inline_fanout_limit=inline_fanout_limit,
        posts_per_second=posts_per_second,
        channel_index_shards=index_shards,
        fanout_concurrency=fanout_concurrency,
        heartbeat_interval_minutes=heartbeat,
        history_seconds=history,
        backend=http_backend,
        domain=domain,
        authorizer=authorizer,
        api_gateway_cloudwatch_role_arn=role_arn,
        alarm_topic_arn=topic_arn,
        tags=tags,
        presence=presence,
        presence_max_members=presence_max_members,
        **switches,
    )


def _object(name: str, value: Any, kind: type, example: str) -> dict[str, Any] | None:
    """``value`` as a dict of ``kind``'s fields, or None when unset."""
    if value is None:
        return None
    allowed = list(kind.__annotations__)
    if not isinstance(value, Mapping):
        raise _fail(name, value, f"must be {example}, or unset")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        names = ", ".join(allowed[:-1]) + f" and {allowed[-1]}" if len(allowed) > 1 else allowed[0]
        raise _fail(name, dict(value), f"has no field {', '.join(unknown)}; use {names}")
    return dict(value)


def _required(name: str, value: dict[str, Any], key: str) -> Any:
    if value.get(key) is None or value.get(key) == "":
        raise _fail(name, value, f"{key} is required")
    return value[key]


def _shown(value: Any) -> Any:
    """``value`` for an error message: an Output's value is not known yet."""
    return "<an Output>" if _is_output(value) else value


def check_backend_url(url: Any) -> str:
    """``url`` when API Gateway can post to it; else ChannelServerArgsError.
    Also what an Output's URL is checked with once it resolves."""
    if not isinstance(url, str):
        raise _fail("backend", {"url": url}, "url must be a string")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail("backend", {"url": url}, "url must be an http:// or https:// URL with a host")
    if any(ch.isspace() for ch in url):
        raise _fail("backend", {"url": url}, "url must not contain spaces")
    return url


def _backend(value: Any) -> dict[str, Any] | None:
    """The HTTP backend's settings with defaults, or None for the Lambda handlers."""
    value = _object("backend", value, HttpBackendArgs, '{"url": "https://…", "timeout_ms": N}')
    if value is None:
        return None
    url = checked(_required("backend", value, "url"), check_backend_url)
    timeout = value.get("timeout_ms")
    timeout = backend_contract.DEFAULT_TIMEOUT_MS if timeout is None else _int(
        "backend.timeout_ms", timeout, backend_contract.MIN_TIMEOUT_MS, backend_contract.MAX_TIMEOUT_MS,
        " ms (API Gateway's integration timeout range)")
    return {"url": url, "timeout_ms": timeout}


def _domain(value: Any) -> dict[str, Any] | None:
    """The custom domain's settings (every field; None when unset), or None."""
    value = _object("domain", value, CustomDomainArgs,
                    '{"name": "chat.example.com", "certificate_arn": "arn:aws:acm:…"}')
    if value is None:
        return None
    name = checked(_required("domain", value, "name"), _check_domain_name)
    certificate = checked(_required("domain", value, "certificate_arn"), _check_certificate)
    base_path = value.get("base_path") or None
    if base_path is not None and (not isinstance(base_path, str) or not _BASE_PATH.fullmatch(base_path)):
        raise _fail("domain.base_path", base_path,
                    "use one path segment of letters, digits, '-', '_', '.' or '~' (or leave it unset)")
    zone = value.get("hosted_zone_id") or None
    zone = None if zone is None else checked(zone, _check_hosted_zone_id)
    return {"name": name, "certificate_arn": certificate, "base_path": base_path, "hosted_zone_id": zone}


def _authorizer(value: Any) -> dict[str, Any] | None:
    """The $connect authorizer's settings with defaults, or None."""
    value = _object("authorizer", value, ConnectAuthorizerArgs,
                    '{"function_arn": "arn:aws:lambda:…", "identity_sources": ["route.request.querystring.token"]}')
    if value is None:
        return None
    kind = value.get("type") or "REQUEST"
    if kind == "JWT":
        raise _fail("authorizer.type", kind, "WebSocket APIs have no JWT authorizer: verify the token in a REQUEST "
                    "authorizer function (type REQUEST)")
    if kind != "REQUEST":
        raise _fail("authorizer.type", kind, "WebSocket APIs authorize $connect with a Lambda REQUEST authorizer: "
                    "use REQUEST")
    ttl = value.get("result_ttl_seconds") or 0
    if ttl != 0:
        raise _fail("authorizer.result_ttl_seconds", ttl, "of the v2 API types, API Gateway caches authorizer results "
                    "only for HTTP APIs; "
                    "a WebSocket connection is authorized once, on $connect: use 0 or leave it unset")
    sources = value.get("identity_sources")
    sources = DEFAULT_IDENTITY_SOURCES if sources is None else sources
    if isinstance(sources, str) or not isinstance(sources, Sequence) or not sources or not all(
        isinstance(source, str) and IDENTITY_SOURCE.fullmatch(source) for source in sources
    ):
        raise _fail("authorizer.identity_sources", sources,
                    "must be a non-empty list like ['route.request.querystring.token', 'route.request.header.Auth'] "
                    "(route.request.querystring.*, route.request.header.*, stageVariables.* or context.*)")
    function_arn = checked(_required("authorizer", value, "function_arn"), _check_authorizer_function)
    return {"function_arn": function_arn, "identity_sources": tuple(sources), "type": kind, "result_ttl_seconds": 0}


def _is_output(value: Any) -> bool:
    pulumi = sys.modules.get("pulumi")  # never imported here: an Output means Pulumi is loaded
    return pulumi is not None and isinstance(value, pulumi.Output)
