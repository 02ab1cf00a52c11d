"""The rules of local mode's options: one check and one message per option,
used by both the command line (``local.cli``) and :class:`~.server.LocalServer`'s constructor."""

from __future__ import annotations

from typing import Any, Callable

from ..handlers import spec
from ..handlers.spec import READ_TIMEOUT
from . import authorizer as authorizer_module
from . import gateway as gateway_module

#: What ``--backend reference`` asks for: local mode starts the reference HTTP
#: backend (``python -m channel_server.http_backend``) against its own table,
#: DynamoDB and management API, and serves the routes from it.
REFERENCE_BACKEND = "reference"

#: The largest simulated management round trip local mode accepts (exclusive).
MAX_MANAGEMENT_LATENCY_MS = READ_TIMEOUT * 1000 / 2

#: Why ``--server-publish`` and ``--backend`` do not go together (ChannelServer refuses them too).
SERVER_PUBLISH_WITH_BACKEND = ("--server-publish with --backend: the publish endpoint runs the Lambda handlers' "
                               "fan-out; with an HTTP backend, publish from the backend")


def management_latency_problem(latency_ms: float) -> str | None:
    """Why a simulated management API round trip of ``latency_ms`` cannot be
    served, or None. The handlers give up on a post after the sender's read
    timeout: a latency near it delivers nothing, so it must stay below half of
    it, which leaves the other half for the post's own work on a busy machine."""
    limit_ms = MAX_MANAGEMENT_LATENCY_MS
    if not 0 <= latency_ms < limit_ms:
        return (
            f"must be from 0 to below {limit_ms:g}; the handlers "
            f"wait at most {READ_TIMEOUT:g} s for the management API's answer, so longer round trips "
            "would time out and deliver nothing"
        )
    return None


def _range_check(low: float, high: float, what: str, *, above: bool = False) -> Callable[[float], str | None]:
    """A check that a number lies from ``low`` (or above it) to ``high``; ``what`` says why those bounds."""
    def check(value: float) -> str | None:
        if (value > low if above else value >= low) and value <= high:
            return None
        start = f"above {low:g}" if above else f"from {low:g}"
        return f"must be {start} {'and at most' if above else 'to'} {high:g}{what}"
    return check


#: Each numeric option's check, by flag: the command line's parser and
#: LocalServer's constructor both use these, so a value has one rule and one
#: message wherever it comes from.
OPTION_CHECKS: dict[str, Callable[[float], str | None]] = {
    "--port": _range_check(0, 65535, " (0 picks a free port)"),
    "--idle-timeout": _range_check(0, gateway_module.IDLE_TIMEOUT_SECONDS, " seconds (API Gateway's idle timeout)",
                                   above=True),
    "--max-lifetime": _range_check(0, gateway_module.MAX_LIFETIME_SECONDS,
                                   " seconds (API Gateway's connection lifetime)", above=True),
    "--function-concurrency": _range_check(1, 1000, " invocations at once (Lambda's default account concurrency)"),
    "--inline-fanout-limit": _range_check(1, spec.MAX_INLINE_FANOUT_LIMIT, " members"),
    "--heartbeat-seconds": _range_check(0, spec.MAX_HEARTBEAT_MINUTES * 60, " seconds", above=True),
    "--posts-per-second": _range_check(1, spec.MAX_POSTS_PER_SECOND, " posts a second (the account budget)"),
    "--account-quota": _range_check(0, spec.MAX_POSTS_PER_SECOND, " requests a second", above=True),
    "--management-latency-ms": lambda value: management_latency_problem(value),
}


def check_option(flag: str, value: float | None) -> None:
    """Raise ValueError naming ``flag`` when ``value`` breaks its rule (None: not given)."""
    if value is None:
        return
    problem = OPTION_CHECKS[flag](value)
    if problem:
        raise ValueError(f"{flag} {value:g}: {problem}")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL local mode can reach, or None."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return "give an http:// or https:// URL with a host"
    return None


def authorizer_problem(authorizer: str | None, identity_sources: Any, backend: str | None, *,
                       served: bool) -> str | None:
    """Why ``--authorizer`` / ``--authorizer-identity-source`` cannot be
    served as given, or None (``served``: a program or world decides what is served)."""
    if identity_sources and authorizer is None:
        return "--authorizer-identity-source: give the authorizer's code with --authorizer PATH[:FUNCTION]"
    if authorizer is None:
        return None
    if backend is not None:
        return ("--authorizer with --backend: the authorizer's context reaches Lambda events only (an HTTP "
                "backend's envelope does not carry it); authorize in the backend")
    if identity_sources and served:
        return ("--authorizer-identity-source: the program declares its authorizer's identity sources; "
                "change them there (authorizerIdentitySources)")
    for source in identity_sources or ():
        problem = identity_source_problem(source)
        if problem:
            return f"--authorizer-identity-source {source}: {problem}"
    try:
        authorizer_module.parse_spec(authorizer)
    except ValueError as exc:
        return f"--authorizer {exc}"
    return None


def identity_source_problem(source: str) -> str | None:
    """Why ``source`` is not an identity source an authorizer can read, or None."""
    from ..args import IDENTITY_SOURCE

    if not IDENTITY_SOURCE.fullmatch(source):
        return ("must be route.request.querystring.NAME, route.request.header.NAME, stageVariables.NAME "
                "or context.NAME")
    return None
