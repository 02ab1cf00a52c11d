"""AWS's JSON protocol (awsJson1_0: DynamoDB, SQS) over the standard library.

Why not boto3: importing boto3 and loading a service model made the cold
starts of join, publish and $disconnect 1.2-1.5x a bare ``import boto3``
(``bench/cold_start.py``; the target is 1.1x). This imports only the stdlib,
:mod:`sigv4` and :mod:`http1`.

A :class:`Client`'s methods (its ``operations``) take boto3's keyword
arguments and return boto3's results; service errors raise
:class:`ClientError` shaped as botocore's, also as
``client.exceptions.<Code>`` (``tests/test_dynamodb_client.py`` compares it
with boto3's client call by call). Values are JSON as on the wire: binary
ones stay base64 text.

Retries as botocore's standard mode: after throttling, 5xx, a CRC32
mismatch or a failed connect, up to ``max_attempts`` with full-jitter
backoff; after a request was sent and its answer lost, only when
``retry_unanswered`` (the call is idempotent: DynamoDB's, whose
transactions carry a ``ClientRequestToken`` as botocore adds one).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any, Mapping

from . import aws, http1, spec

if TYPE_CHECKING:
    import ssl  # imported when a client needs TLS: a cold start without it skips loading ssl

CONTENT_TYPE = "application/x-amz-json-1.0"
#: Total attempts per call, first try included (botocore's standard mode: 3; DynamoDB's callers set 5).
DEFAULT_MAX_ATTEMPTS = 3
#: The codes of botocore's standard mode (throttling, transient) that DynamoDB and SQS answer.
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "TransactionInProgressException", "LimitExceededException", "RequestThrottled", "RequestTimeout",
    "RequestTimeoutException", "PriorRequestNotComplete", "RequestThrottledException",
})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


class ClientError(Exception):
    """The service answered with an error; ``response`` as botocore's."""

    def __init__(self, response: dict[str, Any], operation_name: str):
        error = response.get("Error", {})
        super().__init__(
            f"An error occurred ({error.get('Code', 'Unknown')}) when calling the {operation_name} operation: "
            f"{error.get('Message', '')}"
        )
        self.response = response
        self.operation_name = operation_name


class TransportError(Exception):
    """No whole answer came (connect, send or read failed), every attempt.
    ``sent``: the request went out, so it may have been carried out."""

    def __init__(self, message: str, sent: bool):
        super().__init__(message)
        self.sent = sent


#: The class, for the annotations in _Exceptions, whose attribute ClientError
#: hides the name there.
_ClientError = ClientError


class _Exceptions:
    """``client.exceptions.<Code>``: a ClientError subclass per code."""

    ClientError = ClientError

    def __init__(self) -> None:
        self._made: dict[str, type[_ClientError]] = {}
        self._lock = threading.Lock()

    def __getattr__(self, code: str) -> type[_ClientError]:
        if code.startswith("_"):
            raise AttributeError(code)
        return self.for_code(code)

    def for_code(self, code: str) -> type[_ClientError]:
        with self._lock:
            if code not in self._made:
                self._made[code] = type(code, (_ClientError,), {"__module__": __name__})
            return self._made[code]


class Client:
    """One service at one endpoint, shared by threads: each call takes an
    idle keep-alive connection (or opens one); at most ``pool_size`` stay
    idle. ``operations`` maps boto3's method names to the service's
    operations (``X-Amz-Target`` is ``target_prefix`` + operation);
    ``tokens`` names, by operation, the idempotency token filled in when
    the caller gave none."""

    def __init__(
        self, endpoint_url: str, signer: Any, target_prefix: str, operations: Mapping[str, str], *,
        tokens: Mapping[str, str] | None = None, retry_unanswered: bool = False,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS, pool_size: int = 10,
        connect_timeout: float = spec.CONNECT_TIMEOUT, read_timeout: float = spec.READ_TIMEOUT,
    ):
        self._target_prefix, self._operations = target_prefix, dict(operations)
        self._tokens, self._retry_unanswered = dict(tokens or {}), retry_unanswered
        self._origin = aws.Origin.of(endpoint_url)
        self._path = self._origin.path or "/"
        self._signer = signer
        self._max_attempts = max_attempts
        self._pool_size = pool_size
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        if self._origin.https:
            import ssl

            self._tls = ssl.create_default_context()
        self.exceptions = _Exceptions()

    def __getattr__(self, name: str) -> Any:
        operation = self.__dict__.get("_operations", {}).get(name)
        if operation is None:
            raise AttributeError(f"this client has no operation {name!r}; it offers {sorted(self._operations)}")
        return lambda **params: self.call(operation, params)

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``operation`` with boto3's ``params``: its result, with boto3's
        ``ResponseMetadata``. Raises ClientError or TransportError."""
        token = self._tokens.get(operation)
        if token is not None and token not in params:
            params = {**params, token: str(uuid.uuid4())}
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        target = self._target_prefix + operation
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._exchange(target, body)
            except TransportError as exc:
                if attempt >= self._max_attempts or (exc.sent and not self._retry_unanswered):
                    raise
                time.sleep(aws.backoff_delay(attempt))
                continue
            result = _result(response)
            code = aws.error_code(response)
            if code is None and result is not None:
                return result
            if result is None and not self._retry_unanswered:
                # answered, but unreadably: it may have been carried out
                raise TransportError(f"{operation}: the answer's CRC32 or body was unreadable", sent=True)
            if attempt < self._max_attempts and (
                response.status in RETRYABLE_STATUSES or code in RETRYABLE_CODES or result is None
            ):
                time.sleep(aws.backoff_delay(attempt))
                continue
            if result is None:
                raise TransportError(f"{operation}: the answer's CRC32 or body was unreadable", sent=True)
            raise self.exceptions.for_code(code or str(response.status))(_error_response(response, code), operation)

    # --- one request, one answer -------------------------------------------------

    def _exchange(self, target: str, body: bytes) -> http1.Response:
        origin = self._origin
        extra = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": target}
        headers = {**extra, **self._signer.headers("POST", origin.host, self._path, body, signed=extra)}
        request = http1.request("POST", self._path, origin.host, headers, body)
        sock = self._checkout()
        sent = False
        try:
            sock.settimeout(self._read_timeout)
            sock.sendall(request)
            sent = True  # whole: from here it may be carried out (a part, short of its length, cannot)
            parser = http1.ResponseParser()
            while True:
                data = sock.recv(65536)
                response = parser.eof() if not data else parser.feed(data)
                if response is not None:
                    break
        except (OSError, http1.ProtocolError) as exc:  # socket.timeout and ssl.SSLError are OSErrors
            sock.close()
            raise TransportError(f"{target}: no answer ({type(exc).__name__}: {exc})", sent) from exc
        if response.keep_alive:
            self._checkin(sock)
        else:
            sock.close()
        return response

    def _checkout(self) -> socket.socket:
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                break
            if not http1.closed_while_idle(sock.fileno()):
                return sock
            sock.close()
        raw = None
        try:
            raw = socket.create_connection(self._origin.address, timeout=self._connect_timeout)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is None:
                return raw
            return self._tls.wrap_socket(raw, server_hostname=self._origin.address[0])
        except OSError as exc:
            if raw is not None:
                raw.close()
            raise TransportError(f"cannot connect to {self._origin.host} ({type(exc).__name__}: {exc})", False) from exc

    def _checkin(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < self._pool_size:
                self._idle.append(sock)
                return
        sock.close()


def _result(response: http1.Response) -> dict[str, Any] | None:
    """A success's parsed body with ``ResponseMetadata``; {} for an error's;
    None when the body does not match its x-amz-crc32 header or does not parse."""
    expected = response.headers.get("x-amz-crc32")
    if expected is not None and expected.isdigit() and zlib.crc32(response.body) != int(expected):
        return None
    if response.status >= 300:
        return {}
    try:
        parsed = json.loads(response.body) if response.body else {}
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    parsed["ResponseMetadata"] = _metadata(response)
    return parsed


def _metadata(response: http1.Response) -> dict[str, Any]:
    return {
        "RequestId": response.headers.get("x-amzn-requestid", ""),
        "HTTPStatusCode": response.status,
        "HTTPHeaders": dict(response.headers),
    }


def _error_response(response: http1.Response, code: str | None) -> dict[str, Any]:
    """botocore's shape: the error's members beside Error and ResponseMetadata."""
    try:
        parsed = json.loads(response.body) if response.body else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    message = parsed.get("message") or parsed.get("Message") or ""
    parsed.pop("__type", None)  # botocore keeps the error's other members, its message among them
    return {**parsed, "Error": {"Code": code or str(response.status), "Message": message},
            "ResponseMetadata": _metadata(response)}


#: The region signed for where the environment sets a service's endpoint but no region: such
#: endpoints (DynamoDB Local, moto, local mode's) take any. boto3 would refuse (NoRegionError).
REGION_FOR_OWN_ENDPOINTS = "us-east-1"


def endpoint_url(service: str, environ: Mapping[str, str]) -> str:
    """Where ``service`` is: the endpoint ``environ`` sets
    (:func:`aws.configured_endpoint`), else the region's."""
    configured = aws.configured_endpoint(service, environ)
    if configured:
        return configured
    region = signing_region(service, environ)
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{service}.{region}.{suffix}"


def signing_region(service: str, environ: Mapping[str, str]) -> str:
    """The region ``service``'s requests are signed for: ``environ``'s (Lambda
    sets it), else :data:`REGION_FOR_OWN_ENDPOINTS` where ``environ`` sets the
    service's endpoint. Raises ValueError where it does neither."""
    region = aws.region(environ)
    if region is not None:
        return region
    if aws.configured_endpoint(service, environ) is not None:
        return REGION_FOR_OWN_ENDPOINTS
    raise ValueError(f"cannot tell {service}'s region: set AWS_REGION (Lambda sets it)")
