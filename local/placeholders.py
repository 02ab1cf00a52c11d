"""What local mode signs its requests with where AWS would supply them: a
region and placeholder credentials, and when a client may use them; and the
account that goes with the region in every ARN of a mock deployment.

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
    """Whether ``url``'s host is this machine's loopback: ``localhost``, an
    address in 127.0.0.0/8, or ``::1`` (also as ``::ffff:127.x.y.z``)."""
    try:
        host = urlsplit(url).hostname  # lower case, without brackets
    except ValueError:
        return False
    if not host:
        return False
    if host.rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # any other name: wherever it resolves to
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


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
