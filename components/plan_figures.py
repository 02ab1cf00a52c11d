"""The planner's measured figures: DynamoDB requests per operation, the bytes and
units of the store's real items, and AWS's prices and quotas with their sources.

Nothing here is typed a second time: :data:`REQUESTS` is the table
``tests/test_requests.py`` asserts against the requests counted at the embedded
DynamoDB; the rows come from :class:`channel_server.handlers.store.Store` and
:class:`channel_server.handlers.budget.PostBudget` writing to a
:class:`RecordingClient` (:func:`measure`), sized by DynamoDB's rules
(:func:`item_size`, :func:`write_units`, :func:`query_read_units`); prices and
quotas are ``plan_prices.json``'s. The model that uses them is :mod:`.plan`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterable, Mapping, Sequence

from .handlers import protocol, spec, store
from .handlers.budget import PostBudget


# --- DynamoDB requests per operation: tests/test_requests.py asserts these ------------------

#: The DynamoDB requests each operation makes (the channel index at one shard, no budget):
#: ``tests/test_requests.py`` counts them at the embedded DynamoDB and asserts they are these.
REQUESTS: Mapping[str, Mapping[str, int]] = {
    # the state row read, then one transaction (first join or not)
    "join": {"GetItem": 1, "TransactWriteItems": 1},
    # the tombstone (returning the old state row), then the membership's delete
    "disconnect": {"PutItem": 1, "DeleteItem": 1},
    # a connection that never joined: the tombstone alone
    "disconnect_unjoined": {"PutItem": 1},
    # with heartbeats on, $connect registers the connection
    "connect_heartbeats": {"PutItem": 1},
    # the sender's state row, then one Query page per shard (and one more per MB of a shard)
    "publish": {"GetItem": 1, "Query": 1},
    # with history on, a publish keeps its message first
    "keep_message": {"PutItem": 1},
    # members a fan-out found gone: one batch per store.BATCH_LIMIT items (two a member)
    "remove_gone": {"BatchWriteItem": 1},
    # a fan-out chunk: its claim, then its claim finished
    "chunk": {"PutItem": 2},
    # a heartbeat run: one Query page per heartbeat shard (and one more per MB of a shard)
    "heartbeat": {"Query": spec.HEARTBEAT_SHARDS},
    # with the budget on: one grant per posts_in_flight posts
    "grant": {"UpdateItem": 1},
}


def grants(posts: int, posts_in_flight: int) -> int:
    """Budget grants ``posts`` posts take: one per ``posts_in_flight`` posts."""
    return math.ceil(posts / posts_in_flight) if posts else 0


def publish_requests(recipients: int, *, pages: int = 1, shards: int = 1, gone: int = 0,
                     posts_in_flight: int | None = None, history: bool = False) -> Counter[str]:
    """The DynamoDB requests of one publish to ``recipients`` members (the sender not
    counted): ``pages`` Query pages per shard, ``gone`` of them found gone, and with the
    budget on (``posts_in_flight`` given) its grants."""
    publish = REQUESTS["publish"]
    requests = Counter({"GetItem": publish["GetItem"], "Query": publish["Query"] * pages * shards})
    if history:
        requests.update(REQUESTS["keep_message"])
    if gone:
        batches = math.ceil(2 * gone / store.BATCH_LIMIT)
        requests.update({operation: count * batches for operation, count in REQUESTS["remove_gone"].items()})
    if posts_in_flight is not None:
        requests.update({operation: count * grants(recipients, posts_in_flight)
                         for operation, count in REQUESTS["grant"].items()})
    return +requests


# --- prices and quotas -------------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    """A price or a quota, with where it was read and when."""

    key: str
    value: float
    unit: str
    source: str
    read: str
    per: float = 1
    burst: float | None = None
    read_via: str = ""
    """Where the figure was read when the source's stored copy does not show it."""
    price: bool = False


def load_facts() -> dict[str, Fact]:
    """Every price and quota of ``plan_prices.json``, by key."""
    data = json.loads(resources.files(__package__).joinpath("plan_prices.json").read_text(encoding="utf-8"))
    facts: dict[str, Fact] = {}
    for key, entry in data["prices"].items():
        facts[key] = Fact(key, float(entry["usd"]), entry["unit"], entry["source"], entry["read"], float(entry["per"]),
                          read_via=entry.get("read_via", ""), price=True)
    for key, entry in data["quotas"].items():
        burst = entry.get("burst")
        facts[key] = Fact(key, float(entry["value"]), entry["unit"], entry["source"], entry["read"],
                          burst=None if burst is None else float(burst), read_via=entry.get("read_via", ""))
    return facts


# --- item sizes, by DynamoDB's rules -------------------------------------------------------

def _number_size(text: str) -> int:
    """A number's bytes: 1 per two significant digits, plus 1 (DynamoDB's rule)."""
    digits = text.lstrip("+-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def _value_size(value: Mapping[str, Any]) -> int:
    (kind, content), = value.items()
    if kind == "S":
        return len(content.encode("utf-8"))
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(_value_size(element) + 1 for element in content)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + _value_size(element) + 1 for name, element in content.items())
    if kind in ("SS", "BS"):
        return sum(len(element.encode("utf-8") if kind == "SS" else element) for element in content)
    if kind == "NS":
        return sum(_number_size(element) for element in content)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The bytes of an item as DynamoDB counts them for capacity: each attribute's name
    and value (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


@dataclass(frozen=True)
class Index:
    """A global secondary index: the attribute it is keyed on and those it projects
    besides the table's keys."""

    name: str
    key: str
    projected: tuple[str, ...]

    def entry(self, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The index entry of ``item`` (the table's keys, the index key, the projected
        attributes), or None when the item is not in the index (it lacks the key)."""
        if item is None or self.key not in item:
            return None
        names = (spec.CONNECTION_ID, spec.CHANNEL_ID, self.key, *self.projected)
        return {name: item[name] for name in dict.fromkeys(names) if name in item}


def indexes(shards: int) -> tuple[Index, Index]:
    """The channel index (keyed on the channel, or with shards on the membership's shard)
    and the heartbeat index, as the component declares them (``components/component.py``)."""
    channel = (Index(spec.CHANNEL_INDEX, spec.CHANNEL_ID, spec.INDEX_PROJECTED) if shards == 1
               else Index(spec.CHANNEL_SHARD_INDEX, spec.CHANNEL_SHARD, spec.INDEX_PROJECTED))
    return channel, Index(spec.HEARTBEAT_INDEX, spec.HEARTBEAT_SHARD, spec.HEARTBEAT_INDEX_PROJECTED)


# --- the store's real items, captured --------------------------------------------------------

#: The items the examples write: a connection id shaped like API Gateway's (15 base64
#: characters and '=', as docs/architecture.md shows one), a channel id of 13 characters.
EXAMPLE_CONNECTION_ID = "Yx3kRb2uIAMCJ4w="
EXAMPLE_OTHER_CONNECTION_ID = "Zq7mPc4vJBNDK5x="
EXAMPLE_CHANNEL_ID = "channel-00001"
EXAMPLE_OTHER_CHANNEL_ID = "channel-00002"
#: The clock the examples run at (epoch seconds: ten digits, as every expiry until 2286).
EXAMPLE_NOW = 1_764_090_000


@dataclass(frozen=True)
class Write:
    """One item written: as it was before (None: new) and after (None: deleted)."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None
    transactional: bool = False


class _Cancelled(Exception):
    pass


class _ConditionFailed(Exception):
    pass


class RecordingClient:
    """The DynamoDB calls the store makes, on a dict: every request counted and every item
    written recorded with its old image. Conditions are not evaluated (every example takes
    the store's first path)."""

    class exceptions:  # noqa: N801 - boto3's name for a client's exception classes
        TransactionCanceledException = _Cancelled
        ConditionalCheckFailedException = _ConditionFailed

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[Write] = []
        self.requests: Counter[str] = Counter()

    @staticmethod
    def _key(item: Mapping[str, Any]) -> tuple[str, str]:
        return item[spec.CONNECTION_ID]["S"], item[spec.CHANNEL_ID]["S"]

    def _put(self, item: Mapping[str, Any], transactional: bool = False) -> dict[str, Any] | None:
        old = self.items.get(self._key(item))
        self.items[self._key(item)] = dict(item)
        self.writes.append(Write(old, dict(item), transactional))
        return old

    def _delete(self, key: Mapping[str, Any], transactional: bool = False) -> dict[str, Any] | None:
        old = self.items.pop(self._key(key), None)
        self.writes.append(Write(old, None, transactional))
        return old

    def get_item(self, *, Key: Mapping[str, Any], **_: Any) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.requests["GetItem"] += 1
        item = self.items.get(self._key(Key))
        return {"Item": dict(item)} if item else {}

    def put_item(self, *, Item: Mapping[str, Any], ReturnValues: str = "NONE", **_: Any) -> dict[str, Any]:  # noqa: N803
        self.requests["PutItem"] += 1
        old = self._put(Item)
        return {"Attributes": old} if old and ReturnValues == "ALL_OLD" else {}

    def delete_item(self, *, Key: Mapping[str, Any], ReturnValues: str = "NONE", **_: Any) -> dict[str, Any]:  # noqa: N803
        self.requests["DeleteItem"] += 1
        old = self._delete(Key)
        return {"Attributes": old} if old and ReturnValues == "ALL_OLD" else {}

    def transact_write_items(self, *, TransactItems: Sequence[Mapping[str, Any]], **_: Any) -> dict[str, Any]:  # noqa: N803
        self.requests["TransactWriteItems"] += 1
        for part in TransactItems:
            if "Put" in part:
                self._put(part["Put"]["Item"], transactional=True)
            elif "Delete" in part:
                self._delete(part["Delete"]["Key"], transactional=True)
        return {}

    def batch_write_item(self, *, RequestItems: Mapping[str, Sequence[Mapping[str, Any]]], **_: Any) -> dict[str, Any]:  # noqa: N803
        self.requests["BatchWriteItem"] += 1
        for requests in RequestItems.values():
            for request in requests:
                if "PutRequest" in request:
                    self._put(request["PutRequest"]["Item"])
                else:
                    self._delete(request["DeleteRequest"]["Key"])
        return {"UnprocessedItems": {}}

    def update_item(self, *, Key: Mapping[str, Any], UpdateExpression: str,  # noqa: N803 - boto3's names
                    ExpressionAttributeNames: Mapping[str, str] | None = None,
                    ExpressionAttributeValues: Mapping[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        """The ``ADD`` and ``SET`` (``if_not_exists`` included) an update expression of
        numbers may hold; returns the updated attributes (``UPDATED_NEW``)."""
        self.requests["UpdateItem"] += 1
        names, values = dict(ExpressionAttributeNames or {}), dict(ExpressionAttributeValues or {})
        old = self.items.get(self._key(Key))
        new = dict(old or {spec.CONNECTION_ID: Key[spec.CONNECTION_ID], spec.CHANNEL_ID: Key[spec.CHANNEL_ID]})
        updated: dict[str, Any] = {}
        for clause in re.findall(r"(ADD|SET)\s+(.*?)(?=\s+(?:ADD|SET)\s|$)", UpdateExpression.strip()):
            action, body = clause
            for part in (piece.strip() for piece in re.split(r",(?![^(]*\))", body) if piece.strip()):
                if action == "ADD":
                    name, value = part.split()
                    attribute = names.get(name, name)
                    total = float(new.get(attribute, {"N": "0"})["N"]) + float(values[value]["N"])
                    new[attribute] = {"N": f"{total:g}"}
                else:
                    name, expression = (piece.strip() for piece in part.split("=", 1))
                    attribute = names.get(name, name)
                    fallback = re.fullmatch(r"if_not_exists\(\s*(\S+)\s*,\s*(\S+)\s*\)", expression)
                    if fallback:
                        new.setdefault(attribute, values[fallback.group(2)])
                    else:
                        new[attribute] = values[expression]
                updated[attribute] = new[attribute]
        self._put(new)
        return {"Attributes": updated}


@dataclass(frozen=True)
class Measured:
    """What the store and the budget write, per operation, and the rows they leave:
    captured from :class:`channel_server.handlers.store.Store` and
    :class:`channel_server.handlers.budget.PostBudget` writing to a :class:`RecordingClient`."""

    writes: Mapping[str, tuple[Write, ...]]
    state_row: dict[str, Any]
    membership_row: dict[str, Any]
    registered_row: dict[str, Any]
    tombstone_row: dict[str, Any]
    chunk_row: dict[str, Any]
    kept_message_row: dict[str, Any]
    budget_row: dict[str, Any]


def measure(*, heartbeats: bool, shards: int, message: bytes, history_seconds: int, posts_in_flight: int) -> Measured:
    """Run the store's operations once each against a :class:`RecordingClient` and keep
    what each wrote: with heartbeats a registration, a first join, a join that moves to
    another channel, a $disconnect, a member found gone, a fan-out chunk's claim and
    finish, a kept message, and a budget grant of ``posts_in_flight`` posts."""
    client = RecordingClient()
    index = indexes(shards)[0].name
    # a second passes at every reading of the clock, so each write stamps a new expiry, as in use
    clock = itertools.count(EXAMPLE_NOW)
    table = store.Store(client, "table", index, clock=lambda: float(next(clock)), heartbeats=heartbeats,
                        index_shards=shards)
    writes: dict[str, tuple[Write, ...]] = {"register": ()}

    def run(name: str, operation: Callable[[], Any]) -> None:
        start = len(client.writes)
        operation()
        writes[name] = tuple(client.writes[start:])

    connection, other = EXAMPLE_CONNECTION_ID, EXAMPLE_OTHER_CONNECTION_ID
    sender = protocol.new_sender_id()
    state_key = (connection, store.state_key(connection))
    registered: dict[str, Any] = {}
    if heartbeats:
        run("register", lambda: table.register(connection))
        registered = dict(client.items[state_key])
    run("join", lambda: table.join(connection, EXAMPLE_CHANNEL_ID, sender))
    run("move", lambda: table.join(connection, EXAMPLE_OTHER_CHANNEL_ID, protocol.new_sender_id()))
    table.join(connection, EXAMPLE_CHANNEL_ID, sender)
    state, membership = dict(client.items[state_key]), dict(client.items[(connection, EXAMPLE_CHANNEL_ID)])
    run("disconnect", lambda: table.close_connection(connection))
    tombstone = dict(client.items[state_key])
    table.join(other, EXAMPLE_CHANNEL_ID, sender)
    run("remove_gone", lambda: table.remove_gone([other], EXAMPLE_CHANNEL_ID))
    message_id = protocol.new_message_id(EXAMPLE_NOW)
    def chunk() -> None:
        table.claim_chunk(message_id)
        table.finish_chunk(message_id)

    run("chunk", chunk)
    chunk_key = spec.CHUNK_CLAIM_PREFIX + message_id
    run("keep_message", lambda: table.keep_message(EXAMPLE_CHANNEL_ID, message_id, message, max(history_seconds, 1)))
    kept = writes["keep_message"][0].after or {}
    budget = PostBudget(client, "table", spec.DEFAULT_POSTS_PER_SECOND, clock=lambda: EXAMPLE_NOW)
    run("grant_first", lambda: budget.take(posts_in_flight))  # a second's first grant writes its row
    run("grant", lambda: budget.take(posts_in_flight))  # the others update it
    budget_row = writes["grant"][0].after or {}
    return Measured(writes, state, membership, registered, tombstone, dict(client.items[(chunk_key, chunk_key)]),
                    dict(kept), dict(budget_row))


@dataclass(frozen=True)
class Units:
    """Write units of an operation: on the table, and on each index by name."""

    table: float = 0
    index: Mapping[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.table + sum(self.index.values())


def write_units(writes: Iterable[Write], all_indexes: Sequence[Index], write_unit: int) -> Units:
    """The write units of ``writes``: the table's (the larger of the item's two images,
    per started KB, twice in a transaction) and each index's (DynamoDB's rules: an entry
    put or deleted is one write, a changed index key two, a changed projection one)."""
    table = 0.0
    per_index: Counter[str] = Counter()
    for write in writes:
        images = [image for image in (write.before, write.after) if image is not None]
        size = max((item_size(image) for image in images), default=1)
        table += math.ceil(size / write_unit) * (2 if write.transactional else 1)
        for index in all_indexes:
            old, new = index.entry(write.before), index.entry(write.after)
            if old is None and new is None:
                continue
            if old is None or new is None:
                per_index[index.name] += math.ceil(item_size(old or new or {}) / write_unit)
            elif old[index.key] != new[index.key]:
                per_index[index.name] += math.ceil(item_size(old) / write_unit) + math.ceil(item_size(new) / write_unit)
            elif old != new:
                per_index[index.name] += math.ceil(item_size(new) / write_unit)
    return Units(table, dict(per_index))


def query_read_units(entries: float, entry_bytes: int, page_bytes: int, read_unit: int) -> tuple[int, float]:
    """(pages, read units) of an eventually consistent Query reading ``entries`` index
    entries of ``entry_bytes`` each: half a unit per started ``read_unit`` of each page."""
    if entries <= 0:
        return 1, 0.5
    per_page = max(1, page_bytes // entry_bytes)
    full, rest = divmod(math.ceil(entries), per_page)
    units = full * math.ceil(per_page * entry_bytes / read_unit) + math.ceil(rest * entry_bytes / read_unit)
    return full + (1 if rest else 0), units / 2
