"""The app's settings: a function's environment parsed once, into what :class:`app.ChannelApp`
builds its store, sender, fan-out queue, rules, metrics and presence from.

The ``CHANNEL_*`` names are ``spec``'s; the ``AWS_*`` ones are AWS's, kept as given for the
clients to read as boto3 would (``aws.region``, ``aws.signer``, ``awsjson.endpoint_url``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from . import spec
from .metrics import DEFAULT_SERVER_NAME
from .protocol import API_GATEWAY_MAX_MESSAGE_BYTES, DEFAULT_CHANNEL_ID_PATTERN, Rules

#: The variables AWS's clients read (region, credentials, endpoints) start with this.
AWS_PREFIX = "AWS_"


@dataclass(frozen=True)
class AppSettings:
    """What the app reads from its environment, each setting typed and with
    its default. ``aws`` holds the environment's ``AWS_*`` variables: the
    DynamoDB, SQS and management API clients take their endpoint and region
    from it alone, and their credentials from it, else from botocore's chain
    (a profile, a container's role)."""

    table_name: str | None = None
    index_name: str | None = None
    management_endpoint: str | None = None
    channel_id_pattern: str = DEFAULT_CHANNEL_ID_PATTERN
    max_message_bytes: int = API_GATEWAY_MAX_MESSAGE_BYTES
    posts_in_flight: int = spec.DEFAULT_POSTS_IN_FLIGHT
    #: None: no queue, a publish posts to every member itself
    fanout_queue_url: str | None = None
    inline_fanout_limit: int = spec.DEFAULT_INLINE_FANOUT_LIMIT
    heartbeats: bool = False
    #: 0: no history
    history_seconds: int = 0
    metrics: bool = False
    server_name: str = DEFAULT_SERVER_NAME
    #: 0: presence off
    presence_max_members: int = 0
    #: None: posts are not paced (the component always sets a budget)
    posts_per_second: int | None = None
    channel_index_shards: int = spec.DEFAULT_CHANNEL_INDEX_SHARDS
    dynamodb_read_timeout: float = spec.READ_TIMEOUT
    aws: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AppSettings:
        """``environ`` parsed: an empty variable counts as unset, and a
        number that is not one raises ValueError naming its variable."""
        return cls(
            table_name=_text(environ, spec.ENV_TABLE_NAME),
            index_name=_text(environ, spec.ENV_INDEX_NAME),
            management_endpoint=_text(environ, spec.ENV_MANAGEMENT_ENDPOINT),
            channel_id_pattern=_text(environ, spec.ENV_CHANNEL_ID_PATTERN) or DEFAULT_CHANNEL_ID_PATTERN,
            max_message_bytes=_whole(environ, spec.ENV_MAX_MESSAGE_BYTES, API_GATEWAY_MAX_MESSAGE_BYTES),
            posts_in_flight=_whole(environ, spec.ENV_POSTS_IN_FLIGHT, spec.DEFAULT_POSTS_IN_FLIGHT),
            fanout_queue_url=_text(environ, spec.ENV_FANOUT_QUEUE_URL),
            inline_fanout_limit=_whole(environ, spec.ENV_INLINE_FANOUT_LIMIT, spec.DEFAULT_INLINE_FANOUT_LIMIT),
            heartbeats=environ.get(spec.ENV_HEARTBEATS) == "1",
            history_seconds=_whole(environ, spec.ENV_HISTORY_SECONDS, 0),
            metrics=environ.get(spec.ENV_METRICS) == "1",
            server_name=_text(environ, spec.ENV_SERVER_NAME) or DEFAULT_SERVER_NAME,
            presence_max_members=_whole(environ, spec.ENV_PRESENCE_MAX_MEMBERS, 0),
            posts_per_second=_whole(environ, spec.ENV_POSTS_PER_SECOND, 0) or None,
            channel_index_shards=_whole(environ, spec.ENV_CHANNEL_INDEX_SHARDS, spec.DEFAULT_CHANNEL_INDEX_SHARDS),
            dynamodb_read_timeout=_seconds(environ, spec.ENV_DYNAMODB_READ_TIMEOUT, spec.READ_TIMEOUT),
            aws=MappingProxyType({name: value for name, value in environ.items() if name.startswith(AWS_PREFIX)}),
        )

    def rules(self) -> Rules:
        """The protocol's limits: channel ids, message size, presence's cap."""
        return Rules(channel_id_pattern=self.channel_id_pattern, max_message_bytes=self.max_message_bytes,
                     presence_max_members=self.presence_max_members)

    @property
    def inline_limit(self) -> int | None:
        """Members a publish posts to itself; None: all of them (no queue)."""
        return self.inline_fanout_limit if self.fanout_queue_url else None


def required(value: str | None, variable: str) -> str:
    """``value``, a setting the caller cannot do without; ValueError naming
    its variable when it was not set."""
    if value is None:
        raise ValueError(f"{variable} is not set")
    return value


def _text(environ: Mapping[str, str], variable: str) -> str | None:
    return environ.get(variable) or None


def _whole(environ: Mapping[str, str], variable: str, default: int) -> int:
    text = environ.get(variable)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{variable}: {text!r} is not a whole number") from None


def _seconds(environ: Mapping[str, str], variable: str, default: float) -> float:
    text = environ.get(variable)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{variable}: {text!r} is not a number of seconds") from None
