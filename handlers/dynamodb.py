"""DynamoDB's JSON API over the standard library: the store's client.

Why not boto3's: importing boto3 and loading DynamoDB's model made the cold
starts of join, publish and $disconnect 1.2-1.5x a bare ``import boto3``
(``bench/cold_start.py``; the target is 1.1x). This imports only the stdlib,
:mod:`sigv4` and :mod:`http1`.

The methods the store calls (see OPERATIONS) take boto3's keyword arguments
and return boto3's results; service errors raise :class:`ClientError` shaped
as botocore's, also as ``client.exceptions.<Code>``
(``tests/test_dynamodb_client.py`` compares both clients call by call).
Values are DynamoDB JSON as on the wire: binary ones stay base64 text.

Retries as botocore's standard mode: after throttling, 5xx, a CRC32
mismatch or a failed connect, send or read, up to ``max_attempts`` with
full-jitter backoff. Retrying a write whose answer was lost is safe: the
store's writes are idempotent, and a transaction carries a
``ClientRequestToken`` (as botocore adds one) so DynamoDB applies it once.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
import uuid
import zlib
from typing import Any, Mapping

from . import aws, http1, spec

#: The JSON protocol's version prefix for X-Amz-Target.
TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
#: Total attempts per call, first try included (botocore's standard mode figure for DynamoDB's callers).
DEFAULT_MAX_ATTEMPTS = 5
#: The codes of botocore's standard mode (throttling, transient) that DynamoDB answers.
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "TransactionInProgressException", "LimitExceededException", "RequestThrottled", "RequestTimeout",
    "RequestTimeoutException", "PriorRequestNotComplete",
})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
#: The operations the client offers, by their boto3 method names.
OPERATIONS = {
    "get_item": "GetItem",
    "query": "Query",
    "put_item": "PutItem",
    "delete_item": "DeleteItem",
    "batch_write_item": "BatchWriteItem",
    "transact_write_items": "TransactWriteItems",
}


class ClientError(Exception):
    """DynamoDB answered with an error; ``response`` as botocore's."""

    def __init__(self, response: dict, operation_name: str):
        error = response.get("Error", {})
        super().__init__(
            f"An error occurred ({error.get('Code', 'Unknown')}) when calling the {operation_name} operation: "
            f"{error.get('Message', '')}"
        )
        self.response = response
        self.operation_name = operation_name


class TransportError(Exception):
    """No whole answer came (connect, send or read failed), every attempt."""


class _Exceptions:
    """``client.exceptions.<Code>``: a ClientError subclass per code."""

    ClientError = ClientError

    def __init__(self) -> None:
        self._made: dict[str, type[ClientError]] = {}
        self._lock = threading.Lock()

    def __getattr__(self, code: str) -> type[ClientError]:
        if code.startswith("_"):
            raise AttributeError(code)
        return self.for_code(code)

    def for_code(self, code: str) -> type[ClientError]:
        with self._lock:
            if code not in self._made:
                self._made[code] = type(code, (ClientError,), {"__module__": __name__})
            return self._made[code]


class DynamoDB:
    """A client for one endpoint, shared by threads: each call takes an idle
    keep-alive connection (or opens one); at most ``pool_size`` stay idle."""

    def __init__(
        self, endpoint_url: str, signer: Any, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        pool_size: int = 10, connect_timeout: float = spec.CONNECT_TIMEOUT, read_timeout: float = spec.READ_TIMEOUT,
    ):
        self._origin = aws.Origin.of(endpoint_url)
        self._path = self._origin.path or "/"
        self._signer = signer
        self._max_attempts = max_attempts
        self._pool_size = pool_size
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._tls: Any = None
        if self._origin.https:
            import ssl

            self._tls = ssl.create_default_context()
        self.exceptions = _Exceptions()

    def __getattr__(self, name: str) -> Any:
        operation = OPERATIONS.get(name)
        if operation is None:
            raise AttributeError(f"{type(self).__name__} has no operation {name!r}; it offers {sorted(OPERATIONS)}")
        return lambda **params: self.call(operation, params)

    def call(self, operation: str, params: Mapping[str, Any]) -> dict:
        """``operation`` with boto3's ``params``: its result, with boto3's
        ``ResponseMetadata``. Raises ClientError or TransportError."""
        if operation == "TransactWriteItems" and "ClientRequestToken" not in params:
            params = {**params, "ClientRequestToken": str(uuid.uuid4())}
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        target = TARGET_PREFIX + operation
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._exchange(target, body)
            except TransportError:
                if attempt >= self._max_attempts:
                    raise
                time.sleep(aws.backoff_delay(attempt))
                continue
            result = _result(response)
            code = aws.error_code(response)
            if code is None and result is not None:
                return result
            if attempt < self._max_attempts and (
                response.status in RETRYABLE_STATUSES or code in RETRYABLE_CODES or result is None
            ):
                time.sleep(aws.backoff_delay(attempt))
                continue
            if result is None:
                raise TransportError(f"{operation}: the answer's CRC32 did not match its body")
            raise self.exceptions.for_code(code or str(response.status))(_error_response(response, code), operation)

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    # --- one request, one answer -------------------------------------------------

    def _exchange(self, target: str, body: bytes) -> http1.Response:
        origin = self._origin
        extra = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": target}
        headers = {**extra, **self._signer.headers("POST", origin.host, self._path, body, signed=extra)}
        request = http1.request("POST", self._path, origin.host, headers, body)
        sock = self._checkout()
        try:
            sock.settimeout(self._read_timeout)
            sock.sendall(request)
            parser = http1.ResponseParser()
            while True:
                data = sock.recv(65536)
                response = parser.eof() if not data else parser.feed(data)
                if response is not None:
                    break
        except (OSError, http1.ProtocolError) as exc:  # socket.timeout and ssl.SSLError are OSErrors
            sock.close()
            raise TransportError(f"{target}: no answer ({type(exc).__name__}: {exc})") from exc
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
            # readable while idle: the server closed it (or spoke unasked)
            if not select.select([sock], [], [], 0)[0]:
                return sock
            sock.close()
        try:
            sock = socket.create_connection(self._origin.address, timeout=self._connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._origin.address[0])
        except OSError as exc:
            raise TransportError(f"cannot connect to {self._origin.host} ({type(exc).__name__}: {exc})") from exc
        return sock

    def _checkin(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < self._pool_size:
                self._idle.append(sock)
                return
        sock.close()


def _result(response: http1.Response) -> dict | None:
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


def _metadata(response: http1.Response) -> dict:
    return {
        "RequestId": response.headers.get("x-amzn-requestid", ""),
        "HTTPStatusCode": response.status,
        "HTTPHeaders": dict(response.headers),
    }


def _error_response(response: http1.Response, code: str | None) -> dict:
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


def endpoint_url(environ: Mapping[str, str]) -> str:
    """Where DynamoDB is: ``AWS_ENDPOINT_URL_DYNAMODB``, else
    ``AWS_ENDPOINT_URL`` (as botocore reads them), else the region's endpoint."""
    configured = environ.get("AWS_ENDPOINT_URL_DYNAMODB") or environ.get("AWS_ENDPOINT_URL")
    if configured:
        return configured
    region = aws.region(environ)
    if region is None:
        raise ValueError("cannot tell DynamoDB's region: set AWS_REGION (Lambda sets it)")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://dynamodb.{region}.{suffix}"


def client(
    environ: Mapping[str, str] | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS, pool_size: int = 10
) -> DynamoDB:
    """The client the handlers use, configured from the environment as boto3
    would be: endpoint, region and credentials (Lambda sets them all)."""
    environ = os.environ if environ is None else environ
    url = endpoint_url(environ)
    region = aws.region(environ) or "us-east-1"
    return DynamoDB(url, aws.signer(environ, region, "dynamodb"), max_attempts=max_attempts, pool_size=pool_size)
