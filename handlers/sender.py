"""The management API edge: posting frames to connections.

botocore's errors stop here. Callers see only this tree:

- :class:`DeliveryError`: the root; a post did not reach its connection.
  - :class:`ConnectionGone`: 410 GoneException. The connection is closed for
    good; its rows should be removed. Never retried.
  - :class:`PayloadTooLarge`: 413 PayloadTooLargeException. Never retried.
  - :class:`DeliveryFailed`: anything else (403 ForbiddenException, 429
    LimitExceededException and 5xx once the attempts are spent, network
    errors, ``NoAnswer`` for a post that was sent but not answered, or
    ``DeadlineExceeded`` for a post that was not started because the
    function's time was running out). ``code`` carries the service's error
    code.

Retries are this module's, not botocore's (the client makes one attempt per
call), because only the caller can tell a post that certainly did not land
from one that may have: a post is retried after 429 or 5xx (the service
answered, and did not deliver) and after a failure to connect (nothing was
sent). A post that was sent and then timed out or lost its connection is never
retried: it may have been delivered, and a retry could deliver it twice. So
every frame reaches each connection at most once.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

#: Concurrent posts per publish, and the HTTP connection pool that matches it
#: (botocore's default pool of 10 would make the extra threads wait).
FANOUT_WORKERS = 32
#: Total attempts per post, first try included; only posts that certainly did
#: not land are tried again (429, 5xx, a failure to connect).
MAX_ATTEMPTS = 3
#: The backoff before attempt n+1 is drawn uniformly from 0 to
#: BACKOFF_BASE_SECONDS * 2**(n-1) ("full jitter", botocore's standard figures).
BACKOFF_BASE_SECONDS = 1.0
#: Seconds to connect and to wait for an answer, per attempt. A post normally
#: takes milliseconds; these keep a hung one from eating the function's time:
#: at worst 3 failed connects of 2 s plus 1 + 2 s of backoff (a read timeout is
#: never retried), inside POST_RESERVE_SECONDS.
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
#: The code of a post that was sent and never answered: it may have landed.
NO_ANSWER = "NoAnswer"
#: The code of a post that could not connect: nothing was sent.
CONNECT_FAILED = "ConnectFailed"


def backoff_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return random.uniform(0, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))


def _retryable(status: int | None) -> bool:
    """Answers that say the post was not delivered and may succeed later."""
    return status is not None and (status == 429 or 500 <= status <= 599)


def management_client(endpoint_url: str, workers: int = FANOUT_WORKERS) -> Any:
    """A boto3 client for the management API at ``endpoint_url`` (the stage's
    https URL), with a connection pool as wide as the fan-out. It makes one
    attempt per call: :class:`Sender` decides what is retried."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        config=Config(
            max_pool_connections=workers,
            # botocore would retry a read timeout too, posting a frame that
            # may have landed again: Sender.post retries what did not land
            retries={"mode": "standard", "total_max_attempts": 1},
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

    def post(self, connection_id: str, payload: bytes, deadline: float | None = None) -> None:
        """Send one frame; raises a :class:`DeliveryError` when it did not land
        (or, code ``NoAnswer``, when it was sent and may have). Retries what
        certainly did not land, up to MAX_ATTEMPTS in all, with no attempt
        starting after ``deadline`` (a ``time.monotonic()`` value)."""
        attempt = 1
        while True:
            error, retryable = self._attempt(connection_id, payload)
            if error is None:
                return
            if not retryable or attempt >= MAX_ATTEMPTS:
                raise error
            delay = backoff_delay(attempt)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise error
            time.sleep(delay)
            attempt += 1

    def _attempt(self, connection_id: str, payload: bytes) -> tuple[DeliveryError | None, bool]:
        """One post: (None, _) when it landed, else the error and whether
        trying again is safe and may help."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=payload)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 410:
                # A 410 is a gone connection even when the endpoint left out
                # the x-amzn-ErrorType header that botocore names it by.
                code = ConnectionGone.code
            error = _BY_CODE.get(code, DeliveryFailed)(connection_id, str(status or ""), code)
            error.__cause__ = exc
            return error, _retryable(status) and not isinstance(error, (ConnectionGone, PayloadTooLarge))
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            # refused, or no connection within CONNECT_TIMEOUT: nothing was sent
            error = DeliveryFailed(connection_id, type(exc).__name__, CONNECT_FAILED)
            error.__cause__ = exc
            return error, True
        except BotoCoreError as exc:
            # sent, then a read timeout or a dropped connection: it may have landed
            error = DeliveryFailed(connection_id, f"{type(exc).__name__}; it may have been delivered", NO_ANSWER)
            error.__cause__ = exc
            return error, False
        return None, False

    def post_many(self, connection_ids: Iterable[str], payload: bytes, deadline: float | None = None) -> Deliveries:
        """Send the same frame to every connection, concurrently; every post is
        attempted, whatever happens to the others, except that none starts
        after ``deadline`` (a ``time.monotonic()`` value): those count as failed
        with code ``DeadlineExceeded``, and no retry starts after it either."""
        ids = list(connection_ids)
        result = Deliveries()
        if not ids:
            return result

        def attempt(connection_id: str) -> DeliveryError | None:
            if deadline is not None and time.monotonic() >= deadline:
                return DeliveryFailed(connection_id, "the function's time ran out", "DeadlineExceeded")
            try:
                self.post(connection_id, payload, deadline)
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
