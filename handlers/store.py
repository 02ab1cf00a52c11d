"""The DynamoDB edge: who is in which channel.

Rows (partition key ``connectionId``, sort key ``channelId``):

- a *membership* row ``(connection, channel)`` with the membership's
  ``senderId``: the channel index lists these to fan out a publish. With
  more than one channel index shard it also carries ``channelShard``
  (``<channel>#<n>``, n from a hash of the connection id), the sharded
  index's key;
- one *state* row per joined connection, sort key ``$connection#<id>``, holding
  ``currentChannel``, ``senderId`` and a ``version``. With heartbeats on,
  ``$connect`` writes it first (a *registered* row: no channel, no version)
  and every state row carries ``heartbeatShard``, which puts it in the sparse
  heartbeat index that lists live connections. Every join is one
  transaction that rewrites the state row on the condition that its version
  is still the one read, moves the membership and so never leaves a
  connection in two channels or half-joined. ``$disconnect`` overwrites the
  state row with a *tombstone* (``closedAt``, no channel, no version) and
  deletes the membership the old state row named: a join that raced it finds
  the tombstone, or fails its condition, and writes nothing.
- a *kept message* row per message published while history is on (partition
  key ``$history#<channel>``, sort key ``$message#<messageId>``): the message
  frame as sent, expiring ``historySeconds`` after the publish. A channel's
  kept messages are one partition, read in id order by a strongly consistent
  Query.
- an *idempotency* row per key of a server publish (both keys
  ``$publish#<key>``): the message's fingerprint, when the publish started
  and, once it finished, its outcome. A conditional PutItem claims the key;
  a key whose row has not expired publishes nothing again.

Every row carries ``expiresAt`` (TTL). DynamoDB deletes expired rows lazily
(up to days later), so every read here also ignores rows that have expired.
"""

from __future__ import annotations

import itertools
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from . import spec

#: A sharded channel's partitions read at once, at most.
MAX_PARALLEL_READS = 16
#: DynamoDB's limit on one BatchWriteItem call.
BATCH_LIMIT = 25
#: How often a join re-reads and retries when a concurrent join won the race.
JOIN_ATTEMPTS = 5
#: How often unprocessed batch items are sent again before giving up.
BATCH_ATTEMPTS = 5
#: The store's own retries (see :func:`_back_off`) wait at most this long
#: after their first failed attempt, doubling each time ...
BACK_OFF_BASE_SECONDS = 0.05
#: ... up to this.
MAX_BACK_OFF_SECONDS = 1.0


class StoreError(Exception):
    """The table could not be brought to the requested state; nothing the
    caller asked for was half-applied."""


class JoinConflict(StoreError):
    """Concurrent joins of one connection kept winning the race."""


class ConnectionClosed(StoreError):
    """The connection's $disconnect has run: nothing may be written for it."""


@dataclass(frozen=True)
class Membership:
    channel_id: str
    sender_id: str
    version: int


@dataclass(frozen=True)
class PublishKey:
    """An idempotency key's claim: the fingerprint of the publish that made
    it, when it started, and its outcome (None while it runs, or if it
    stopped without one)."""

    fingerprint: str
    started_at: int
    outcome: dict[str, Any] | None
    mine: bool = False
    """Whether this caller claimed it: it publishes, and records the outcome."""


@dataclass(frozen=True)
class PresenceEntry:
    """What a join lists about its member (presence on): the principalId
    shown to others, and whether it watches the channel's joins and leaves."""

    principal_id: str | None
    watching: bool


@dataclass(frozen=True)
class PresenceRow:
    """A listed member of a channel: its presence row."""

    connection_id: str
    sender_id: str
    principal_id: str | None
    watching: bool


def presence_key(channel_id: str, connection_id: str) -> dict[str, Any]:
    """The keys of a connection's presence row in a channel."""
    return _key(spec.PRESENCE_ROW_PREFIX + channel_id, spec.MEMBER_ROW_PREFIX + connection_id)


def _presence_row(item: dict[str, Any]) -> PresenceRow:
    return PresenceRow(
        connection_id=item[spec.CHANNEL_ID]["S"].removeprefix(spec.MEMBER_ROW_PREFIX),
        sender_id=item[spec.SENDER_ID]["S"],
        principal_id=item.get(spec.PRINCIPAL_ID, {}).get("S"),
        watching=bool(item.get(spec.WATCHING, {}).get("BOOL")),
    )


def state_key(connection_id: str) -> str:
    """The sort key of a connection's state row."""
    return spec.STATE_ROW_PREFIX + connection_id


def heartbeat_shard(connection_id: str) -> int:
    """The heartbeat index partition a connection's state row goes to."""
    return zlib.crc32(connection_id.encode("utf-8")) % spec.HEARTBEAT_SHARDS


def channel_shard(channel_id: str, connection_id: str, shards: int) -> str:
    """The channel index partition key of a membership, when the channel index
    has ``shards`` shards (more than one): the channel and a shard number from
    a hash of the connection id."""
    return channel_shard_key(channel_id, zlib.crc32(connection_id.encode("utf-8")) % shards)


def channel_shard_key(channel_id: str, shard: int) -> str:
    """Shard ``shard`` of ``channel_id``'s partitions of the sharded channel index."""
    return f"{channel_id}#{shard}"


class Store:
    """Memberships in one table. ``client`` is a boto3 DynamoDB client.
    ``heartbeats``: state rows join the heartbeat index (they carry
    ``heartbeatShard``). ``index_shards``: with more than one, memberships
    carry ``channelShard`` and ``index_name`` is keyed on it
    (``spec.CHANNEL_SHARD_INDEX``); with one, on the channel."""

    def __init__(self, client: Any, table_name: str, index_name: str, clock: Callable[[], float] = time.time,
                 *, heartbeats: bool = False, presence: bool = False,
                 index_shards: int = spec.DEFAULT_CHANNEL_INDEX_SHARDS):
        if not 1 <= index_shards <= spec.MAX_CHANNEL_INDEX_SHARDS:
            raise ValueError(f"index_shards must be 1 to {spec.MAX_CHANNEL_INDEX_SHARDS}, not {index_shards}")
        self._client = client
        self._table = table_name
        self._index = index_name
        self._clock = clock
        self._heartbeats = heartbeats
        self._presence = presence  # presence rows kept (see the presence section)
        self._index_shards = index_shards
        #: reads a sharded channel's partitions at once (its threads start when first used)
        self._readers: Any = None
        if index_shards > 1:
            from concurrent.futures import ThreadPoolExecutor  # here: every route imports the store, ping included

            self._readers = ThreadPoolExecutor(max_workers=min(index_shards, MAX_PARALLEL_READS),
                                               thread_name_prefix="channel-shard")

    def _shard(self, connection_id: str) -> dict[str, Any]:
        """The heartbeat index attribute of a live state row (none when off)."""
        if not self._heartbeats:
            return {}
        return {spec.HEARTBEAT_SHARD: {"N": str(heartbeat_shard(connection_id))}}

    def _channel_shard(self, channel_id: str, connection_id: str) -> dict[str, Any]:
        """The sharded channel index's attribute of a membership (none with one shard)."""
        if self._index_shards == 1:
            return {}
        return {spec.CHANNEL_SHARD: {"S": channel_shard(channel_id, connection_id, self._index_shards)}}

    def _now(self) -> int:
        return int(self._clock())

    # --- reads -------------------------------------------------------------------

    def membership(self, connection_id: str) -> Membership | None:
        """The connection's current channel and senderId, if it joined one."""
        item = self._client.get_item(
            TableName=self._table,
            Key=_key(connection_id, state_key(connection_id)),
            ConsistentRead=True,
        ).get("Item")
        if not item or _expired(item, self._now()) or spec.CLOSED_AT in item or spec.CURRENT_CHANNEL not in item:
            return None  # never joined (at most registered), expired, or closed
        return Membership(
            channel_id=item[spec.CURRENT_CHANNEL]["S"],
            sender_id=item[spec.SENDER_ID]["S"],
            version=int(item[spec.VERSION]["N"]),
        )

    def members(self, channel_id: str) -> list[str]:
        """Connection ids in the channel (through the index, every page),
        leaving out rows that have expired. A sharded index is one query per
        shard, all at once, the shards' members in shard order."""
        if self._readers is None:
            return self._live_ids(self._index, spec.CHANNEL_ID, {"S": channel_id})
        shards = [channel_shard_key(channel_id, n) for n in range(self._index_shards)]
        pages = self._readers.map(lambda key: self._live_ids(self._index, spec.CHANNEL_SHARD, {"S": key}), shards)
        return [connection_id for page in pages for connection_id in page]

    def connections(self) -> list[str]:
        """Every live connection (registered or joined, not closed, not
        expired): each shard of the heartbeat index, every page. Reads only
        state rows, keys and expiry."""
        return [connection_id for shard in range(spec.HEARTBEAT_SHARDS)
                for connection_id in self._live_ids(spec.HEARTBEAT_INDEX, spec.HEARTBEAT_SHARD, {"N": str(shard)})]

    def _live_ids(self, index: str, key: str, value: dict[str, Any]) -> list[str]:
        """The connection ids of the index's rows whose ``key`` is ``value``,
        every page, leaving out rows that have expired."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "#h = :h",
            "FilterExpression": "#e > :now",
            "ProjectionExpression": "#k",
            "ExpressionAttributeNames": {"#h": key, "#e": spec.EXPIRES_AT, "#k": spec.CONNECTION_ID},
            "ExpressionAttributeValues": {":h": value, ":now": {"N": str(self._now())}},
        }
        return [item[spec.CONNECTION_ID]["S"] for item in self._query(query)]

    def _query(self, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The items of ``query``, page after page, read as they are needed."""
        query = dict(query)
        while True:
            page = self._client.query(**query)
            yield from page.get("Items", ())
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- writes ------------------------------------------------------------------

    def join(self, connection_id: str, channel_id: str, sender_id: str,
             presence: PresenceEntry | None = None) -> Membership:
        """Move the connection into ``channel_id`` (out of any other), atomically.
        With presence on, the same transaction lists it there (``presence``,
        None when the channel's list is full) and unlists it where it was.

        Raises :class:`JoinConflict` when the transaction keeps being cancelled
        (concurrent joins of the same connection changing its state between read
        and write, or DynamoDB throttling an item) for JOIN_ATTEMPTS attempts.
        """
        for attempt in range(JOIN_ATTEMPTS):
            current = self._raw_state(connection_id) or {}
            if spec.CLOSED_AT in current:
                raise ConnectionClosed(f"{connection_id} has disconnected")
            joined = spec.VERSION in current  # else none, or only registered
            version = int(current[spec.VERSION]["N"]) if joined else 0
            expires = str(self._now() + spec.ROW_TTL_SECONDS)
            state_item = {
                **_key(connection_id, state_key(connection_id)),
                spec.CURRENT_CHANNEL: {"S": channel_id},
                spec.SENDER_ID: {"S": sender_id},
                spec.VERSION: {"N": str(version + 1)},
                spec.EXPIRES_AT: {"N": expires},
                **self._shard(connection_id),
            }
            if joined:
                condition = {"ConditionExpression": "#v = :v", "ExpressionAttributeNames": {"#v": spec.VERSION},
                             "ExpressionAttributeValues": {":v": {"N": str(version)}}}
            else:
                # no state row, or a registered one: not joined meanwhile, not closed
                condition = {"ConditionExpression": "attribute_not_exists(#v) AND attribute_not_exists(#c)",
                             "ExpressionAttributeNames": {"#v": spec.VERSION, "#c": spec.CLOSED_AT}}
            items: list[dict[str, Any]] = [
                {"Put": {"TableName": self._table, "Item": state_item, **condition}},
                {"Put": {"TableName": self._table, "Item": {
                    **_key(connection_id, channel_id),
                    spec.SENDER_ID: {"S": sender_id},
                    spec.EXPIRES_AT: {"N": expires},
                    **self._channel_shard(channel_id, connection_id),
                }}},
            ]
            previous = current[spec.CURRENT_CHANNEL]["S"] if joined else None
            if previous is not None and previous != channel_id:
                items.append({"Delete": {"TableName": self._table, "Key": _key(connection_id, previous)}})
            items.extend(self._presence_items(connection_id, channel_id, sender_id, previous, presence, expires))
            try:
                self._client.transact_write_items(TransactItems=items)
            except self._client.exceptions.TransactionCanceledException as exc:
                codes = _cancellation_codes(exc)
                if codes and codes <= _RETRYABLE_CANCELLATIONS:
                    if "ThrottlingError" in codes:
                        # botocore does not retry a cancelled transaction: back off here
                        _back_off(attempt)
                    continue
                raise StoreError(f"join transaction was cancelled ({', '.join(sorted(codes)) or 'no reason'})") from exc
            return Membership(channel_id, sender_id, version + 1)
        raise JoinConflict(f"join kept being cancelled (concurrent joins or throttling) after {JOIN_ATTEMPTS} attempts")

    def register(self, connection_id: str) -> bool:
        """Write the state row of a new connection (no channel yet), so the
        heartbeat lists it before it joins. One PutItem that never replaces a
        row (a join or $disconnect that got there first wins): False then."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **_key(connection_id, state_key(connection_id)),
                    spec.EXPIRES_AT: {"N": str(self._now() + spec.ROW_TTL_SECONDS)},
                    **self._shard(connection_id),
                },
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": spec.CONNECTION_ID},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def close_connection(self, connection_id: str) -> str | None:
        """Mark the connection closed for good and remove its membership (two
        requests: a PutItem of the tombstone that returns the old state row,
        then a DeleteItem of the membership it named). Returns the channel it
        was in, if any. Idempotent: closing twice, or a connection that never
        joined, leaves just the tombstone, which expires like any row."""
        old = self._client.put_item(
            TableName=self._table,
            Item={
                **_key(connection_id, state_key(connection_id)),
                spec.CLOSED_AT: {"N": str(self._now())},
                spec.EXPIRES_AT: {"N": str(self._now() + spec.ROW_TTL_SECONDS)},
            },
            ReturnValues="ALL_OLD",
        ).get("Attributes") or {}
        channel: str | None = old.get(spec.CURRENT_CHANNEL, {}).get("S")
        if channel is not None:
            self._client.delete_item(TableName=self._table, Key=_key(connection_id, channel))
        return channel

    def remove_gone(self, connection_ids: list[str], channel_id: str) -> None:
        """Close connections a publish found gone (410) in ``channel_id``:
        for each, a tombstone state row and no membership in the channel, in
        batches of BATCH_LIMIT items. No read: both keys are known."""
        requests: list[dict[str, Any]] = []
        expires = str(self._now() + spec.ROW_TTL_SECONDS)
        for connection_id in dict.fromkeys(connection_ids):
            requests.append({"PutRequest": {"Item": {
                **_key(connection_id, state_key(connection_id)),
                spec.CLOSED_AT: {"N": str(self._now())},
                spec.EXPIRES_AT: {"N": expires},
            }}})
            requests.append({"DeleteRequest": {"Key": _key(connection_id, channel_id)}})
            if self._presence:
                requests.append({"DeleteRequest": {"Key": presence_key(channel_id, connection_id)}})
        for start in range(0, len(requests), BATCH_LIMIT):
            self._write_batch(requests[start:start + BATCH_LIMIT])

    def claim_chunk(self, message_id: str) -> bool:
        """Whether the fan-out chunk ``message_id`` (its SQS message id) is to
        be posted: True the first time (the claim is written), and again when
        an earlier claim was never finished (:meth:`finish_chunk`): the
        function posting it died, and the queue handed the chunk over after
        its visibility timeout. False once a claim finished (the queue's
        at-least-once delivery handed a posted chunk over twice). One
        conditional PutItem, and a consistent GetItem when the claim exists;
        other failures raise."""
        key = spec.CHUNK_CLAIM_PREFIX + message_id
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**_key(key, key), spec.EXPIRES_AT: {"N": str(self._now() + spec.FANOUT_RETENTION_SECONDS)}},
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": spec.CONNECTION_ID},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            item = self._client.get_item(TableName=self._table, Key=_key(key, key), ConsistentRead=True).get("Item")
            return not (item and spec.CHUNK_FINISHED_AT in item)
        return True

    def finish_chunk(self, message_id: str) -> None:
        """Mark the claim of chunk ``message_id`` finished: its posts are
        done, and a second delivery of the chunk posts nothing. One PutItem."""
        key = spec.CHUNK_CLAIM_PREFIX + message_id
        now = self._now()
        self._client.put_item(
            TableName=self._table,
            Item={**_key(key, key), spec.CHUNK_FINISHED_AT: {"N": str(now)},
                  spec.EXPIRES_AT: {"N": str(now + spec.FANOUT_RETENTION_SECONDS)}},
        )

    # --- history -----------------------------------------------------------------

    def keep_message(self, channel_id: str, message_id: str, payload: bytes, seconds: int) -> None:
        """Keep the message frame ``payload`` of ``channel_id`` for ``seconds``
        (its row expires then). One PutItem, of the frame's size."""
        self._client.put_item(
            TableName=self._table,
            Item={**_key(spec.HISTORY_PREFIX + channel_id, spec.HISTORY_MESSAGE_PREFIX + message_id),
                  spec.HISTORY_PAYLOAD: {"S": payload.decode("utf-8")},
                  spec.EXPIRES_AT: {"N": str(self._now() + seconds)}},
        )

    def messages_since(self, channel_id: str, since: str, limit: int) -> list[bytes]:
        """The kept messages of ``channel_id`` whose id comes after ``since``,
        oldest first, at most ``limit`` (a caller asks for one more than it
        sends to learn whether there were more). Strongly consistent: a
        message kept before this call began is in the answer. Leaves out
        rows that have expired."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#h = :h AND #s > :s",
            "FilterExpression": "#e > :now",
            "ProjectionExpression": "#p",
            "ConsistentRead": True,
            "ExpressionAttributeNames": {"#h": spec.CONNECTION_ID, "#s": spec.CHANNEL_ID, "#e": spec.EXPIRES_AT,
                                         "#p": spec.HISTORY_PAYLOAD},
            "ExpressionAttributeValues": {":h": {"S": spec.HISTORY_PREFIX + channel_id},
                                          ":s": {"S": spec.HISTORY_MESSAGE_PREFIX + since},
                                          ":now": {"N": str(self._now())}},
            "Limit": limit,
        }
        items = itertools.islice(self._query(query), limit)  # no page read beyond the limit
        return [item[spec.HISTORY_PAYLOAD]["S"].encode("utf-8") for item in items]

    def claim_publish(self, key: str, fingerprint: str) -> PublishKey:
        """Claim the idempotency ``key`` for a publish of the message whose
        hash is ``fingerprint``. The claim returned is ``mine`` when this
        caller publishes (the key was free, or its row had expired); else it
        is the claim that holds the key. One conditional PutItem, and a
        consistent GetItem when the key is taken."""
        import json
        import secrets

        row = spec.PUBLISH_KEY_PREFIX + key
        token = secrets.token_hex(16)
        for _ in range(2):  # the holder's row may expire between the two calls
            now = self._now()
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item={**_key(row, row), spec.PUBLISH_FINGERPRINT: {"S": fingerprint},
                          spec.PUBLISH_STARTED_AT: {"N": str(now)}, spec.PUBLISH_CLAIM: {"S": token},
                          spec.EXPIRES_AT: {"N": str(now + spec.IDEMPOTENCY_WINDOW_SECONDS)}},
                    ConditionExpression="attribute_not_exists(#k) OR #e <= :now",
                    ExpressionAttributeNames={"#k": spec.CONNECTION_ID, "#e": spec.EXPIRES_AT},
                    ExpressionAttributeValues={":now": {"N": str(now)}},
                )
                return PublishKey(fingerprint, now, None, mine=True)
            except self._client.exceptions.ConditionalCheckFailedException:
                pass
            item = self._client.get_item(TableName=self._table, Key=_key(row, row), ConsistentRead=True).get("Item")
            if item and not _expired(item, self._now()):
                outcome = item.get(spec.PUBLISH_OUTCOME)
                return PublishKey(
                    item[spec.PUBLISH_FINGERPRINT]["S"], int(item[spec.PUBLISH_STARTED_AT]["N"]),
                    json.loads(outcome["S"]) if outcome else None,
                    # ours when the put went through and only its answer was lost (it is sent again)
                    mine=item.get(spec.PUBLISH_CLAIM, {}).get("S") == token,
                )
        raise StoreError(f"idempotency key {key!r} could be neither claimed nor read")

    def record_publish(self, key: str, fingerprint: str, started_at: int, outcome: dict[str, Any]) -> None:
        """Keep the outcome of the publish that claimed ``key`` (at
        ``started_at``) for the rest of the key's window."""
        import json

        row = spec.PUBLISH_KEY_PREFIX + key
        self._client.put_item(
            TableName=self._table,
            Item={**_key(row, row), spec.PUBLISH_FINGERPRINT: {"S": fingerprint},
                  spec.PUBLISH_STARTED_AT: {"N": str(started_at)},
                  spec.PUBLISH_OUTCOME: {"S": json.dumps(outcome, separators=(",", ":"))},
                  spec.EXPIRES_AT: {"N": str(started_at + spec.IDEMPOTENCY_WINDOW_SECONDS)}},
        )

    def release_publish(self, key: str) -> None:
        """Free ``key`` after a publish that sent nothing (it failed before its
        first post), so that a retry with the key publishes."""
        row = spec.PUBLISH_KEY_PREFIX + key
        self._client.delete_item(TableName=self._table, Key=_key(row, row))

    # --- presence ----------------------------------------------------------------

    def presence_rows(self, channel_id: str) -> list[PresenceRow]:
        """The channel's listed members: one strongly consistent Query of the
        table (at most presenceMaxMembers rows, give or take concurrent joins),
        every page, leaving out rows that have expired."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#h = :h",
            "FilterExpression": "#e > :now",
            "ConsistentRead": True,
            "ExpressionAttributeNames": {"#h": spec.CONNECTION_ID, "#e": spec.EXPIRES_AT},
            "ExpressionAttributeValues": {":h": {"S": spec.PRESENCE_ROW_PREFIX + channel_id},
                                          ":now": {"N": str(self._now())}},
        }
        return [_presence_row(item) for item in self._query(query)]

    def drop_presence(self, connection_id: str, channel_id: str) -> PresenceRow | None:
        """Unlist the connection from ``channel_id`` (one DeleteItem); the row
        it had, if it was listed, says who to announce as gone."""
        old = self._client.delete_item(TableName=self._table, Key=presence_key(channel_id, connection_id),
                                       ReturnValues="ALL_OLD").get("Attributes")
        return _presence_row(old) if old and not _expired(old, self._now()) else None

    def _presence_items(self, connection_id: str, channel_id: str, sender_id: str, previous: str | None,
                        entry: PresenceEntry | None, expires: str) -> list[dict[str, Any]]:
        """A join's presence parts: put its row in ``channel_id`` (when listed)
        and delete the one in the channel it leaves (or its old row here, when
        a rejoin is no longer listed). None with presence off."""
        if not self._presence:
            return []
        items: list[dict[str, Any]] = []
        if entry is not None:
            items.append({"Put": {"TableName": self._table, "Item": {
                **presence_key(channel_id, connection_id),
                spec.SENDER_ID: {"S": sender_id},
                spec.WATCHING: {"BOOL": entry.watching},
                **({spec.PRINCIPAL_ID: {"S": entry.principal_id}} if entry.principal_id else {}),
                spec.EXPIRES_AT: {"N": expires},
            }}})
        if previous is not None and (previous != channel_id or entry is None):
            items.append({"Delete": {"TableName": self._table, "Key": presence_key(previous, connection_id)}})
        return items

    # --- helpers -----------------------------------------------------------------

    def _raw_state(self, connection_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._client.get_item(
            TableName=self._table,
            Key=_key(connection_id, state_key(connection_id)),
            ConsistentRead=True,
        ).get("Item")
        return item

    def _write_batch(self, requests: list[dict[str, Any]]) -> None:
        pending = {self._table: requests}
        for attempt in range(BATCH_ATTEMPTS):
            unprocessed = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not unprocessed.get(self._table):
                return
            pending = unprocessed
            _back_off(attempt)
        raise StoreError(f"{len(pending[self._table])} rows stayed unprocessed after {BATCH_ATTEMPTS} attempts")


def _back_off(attempt: int) -> None:
    """Wait before retrying what botocore does not retry for us (cancelled
    transactions, unprocessed batch items), with the handlers' backoff
    policy (:func:`aws.full_jitter`): a random wait of at most 50 ms after the
    first failed attempt (``attempt`` 0), doubling, never more than 1 s."""
    from . import aws  # here: every route imports the store, ping included

    time.sleep(aws.full_jitter(attempt + 1, BACK_OFF_BASE_SECONDS, MAX_BACK_OFF_SECONDS))


def _key(connection_id: str, channel_id: str) -> dict[str, Any]:
    return {spec.CONNECTION_ID: {"S": connection_id}, spec.CHANNEL_ID: {"S": channel_id}}


def _expired(item: dict[str, Any], now: int) -> bool:
    expires = item.get(spec.EXPIRES_AT)
    return expires is not None and int(expires["N"]) <= now


#: Cancellation reasons after which re-reading and trying again is right: a
#: concurrent write to the same connection got there first (its condition no
#: longer held, or the transactions collided), or DynamoDB throttled an item.
_RETRYABLE_CANCELLATIONS = {"ConditionalCheckFailed", "TransactionConflict", "ThrottlingError"}


def _cancellation_codes(exc: Exception) -> set[str]:
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    return {reason.get("Code") for reason in reasons} - {"None", None}
