"""The management API edge: posting frames to connections.

Posts go out from an asyncio event loop (one per thread, kept with its
keep-alive connections across invocations), up to ``posts_in_flight`` at
once, signed by :mod:`sigv4` and framed by :mod:`http1`: no botocore on this
path, whose per-request work was 95% of a publish's CPU. Callers see only
this tree of errors:

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

Retries are this module's, because only it can tell a post that certainly did
not land from one that may have: a post is retried after 429 or 5xx (the service
answered, and did not deliver) and after a failure to connect (nothing was
sent). A post that was sent and then timed out or lost its connection is never
retried: it may have been delivered, and a retry could deliver it twice. So
every frame reaches each connection at most once.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Iterable, Mapping, TypeVar
from urllib.parse import quote

from . import aws, http1, sigv4
from .spec import CONNECT_TIMEOUT, DEFAULT_POSTS_IN_FLIGHT, READ_TIMEOUT

#: Total attempts per post, first try included; only posts that certainly did
#: not land are tried again (429, 5xx, a failure to connect).
MAX_ATTEMPTS = 3
#: A post is not started once less than this is left of the function's time,
#: so every post that starts can finish (retries included) before Lambda's
#: timeout, and the sender still gets its reply. CONNECT_TIMEOUT and
#: READ_TIMEOUT (from spec) bound each attempt: at worst 3 failed connects of
#: 2 s plus 1 + 2 s of backoff (a read timeout is never retried) fit inside it.
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


def _retryable(status: int | None) -> bool:
    """Answers that say the post was not delivered and may succeed later."""
    return status is not None and (status == 429 or 500 <= status <= 599)


class NotSent(Exception):
    """The request never left: no connection could be made."""


class NoAnswer(Exception):
    """The request was sent (perhaps only in part) and no whole answer came
    back: it may have landed."""


T = TypeVar("T")


class _Connection(asyncio.Protocol):
    """One keep-alive connection, carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: The run of the loop in which it last went idle (see _ThreadState.run).
        self.idle_in_run = -1
        self._parser: http1.ResponseParser | None = None
        self._waiter: asyncio.Future[http1.Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done() or self._parser is None:
            self.abort()  # bytes nobody asked for: this connection cannot be trusted
            return
        try:
            response = self._parser.feed(data)
        except http1.ProtocolError as exc:
            waiter.set_exception(NoAnswer(f"unreadable answer: {exc}"))
            self.abort()
            return
        if response is not None:
            self._parser = None
            waiter.set_result(response)

    def eof_received(self) -> bool:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._parser is not None:
            try:
                waiter.set_result(self._parser.eof())
            except http1.ProtocolError as exc:
                waiter.set_exception(NoAnswer(str(exc)))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(NoAnswer(f"connection lost: {exc or 'closed by the server'}"))

    def send(self, request: bytes) -> asyncio.Future[http1.Response]:
        """Write ``request``; the future resolves to its http1.Response."""
        assert self.transport is not None
        self._parser = http1.ResponseParser()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def usable(self, run: int) -> bool:
        """Open and not closed by the server while it sat in the pool. While
        the loop runs it notices a close by itself; a connection idle since an
        earlier run (an earlier invocation) is asked (:func:`http1.closed_while_idle`)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        if self.idle_in_run == run:
            return True
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        return not http1.closed_while_idle(sock.fileno())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.closed = True


#: How often a loop with answers outstanding looks for overdue ones, in seconds:
#: a read timeout fires up to this much late. One sweep for all posts costs
#: less than a timer per post.
SWEEP_SECONDS = 0.1


class _ThreadState(threading.local):
    """Each thread's event loop, idle connections (connections belong to the
    loop that opened them) and answers outstanding with their deadlines."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle: list[_Connection] = []
        #: Counts the loop's runs: a connection idle since an earlier run is polled before use.
        self.run = 0
        self.waiting: dict[asyncio.Future[http1.Response], float] = {}
        self.sweeper: asyncio.TimerHandle | None = None


class ManagementApi:
    """``POST @connections/{id}`` on API Gateway's management API at
    ``endpoint_url`` (the stage's https URL; http for local mode), signed with
    SigV4, over keep-alive connections kept across invocations (at most
    ``pool_size`` idle ones per thread).

    :meth:`attempt` makes one post and leaves retrying to :class:`Sender`;
    :meth:`run` runs a coroutine on the calling thread's loop.
    """

    def __init__(
        self, endpoint_url: str, signer: Any, pool_size: int = DEFAULT_POSTS_IN_FLIGHT,
        connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
    ):
        try:
            origin = aws.Origin.of(endpoint_url)
        except ValueError:
            raise ValueError(f"management endpoint {endpoint_url!r}: expected https://HOST/STAGE") from None
        self._address = origin.address
        #: The Host header's value (see aws.Origin).
        self.host = origin.host
        self._prefix = origin.path.rstrip("/") + "/@connections/"
        self._signer = signer
        self._pool_size = pool_size
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._tls = ssl.create_default_context() if origin.https else None
        self._state = _ThreadState()

    def path(self, connection_id: str) -> str:
        """The request path for ``connection_id``, percent-encoded as botocore does."""
        encoded = connection_id.translate(_QUOTE_ALL) if connection_id.isascii() else quote(connection_id, safe="")
        return self._prefix + encoded

    def run(self, coroutine: Awaitable[T]) -> T:
        """Run ``coroutine`` to its end on this thread's loop (made on first use)."""
        state = self._state
        if state.loop is None:
            state.loop = asyncio.new_event_loop()
        state.run += 1
        return state.loop.run_until_complete(coroutine)

    def post(self, connection_id: str, payload: bytes) -> tuple[int, str | None]:
        """One post, from synchronous code: see :meth:`attempt`."""
        return self.run(self.attempt(connection_id, payload))

    async def attempt(self, connection_id: str, payload: bytes) -> tuple[int, str | None]:
        """Post ``payload`` once; returns (HTTP status, error type or None).
        Raises :class:`NotSent` or :class:`NoAnswer`."""
        path = self.path(connection_id)
        headers = self._signer.headers("POST", self.host, path, payload)
        request = http1.request("POST", path, self.host, headers, payload)
        connection = await self._checkout()
        waiter = connection.send(request)
        self._watch(waiter)
        try:
            response = await waiter
        except BaseException:
            connection.abort()  # an answer may still come: the connection cannot carry another request
            raise
        finally:
            self._state.waiting.pop(waiter, None)
        if response.keep_alive:
            self._checkin(connection)
        else:
            connection.abort()
        return response.status, aws.error_code(response)

    def _watch(self, waiter: asyncio.Future[http1.Response]) -> None:
        """Fail ``waiter`` with NoAnswer if it is not answered within the read timeout."""
        state = self._state
        loop = asyncio.get_running_loop()
        state.waiting[waiter] = loop.time() + self._read_timeout
        if state.sweeper is None:
            state.sweeper = loop.call_later(SWEEP_SECONDS, self._sweep, state)

    def _sweep(self, state: _ThreadState) -> None:
        assert state.loop is not None
        now = state.loop.time()
        for waiter in [w for w, deadline in state.waiting.items() if deadline <= now]:
            del state.waiting[waiter]
            if not waiter.done():
                waiter.set_exception(NoAnswer(f"no answer within {self._read_timeout:g} s"))
        state.sweeper = state.loop.call_later(SWEEP_SECONDS, self._sweep, state) if state.waiting else None

    async def _checkout(self) -> _Connection:
        state = self._state
        idle = state.idle
        while idle:
            connection = idle.pop()
            if connection.usable(state.run):
                return connection
            connection.abort()
        loop = asyncio.get_running_loop()
        host, port = self._address
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, host, port, ssl=self._tls), self._connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise NotSent(f"{type(exc).__name__}: {exc}") from exc
        return connection

    def _checkin(self, connection: _Connection) -> None:
        state = self._state
        if len(state.idle) < self._pool_size:
            connection.idle_in_run = state.run
            state.idle.append(connection)
        else:
            connection.abort()


#: quote(text, safe="") for ASCII text, as one str.translate.
_QUOTE_ALL = {code: f"%{code:02X}" for code in range(128) if not (chr(code).isalnum() or chr(code) in "-_.~")}


def _region_of(endpoint_url: str, environ: Mapping[str, str]) -> str:
    region = aws.region(environ)
    if region:
        return region
    # https://{api}.execute-api.{region}.amazonaws.com/{stage}
    labels = aws.Origin.of(endpoint_url).address[0].split(".")
    if len(labels) > 2 and labels[1] == "execute-api":
        return labels[2]
    raise ValueError(f"cannot tell the region of {endpoint_url!r}: set AWS_REGION")


def management_client(
    endpoint_url: str, posts_in_flight: int = DEFAULT_POSTS_IN_FLIGHT, environ: Mapping[str, str] | None = None
) -> ManagementApi:
    """The management API client the handlers use: credentials and region
    from the environment (Lambda sets both), else botocore's credential chain,
    keeping as many idle connections as there are posts in flight."""
    environ = os.environ if environ is None else environ
    signer = aws.signer(environ, _region_of(endpoint_url, environ), sigv4.SERVICE)
    return ManagementApi(endpoint_url, signer, pool_size=posts_in_flight)


@dataclass
class Deliveries:
    """What a fan-out did: how many posts landed, which connections are gone
    and which could not be reached."""

    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[DeliveryError] = field(default_factory=list)


class Sender:
    """Posts frames through a :class:`ManagementApi`, up to
    ``posts_in_flight`` at once, retrying what certainly did not land."""

    def __init__(self, client: ManagementApi, posts_in_flight: int = DEFAULT_POSTS_IN_FLIGHT):
        self._client = client
        self._in_flight = posts_in_flight

    def post(self, connection_id: str, payload: bytes, deadline: float | None = None) -> None:
        """Send one frame; raises a :class:`DeliveryError` when it did not land
        (or, code ``NoAnswer``, when it was sent and may have). Retries what
        certainly did not land, up to MAX_ATTEMPTS in all, with no attempt
        starting after ``deadline`` (a ``time.monotonic()`` value)."""
        error = self._client.run(self._post(connection_id, payload, deadline))
        if error is not None:
            raise error

    def post_many(self, connection_ids: Iterable[str], payload: bytes, deadline: float | None = None) -> Deliveries:
        """Send the same frame to every connection, up to ``posts_in_flight``
        at once; every post is attempted, whatever happens to the others,
        except that none starts after ``deadline`` (a ``time.monotonic()``
        value): those count as failed with code ``DeadlineExceeded``, and no
        retry starts after it either."""
        ids = list(connection_ids)
        result = Deliveries()
        if not ids:
            return result
        for outcome in self._client.run(self._post_many(ids, payload, deadline)):
            if outcome is None:
                result.delivered += 1
            elif isinstance(outcome, ConnectionGone):
                result.gone.append(outcome.connection_id)
            else:
                result.failed.append(outcome)
        return result

    async def _post_many(self, ids: list[str], payload: bytes, deadline: float | None) -> list[DeliveryError | None]:
        outcomes: list[DeliveryError | None] = [None] * len(ids)
        order = iter(range(len(ids)))

        async def worker() -> None:
            # a few long-lived workers each take the next id: no task per post
            for index in order:
                connection_id = ids[index]
                if deadline is not None and time.monotonic() >= deadline:
                    outcomes[index] = DeliveryFailed(connection_id, "the function's time ran out", "DeadlineExceeded")
                else:
                    outcomes[index] = await self._post(connection_id, payload, deadline)

        await asyncio.gather(*(worker() for _ in range(min(self._in_flight, len(ids)))))
        return outcomes

    async def _post(self, connection_id: str, payload: bytes, deadline: float | None) -> DeliveryError | None:
        attempt = 1
        while True:
            error, retryable = await self._attempt(connection_id, payload)
            if error is None:
                return None
            if not retryable or attempt >= MAX_ATTEMPTS:
                return error
            delay = aws.backoff_delay(attempt)
            if deadline is not None and time.monotonic() + delay >= deadline:
                return error
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, connection_id: str, payload: bytes) -> tuple[DeliveryError | None, bool]:
        """One post: (None, _) when it landed, else the error and whether
        trying again is safe and may help."""
        try:
            status, error_type = await self._client.attempt(connection_id, payload)
        except NotSent as exc:
            # refused, or no connection within CONNECT_TIMEOUT: nothing was sent
            error: DeliveryError = DeliveryFailed(connection_id, str(exc), CONNECT_FAILED)
            error.__cause__ = exc
            return error, True
        except NoAnswer as exc:
            # sent, then a read timeout or a dropped connection: it may have landed
            error = DeliveryFailed(connection_id, f"{exc}; it may have been delivered", NO_ANSWER)
            error.__cause__ = exc
            return error, False
        if status < 300:
            return None, False
        # A 410 is a gone connection even without the x-amzn-ErrorType header.
        code = ConnectionGone.code if status == 410 else error_type or str(status)
        error = _BY_CODE.get(code, DeliveryFailed)(connection_id, str(status), code)
        return error, _retryable(status) and not isinstance(error, (ConnectionGone, PayloadTooLarge))
