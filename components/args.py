"""``ChannelServerArgs``: the component's settings, their defaults and their checks.

The args type is a ``TypedDict`` (the form Pulumi's component packages need to
infer a schema for other languages). Every field is optional; :func:`resolve`
applies defaults and refuses invalid values with a message that names the field
and says what to change, before any resource is registered.

Each field is also a stack config key of this project (camelCase, declared in
Pulumi.yaml); :func:`from_config` reads them.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, TypedDict

from . import backend as backend_contract
from .handlers import protocol, spec


class HttpBackend(TypedDict, total=False):
    """An HTTP server that serves the routes instead of the Lambda handlers
    (``ChannelServerArgs.backend``)."""

    url: str
    """Where API Gateway POSTs each event's envelope: an ``http://`` or
    ``https://`` URL. Required."""

    timeout_ms: int
    """How long API Gateway waits for the backend's answer, 50 to 29000 ms.
    Default 29000."""


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
    """Retention of each function's log group, one of CloudWatch's allowed values
    (1, 3, 5, 7, 14, 30, …). Default 14."""

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
    heartbeat_interval_minutes: int
    """Server heartbeats: every this many minutes, 1 to 9, a scheduled function
    sends ``{"type": "heartbeat"}`` to every live connection and closes those
    found gone, so idle clients stay connected up to API Gateway's 2-hour
    limit without pinging. 0 or unset: off (default). Costs one API Gateway
    message per connection per interval (docs/architecture.md, "Heartbeats")."""

    backend: HttpBackend
    """Serve the routes from an HTTP server instead of the Lambda handlers:
    ``{"url": "https://…", "timeout_ms": 29000}``. Every route gets an HTTP
    integration that POSTs a JSON envelope (docs/architecture.md, "HTTP
    backend"); no handler functions and no fan-out queue are built. Unset:
    the Lambda handlers (default). ``url`` may be a ``pulumi.Output``."""

    tags: dict[str, str]
    """Tags on every resource that takes tags."""


#: CloudWatch Logs' accepted retention periods, in days.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
#: API Gateway's integration timeout: a handler may not run longer.
INTEGRATION_TIMEOUT_SECONDS = 29
ARCHITECTURES = ("arm64", "x86_64")


class ChannelServerArgsError(ValueError):
    """An argument of ChannelServer is invalid; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """ChannelServerArgs with defaults applied and every value checked."""

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
    heartbeat_interval_minutes: int = 0
    backend: Mapping[str, Any] | None = None
    """None: the Lambda handlers; else {"url": str or Output, "timeout_ms": int}."""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def heartbeats(self) -> bool:
        return self.heartbeat_interval_minutes > 0


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
        " seconds (API Gateway's integration timeout is 29 s)",
    )
    retention = _int("log_retention_days", s.log_retention_days, 1, 3653, " days")
    if retention not in LOG_RETENTION_DAYS:
        raise _fail("log_retention_days", retention, f"CloudWatch accepts only {LOG_RETENTION_DAYS}")
    burst = _int("throttling_burst_limit", s.throttling_burst_limit, 1, 5000, " (0 would reject every message)")
    rate = s.throttling_rate_limit
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 10000:
        raise _fail("throttling_rate_limit", rate, "must be a number above 0 and at most 10000 (0 would reject every message)")
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
    heartbeat = _int("heartbeat_interval_minutes", s.heartbeat_interval_minutes, 0, spec.MAX_HEARTBEAT_MINUTES,
                     " minutes (0 is off; API Gateway closes idle connections after 10)")
    http_backend = _backend(s.backend)
    if http_backend is not None and heartbeat:
        raise _fail("heartbeat_interval_minutes", heartbeat,
                    "server heartbeats come from the Lambda handlers; with an HTTP backend, send them from "
                    "the backend (or leave backend unset)")
    if not isinstance(s.tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in s.tags.items()):
        raise _fail("tags", s.tags, "must map strings to strings")
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
        heartbeat_interval_minutes=heartbeat,
        backend=http_backend,
        tags=dict(s.tags),
    )


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
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail("backend", value, 'must be {"url": "https://…", "timeout_ms": N}, or unset for the Lambda handlers')
    unknown = sorted(set(value) - {"url", "timeout_ms"})
    if unknown:
        raise _fail("backend", dict(value), f"has no field {', '.join(unknown)}; use url and timeout_ms")
    if value.get("url") is None:
        raise _fail("backend", dict(value), "url is required")
    url = value["url"]
    if not _is_output(url):
        check_backend_url(url)
    timeout = value.get("timeout_ms")
    timeout = backend_contract.DEFAULT_TIMEOUT_MS if timeout is None else _int(
        "backend.timeout_ms", timeout, backend_contract.MIN_TIMEOUT_MS, backend_contract.MAX_TIMEOUT_MS,
        " ms (API Gateway's integration timeout range)")
    return {"url": url, "timeout_ms": timeout}


def _is_output(value: Any) -> bool:
    try:
        import pulumi
    except ImportError:  # local mode's own process never loads Pulumi
        return False
    return isinstance(value, pulumi.Output)


def config_key(field_name: str) -> str:
    """The stack config key of an args field: ``stage_name`` → ``stageName``."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


#: Config keys of the fields Pulumi.yaml cannot declare as one key (it has no
#: object type): the HTTP backend's, one key per field of HttpBackend.
BACKEND_CONFIG_KEYS = {"url": "backendUrl", "timeout_ms": "backendTimeoutMs"}


def from_config(config: Any) -> ChannelServerArgs:
    """ChannelServerArgs from a ``pulumi.Config`` of this project: every key that
    is set, read with its field's type; unset keys keep the component's defaults.
    ``backend`` comes from ``backendUrl`` and ``backendTimeoutMs``: the Lambda
    handlers while ``backendUrl`` is unset or empty."""
    readers = {str: config.get, int: config.get_int, float: config.get_float, dict: config.get_object}
    args: dict[str, Any] = {}
    for name, kind in _field_types().items():
        if name == "backend":
            continue
        value = readers[kind](config_key(name))
        if value is not None and value != "":  # "" is Pulumi.yaml's way to say unset
            args[name] = value
    url = config.get(BACKEND_CONFIG_KEYS["url"])
    if url:
        args["backend"] = {"url": url}
        timeout = config.get_int(BACKEND_CONFIG_KEYS["timeout_ms"])
        if timeout is not None:
            args["backend"]["timeout_ms"] = timeout
    return ChannelServerArgs(**args)  # type: ignore[typeddict-item]


def _field_types() -> dict[str, type]:
    import typing

    hints = typing.get_type_hints(ChannelServerArgs)
    return {name: typing.get_origin(hint) or hint for name, hint in hints.items()}
