"""What local mode signs its requests with where AWS would supply them (a region and placeholder
credentials), when a client may use them, and the account in every ARN of a mock deployment.

Its own process, its functions, the reference HTTP backend
(``channel_server.http_backend``) and the publisher
(``channel_server.publish``) all use these, so they agree on one region and
never need an AWS account. A client outside local mode takes them only when
every endpoint it talks to is on loopback and the environment has none of
its own (:func:`local_placeholders`). No third-party import: the backend and
the publisher import this without local mode's dependencies.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Mapping
from urllib.parse import urlsplit

from ..handlers import aws

#: The region and account of Pulumi's mock engine (``channel_server.mocks``),
#: and so of every ARN in local mode's worlds; the region local mode signs for.
REGION = "us-east-1"
ACCOUNT = "123456789012"
#: Credentials for the embedded DynamoDB and the local management API, which
#: accept any signature. Real credentials never go there.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine's loopback: ``localhost``, or an
    address :func:`is_loopback_address` takes."""
    try:
        host = urlsplit(url).hostname  # lower case, without brackets
    except ValueError:
        return False
    if host is not None and host.rstrip(".") == "localhost":
        return True
    return is_loopback_address(host)  # false for any other name: it may resolve anywhere


def is_loopback_address(address: str | None) -> bool:
    """Whether ``address`` (an IP address, as a socket or a URL gives it) is
    this machine's loopback: in 127.0.0.0/8, or ``::1`` (also with a zone, or
    as ``::ffff:127.x.y.z`` on a dual-stack socket)."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:  # a name, or nothing
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return parsed.is_loopback


def local_placeholders(endpoints: Mapping[str, str | None], environ: Mapping[str, str],
                       has_credentials: Callable[[], bool]) -> dict[str, str]:
    """What to add to ``environ`` so that the clients can sign for local
    endpoints: when every one of ``endpoints`` is on loopback (where nothing
    checks a signature), local mode's region if ``environ`` names none and
    its placeholder credentials if ``has_credentials()`` is false. Nothing
    when any endpoint is elsewhere: AWS wants the real ones, and the checks
    at start-up say which is missing."""
    if not all(url is not None and is_loopback(url) for url in endpoints.values()):
        return {}
    added: dict[str, str] = {}
    if not has_credentials():  # real ones are used where they are found, as ever
        added.update(LOCAL_CREDENTIALS)
    if aws.region(environ) is None:
        added["AWS_REGION"] = REGION
    return added
