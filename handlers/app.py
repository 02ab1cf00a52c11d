"""Lambda entry points, one per API Gateway route (see ``spec.ROUTES``), and
those of the fan-out, heartbeat and server publish functions.

Each entry point wraps the raw event, hands it to the shared
:class:`ChannelApp` and returns. The app is built on first use from the
function's environment (parsed once, :class:`settings.AppSettings`) and
reused across invocations, with its clients. Tests, local mode and the
reference HTTP backend build their own ``ChannelApp`` with their own
settings and clients.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Mapping, TypeVar

from . import history, metrics, presence, protocol, spec
from .events import WebSocketEvent
from .server_publish import publish as publish_from_backend
from .settings import AppSettings, required
from .store import ConnectionClosed, Store, StoreError

# The sender (asyncio, ssl) and the DynamoDB client are imported where they
# are first needed, never here: ping loads neither; $connect loads the
# DynamoDB client only with heartbeats on, $default only for a members frame
# (presence); $disconnect loads the DynamoDB client, and the sender only to
# announce a leave (presence); join loads the DynamoDB client, and the sender
# only to post (a resume's missed messages, presence's announcements);
# publish, the fan-out, the heartbeat and the server publish load both. No
# handler imports boto3 (see dynamodb.py for why).

T = TypeVar("T")

logger = logging.getLogger("channel_server")
logger.setLevel(logging.INFO)

#: The template of a body-less 200 response: never returned itself (a caller
#: could change it for every later invocation), only copies (:func:`_ok`).
_OK = {"statusCode": 200}
#: Total attempts per DynamoDB call, first try included (as botocore's standard retry mode).
DYNAMODB_MAX_ATTEMPTS = 5
#: The DynamoDB client's connection pool.
DYNAMODB_POOL_CONNECTIONS = 32
#: The channel of a heartbeat's posts (and of its queued chunks): none, so a
#: connection found gone is closed wherever it is (no channel id is empty).
NO_CHANNEL = ""
#: What the sender sees when something broke on our side (its home is protocol).
INTERNAL_ERROR = protocol.INTERNAL_ERROR
#: The name each fan-out's metrics record carries (its Function dimension):
#: the function's, as spec names it (``spec.Function.function``), never a route key.
PUBLISH_FUNCTION = spec.ROUTE_FUNCTIONS[spec.PUBLISH]


class ChannelApp:
    """The channel server's behaviour behind the routes.

    ``settings`` (an :class:`AppSettings`, or an environment mapping parsed
    into one) supplies the table, index, management endpoint, fan-out queue,
    the rules and the options, and the ``AWS_*`` variables the clients read:
    ``dynamodb`` (a client with boto3's DynamoDB methods), ``management`` (a
    :class:`sender.ManagementApi`) and ``queue`` (a :class:`handoff.Queue`)
    are created from the settings on first use when not given: endpoints and
    region from its ``AWS_*`` only (the Lambda entry points pass the process's
    environment), credentials from them too, else botocore's credential chain
    (a profile, a container's role), as boto3 would find them.
    ``metrics_writer`` takes each metrics record (one line of text) when
    metrics are on; default: stdout, Lambda's way to CloudWatch Logs.
    """

    def __init__(self, settings: AppSettings | Mapping[str, str], *, dynamodb: Any = None, management: Any = None,
                 queue: Any = None, metrics_writer: Callable[[str], Any] | None = None):
        self.settings = settings if isinstance(settings, AppSettings) else AppSettings.from_environ(settings)
        self._dynamodb = dynamodb
        self._management = management
        self._store: Store | None = None
        self._sender: Any = None
        self._queue: Any = queue
        # the clients are built once, even when threads share the app (local mode)
        self._building = threading.Lock()
        self.metrics = metrics.Metrics(self.settings.metrics, server=self.settings.server_name, write=metrics_writer)
        self.rules = self.settings.rules()

    def _once(self, attribute: str, build: Callable[[], T]) -> T:
        """``self.<attribute>``, built by ``build`` on first use, once even
        when threads share the app (local mode)."""
        value: T | None = getattr(self, attribute)
        if value is None:
            with self._building:
                value = getattr(self, attribute)
                if value is None:
                    value = build()
                    setattr(self, attribute, value)
        return value

    @property
    def store(self) -> Store:
        return self._once("_store", self._new_store)

    def _new_store(self) -> Store:
        settings = self.settings
        table = required(settings.table_name, spec.ENV_TABLE_NAME)
        index = required(settings.index_name, spec.ENV_INDEX_NAME)
        return Store(self._dynamodb_client(), table, index, heartbeats=settings.heartbeats,
                     presence=bool(self.rules.presence_max_members), index_shards=settings.channel_index_shards)

    def _dynamodb_client(self) -> Any:
        """The DynamoDB client the store and the budget share (built under
        ``_once``'s lock, by whichever of them comes first)."""
        settings = self.settings
        if self._dynamodb is None:
            from . import dynamodb

            # Endpoint, region and credentials come from the settings' AWS_*
            # variables (AWS_ENDPOINT_URL_DYNAMODB when set), so the same code
            # reaches AWS, moto and local mode. The app may be shared by
            # threads (local mode): the client keeps a pool of connections.
            self._dynamodb = dynamodb.client(
                settings.aws, max_attempts=DYNAMODB_MAX_ATTEMPTS, pool_size=DYNAMODB_POOL_CONNECTIONS,
                read_timeout=settings.dynamodb_read_timeout,
            )
        return self._dynamodb

    @property
    def sender(self) -> Any:
        """The :class:`sender.Sender` that fans a publish out."""
        return self._once("_sender", self._new_sender)

    def _new_sender(self) -> Any:
        from .budget import PostBudget
        from .sender import Sender, management_client

        settings = self.settings
        in_flight = settings.posts_in_flight
        if self._management is None:
            self._management = management_client(
                required(settings.management_endpoint, spec.ENV_MANAGEMENT_ENDPOINT), in_flight, settings.aws,
            )
        budget = None
        if settings.posts_per_second is not None:
            budget = PostBudget(self._dynamodb_client(), required(settings.table_name, spec.ENV_TABLE_NAME),
                                settings.posts_per_second)
        return Sender(self._management, in_flight, budget)

    @property
    def queue(self) -> Any:
        """The fan-out queue (a :class:`handoff.Queue`), or None when the
        settings name none: then a publish posts to every member itself."""
        url = self.settings.fanout_queue_url
        if url is None and self._queue is None:
            return None

        def new_queue() -> Any:
            from . import handoff

            assert url  # built only when the settings name the queue (else self._queue was given)
            return handoff.queue(url, self.settings.aws)

        return self._once("_queue", new_queue)

    # --- routes --------------------------------------------------------------------

    def connect(self, event: WebSocketEvent) -> dict[str, Any]:
        _log_event(event)
        if self.settings.heartbeats:
            try:
                self.store.register(event.connection_id)
            except Exception:
                # The connection works without heartbeats (a joined one is
                # listed from its join on): not a reason to refuse it.
                _log_failure(event, "registering the connection for heartbeats failed")
        return _ok()

    def disconnect(self, event: WebSocketEvent) -> dict[str, Any]:
        _log_event(event)
        try:
            presence.close(self, event.connection_id)  # close_connection, and presence's leave
        except Exception:
            # Nothing to tell a client that has left; the rows expire by TTL.
            _log_failure(event, "closing the connection's rows failed")
        return _ok()

    def join(self, event: WebSocketEvent, context: Any = None) -> dict[str, Any]:
        """``context`` is Lambda's: its remaining time bounds a resume's posts."""
        # A join that races the connection's $disconnect cannot write after
        # it: $disconnect leaves a tombstone state row that the join's
        # transaction condition fails on (see Store.close_connection).
        time_left = _time_left(context)
        return self._message(event, lambda e, command: self._join(e, command, time_left))

    def publish(self, event: WebSocketEvent, context: Any = None) -> dict[str, Any]:
        """``context`` is Lambda's: its remaining time bounds the fan-out."""
        deadline = _fanout_deadline(context)
        return self._message(event, lambda e, command: self._publish(e, command, deadline))

    def ping(self, event: WebSocketEvent) -> dict[str, Any]:
        return self._message(event, self._ping)

    def fanout(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Post each queued chunk (an SQS event's records) to its members.

        SQS delivers a message at least once, and again when a function died
        with it: each chunk is first claimed in the table
        (:meth:`Store.claim_chunk`), and its claim finished once posted. A
        chunk whose claim finished is skipped; one claimed but never finished
        (its function died mid-chunk) is posted again, to every member: at
        least once, each copy with the message's id, which ChannelClient
        drops when it has it. A claim that cannot be written fails
        the invocation before anything is posted (SQS hands the chunk over
        again). Nothing else fails it: an unreadable chunk never becomes
        readable, and failed posts are logged, as a publish logs them."""
        from . import handoff

        deadline = _fanout_deadline(context)
        for record in event.get("Records") or ():
            message_id = record.get("messageId")
            log = {"messageId": message_id}
            try:
                chunk = handoff.decode(record["body"])
            except Exception:
                logger.exception("unreadable fan-out chunk dropped", extra=log)
                continue
            if not self.store.claim_chunk(message_id):
                logger.warning("fan-out chunk already posted: not posted again", extra=log)
                continue
            started = time.monotonic()
            try:
                deliveries = self._deliver(chunk.connection_ids, chunk.payload, chunk.channel_id, deadline, log)
            except Exception:
                # what became of its members is unknown: no metrics record
                logger.exception("fan-out chunk failed", extra=log)
                continue
            self._record_fan_out(spec.FANOUT.function, started, len(chunk.connection_ids), deliveries,
                                 deliveries.queued)
            try:
                self.store.finish_chunk(message_id)
            except Exception:
                # a second delivery of the chunk posts it again: a copy more, never one less
                logger.exception("marking a fan-out chunk posted failed", extra=log)
        return {}

    def default(self, event: WebSocketEvent) -> dict[str, Any]:
        return self._message(event, self._default)

    def heartbeat(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Send the heartbeat frame to every live connection (the heartbeat
        index), as a publish sends a message: the first inline-limit ones
        itself, the others in chunks through the fan-out queue. Connections
        found gone are closed in the table. ``event`` is the schedule's input;
        the summary it returns is logged (the scheduler discards it)."""
        deadline = _fanout_deadline(context)
        log = {"scheduledTime": event.get("scheduledTime") if isinstance(event, Mapping) else None}
        targets = self.store.connections()
        payload = protocol.encode(protocol.heartbeat())
        deliveries, queued, lost = self.fan_out(spec.HEARTBEAT.function, targets, payload, NO_CHANNEL, deadline, log)
        summary = {"connections": len(targets), "delivered": deliveries.delivered, "gone": len(deliveries.gone),
                   "failed": len(deliveries.failed) + lost, "queued": queued}
        logger.info("heartbeat sent", extra={**log, **summary})
        return summary

    def server_publish(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """A backend's publish into a channel, through the server publish
        endpoint (a Lambda function URL): :func:`server_publish.publish`."""
        return publish_from_backend(self, event, _fanout_deadline(context))

    # --- behaviour -----------------------------------------------------------------

    def _message(self, event: WebSocketEvent,
                 behaviour: Callable[[WebSocketEvent, Any], dict[str, Any]]) -> dict[str, Any]:
        """Decode the frame and run the route's behaviour; any failure becomes
        an error reply, never an exception out of Lambda.

        The reply is the response's body: every message route is two-way
        (a ``$default`` route response), so API Gateway sends it to the sender
        with no management API call."""
        _log_event(event)
        command: Any = None
        try:
            command = protocol.decode(event.body, self.rules)
            frame = command.frame if isinstance(command, protocol.Reply) else behaviour(event, command)
        except Exception:
            _log_failure(event, "handling the frame failed")
            frame = _failure_for(command, INTERNAL_ERROR)
        frame = protocol.answering(command, frame)
        try:
            payload = protocol.encode_reply(frame)
        except Exception:
            _log_failure(event, "reply could not be encoded")
            payload = protocol.encode(protocol.answering(command, protocol.error(INTERNAL_ERROR)))
        return {**_OK, "body": payload.decode("utf-8")}

    def _join(self, event: WebSocketEvent, command: Any,
              time_left: tuple[float, float] | None = None) -> dict[str, Any]:
        if not isinstance(command, protocol.Join):
            return _misrouted(event, command)
        refusal = _channel_rule_refusal(event, command.channel_id)
        if refusal is not None:
            return refusal
        # before the membership is written: every message stamped from here
        # on comes after the position (docs/protocol.md §4.3)
        position = protocol.position()
        plan = presence.plan_join(self, event, command)  # presence: None when off
        try:
            joined = self.store.join(event.connection_id, command.channel_id, protocol.new_sender_id(),
                                     presence.entry(plan))
        except ConnectionClosed:
            return protocol.join_failure("this connection has disconnected")
        except StoreError as exc:
            _log_failure(event, f"join failed: {type(exc).__name__}")
            return protocol.join_failure(protocol.JOIN_BUSY)
        # the deadline only for a resume, which posts: a join that does not
        # post never loads the sender (whose constant the reserve is)
        deadline = None if command.since is None else _deadline(time_left)
        resumed = history.resume(self, event, joined.channel_id, command.since, position, deadline)
        return presence.joined(self, event, plan, joined,
                               protocol.join_success(joined.channel_id, joined.sender_id, **resumed))

    def _publish(self, event: WebSocketEvent, command: Any, deadline: float | None = None) -> dict[str, Any]:
        if not isinstance(command, protocol.Publish):
            return _misrouted(event, command)
        membership = self.store.membership(event.connection_id)
        if membership is None:
            return protocol.publish_failure(protocol.NOT_IN_CHANNEL)
        outgoing = protocol.prepare_message(membership.channel_id, membership.sender_id, command.data, self.rules)
        if outgoing.failure is not None:
            return outgoing.failure
        assert outgoing.payload is not None  # prepare_message gives a payload or a failure
        channel = membership.channel_id
        context = {"connectionId": event.connection_id, "routeKey": event.route_key}
        history.keep(self, channel, outgoing)  # a failure here sends nothing: the error reply says so
        # every page is read before anything is sent: a failed read sends nothing
        targets = protocol.recipients(self.store.members(channel), event.connection_id)
        deliveries, queued, lost = self.fan_out(PUBLISH_FUNCTION, targets, outgoing.payload, channel, deadline,
                                                 context)
        failed = len(deliveries.failed) + lost
        if failed:
            return protocol.publish_partial_failure(deliveries.delivered, failed, queued)
        return protocol.publish_success(queued)

    def fan_out(self, function: str, targets: list[str], payload: bytes, channel: str, deadline: float | None,
               context: dict[str, Any]) -> tuple[Any, int, int]:
        """Send ``payload`` to ``targets``: those beyond the inline limit are
        handed to the fan-out function, in chunks, before the inline posts
        start; the others are posted here (:meth:`_deliver`). Returns the
        inline deliveries, the members queued and those that could not be,
        and records them as ``function``'s metrics (a ``spec.Function``'s
        name: :meth:`_record_fan_out`)."""
        started = time.monotonic()
        limit = self.settings.inline_limit
        inline, beyond = (targets, []) if limit is None else (targets[:limit], targets[limit:])
        queued = lost = 0
        if beyond:
            try:
                queued, lost = self.queue.send(channel, beyond, payload, deadline)
            except Exception:
                logger.exception("queueing members for fan-out failed", extra=context)
                lost = len(beyond)  # some may have been queued: they count as failed, as a post without answer
            if lost:
                logger.warning("members could not be queued for fan-out", extra={**context, "count": lost})
        deliveries = self._deliver(inline, payload, channel, deadline, context)
        queued += deliveries.queued
        self._record_fan_out(function, started, len(targets), deliveries, queued, lost)
        return deliveries, queued, lost

    def _record_fan_out(self, function: str, started: float, targets: int, deliveries: Any,
                        queued: int = 0, lost: int = 0) -> None:
        """One metrics record for a finished fan-out (when metrics are on),
        its Function dimension ``function``: the name of the function as
        ``spec`` declares it (``publish``, ``fanout``, ``heartbeat``,
        ``server_publish``). Members that could not be queued count as
        failed, as in the reply."""
        if not self.metrics.enabled:
            return
        self.metrics.fan_out(function, metrics.FanOut(
            targets=targets, delivered=deliveries.delivered, gone=len(deliveries.gone),
            failed=len(deliveries.failed) + lost, queued=queued, milliseconds=(time.monotonic() - started) * 1000,
        ))

    def _deliver(self, targets: list[str], payload: bytes, channel: str, deadline: float | None,
                 context: dict[str, Any]) -> Any:
        """Post ``payload`` to ``targets``; remove those found gone (closed
        for good: not failures) from ``channel``, or close them wherever they
        are when ``channel`` is NO_CHANNEL (a heartbeat); hand those whose
        post could not start before ``deadline`` (waiting for the account
        budget, say) on to the fan-out queue, when there is one
        (``deliveries.queued``); log each failure."""
        deliveries = self.sender.post_many(targets, payload, deadline)
        self._hand_on(deliveries, payload, channel, context)
        if deliveries.gone:
            try:
                if channel == NO_CHANNEL:
                    for connection_id in deliveries.gone:
                        presence.close(self, connection_id, deadline)
                else:
                    presence.remove_gone(self, deliveries.gone, channel, deadline)
            except Exception:
                logger.exception("removing gone connections failed", extra=context)
        for failure in deliveries.failed:
            logger.warning("delivery failed after retries: %s", failure.code, extra={**context, "code": failure.code})
        return deliveries

    def _hand_on(self, deliveries: Any, payload: bytes, channel: str, context: dict[str, Any]) -> None:
        """Queue the members of ``deliveries`` whose post never started, so a
        fan-out slowed by the budget is late, not lost. They leave
        ``deliveries.failed`` once queued; those the queue refused stay."""
        waiting = deliveries.not_started()
        if not waiting or self.queue is None:
            return
        try:
            # no deadline: the function's reserve (POST_RESERVE_SECONDS) is left for this
            queued, lost = self.queue.send(channel, waiting, payload)
        except Exception:
            logger.exception("handing members on to the fan-out queue failed", extra=context)
            return
        if lost:
            return  # which ones were lost is not known: all still count as failed
        deliveries.handed_on()
        logger.info("members handed on to the fan-out queue: their posts could not start in time",
                    extra={**context, "count": queued})

    def _ping(self, event: WebSocketEvent, command: Any) -> dict[str, Any]:
        if not isinstance(command, protocol.Ping):
            return _misrouted(event, command)
        return protocol.pong(command)

    def _default(self, event: WebSocketEvent, command: Any) -> dict[str, Any]:
        # API Gateway routes join/publish/ping frames to their own routes; a
        # valid one can only land here when the API lacks that route.
        if isinstance(command, protocol.Members):  # presence: no route of its own (docs/architecture.md)
            return presence.members(self, event, command)
        return _misrouted(event, command)


def _fanout_deadline(context: Any) -> float | None:
    """When the last post of a fan-out may start: early enough that it can
    finish and the sender still gets its reply before Lambda's timeout. The
    reserve is POST_RESERVE_SECONDS, or half the time left when that is less:
    with a short timeout a hung post may then outlast the function, but
    posts are still sent. None without a Lambda context (no limit)."""
    return _deadline(_time_left(context))


def _time_left(context: Any) -> tuple[float, float] | None:
    """When Lambda's remaining time was read (``time.monotonic()``) and the
    seconds it had left then; None without a Lambda context. Loads nothing,
    so a route that may not post can read it at once."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    seconds: float = remaining() / 1000
    return time.monotonic(), seconds


def _deadline(time_left: tuple[float, float] | None) -> float | None:
    """:func:`_fanout_deadline` for the time left read earlier (:func:`_time_left`)."""
    from .sender import POST_RESERVE_SECONDS

    if time_left is None:
        return None
    read_at, seconds = time_left
    return read_at + seconds - min(POST_RESERVE_SECONDS, seconds / 2)


def _channel_rule_refusal(event: WebSocketEvent, channel_id: str) -> dict[str, Any] | None:
    """The joinFailure for a channel the connection's authorizer did not
    allow, or None when it may join. Without ``channelPattern`` in the
    authorizer context joins are not limited; with one that cannot be used
    every join is refused (fail closed) and logged, never the channel."""
    authorizer = event.authorizer
    if spec.CHANNEL_PATTERN_CONTEXT_KEY not in authorizer:
        return None
    where = {"connectionId": event.connection_id, "routeKey": event.route_key}
    try:
        if protocol.channel_allowed(channel_id, authorizer[spec.CHANNEL_PATTERN_CONTEXT_KEY]):
            return None
        logger.info("join refused: channel not allowed by the authorizer", extra=where)
    except protocol.InvalidChannelPattern as exc:
        logger.error("join refused: the authorizer's channelPattern is unusable", extra={**where, "problem": str(exc)})
    return protocol.join_failure(protocol.CHANNEL_NOT_ALLOWED)


def _misrouted(event: WebSocketEvent, command: Any) -> dict[str, Any]:
    logger.warning("frame reached the wrong route",
                   extra={"connectionId": event.connection_id, "routeKey": event.route_key})
    return protocol.error(f"this API has no route for {type(command).__name__.lower()} frames")


def _ok() -> dict[str, Any]:
    """A fresh body-less 200 response."""
    return dict(_OK)


def _failure_for(command: Any, reason: str) -> dict[str, Any]:
    """The failure reply that matches the frame the client sent."""
    if isinstance(command, protocol.Join):
        return protocol.join_failure(reason)
    if isinstance(command, protocol.Publish):
        return protocol.publish_failure(reason)
    return protocol.error(reason)


def _log_event(event: WebSocketEvent) -> None:
    # Connection and route only: message payloads are never logged.
    logger.info("event", extra={"connectionId": event.connection_id, "routeKey": event.route_key})


def _log_failure(event: WebSocketEvent, what: str) -> None:
    logger.exception(what, extra={"connectionId": event.connection_id, "routeKey": event.route_key})


# --- Lambda entry points ------------------------------------------------------------

_app: ChannelApp | None = None
#: Lambda runs one invocation at a time per environment; local mode runs many
#: on threads of one process, which must build the app (and its clients) once.
_building = threading.Lock()


def _default_app() -> ChannelApp:
    global _app
    if _app is None:
        with _building:
            if _app is None:
                _app = ChannelApp(os.environ)
    return _app


def connect(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return _default_app().connect(WebSocketEvent(event))


def disconnect(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return _default_app().disconnect(WebSocketEvent(event))


def join(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return _default_app().join(WebSocketEvent(event), context)


def publish(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return _default_app().publish(WebSocketEvent(event), context)


def ping(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return _default_app().ping(WebSocketEvent(event))


def fanout(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The fan-out function's entry point: SQS events of queued chunks."""
    return _default_app().fanout(event, context)


def default(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return _default_app().default(WebSocketEvent(event))


def heartbeat(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The heartbeat function's entry point: the schedule's input."""
    return _default_app().heartbeat(event, context)


def server_publish(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The server publish function's entry point: its function URL's requests."""
    return _default_app().server_publish(event, context)
