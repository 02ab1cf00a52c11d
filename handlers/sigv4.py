"""AWS Signature Version 4 for the handlers' requests, stdlib only.

Signs exactly as botocore's ``SigV4Auth`` does for ``PostToConnection`` and
for DynamoDB's JSON API (``tests/test_sigv4.py`` checks they agree on a
corpus of requests): the signed headers are ``host``, ``x-amz-date``, with
temporary credentials ``x-amz-security-token``, and any the caller names
(DynamoDB's ``content-type`` and ``x-amz-target``); the payload is hashed;
the path is URI-encoded once more on top of the URL's own encoding, as for
every service but S3.

What it saves over botocore is the work around the signature: the signing key
(four HMACs) is derived once per day and scope and then reused, and nothing
is built per request beyond the canonical request itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
#: The signing name of API Gateway's management API (and of execute-api IAM actions).
SERVICE = "execute-api"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def environment_credentials(environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """The credentials Lambda puts in every function's environment, if set."""
    access_key, secret_key = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        return None
    return Credentials(access_key, secret_key, environ.get("AWS_SESSION_TOKEN") or None)


def botocore_credentials() -> Callable[[], Credentials]:
    """Credentials from botocore's chain (profiles, containers, ...), for where
    the environment has none: a callable that returns them as they are now
    (botocore refreshes temporary ones). Imports botocore, which Lambda never
    needs here."""
    import botocore.session

    found = botocore.session.get_session().get_credentials()
    if found is None:
        raise RuntimeError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile")

    def current() -> Credentials:
        frozen = found.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    return current


#: quote(text, safe="/~") for ASCII text, as one str.translate.
_CANONICAL_URI = {
    code: f"%{code:02X}" for code in range(128)
    if not (chr(code).isalnum() or chr(code) in "-_.~/")
}


def canonical_uri(path: str) -> str:
    """The path as the canonical request has it: URI-encoded once more, the
    way botocore's ``quote(path, safe="/~")`` encodes it."""
    return path.translate(_CANONICAL_URI) if path.isascii() else quote(path, safe="/~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class Signer:
    """Signs requests for one region and service. ``credentials`` is called
    for every request (static credentials: return the same object); the
    signing key is derived again only when the date or the secret changes."""

    def __init__(self, credentials: Callable[[], Credentials], region: str, service: str = SERVICE):
        self._credentials = credentials
        self._region = region
        self._service = service
        self._key: tuple[str, str, bytes] | None = None  # (date, secret, key)
        self._clock: tuple[int, str] = (-1, "")  # (second, its X-Amz-Date)
        self._lock = threading.Lock()

    def signing_key(self, date: str, secret_key: str) -> bytes:
        """The key for ``date`` (YYYYMMDD), derived once per date and secret."""
        cached = self._key
        if cached is not None and cached[0] == date and cached[1] == secret_key:
            return cached[2]
        key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode("utf-8"), date), self._region), self._service),
                    "aws4_request")
        with self._lock:
            self._key = (date, secret_key, key)
        return key

    def headers(
        self, method: str, host: str, path: str, body: bytes, now: float | None = None,
        signed: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The headers that authenticate a request: ``X-Amz-Date``,
        ``X-Amz-Security-Token`` (with temporary credentials) and
        ``Authorization``. ``path`` is as sent (already percent-encoded);
        ``host`` as in the Host header (with the port unless it is the
        scheme's default); ``signed``, the request's other headers, which
        botocore signs too (DynamoDB's ``Content-Type`` and ``X-Amz-Target``)."""
        credentials = self._credentials()
        second = int(time.time() if now is None else now)
        clock = self._clock
        if clock[0] == second:
            amz_date = clock[1]
        else:
            amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._clock = (second, amz_date)
        date = amz_date[:8]
        token = credentials.token
        if signed:
            values = {name.lower(): " ".join(value.split()) for name, value in signed.items()}
            values.update({"host": host, "x-amz-date": amz_date})
            if token:
                values["x-amz-security-token"] = " ".join(token.split())
            names = sorted(values)
            canonical_headers = "".join(f"{name}:{values[name]}\n" for name in names)
            signed_headers = ";".join(names)
        elif token:
            canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\nx-amz-security-token:{' '.join(token.split())}\n"
            signed_headers = "host;x-amz-date;x-amz-security-token"
        else:
            canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\n"
            signed_headers = "host;x-amz-date"
        canonical_request = (
            f"{method}\n{canonical_uri(path)}\n\n{canonical_headers}\n{signed_headers}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        string_to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
        )
        signature = hmac.new(
            self.signing_key(date, credentials.secret_key), string_to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        headers = {"X-Amz-Date": amz_date}
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return headers
