"""Whom local mode's signed endpoints answer: SigV4-signed requests, and
from loopback only unless it was told otherwise.

The management API and the ``AWS_IAM`` function URLs take SigV4-signed
requests only, as AWS does; since local mode cannot check a signature's
secret, they answer loopback addresses only, unless local mode was started
with ``--management-from-anywhere`` (:func:`management_refusal`).
"""

from __future__ import annotations

import re
from typing import Mapping

from .placeholders import is_loopback_address


def _sigv4_shape(service: str) -> re.Pattern:
    """The shape of a SigV4 Authorization header for ``service``, as botocore and every AWS SDK send it."""
    return re.compile(
        r"AWS4-HMAC-SHA256 Credential=[^/\s,]+/\d{8}/[a-z0-9-]+/" + re.escape(service) + r"/aws4_request,\s*"
        r"SignedHeaders=[a-z0-9;-]+,\s*Signature=[0-9a-f]{64}"
    )


#: The services whose signatures local mode takes: the management API's, and function URLs'.
_SIGV4 = {service: _sigv4_shape(service) for service in ("execute-api", "lambda")}


def management_refusal(remote: str | None, headers: Mapping[str, str], from_anywhere: bool = False, *,
                       service: str = "execute-api", endpoint: str = "the management API") -> str | None:
    """Why the management API (or ``endpoint``, signed for ``service``: a
    function URL, for ``lambda``) refuses a request, or None. Like API
    Gateway's, it takes only SigV4-signed requests (local mode checks the
    signature's shape, not its secret: any credentials will do). And since it
    cannot check the secret, it answers only loopback addresses (127.0.0.0/8,
    ::1) unless ``from_anywhere``, whatever address local mode listens on: not
    even this machine's own other addresses."""
    if not from_anywhere and not is_loopback_address(remote):
        return (f"{endpoint} answers only loopback addresses, not {remote or 'an unknown address'} "
                "(call it on 127.0.0.1, or start local mode with --management-from-anywhere)")
    authorization = headers.get("Authorization")
    if authorization is None:
        return "Missing Authentication Token"
    if not _SIGV4[service].fullmatch(authorization.strip()) or "X-Amz-Date" not in headers:
        return f"the request is not SigV4-signed for {service} (an AWS SDK such as boto3 signs it)"
    return None
