"""The DynamoDB edge: who is in which channel.

Rows (partition key ``connectionId``, sort key ``channelId``):

- a *membership* row ``(connection, channel)`` with the membership's
  ``senderId``: the channel index lists these to fan out a publish;
- one *state* row per joined connection, sort key ``$connection#<id>``, holding
  ``currentChannel``, ``senderId`` and a ``version``. Every join is one
  transaction that rewrites the state row on the condition that its version
  is still the one read, moves the membership and so never leaves a
  connection in two channels or half-joined.

Every row carries ``expiresAt`` (TTL). DynamoDB deletes expired rows lazily
(up to days later), so every read here also ignores rows that have expired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from . import spec

#: DynamoDB's limit on one BatchWriteItem call.
BATCH_LIMIT = 25
#: How often a join re-reads and retries when a concurrent join won the race.
JOIN_ATTEMPTS = 5
#: How often unprocessed batch items are sent again before giving up.
BATCH_ATTEMPTS = 5


class StoreError(Exception):
    """The table could not be brought to the requested state; nothing the
    caller asked for was half-applied."""


class JoinConflict(StoreError):
    """Concurrent joins of one connection kept winning the race."""


@dataclass(frozen=True)
class Membership:
    channel_id: str
    sender_id: str
    version: int


def state_key(connection_id: str) -> str:
    """The sort key of a connection's state row."""
    return spec.STATE_ROW_PREFIX + connection_id


class Store:
    """Memberships in one table. ``client`` is a boto3 DynamoDB client."""

    def __init__(self, client: Any, table_name: str, index_name: str, clock: Callable[[], float] = time.time):
        self._client = client
        self._table = table_name
        self._index = index_name
        self._clock = clock

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
        if not item or _expired(item, self._now()):
            return None
        return Membership(
            channel_id=item[spec.CURRENT_CHANNEL]["S"],
            sender_id=item[spec.SENDER_ID]["S"],
            version=int(item[spec.VERSION]["N"]),
        )

    def members(self, channel_id: str) -> list[str]:
        """Connection ids in the channel (through the index, every page),
        leaving out rows that have expired."""
        found: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": self._index,
            "KeyConditionExpression": "#c = :c",
            "FilterExpression": "#e > :now",
            "ProjectionExpression": "#k",
            "ExpressionAttributeNames": {"#c": spec.CHANNEL_ID, "#e": spec.EXPIRES_AT, "#k": spec.CONNECTION_ID},
            "ExpressionAttributeValues": {":c": {"S": channel_id}, ":now": {"N": str(self._now())}},
        }
        while True:
            page = self._client.query(**kwargs)
            found.extend(item[spec.CONNECTION_ID]["S"] for item in page.get("Items", ()))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- writes ------------------------------------------------------------------

    def join(self, connection_id: str, channel_id: str, sender_id: str) -> Membership:
        """Move the connection into ``channel_id`` (out of any other), atomically.

        Raises :class:`JoinConflict` when the transaction keeps being cancelled
        (concurrent joins of the same connection changing its state between read
        and write, or DynamoDB throttling an item) for JOIN_ATTEMPTS attempts.
        """
        for attempt in range(JOIN_ATTEMPTS):
            current = self._raw_state(connection_id)
            version = int(current[spec.VERSION]["N"]) if current else 0
            expires = str(self._now() + spec.ROW_TTL_SECONDS)
            state_item = {
                **_key(connection_id, state_key(connection_id)),
                spec.CURRENT_CHANNEL: {"S": channel_id},
                spec.SENDER_ID: {"S": sender_id},
                spec.VERSION: {"N": str(version + 1)},
                spec.EXPIRES_AT: {"N": expires},
            }
            if current:
                condition = {"ConditionExpression": "#v = :v", "ExpressionAttributeNames": {"#v": spec.VERSION},
                             "ExpressionAttributeValues": {":v": {"N": str(version)}}}
            else:
                condition = {"ConditionExpression": "attribute_not_exists(#k)",
                             "ExpressionAttributeNames": {"#k": spec.CONNECTION_ID}}
            items: list[dict] = [
                {"Put": {"TableName": self._table, "Item": state_item, **condition}},
                {"Put": {"TableName": self._table, "Item": {
                    **_key(connection_id, channel_id),
                    spec.SENDER_ID: {"S": sender_id},
                    spec.EXPIRES_AT: {"N": expires},
                }}},
            ]
            previous = current[spec.CURRENT_CHANNEL]["S"] if current else None
            if previous is not None and previous != channel_id:
                items.append({"Delete": {"TableName": self._table, "Key": _key(connection_id, previous)}})
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

    def remove_connection(self, connection_id: str) -> int:
        """Delete every row of the connection; returns how many there were.
        Idempotent: removing an unknown connection removes nothing."""
        keys = list(self._connection_keys(connection_id))
        for start in range(0, len(keys), BATCH_LIMIT):
            self._delete_batch(keys[start:start + BATCH_LIMIT])
        return len(keys)

    # --- helpers -----------------------------------------------------------------

    def _raw_state(self, connection_id: str) -> dict | None:
        return self._client.get_item(
            TableName=self._table,
            Key=_key(connection_id, state_key(connection_id)),
            ConsistentRead=True,
        ).get("Item")

    def _connection_keys(self, connection_id: str) -> Iterator[dict]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#k = :k",
            "ProjectionExpression": "#k, #c",
            "ExpressionAttributeNames": {"#k": spec.CONNECTION_ID, "#c": spec.CHANNEL_ID},
            "ExpressionAttributeValues": {":k": {"S": connection_id}},
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**kwargs)
            yield from page.get("Items", ())
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _delete_batch(self, keys: list[dict]) -> None:
        requests = {self._table: [{"DeleteRequest": {"Key": key}} for key in keys]}
        for attempt in range(BATCH_ATTEMPTS):
            unprocessed = self._client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
            if not unprocessed.get(self._table):
                return
            requests = unprocessed
            _back_off(attempt)
        raise StoreError(f"{len(requests[self._table])} rows stayed unprocessed after {BATCH_ATTEMPTS} attempts")


def _back_off(attempt: int) -> None:
    """Wait before retrying what botocore does not retry for us (cancelled
    transactions, unprocessed batch items): 50 ms, doubling, at most 1 s."""
    time.sleep(min(0.05 * 2**attempt, 1.0))


def _key(connection_id: str, channel_id: str) -> dict:
    return {spec.CONNECTION_ID: {"S": connection_id}, spec.CHANNEL_ID: {"S": channel_id}}


def _expired(item: dict, now: int) -> bool:
    expires = item.get(spec.EXPIRES_AT)
    return expires is not None and int(expires["N"]) <= now


#: Cancellation reasons after which re-reading and trying again is right: a
#: concurrent write to the same connection got there first (its condition no
#: longer held, or the transactions collided), or DynamoDB throttled an item.
_RETRYABLE_CANCELLATIONS = {"ConditionalCheckFailed", "TransactionConflict", "ThrottlingError"}


def _cancellation_codes(exc: Exception) -> set[str]:
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    return {reason.get("Code") for reason in reasons} - {"None", None}
