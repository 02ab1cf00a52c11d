"""The facts the handlers and the component share: one place for each.

The component (``channel_server.component``) reads this module to build its
resources, local mode reads the resources the component registered, and the
handlers read it to find their table and endpoints. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

# --- environment variables set on every function -------------------------------

ENV_TABLE_NAME = "CHANNEL_TABLE_NAME"
ENV_INDEX_NAME = "CHANNEL_INDEX_NAME"
ENV_MANAGEMENT_ENDPOINT = "CHANNEL_MANAGEMENT_ENDPOINT"
ENV_CHANNEL_ID_PATTERN = "CHANNEL_ID_PATTERN"
ENV_MAX_MESSAGE_BYTES = "CHANNEL_MAX_MESSAGE_BYTES"
ENV_POSTS_IN_FLIGHT = "CHANNEL_POSTS_IN_FLIGHT"
#: On publish: the members one publish posts to itself, and the queue it hands
#: the others to (see "large channels" below).
ENV_INLINE_FANOUT_LIMIT = "CHANNEL_INLINE_FANOUT_LIMIT"
ENV_FANOUT_QUEUE_URL = "CHANNEL_FANOUT_QUEUE_URL"
#: "1" when server heartbeats are on: $connect registers the connection and
#: every state row joins the heartbeat index (see "heartbeats" below).
ENV_HEARTBEATS = "CHANNEL_HEARTBEATS"
#: "1" when the component's ``metrics`` setting is on: publish, the fan-out
#: function and the heartbeat write one Embedded Metric Format record per run
#: to their log (see "metrics" below).
ENV_METRICS = "CHANNEL_METRICS"
#: The component's name: the ``Server`` dimension of every metric.
ENV_SERVER_NAME = "CHANNEL_SERVER_NAME"
#: Seconds a channel's messages are kept for resuming joins (the component's
#: ``historySeconds``); absent or "0": no history (see "history" below).
ENV_HISTORY_SECONDS = "CHANNEL_HISTORY_SECONDS"
#: The account budget: management API posts a second that every function of
#: the server together may send (its ``postsPerSecond`` setting; see "the
#: account budget" below).
ENV_POSTS_PER_SECOND = "CHANNEL_POSTS_PER_SECOND"
#: The channel index's shards (its ``channelIndexShards`` setting; see "large
#: channels" below); absent or "1": the channel index keyed on the channel.
ENV_CHANNEL_INDEX_SHARDS = "CHANNEL_INDEX_SHARDS"
#: Not set by the component: local mode sets it for its embedded DynamoDB
#: (moto, in local mode's own process), which a machine busy with thousands
#: of clients can keep from answering within READ_TIMEOUT. Seconds; default
#: READ_TIMEOUT.
ENV_DYNAMODB_READ_TIMEOUT = "CHANNEL_DYNAMODB_READ_TIMEOUT"

#: Seconds to connect, and to wait for an answer, per attempt of any call to
#: AWS (DynamoDB and the management API). Calls take milliseconds; these keep
#: a hung one from eating the function's time.
CONNECT_TIMEOUT = 2
READ_TIMEOUT = 2

#: API Gateway's integration timeout (its most, and its default): it stops
#: waiting for a route's integration, Lambda or HTTP, after this many
#: seconds, so no handler may run longer.
INTEGRATION_TIMEOUT_SECONDS = 29

#: Posts a publish keeps in flight at once, by default and at most (its
#: ``postsInFlight`` setting). The default was chosen with bench/fanout.py
#: (see the README's Performance section).
DEFAULT_POSTS_IN_FLIGHT = 64
MAX_POSTS_IN_FLIGHT = 1000

# --- large channels -----------------------------------------------------------------

#: A publish posts to at most this many members itself (its
#: ``inlineFanoutLimit`` setting) and hands the rest, in chunks, to the fan-out
#: function through a queue. About 1 s of posting at 20 ms a post
#: (bench/fanout.py), so a publish to a channel of any size answers quickly.
DEFAULT_INLINE_FANOUT_LIMIT = 1000
#: At most: about the members one publish can post to within Lambda's 29 s
#: (docs/architecture.md, "How a publish runs").
MAX_INLINE_FANOUT_LIMIT = 50_000
#: Members per queued chunk: what one fan-out invocation posts to.
FANOUT_CHUNK_MEMBERS = 1000
#: How long the fan-out queue keeps a chunk (SQS's default, 4 days), and so
#: how long a chunk's claim row must outlive it (Store.claim_chunk).
FANOUT_RETENTION_SECONDS = 4 * 24 * 60 * 60
#: Fan-out invocations running at once, at most (the event source mapping's
#: maximum concurrency, its ``fanoutConcurrency`` setting): a burst of large
#: publishes cannot take the account's whole concurrency from the routes. Its
#: range is the mapping's (Lambda's ScalingConfig.MaximumConcurrency).
DEFAULT_FANOUT_CONCURRENCY = 50
MIN_FANOUT_CONCURRENCY, MAX_FANOUT_CONCURRENCY = 2, 1000
#: The channel index's shards: by default one, the index keyed on the channel
#: (CHANNEL_INDEX), so a channel is one index partition, which serves at most
#: 3,000 read units and 1,000 write units a second (docs/capacity.md). With
#: more, every membership row also carries CHANNEL_SHARD, the channel and a
#: shard number from a hash of the connection id, and CHANNEL_SHARD_INDEX is
#: keyed on it: a channel's joins and reads spread over that many partitions,
#: and a publish reads them all at once.
DEFAULT_CHANNEL_INDEX_SHARDS = 1
MAX_CHANNEL_INDEX_SHARDS = 64
CHANNEL_SHARD_INDEX = "byChannelShard"
CHANNEL_SHARD = "channelShard"

# --- the account budget: posts paced to the account's request quota -------------------

#: API Gateway's request quota is per account and Region, and shared by every
#: API and by the management API's posts (docs/capacity.md cites it): 10,000 a
#: second by default. Every post of every function first takes its place in a
#: second's budget of postsPerSecond posts, from a counter row per second in
#: the table (handlers/budget.py), so a large fan-out is slower, never
#: refused by the quota. By default half the default quota, the other half
#: left to the clients' own frames and the account's other APIs.
DEFAULT_POSTS_PER_SECOND = 5000
MAX_POSTS_PER_SECOND = 1_000_000
#: Each second's budget is taken in this many slots of equal length, each with
#: its share of the second's posts (together exactly postsPerSecond), so posts
#: never come in a burst of a whole second's budget: API Gateway's token
#: bucket holds half a second's quota.
BUDGET_SLOTS_PER_SECOND = 10
#: Both keys of a second's budget row: this prefix and the second (epoch
#: seconds). Never a connection's, a channel's or any other row's. One row a
#: second, not one a slot: a row's first write also writes the channel index
#: (every row has a sort key), later ones only the row.
BUDGET_PREFIX = "$budget#"
#: On a budget row: the posts taken from each slot's share so far, in an
#: attribute per slot: this and the slot's number in the second (taken0 … taken9).
BUDGET_TAKEN = "taken"
#: How long a budget row is kept after its second (TTL): a minute.
BUDGET_ROW_SECONDS = 60
#: Taking posts from the budget: one UpdateItem (ADD) of the second's row.
TAKE_POSTS = ("dynamodb:UpdateItem",)

# --- the connections table --------------------------------------------------------

#: Partition key: the API Gateway connection id.
CONNECTION_ID = "connectionId"
#: Sort key: the channel a connection is in (or the connection's state row, below).
CHANNEL_ID = "channelId"
#: The global secondary index that lists a channel's connections.
CHANNEL_INDEX = "byChannel"
#: TTL attribute (epoch seconds), set on every item.
EXPIRES_AT = "expiresAt"
#: Per-join random id shown to other members instead of the connection id.
SENDER_ID = "senderId"
#: On the state row: the channel the connection is in.
CURRENT_CHANNEL = "currentChannel"
#: On the state row: bumped on every join, the condition that makes joins atomic.
VERSION = "version"
#: On the state row: set once the connection's $disconnect ran (a tombstone,
#: without channel or version), so a join that raced the $disconnect cannot
#: write after it.
CLOSED_AT = "closedAt"
#: Attributes the channel index projects besides its keys: publish needs only the
#: connection id and the expiry.
INDEX_PROJECTED = (EXPIRES_AT,)
#: Both keys of a fan-out chunk's claim row are this prefix and the chunk's SQS
#: message id: never a connection's, never a channel's (they cannot start with $).
CHUNK_CLAIM_PREFIX = "$chunk#"
#: Sort-key prefix of a connection's state row. Channel ids can never start with
#: it (the protocol rejects them), so a state row is never mistaken for a
#: membership. The connection id follows the prefix so state rows spread over
#: the index instead of sharing one hot partition.
STATE_ROW_PREFIX = "$connection#"

#: API Gateway closes every WebSocket connection after 2 hours; rows whose
#: ``$disconnect`` never arrived expire shortly after that.
MAX_CONNECTION_SECONDS = 2 * 60 * 60
ROW_TTL_SECONDS = MAX_CONNECTION_SECONDS + 5 * 60

# --- server heartbeats --------------------------------------------------------------

#: The heartbeat interval's range in minutes (its ``heartbeatIntervalMinutes``
#: setting; 0 is off). API Gateway closes a connection after 10 idle minutes,
#: so a heartbeat must come before that; EventBridge Scheduler's shortest
#: rate is one minute.
MIN_HEARTBEAT_MINUTES, MAX_HEARTBEAT_MINUTES = 1, 9
#: The heartbeat function's timeout: it lists the connections and posts to
#: the first inlineFanoutLimit of them itself, queueing the rest for the
#: fan-out function, well within the shortest interval.
HEARTBEAT_TIMEOUT_SECONDS = 60
#: The sparse index of live connections: only registered and joined state
#: rows carry HEARTBEAT_SHARD (tombstones and memberships do not), so the
#: heartbeat reads exactly the connections it posts to and never a membership.
HEARTBEAT_INDEX = "byHeartbeatShard"
#: Its partition key: a number from 0 to HEARTBEAT_SHARDS - 1, from a hash of
#: the connection id. Ten keys spread the index's writes (one partition key
#: takes about 1,000 writes a second) over ten partitions.
HEARTBEAT_SHARD = "heartbeatShard"
HEARTBEAT_SHARDS = 10
#: Attributes the heartbeat index projects besides its keys.
HEARTBEAT_INDEX_PROJECTED = (EXPIRES_AT,)

# --- server publish: backends publish through an IAM-signed endpoint ------------------

#: Both keys of an idempotency key's row: this prefix and the key. Never a
#: connection's or a channel's (they cannot start with $), and one partition
#: key per key, so the rows spread over the table and the channel index.
PUBLISH_KEY_PREFIX = "$publish#"
#: The server publish function's timeout. A claim of a key older than this
#: (and the posts' reserve) belongs to a publish that has stopped.
SERVER_PUBLISH_TIMEOUT_SECONDS = 60
#: How long an idempotency key publishes once: a request with a key seen this
#: recently gets the first request's outcome back instead of publishing again.
IDEMPOTENCY_WINDOW_SECONDS = 10 * 60
#: On an idempotency row: a hash of the message it published (channel and
#: data), so a key reused for another publish is refused, not answered with
#: another publish's outcome.
PUBLISH_FINGERPRINT = "fingerprint"
#: On an idempotency row: when its publish started (epoch seconds), and its
#: outcome once it finished (JSON: delivered, failed, queued).
PUBLISH_STARTED_AT = "startedAt"
PUBLISH_OUTCOME = "outcome"
#: On an idempotency row: a random token of the claim, so a claim whose
#: answer was lost and that was sent again finds its own row, not a rival's.
PUBLISH_CLAIM = "claim"

# --- history: a channel's recent messages, for joins that resume ----------------------

#: The range of ``historySeconds`` (0 is off): at most a day. A connection
#: lasts at most MAX_CONNECTION_SECONDS, and a resume follows a reconnect.
MAX_HISTORY_SECONDS = 24 * 60 * 60
#: Partition key of a channel's kept messages: this prefix and the channel id;
#: sort key: HISTORY_MESSAGE_PREFIX and the message id, so a Query reads a
#: channel's messages in id order. Neither key can be a connection's or a
#: channel's (those cannot start with $).
HISTORY_PREFIX = "$history#"
HISTORY_MESSAGE_PREFIX = "$message#"
#: On a kept message's row: the message frame as sent to members.
HISTORY_PAYLOAD = "payload"
#: Messages one resuming join sends, at most, one post after another: about
#: 2 s of posts at 10 ms. A resume that missed more is answered as
#: incomplete (docs/protocol.md §4.3).
MAX_REPLAY_MESSAGES = 200
#: On a fan-out chunk's claim row: set once its posts are done. A chunk handed
#: over again whose claim lacks it was being posted by a function that died:
#: it is posted again (docs/failure-semantics.md).
CHUNK_FINISHED_AT = "finishedAt"

# --- $connect authorization and metrics ------------------------------------------------

#: The key of a Lambda authorizer's ``context`` that limits what a connection
#: may join: a regular expression every channelId it joins must match in full.
#: API Gateway passes the context to every event of the connection, in
#: ``requestContext.authorizer``; without the key, joins are not limited.
CHANNEL_PATTERN_CONTEXT_KEY = "channelPattern"

#: The CloudWatch namespace of the handlers' metrics, and their dimensions:
#: ``Server`` (ENV_SERVER_NAME) alone, and ``Server`` with ``Function``.
METRICS_NAMESPACE = "ChannelServer"
METRIC_FAILED_DELIVERIES = "FailedDeliveries"

# --- routes -------------------------------------------------------------------------

#: DynamoDB actions, by what the store does with them.
READ_STATE = ("dynamodb:GetItem",)  # Store.membership, Store.join
MOVE_MEMBERSHIP = ("dynamodb:PutItem", "dynamodb:DeleteItem")  # Store.join's transaction
CLOSE_CONNECTION = ("dynamodb:PutItem", "dynamodb:DeleteItem")  # Store.close_connection
REMOVE_GONE = ("dynamodb:BatchWriteItem",)  # Store.remove_gone
CLAIM_CHUNK = ("dynamodb:PutItem", "dynamodb:GetItem")  # Store.claim_chunk, finish_chunk
REGISTER_CONNECTION = ("dynamodb:PutItem",)  # Store.register (heartbeats on)
LIST_CONNECTIONS = ("dynamodb:Query",)  # Store.connections, on the heartbeat index
#: SQS actions on the fan-out queue: publish sends chunks, the event source
#: mapping (with the fan-out function's role) receives and deletes them.
SEND_CHUNKS = ("sqs:SendMessage",)  # SendMessageBatch is authorised as SendMessage
TAKE_CHUNKS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
#: An idempotency key's row: claimed with a conditional PutItem, read back when
#: the claim fails, its outcome written with PutItem, released with DeleteItem
#: when nothing was sent (Store.claim_publish, record_publish, release_publish).
KEEP_PUBLISH_KEYS = ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem")
#: History on: a publish keeps its message (PutItem), a resuming join reads a
#: channel's kept messages (Query on the table, not the index).
KEEP_MESSAGE = ("dynamodb:PutItem",)  # Store.keep_message
READ_HISTORY = ("dynamodb:Query",)  # Store.messages_since

#: API Gateway's catch-all key, the same wherever it selects by key: the route
#: of every frame whose selection matches no other route's key, the only route
#: response a WebSocket API has, and the request template and integration
#: response taken when no other matches.
DEFAULT_KEY = "$default"
#: The only route response key a WebSocket API has, and the route response
#: selection expression that picks it for every answer.
ROUTE_RESPONSE_KEY = DEFAULT_KEY
ROUTE_RESPONSE_SELECTION_EXPRESSION = ROUTE_RESPONSE_KEY  # an expression that is the key itself


@dataclass(frozen=True)
class Function:
    """One Lambda function: its entry point and what it may do.

    ``table_actions`` are the DynamoDB actions it calls on the table,
    ``heartbeat_table_actions`` those it calls only when heartbeats are on,
    ``index_actions`` those on the channel index, ``heartbeat_index_actions``
    those on the heartbeat index, ``queue_actions`` those on the fan-out
    queue, and ``posts`` whether it posts to connections through the
    management API; ``history_table_actions`` and ``history_posts`` are
    granted only when history is on. The component grants exactly these and
    nothing more.
    ``fans_out`` marks a function whose work grows with a channel's size (one
    post per member): it gets the fan-out memory setting, since Lambda's CPU
    grows with memory.
    """

    function: str
    table_actions: tuple[str, ...] = ()
    heartbeat_table_actions: tuple[str, ...] = ()
    index_actions: tuple[str, ...] = ()
    heartbeat_index_actions: tuple[str, ...] = ()
    queue_actions: tuple[str, ...] = ()
    posts: bool = False
    fans_out: bool = False
    history_table_actions: tuple[str, ...] = ()
    history_posts: bool = False

    @property
    def handler(self) -> str:
        """The Lambda handler string of the entry point."""
        return f"{HANDLER_MODULE}.{self.function}"

    @property
    def presence(self) -> "PresenceGrant":
        """What it may do besides, only when presence is on (``PRESENCE_GRANTS``)."""
        return PRESENCE_GRANTS.get(self.function, NO_PRESENCE_GRANT)


@dataclass(frozen=True)
class Route(Function):
    """A function behind an API Gateway route. ``two_way`` routes have a
    route response: the function's return value (its ``body``) is API
    Gateway's reply to the sender, with no post and no round trip."""

    key: str = ""
    two_way: bool = False


#: The entry points live in this module, addressed as the archive lays it out.
HANDLER_MODULE = "channel_server.handlers.app"

#: Frame types with a route of their own: route selection
#: (``$request.body.type``) sends a frame to the route whose key is its type.
JOIN, PUBLISH, PING = "join", "publish", "ping"
#: API Gateway's reserved route keys: the handshake's (the only route an
#: authorizer can guard), the close's, and the catch-all's.
CONNECT_ROUTE, DISCONNECT_ROUTE, DEFAULT_ROUTE = "$connect", "$disconnect", DEFAULT_KEY

ROUTES: tuple[Route, ...] = (
    # registers the connection for heartbeats, when they are on
    Route(key=CONNECT_ROUTE, function="connect", heartbeat_table_actions=REGISTER_CONNECTION),
    # closes the connection for good in the table (a tombstone state row)
    Route(key=DISCONNECT_ROUTE, function="disconnect", table_actions=CLOSE_CONNECTION),
    # with history on, a resuming join reads the channel's kept messages and posts them
    Route(key=JOIN, function="join", table_actions=READ_STATE + MOVE_MEMBERSHIP, two_way=True,
          history_table_actions=READ_HISTORY, history_posts=True),
    Route(
        key=PUBLISH,
        function="publish",
        # reads the sender's state, lists the channel, removes gone members,
        # queues the members beyond the inline limit
        table_actions=READ_STATE + REMOVE_GONE,
        index_actions=("dynamodb:Query",),
        queue_actions=SEND_CHUNKS,
        posts=True,
        fans_out=True,
        two_way=True,
        history_table_actions=KEEP_MESSAGE,  # keeps the message before the fan-out
    ),
    Route(key=PING, function="ping", two_way=True),
    Route(key=DEFAULT_ROUTE, function="default", two_way=True),
)
#: Each route key's function (the entry point in ``app`` and the method the
#: reference backend calls): ``{"$connect": "connect", ...}``.
ROUTE_FUNCTIONS: Mapping[str, str] = MappingProxyType({route.key: route.function for route in ROUTES})

#: The function behind the fan-out queue: posts each queued chunk, removes the
#: members it found gone (closes them, for a heartbeat's chunks, which name no
#: channel). SQS's event source mapping invokes it.
FANOUT = Function("fanout", table_actions=tuple(dict.fromkeys(CLAIM_CHUNK + REMOVE_GONE + CLOSE_CONNECTION)),
                  queue_actions=TAKE_CHUNKS, posts=True, fans_out=True)

#: The function the heartbeat schedule invokes: lists the live connections,
#: posts the heartbeat frame to them (queueing those beyond the inline limit,
#: as a publish does) and closes those found gone.
HEARTBEAT = Function("heartbeat", table_actions=CLOSE_CONNECTION, heartbeat_index_actions=LIST_CONNECTIONS,
                     queue_actions=SEND_CHUNKS, posts=True, fans_out=True)

#: The function behind the server publish endpoint (a Lambda function URL that
#: takes only SigV4-signed requests): a backend's publish into a channel, the
#: publish route's fan-out with the server as sender. Its idempotency keys are
#: rows of the table.
SERVER_PUBLISH = Function("server_publish", table_actions=tuple(dict.fromkeys(KEEP_PUBLISH_KEYS + REMOVE_GONE)),
                          index_actions=("dynamodb:Query",), queue_actions=SEND_CHUNKS, posts=True, fans_out=True,
                          history_table_actions=KEEP_MESSAGE)


def management_endpoint(api_endpoint: str, stage: str) -> str:
    """The stage's management API (``https://{api}.execute-api.{region}.amazonaws.com/{stage}``)
    from the API's endpoint (``wss://{api}.execute-api.{region}.amazonaws.com``)."""
    return api_endpoint.replace("wss://", "https://", 1) + f"/{stage}"


#: The route selection expression: the frame's ``type`` field picks the route.
ROUTE_SELECTION_EXPRESSION = "$request.body.type"


# --- presence: who is in a channel, announced to the members watching ----------------

#: Set (to presenceMaxMembers) only when the component's ``presence`` option is
#: on: every join then writes a presence row, up to this many per channel, and
#: joins that ask for it are told of members joining and leaving.
ENV_PRESENCE_MAX_MEMBERS = "CHANNEL_PRESENCE_MAX_MEMBERS"
#: presenceMaxMembers: by default (Pusher's presence channels' limit) and its
#: range. Each listed join and leave costs one post per watching member, so a
#: channel filling at once costs up to cap² posts (bench/presence_join_storm.py).
DEFAULT_PRESENCE_MAX_MEMBERS = 100
MIN_PRESENCE_MAX_MEMBERS, MAX_PRESENCE_MAX_MEMBERS = 1, 1000
#: A channel's presence rows: partition key this prefix and the channel id, sort
#: key MEMBER_ROW_PREFIX and the connection id. Channel ids never start with $,
#: so neither key is ever a connection's, a channel's or a membership's; one
#: consistent Query of the table (not an index) lists a channel's members.
PRESENCE_ROW_PREFIX = "$presence#"
MEMBER_ROW_PREFIX = "$member#"
#: On a presence row: whether the member asked to be told of joins and leaves.
WATCHING = "watching"
#: On a presence row: the principalId the connection's $connect authorizer
#: returned (only a string of at most MAX_PRINCIPAL_ID_LENGTH characters).
PRINCIPAL_ID = "principalId"
PRINCIPAL_ID_CONTEXT_KEY = "principalId"
MAX_PRINCIPAL_ID_LENGTH = 128
#: Listing a channel's presence rows: a Query of the table itself.
LIST_PRESENCE = ("dynamodb:Query",)


@dataclass(frozen=True)
class PresenceGrant:
    """What a function may do only when presence is on: ``table_actions`` on
    the table, and ``posts`` (announcements to the watching members)."""

    table_actions: tuple[str, ...] = ()
    posts: bool = False


NO_PRESENCE_GRANT = PresenceGrant()
#: By function (kept apart from ROUTES so presence changes no route's entry).
#: Presence rows are written and deleted in the requests the functions make
#: anyway (the join transaction, close_connection's DeleteItem, remove_gone's
#: batch), so most need only the listing and, to announce, posting.
PRESENCE_GRANTS: dict[str, PresenceGrant] = {
    # lists the channel (the cap, who watches), announces the join and the leave
    "join": PresenceGrant(LIST_PRESENCE, posts=True),
    # deletes the presence row (DeleteItem, granted), lists who watches, announces
    "disconnect": PresenceGrant(LIST_PRESENCE, posts=True),
    # $default answers {"type":"members"}: the sender's channel, its members
    "default": PresenceGrant(READ_STATE + LIST_PRESENCE),
    # remove members found gone and announce it: they post already
    "publish": PresenceGrant(LIST_PRESENCE),
    "fanout": PresenceGrant(LIST_PRESENCE),
    "heartbeat": PresenceGrant(LIST_PRESENCE),
    "server_publish": PresenceGrant(LIST_PRESENCE),
}
