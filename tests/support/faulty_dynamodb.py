"""DynamoDB's own errors, on demand: a WSGI middleware for moto's server.

``EmbeddedDynamoDB(middleware=faults)`` puts it in front of moto; then::

    faults.throttle("TransactWriteItems", times=2)   # the next two: 400 throttled
    faults.fail("GetItem")                           # every one from now: 500
    faults.requests["TransactWriteItems"]            # how many arrived (answered or not)
    faults.clear()                                   # no faults, counts back to 0

Operations are named as in the ``X-Amz-Target`` header without its prefix
(``DynamoDB_20120810.TransactWriteItems`` is ``TransactWriteItems``). A request
answered with a fault never reaches moto, so the table is untouched by it.

The answers are shaped like DynamoDB's: HTTP 400 with
``{"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
"message": ...}`` for throttling, HTTP 500 with ``...#InternalServerError`` for a
server error. botocore reads the error code from ``__type`` (after the ``#``), so
its standard retry mode treats the first as throttling and the second as a
transient error, exactly as it does against AWS.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from channel_server.handlers.dynamodb import TARGET_PREFIX

ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"

THROTTLED = (400, "ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.")
INTERNAL = (500, "InternalServerError", "Internal server error")


@dataclass
class _Fault:
    status: int
    error_type: str
    message: str
    left: int | None  # None: every matching request


class DynamoDBFaults:
    """Answers chosen DynamoDB operations with DynamoDB's errors and counts every
    request by operation. Thread-safe; one instance serves one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, _Fault] = {}
        #: Requests that arrived, by operation (faulted ones included).
        self.requests: Counter[str] = Counter()
        #: Requests answered with a fault, by operation.
        self.faulted: Counter[str] = Counter()

    # --- what the tests call ----------------------------------------------------------

    def throttle(self, operation: str, times: int | None = None) -> None:
        """Answer the next ``times`` requests of ``operation`` (every one when
        None) with 400 ProvisionedThroughputExceededException."""
        self._set(operation, THROTTLED, times)

    def fail(self, operation: str, times: int | None = None) -> None:
        """Answer the next ``times`` requests of ``operation`` (every one when
        None) with 500 InternalServerError."""
        self._set(operation, INTERNAL, times)

    def clear(self) -> None:
        """No faults from now on; counts start again from zero."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.faulted.clear()

    # --- WSGI -------------------------------------------------------------------------

    def __call__(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """The middleware factory ``EmbeddedDynamoDB`` expects: wraps ``app``."""

        def middleware(environ: dict, start_response: Any) -> Iterable[bytes]:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if not target.startswith(TARGET_PREFIX):
                return app(environ, start_response)  # moto's own API (reset) and others
            operation = target[len(TARGET_PREFIX):]
            fault = self._take(operation)
            if fault is None:
                return app(environ, start_response)
            _drain(environ)  # the connection is kept alive: the body must be read
            body = json.dumps({"__type": ERROR_PREFIX + fault.error_type, "message": fault.message}).encode()
            reason = "Bad Request" if fault.status == 400 else "Internal Server Error"
            start_response(f"{fault.status} {reason}", [
                ("Content-Type", "application/x-amz-json-1.0"),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", "FAULT0000000000000000000000000000000000000000000000000"),
            ])
            return [body]

        return middleware

    # --- internals --------------------------------------------------------------------

    def _set(self, operation: str, answer: tuple[int, str, str], times: int | None) -> None:
        operation = operation.removeprefix(TARGET_PREFIX)
        with self._lock:
            self._faults[operation] = _Fault(*answer, left=times)

    def _take(self, operation: str) -> _Fault | None:
        """Count the request; the fault to answer it with, if any."""
        with self._lock:
            self.requests[operation] += 1
            fault = self._faults.get(operation)
            if fault is None:
                return None
            if fault.left is not None:
                if fault.left <= 0:
                    return None
                fault.left -= 1
            self.faulted[operation] += 1
            return fault


def _drain(environ: dict) -> None:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
