"""What the handlers' two stdlib AWS clients share: where an endpoint is, the error code of
an answer, credentials, and how long to wait before a retry.

The two clients are the management API's in :mod:`sender` and DynamoDB's in :mod:`dynamodb`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from . import http1, sigv4

#: The backoff before attempt n+1 is drawn uniformly from 0 to
#: BACKOFF_BASE_SECONDS * 2**(n-1) ("full jitter"), as botocore's standard
#: retry mode draws it.
BACKOFF_BASE_SECONDS = 1.0
#: botocore's standard mode never waits longer than this between attempts.
MAX_BACKOFF_SECONDS = 20.0


def backoff_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return full_jitter(attempt, BACKOFF_BASE_SECONDS, MAX_BACKOFF_SECONDS)


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """The handlers' one backoff policy, with its bounds as arguments:
    drawn uniformly from 0 to ``base * 2**(attempt-1)``, at most ``cap``
    seconds, after failed attempt number ``attempt`` (1-based)."""
    return min(random.uniform(0, base * 2 ** (attempt - 1)), cap)


@dataclass(frozen=True)
class Origin:
    """Where an http(s) endpoint is: the address to connect to, whether
    over TLS, the Host header's value (with the port only when it is not the
    scheme's default, as botocore's signer derives it) and the URL's path."""

    address: tuple[str, int]
    https: bool
    host: str
    path: str

    @classmethod
    def of(cls, url: str) -> "Origin":
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"endpoint {url!r}: expected an http(s) URL")
        https = parts.scheme == "https"
        default_port = 443 if https else 80
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(
            (parts.hostname, parts.port or default_port),
            https,
            host if parts.port in (None, default_port) else f"{host}:{parts.port}",
            parts.path,
        )


def error_code(response: http1.Response) -> str | None:
    """The service's error code, as botocore finds it: the
    x-amzn-query-error header (up to any ';'), else the x-amzn-ErrorType
    header (up to any ':'), else the body's ``__type`` (after any '#') or
    ``code``; the status when none says. None for a success."""
    if response.status < 300:
        return None
    # SQS's JSON protocol names its query-compatible code here, as botocore reads it
    query = response.headers.get("x-amzn-query-error", "").split(";", 1)[0].strip()
    if query:
        return query
    header = response.headers.get("x-amzn-errortype", "").split(":", 1)[0].strip().rsplit("#", 1)[-1]
    if header:
        return header
    try:
        parsed = json.loads(response.body) if response.body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        code = parsed.get("__type") or parsed.get("code")
        if isinstance(code, str) and code:
            return code.rsplit("#", 1)[-1]
    return str(response.status)


def endpoint_variable(service: str) -> str:
    """The variable that names ``service``'s own endpoint, as botocore reads it."""
    return f"AWS_ENDPOINT_URL_{service.upper()}"


def configured_endpoint(service: str, environ: Mapping[str, str]) -> str | None:
    """``service``'s endpoint as ``environ`` sets it, as botocore reads it:
    its own variable (:func:`endpoint_variable`), else ``AWS_ENDPOINT_URL``;
    None when neither is set (AWS's own endpoint)."""
    return environ.get(endpoint_variable(service)) or environ.get("AWS_ENDPOINT_URL") or None


def region(environ: Mapping[str, str]) -> str | None:
    """The region Lambda names in every function's environment."""
    return environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None


def signer(environ: Mapping[str, str], region_name: str, service: str) -> sigv4.Signer:
    """A signer with the environment's credentials (Lambda sets them), else
    botocore's credential chain (profiles, containers, ...)."""
    static = sigv4.environment_credentials(environ)
    credentials = (lambda: static) if static is not None else sigv4.botocore_credentials()
    return sigv4.Signer(credentials, region_name, service)
