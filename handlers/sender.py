"""The management API edge: posting frames to connections.

botocore's errors stop here. Callers see only this tree:

- :class:`DeliveryError`: the root; a post did not reach its connection.
  - :class:`ConnectionGone`: 410 GoneException. The connection is closed for
    good; its rows should be removed. Never retried.
  - :class:`PayloadTooLarge`: 413 PayloadTooLargeException. Never retried.
  - :class:`DeliveryFailed`: anything else (403 ForbiddenException, 429
    LimitExceededException and 5xx once botocore's standard retries are spent,
    network errors and timeouts, or ``DeadlineExceeded`` for a post that was
    not started because the function's time was running out). ``code``
    carries the service's error code.

Throttling (429) and 5xx are retried by botocore's standard retry mode, which
the client built by :func:`management_client` configures explicitly.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

#: Concurrent posts per publish, and the HTTP connection pool that matches it
#: (botocore's default pool of 10 would make the extra threads wait).
FANOUT_WORKERS = 32
#: Total attempts per post, first try included (botocore standard retry mode).
MAX_ATTEMPTS = 3
#: Seconds to connect and to wait for an answer, per attempt. A post normally
#: takes milliseconds; these keep a hung one from eating the function's time:
#: at worst 3 attempts of 2 s plus backoff, well inside POST_RESERVE_SECONDS.
CONNECT_TIMEOUT = 2
READ_TIMEOUT = 2
#: A post is not started once less than this is left of the function's time,
#: so every post that starts can finish (retries included) before Lambda's
#: timeout, and the sender still gets its reply.
POST_RESERVE_SECONDS = 10


class DeliveryError(Exception):
    """A post to a connection failed."""

    code = "DeliveryError"

    def __init__(self, connection_id: str, detail: str = "", code: str | None = None):
        super().__init__(f"{code or self.code} posting to {connection_id}{': ' + detail if detail else ''}")
        self.connection_id = connection_id
        if code:
            self.code = code


class ConnectionGone(DeliveryError):
    code = "GoneException"


class PayloadTooLarge(DeliveryError):
    code = "PayloadTooLargeException"


class DeliveryFailed(DeliveryError):
    pass


_BY_CODE = {ConnectionGone.code: ConnectionGone, PayloadTooLarge.code: PayloadTooLarge}


def management_client(endpoint_url: str, workers: int = FANOUT_WORKERS) -> Any:
    """A boto3 client for the management API at ``endpoint_url`` (the stage's
    https URL), with a connection pool as wide as the fan-out and bounded
    standard-mode retries for throttling and server errors."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        config=Config(
            max_pool_connections=workers,
            # total_max_attempts counts the first try; botocore's max_attempts
            # here would count retries only
            retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
        ),
    )


@dataclass
class Deliveries:
    """What a fan-out did: how many posts landed, which connections are gone
    and which could not be reached."""

    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[DeliveryError] = field(default_factory=list)


class Sender:
    """Posts frames through a boto3 ``apigatewaymanagementapi`` client."""

    def __init__(self, client: Any, workers: int = FANOUT_WORKERS):
        self._client = client
        self._workers = workers

    def post(self, connection_id: str, payload: bytes) -> None:
        """Send one frame; raises a :class:`DeliveryError` when it did not land."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=payload)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 410:
                # A 410 is a gone connection even when the endpoint left out
                # the x-amzn-ErrorType header that botocore names it by.
                code = ConnectionGone.code
            raise _BY_CODE.get(code, DeliveryFailed)(connection_id, str(status or ""), code) from exc
        except BotoCoreError as exc:
            raise DeliveryFailed(connection_id, type(exc).__name__, "NetworkError") from exc

    def post_many(self, connection_ids: Iterable[str], payload: bytes, deadline: float | None = None) -> Deliveries:
        """Send the same frame to every connection, concurrently; every post is
        attempted, whatever happens to the others, except that none starts
        after ``deadline`` (a ``time.monotonic()`` value): those count as failed
        with code ``DeadlineExceeded``."""
        ids = list(connection_ids)
        result = Deliveries()
        if not ids:
            return result

        def attempt(connection_id: str) -> DeliveryError | None:
            if deadline is not None and time.monotonic() >= deadline:
                return DeliveryFailed(connection_id, "the function's time ran out", "DeadlineExceeded")
            try:
                self.post(connection_id, payload)
            except DeliveryError as exc:
                return exc
            return None

        if len(ids) == 1:
            outcomes = [attempt(ids[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(self._workers, len(ids))) as pool:
                outcomes = list(pool.map(attempt, ids))
        for outcome in outcomes:
            if outcome is None:
                result.delivered += 1
            elif isinstance(outcome, ConnectionGone):
                result.gone.append(outcome.connection_id)
            else:
                result.failed.append(outcome)
        return result
