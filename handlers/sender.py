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
    function's time was running out, waiting for the account budget
    included). ``code`` carries the service's error code.

With a :class:`budget.PostBudget`, every attempt first takes its place in
the account's budget of posts a second (the sender asks for up to
``posts_in_flight`` places at a time, and starts each granted post within the
tenth of a second it was granted in): posts wait for the budget instead of drawing the
quota's 429s.

Retries are this module's, because only it can tell a post that certainly did
not land from one that may have: a post is retried after 429 or 5xx (the service
answered, and did not deliver) and after a failure to connect (nothing was
sent). A post that was sent and then timed out or lost its connection is never
retried: it may have been delivered, and a retry could deliver it twice. So
every frame reaches each connection at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar
from urllib.parse import quote

from . import aws, http1, sigv4
from .budget import Grant, PostBudget
from .spec import BUDGET_SLOTS_PER_SECOND, CONNECT_TIMEOUT, DEFAULT_POSTS_IN_FLIGHT, READ_TIMEOUT

logger = logging.getLogger("channel_server")

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


#: The code of a post that was not started because the function's time ran out.
DEADLINE_EXCEEDED = "DeadlineExceeded"


@dataclass
class Deliveries:
    """What a fan-out did: how many posts landed, which connections are gone
    and which could not be reached, and how many members were handed on to
    the fan-out queue instead (their posts could not start in time)."""

    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[DeliveryError] = field(default_factory=list)
    queued: int = 0

    def not_started(self) -> list[str]:
        """The connections whose post never started (the function's time ran
        out): nothing was sent to them, so they can be handed on."""
        return [f.connection_id for f in self.failed if f.code == DEADLINE_EXCEEDED]

    def handed_on(self) -> None:
        """The connections whose post never started were queued: they are no
        longer failures, and count as queued."""
        waiting = self.not_started()
        self.failed = [f for f in self.failed if f.code != DEADLINE_EXCEEDED]
        self.queued += len(waiting)


#: Places for the next slot are asked for once less than this is left of the
#: current one (seconds): about a DynamoDB round trip and a little more.
AHEAD_SECONDS = 0.02


class _Allowance:
    """The places in the account budget a sender holds on one thread: posts
    it may start, each lot within the slot it was granted for. One request
    to the budget at a time, made before the places run out (when fewer than
    ``low`` are left, for the next slot when this one is nearly over), so
    posts in flight rarely wait for it."""

    def __init__(self, budget: PostBudget, clock: Callable[[], float] = time.time):
        self._budget = budget
        self._clock = clock
        #: [places, start, until] lots in the order of their slots
        self._lots: deque[list[float]] = deque()
        self._asking: asyncio.Future[Grant] | None = None
        #: no place is to be had before this (``clock`` time): ask again then
        self._refused_until = 0.0

    def held(self) -> int:
        """Places held and not yet past their slot."""
        now = self._clock()
        return int(sum(lot[0] for lot in self._lots if lot[2] > now))

    def _spend(self) -> bool:
        now = self._clock()
        self._lots = deque(lot for lot in self._lots if lot[2] > now and lot[0] >= 1)
        for lot in self._lots:
            if lot[1] <= now:  # not the next slot's
                lot[0] -= 1
                return True
        return False

    def _ask(self, wanted: int) -> asyncio.Future[Grant]:
        if self._asking is None:
            now = self._clock()
            slot_ends = (int(now * BUDGET_SLOTS_PER_SECOND) + 1) / BUDGET_SLOTS_PER_SECOND
            ahead = slot_ends - now < AHEAD_SECONDS and not any(lot[1] >= slot_ends for lot in self._lots)
            # the DynamoDB client is synchronous: off the loop, so posts in flight carry on
            asking = asyncio.get_running_loop().run_in_executor(None, self._budget.take, wanted, ahead)
            asking.add_done_callback(self._granted)
            self._asking = asking
        return self._asking

    def _granted(self, asking: asyncio.Future[Grant]) -> None:
        """Take in the answer to ``asking``, once: as its done callback, or
        earlier by :meth:`take` (a request made in an earlier run of the loop
        may be done before its callback has run)."""
        if self._asking is not asking:
            return  # taken in already
        self._asking = None
        if asking.cancelled():
            return
        error = asking.exception()
        if error is not None:
            # the budget could not be read: no place until the next slot, then ask again
            logger.warning("taking places in the account budget failed: %s: %s", type(error).__name__, error)
            self._refused_until = self._clock() + 1 / BUDGET_SLOTS_PER_SECOND
            return
        grant = asking.result()
        if grant.posts:
            self._lots.append([grant.posts, grant.start, grant.until])
        else:
            self._refused_until = grant.until

    async def take(self, wanted: Callable[[], int], most: int, low: int, deadline: float | None) -> bool:
        """One place; False when it cannot come before ``deadline`` (a
        ``time.monotonic()`` value). ``wanted()`` is the posts that have no
        place yet, this one included: the budget is asked for those the
        places held do not cover, at most ``most`` at a time."""
        while True:
            if self._spend():
                if self._asking is None and self.held() < low and self._clock() >= self._refused_until:
                    more = min(most, wanted() - 1 - self.held())  # this post has its place
                    if more > 0:
                        self._ask(more)  # the next lot, before this one runs out
                return True
            now = self._clock()
            wait = max(self._refused_until, min((lot[1] for lot in self._lots), default=now)) - now
            if wait > 0:  # refused until the next slot, or holding only the next slot's places
                if deadline is not None and time.monotonic() + wait >= deadline:
                    return False
                await asyncio.sleep(wait)
                continue
            asking = self._ask(max(1, min(most, wanted() - self.held())))
            with contextlib.suppress(Exception):  # _granted logs it and sets the wait
                await asyncio.shield(asking)
            self._granted(asking)


class _SenderThread(threading.local):
    """A sender's state on one thread."""

    def __init__(self) -> None:
        self.allowance: _Allowance | None = None
        #: posts of the running post_many (or post) that have no place yet
        self.unplaced = 1


class Sender:
    """Posts frames through a :class:`ManagementApi`, up to
    ``posts_in_flight`` at once, retrying what certainly did not land, each
    attempt paced to ``budget`` (a :class:`budget.PostBudget`) when given."""

    def __init__(self, client: ManagementApi, posts_in_flight: int = DEFAULT_POSTS_IN_FLIGHT,
                 budget: PostBudget | None = None):
        self._client = client
        self._in_flight = posts_in_flight
        self._budget = budget
        #: each thread's places in the budget (a thread's posts run on its own loop:
        #: ManagementApi.run), and the posts its running post_many has not started
        self._mine = _SenderThread()

    def post(self, connection_id: str, payload: bytes, deadline: float | None = None) -> None:
        """Send one frame (paced as every post is); raises a :class:`DeliveryError` when it did not land
        (or, code ``NoAnswer``, when it was sent and may have). Retries what
        certainly did not land, up to MAX_ATTEMPTS in all, with no attempt
        starting after ``deadline`` (a ``time.monotonic()`` value)."""
        self._mine.unplaced = 1
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
        self._mine.unplaced = len(ids)

        async def worker() -> None:
            # a few long-lived workers each take the next id: no task per post
            for index in order:
                connection_id = ids[index]
                if deadline is not None and time.monotonic() >= deadline:
                    outcomes[index] = _not_started(connection_id)
                    self._mine.unplaced -= 1
                else:
                    outcomes[index] = await self._post(connection_id, payload, deadline)

        await asyncio.gather(*(worker() for _ in range(min(self._in_flight, len(ids)))))
        return outcomes

    async def _post(self, connection_id: str, payload: bytes, deadline: float | None) -> DeliveryError | None:
        attempt = 1
        while True:
            if self._budget is not None:
                mine = self._mine
                if mine.allowance is None:
                    mine.allowance = _Allowance(self._budget)
                allowance = mine.allowance

                def wanted() -> int:
                    return mine.unplaced

                # at most posts_in_flight places a request; the next lot is asked for when half that is left
                placed = await allowance.take(wanted, self._in_flight, max(1, self._in_flight // 2), deadline)
                if attempt == 1:
                    mine.unplaced -= 1  # placed, or never to be: a retry's place is asked for by itself
                if not placed:
                    # no place before the deadline: nothing of this post landed (a retry
                    # follows only answers that say so), so it can be handed on
                    return _not_started(connection_id)
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


def _not_started(connection_id: str) -> DeliveryFailed:
    return DeliveryFailed(connection_id, "the function's time ran out", DEADLINE_EXCEEDED)
