"""The capacity and cost planner: a workload's load on each AWS quota, its first limit, its latency
and its monthly cost (``python -m channel_server.plan``).

    python -m channel_server.plan --connections 100000 --channels 1 --members 100000 \\
        --publishes-per-second 5 --joins-per-second 2000 --compare

Every per-operation figure comes from the code, never typed here a second time:

- DynamoDB requests per operation: :data:`REQUESTS` (``tests/test_requests.py`` counts
  them against the embedded DynamoDB and asserts they are this table);
- bytes per row and index entry, and the write and read units of each operation: the
  items :class:`channel_server.handlers.store.Store` writes, captured by a recording
  client (:func:`measure`) and sized by DynamoDB's rules (:func:`item_size`);
- chunk sizes, posts in flight, the inline limit, heartbeat shards, function memory and
  which functions fan out: ``handlers/spec.py``, ``handlers/handoff.py`` and the
  defaults of ``components/args.py``;
- prices and quotas: ``plan_prices.json`` beside this module, each with its source
  and the date it was read.

What is not measured here is an input, with its default stated as an assumption: the
management API's round trip (``--round-trip-ms``, 20 ms as ``bench/fanout.py``
simulates), a DynamoDB or SQS call's (``--dynamodb-ms``) and the CPU per post
(``--post-cpu-us``, measured by ``bench/post_cpu.py``; unset, the round trip alone
bounds a function's posts). docs/capacity.md describes the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import re
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import args as component_args
from .handlers import handoff, protocol, spec, store
from .handlers.app import NO_CHANNEL
from .handlers.budget import PostBudget
from .handlers.sender import MAX_ATTEMPTS

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


# --- the workload and the settings ------------------------------------------------------------

#: The management API's round trip from Lambda, assumed: bench/fanout.py's default (not measured on AWS).
DEFAULT_ROUND_TRIP_MS = 20.0
#: A DynamoDB or SQS request's round trip from Lambda, assumed (not measured on AWS).
DEFAULT_DYNAMODB_MS = 10.0
#: Hours in an average month (365 × 24 / 12).
HOURS_PER_MONTH = 730.0
#: The client's keep-alive ping interval (ChannelClient's default): a connection that
#: neither sends nor receives for this long pings.
DEFAULT_CLIENT_PING_SECONDS = protocol.API_GATEWAY_IDLE_TIMEOUT_SECONDS * 0.4
#: The functions whose invocations the model counts: the routes, the fan-out, the heartbeat.
FUNCTIONS: tuple[spec.Function, ...] = (*spec.ROUTES, spec.FANOUT, spec.HEARTBEAT)
#: Each of them by name (``spec.Function.function``).
FUNCTION: Mapping[str, spec.Function] = {function.function: function for function in FUNCTIONS}


def _client_ping_default() -> float:
    """ChannelClient's ping interval, read from the client (it imports no websockets)."""
    from .client import channel_client

    return float(channel_client.DEFAULT_PING_INTERVAL)


@dataclass(frozen=True)
class Workload:
    """What the users do. ``channels`` channels of ``members`` members each (the largest
    channel's size); connections beyond them are connected in no channel."""

    connections: int
    channels: int
    members: int
    publishes_per_second: float
    """Per channel."""
    message_bytes: int
    """The ``data`` a publish carries: a JSON string of this many characters."""
    joins_per_second: float = 0.0
    """At peak, to the largest channel, each from a new connection (an event's start)."""
    client_ping_seconds: float = 0.0
    """A connection idle this long pings (0: clients never ping)."""
    hours: float = HOURS_PER_MONTH
    """Hours a month the workload runs."""


@dataclass(frozen=True)
class Settings:
    """The component's settings that the model reads."""

    posts_per_second: int | None
    """The account budget; None: posts not paced (the server before it had a budget)."""
    channel_index_shards: int
    fanout_concurrency: int
    posts_in_flight: int
    inline_fanout_limit: int
    heartbeat_interval_minutes: int
    history_seconds: int
    lambda_memory_mb: int
    publish_memory_mb: int
    lambda_architecture: str
    lambda_timeout_seconds: int

    def memory_mb(self, function: spec.Function) -> int:
        """A function's memory: the fan-out memory for those whose work grows with a channel."""
        return self.publish_memory_mb if function.fans_out else self.lambda_memory_mb

    def unpaced(self) -> Settings:
        """These settings as the server ran them before the account budget: posts not
        paced, one channel index partition a channel, the fan-out mapping's concurrency
        fixed at its default."""
        return dataclasses.replace(self, posts_per_second=None, channel_index_shards=1,
                                   fanout_concurrency=spec.DEFAULT_FANOUT_CONCURRENCY)


def default_settings() -> Settings:
    """The component's defaults (``args.Settings``), the new settings' included."""
    defaults = component_args.Settings()
    return Settings(
        posts_per_second=defaults.posts_per_second,
        channel_index_shards=defaults.channel_index_shards,
        fanout_concurrency=defaults.fanout_concurrency,
        posts_in_flight=defaults.posts_in_flight,
        inline_fanout_limit=defaults.inline_fanout_limit,
        heartbeat_interval_minutes=defaults.heartbeat_interval_minutes,
        history_seconds=defaults.history_seconds,
        lambda_memory_mb=defaults.lambda_memory_mb,
        publish_memory_mb=defaults.publish_memory_mb,
        lambda_architecture=defaults.lambda_architecture,
        lambda_timeout_seconds=defaults.lambda_timeout_seconds,
    )


@dataclass(frozen=True)
class Environment:
    """What the model assumes of AWS beyond the price list: round trips, CPU per post,
    and the account's quotas (defaults: the data file's)."""

    round_trip_ms: float = DEFAULT_ROUND_TRIP_MS
    dynamodb_ms: float = DEFAULT_DYNAMODB_MS
    post_cpu_us: float | None = None
    account_requests_per_second: float | None = None
    new_connections_per_second: float | None = None
    lambda_concurrency: float | None = None


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    """One resource's load against its limit (limit None: none modelled)."""

    resource: str
    load: float
    limit: float | None
    unit: str
    fact: str | None = None
    """The data file's key of the limit, when it is a quota."""

    @property
    def use(self) -> float | None:
        if self.limit is None:
            return None
        return self.load / self.limit if self.limit > 0 else math.inf



@dataclass(frozen=True)
class Rate:
    """The largest channel's highest rate before a limit: the lowest of the ceilings,
    the rate at which each resource its traffic loads reaches its limit."""

    value: float
    limited_by: str
    ceilings: Mapping[str, float]


@dataclass(frozen=True)
class CostLine:
    """One line of a month's bill: ``quantity`` of ``unit`` at the data file's price."""

    service: str
    item: str
    quantity: float
    unit: str
    usd: float


@dataclass(frozen=True)
class Latency:
    """A publish to the largest channel: milliseconds to the publisher's reply and to the
    last member's delivery; None with ``why`` when there is no bound."""

    reply_ms: float | None
    last_delivery_ms: float | None
    why: str = ""


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` predicts for a workload on a set of settings."""

    workload: Workload
    settings: Settings
    environment: Environment
    loads: tuple[Load, ...]
    latency: Latency
    max_publish_rate: Rate
    """Publishes a second of the largest channel (without a join storm)."""
    max_join_rate: Rate
    """Joins a second to the largest channel, each from a new connection (while it does not publish)."""
    cost_lines: tuple[CostLine, ...]
    """A month's bill, line by line."""
    figures: Mapping[str, Any]
    """The per-operation figures the plan used, by name."""
    facts: Mapping[str, Fact]
    """The prices and quotas the plan used, by key."""
    notes: tuple[str, ...] = ()

    @property
    def first_limit(self) -> Load | None:
        """The resource nearest its limit (over it, when its use exceeds 1)."""
        limited = [load for load in self.loads if load.use is not None]
        return max(limited, key=lambda load: load.use or 0.0, default=None)

    @property
    def cost(self) -> dict[str, float]:
        """USD a month by service."""
        services: dict[str, float] = {}
        for line in self.cost_lines:
            services[line.service] = services.get(line.service, 0.0) + line.usd
        return services


@dataclass(frozen=True)
class _FanOut:
    """One fan-out of ``recipients`` posts: its parts and its times (seconds from its start)."""

    recipients: int
    inline: int
    chunks: int
    per_chunk: int
    chunk_body_bytes: int
    send_batches: int
    batch_bytes: int
    concurrency: int
    asked_rate: float
    """Posts a second it asks for unpaced, while every poster of it runs."""
    queue_seconds: float
    inline_seconds: float
    chunk_seconds: float
    last_seconds: float
    grants: int
    """Budget grants its posts take: each function asks for up to postsInFlight places at a time."""


@dataclass(frozen=True)
class _State:
    """The workload evaluated at one rate of the largest channel's publishes and joins."""

    loads: tuple[Load, ...]
    latency: Latency
    notes: tuple[str, ...]
    publish: _FanOut
    pages: int
    read_units: float
    durations: Mapping[str, float]
    invocations: Mapping[str, float]
    steady_ops: Mapping[str, float]
    table_reads: float
    index_reads: float
    sqs_requests: float
    rates: Mapping[str, float]
    asked_rate: float
    """Posts a second a publish to the largest channel asks for unpaced, while all its posters run."""


#: Names of the load rows (the text output's and the JSON's).
REQUESTS_ROW = "API Gateway requests/s (account, peak)"
CONNECTIONS_ROW = "API Gateway new connections/s (peak)"
BUDGET_ROW = "Post budget: posts/s asked for"
BUDGET_COUNTER_ROW = "Budget counter row: WCU/s"
PARTITION_READS_ROW = "Channel index partition: RCU/s"
PARTITION_WRITES_ROW = "Channel index partition: WCU/s"
PARTITION_ROW = "Channel index partition: share"
TABLE_WRITES_ROW = "Table: WRU/s"
INDEX_WRITES_ROW = "Channel index: WRU/s"
READS_ROW = "Table and indexes: RRU/s"
LAMBDA_ROW = "Lambda concurrency (peak)"
FANOUT_ROW = "Fan-out concurrency"
HEARTBEAT_ROW = "Heartbeat run: seconds"
SQS_ROW = "SQS requests/s"
#: Where the search for a ceiling stops: a rate no limit reaches below it is unbounded.
MAX_CEILING = 1e7


class Model:
    """The model of one workload on one set of settings (:func:`plan` runs it)."""

    def __init__(self, workload: Workload, settings: Settings, environment: Environment,
                 facts: Mapping[str, Fact] | None = None):
        if workload.channels * workload.members > workload.connections:
            plural = "s" if workload.channels != 1 else ""
            raise ValueError(f"{workload.channels:,} channel{plural} of {workload.members:,} members need at least "
                             f"{workload.channels * workload.members:,} connections")
        self.w, self.s, self.e = workload, settings, environment
        self.facts = dict(facts or load_facts())
        f = self.facts
        self.account_quota = environment.account_requests_per_second or f["api_gateway_requests_per_second"].value
        self.account_burst = f["api_gateway_requests_per_second"].burst or 0.0
        self.connection_quota = (environment.new_connections_per_second
                                 or f["api_gateway_new_connections_per_second"].value)
        self.lambda_quota = environment.lambda_concurrency or f["lambda_concurrent_executions"].value
        self.rtt = environment.round_trip_ms / 1000
        self.db = environment.dynamodb_ms / 1000
        self.write_unit = int(f["dynamodb_write_unit_bytes"].value)
        self.read_unit = int(f["dynamodb_read_unit_bytes"].value)
        self.page_bytes = int(f["dynamodb_query_page_bytes"].value)
        self.metering = int(f["api_gateway_message_metering_bytes"].value)
        self.heartbeats = settings.heartbeat_interval_minutes > 0
        self.shards = settings.channel_index_shards
        # the frames, as the code encodes them
        data = "x" * workload.message_bytes
        self.message = protocol.encode(protocol.message(EXAMPLE_CHANNEL_ID, protocol.new_sender_id(), data,
                                                        protocol.new_message_id(EXAMPLE_NOW)))
        self.heartbeat_frame = protocol.encode(protocol.heartbeat())
        self.publish_frame = json.dumps({"type": "publish", "data": data}, separators=(",", ":")).encode("utf-8")
        self.measured = measure(heartbeats=self.heartbeats, shards=self.shards, message=self.message,
                                history_seconds=settings.history_seconds, posts_in_flight=settings.posts_in_flight)
        self.indexes = indexes(self.shards)
        self.channel_index, self.heartbeat_index = self.indexes
        self.units = {name: write_units(writes, self.indexes, self.write_unit)
                      for name, writes in self.measured.writes.items()}
        self._chunk_shapes: dict[tuple[bytes, str], tuple[int, int]] = {}

    # --- per-operation figures -----------------------------------------------------------

    def messages(self, frame: bytes) -> int:
        """API Gateway messages one frame is metered as."""
        return max(1, math.ceil(len(frame) / self.metering))

    def entry_bytes(self, index: Index, item: Mapping[str, Any]) -> int:
        entry = index.entry(item)
        return item_size(entry) if entry else 0

    def post_rate(self, function: spec.Function) -> float:
        """Posts a second one function sends unpaced: posts in flight per round trip, or
        its CPU's share when CPU per post is given."""
        rate = self.s.posts_in_flight / self.rtt
        if self.e.post_cpu_us:
            vcpus = self.s.memory_mb(function) / self.facts["lambda_memory_per_vcpu_mb"].value
            rate = min(rate, vcpus / (self.e.post_cpu_us / 1e6))
        return rate

    def posting_seconds(self, posts: int, rate: float, function: spec.Function) -> float:
        """Seconds one function takes to post ``posts``: whole round trips of posts in
        flight, at most ``rate`` a second, and with the budget a grant per posts in flight
        (one DynamoDB round trip each, while the workers wait for it: ``sender._Allowance``)."""
        if posts <= 0:
            return 0.0
        rate = min(rate, self.post_rate(function))
        if rate <= 0:
            return math.inf
        seconds = max(math.ceil(posts / self.s.posts_in_flight) * self.rtt, posts / rate)
        if self.s.posts_per_second is not None:
            seconds += grants(posts, self.s.posts_in_flight) * self.db
        return seconds

    def chunk_shape(self, payload: bytes, channel: str) -> tuple[int, int]:
        """(members per chunk, bytes of a chunk's body): handoff's own chunking."""
        key = (payload, channel)
        if key not in self._chunk_shapes:
            ids = [EXAMPLE_CONNECTION_ID] * (spec.FANOUT_CHUNK_MEMBERS + 1)
            bodies, unsent = handoff.chunks(channel, ids, payload)
            if unsent or not bodies:
                raise ValueError(f"a {len(payload)}-byte frame fits in no fan-out chunk")
            body, members = bodies[0]
            self._chunk_shapes[key] = (members, len(body.encode("utf-8")))
        return self._chunk_shapes[key]

    def fan_out(self, recipients: int, payload: bytes, channel: str, available: float,
                function: spec.Function) -> _FanOut:
        """One fan-out of ``payload`` to ``recipients``, started by ``function`` (the
        publish or the heartbeat), ``available`` posts a second left for it (inf: unpaced),
        shared evenly by the functions posting it."""
        inline = min(recipients, self.s.inline_fanout_limit)
        queued = recipients - inline
        per_chunk, body_bytes = self.chunk_shape(payload, channel)
        chunks = math.ceil(queued / per_chunk)
        per_batch = max(1, min(handoff.BATCH_ENTRIES, handoff.MAX_BODY_BYTES // body_bytes))
        batches = math.ceil(chunks / per_batch)
        queue_seconds = batches * self.db
        concurrency = min(chunks, self.s.fanout_concurrency)
        posters = (1 if inline else 0) + concurrency
        asked = (self.post_rate(function) if inline else 0.0) + concurrency * self.post_rate(spec.FANOUT)
        share = available / posters if posters else math.inf
        inline_seconds = self.posting_seconds(inline, share, function)
        largest_chunk = min(per_chunk, queued)
        chunk_seconds = self.db + self.posting_seconds(largest_chunk, share, spec.FANOUT) if chunks else 0.0
        waves = math.ceil(chunks / concurrency) if chunks else 0
        last = max(queue_seconds + inline_seconds, queue_seconds + waves * chunk_seconds)
        full_chunks, rest = divmod(queued, per_chunk)
        in_flight = self.s.posts_in_flight
        taken = grants(inline, in_flight) + full_chunks * grants(per_chunk, in_flight) + grants(rest, in_flight)
        return _FanOut(recipients, inline, chunks, per_chunk, body_bytes, batches, min(per_batch, chunks) * body_bytes,
                       concurrency, asked, queue_seconds, inline_seconds, chunk_seconds, last, taken)

    def durations(self, publish: _FanOut, before_posts: float, heartbeat: _FanOut | None,
                  heartbeat_listing: float) -> dict[str, float]:
        """Seconds one invocation of each function runs: its DynamoDB calls and its posts,
        at least 1 ms (Lambda's billing step) and at most its timeout."""
        calls = {name: sum(requests.values()) for name, requests in REQUESTS.items()}
        timeout = float(self.s.lambda_timeout_seconds)
        fanout = publish if publish.chunks or heartbeat is None else heartbeat
        durations = {
            "connect": calls["connect_heartbeats"] * self.db if self.heartbeats else 0.0,
            "disconnect": calls["disconnect"] * self.db,
            "join": calls["join"] * self.db,
            "ping": 0.0,
            "default": 0.0,
            "publish": min(before_posts + publish.queue_seconds + publish.inline_seconds, timeout),
            # its claim (in chunk_seconds), its posts and its claim finished
            "fanout": min(fanout.chunk_seconds + self.db, timeout) if fanout.chunks else 0.0,
            "heartbeat": min(heartbeat_listing + heartbeat.queue_seconds + heartbeat.inline_seconds,
                             float(spec.HEARTBEAT_TIMEOUT_SECONDS)) if heartbeat else 0.0,
        }
        return {name: max(seconds, 0.001) for name, seconds in durations.items()}

    # --- the workload -------------------------------------------------------------------

    def evaluate(self, largest_rate: float, joins: float) -> _State:
        """Every load with the largest channel publishing ``largest_rate`` times a second
        and ``joins`` joins a second reaching it from new connections."""
        w, s, f = self.w, self.s, self.facts
        members_total = w.channels * w.members
        churn = w.connections / spec.MAX_CONNECTION_SECONDS  # every connection reconnects within API Gateway's limit
        join_churn = members_total / spec.MAX_CONNECTION_SECONDS
        recipients = max(0, w.members - 1)
        publishes = (w.channels - 1) * w.publishes_per_second + largest_rate
        heartbeat_runs = 1 / (60 * s.heartbeat_interval_minutes) if self.heartbeats else 0.0
        heartbeat_posts = w.connections * heartbeat_runs
        message_posts = publishes * recipients
        post_demand = message_posts + heartbeat_posts
        largest_posts = largest_rate * recipients

        # pings: a connection pings when nothing reached it for the ping interval
        def incoming(rate: float) -> float:
            return rate * recipients / w.members + heartbeat_runs if w.members else heartbeat_runs

        pings = ((w.channels - 1) * w.members * _pings(w.client_ping_seconds, incoming(w.publishes_per_second))
                 + w.members * _pings(w.client_ping_seconds, incoming(largest_rate))
                 + (w.connections - members_total) * _pings(w.client_ping_seconds, heartbeat_runs))
        client_frames = publishes + join_churn + joins + pings
        connects = churn + joins

        budget = s.posts_per_second
        paced = budget is not None
        feasible = budget is None or post_demand <= budget
        posts_sent = min(post_demand, budget) if budget is not None else post_demand

        # a publish to the largest channel, paced and at full speed
        publish_fn = FUNCTION["publish"]
        publish = self.fan_out(recipients, self.message, EXAMPLE_CHANNEL_ID,
                               _available(budget, post_demand, largest_posts or min(recipients, 1.0)), publish_fn)
        full = self.fan_out(recipients, self.message, EXAMPLE_CHANNEL_ID, math.inf, publish_fn)
        entry = self.entry_bytes(self.channel_index, self.measured.membership_row)
        pages, read_units = query_read_units(w.members / self.shards, entry, self.page_bytes, self.read_unit)
        rounds = math.ceil(self.shards / store.MAX_PARALLEL_READS)  # the shards' queries, so many at once
        before_posts = self.db * (1 + (1 if s.history_seconds else 0)) + rounds * pages * self.db
        reply_seconds = before_posts + publish.queue_seconds + publish.inline_seconds
        last_seconds = before_posts + publish.last_seconds

        # heartbeats: list every connection (each heartbeat shard, one after another), then fan out
        heartbeat = heartbeat_full = None
        listing = 0.0
        heartbeat_read_units = 0.0
        if self.heartbeats:
            hb_entry = self.entry_bytes(self.heartbeat_index, self.measured.state_row)
            hb_pages, heartbeat_read_units = query_read_units(w.connections / spec.HEARTBEAT_SHARDS, hb_entry,
                                                              self.page_bytes, self.read_unit)
            listing = spec.HEARTBEAT_SHARDS * hb_pages * self.db
            heartbeat = self.fan_out(w.connections, self.heartbeat_frame, NO_CHANNEL,
                                     _available(budget, post_demand, heartbeat_posts), spec.HEARTBEAT)
            heartbeat_full = self.fan_out(w.connections, self.heartbeat_frame, NO_CHANNEL, math.inf, spec.HEARTBEAT)

        # API Gateway: the clients' frames, new connections and posts; a fan-out longer than
        # the token bucket's burst asks for its unpaced rate while it runs
        asks = [post_demand]
        for fan, running in ((full, publishes > 0), (heartbeat_full, heartbeat_full is not None)):
            if fan is not None and running and fan.recipients > self.account_burst:
                asks.append(fan.asked_rate)
        peak_posts = min(max(asks), float(budget)) if budget is not None else max(asks)
        other_requests = client_frames + connects
        requests_peak = other_requests + peak_posts

        # Lambda: invocations a second and seconds each, by function
        chunks_per_second = publishes * publish.chunks + (heartbeat.chunks * heartbeat_runs if heartbeat else 0.0)
        actual = self.durations(publish, before_posts, heartbeat, listing)
        unpaced = self.durations(full, before_posts, heartbeat_full, listing)
        durations = actual if feasible else unpaced  # past the budget, fan-outs back up: no function waits longer
        invocations = {"connect": connects, "disconnect": churn, "join": join_churn + joins, "publish": publishes,
                       "ping": pings, "default": 0.0, "fanout": chunks_per_second, "heartbeat": heartbeat_runs}
        concurrency = {name: rate * durations[name] for name, rate in invocations.items()}
        concurrency["fanout"] = min(concurrency["fanout"], float(s.fanout_concurrency))
        if self.heartbeats:
            concurrency["heartbeat"] = 1.0  # a run is one invocation, at its peak
        fanout_busy = chunks_per_second * unpaced["fanout"] if chunks_per_second else 0.0

        # DynamoDB units per operation, from the store's items
        units = self.units
        posters = concurrency["publish"] + concurrency["fanout"] + concurrency["heartbeat"]
        grant_requests = 0.0
        if paced and post_demand:
            # each fan-out's grants, for the posts the budget lets through
            asked_grants = publishes * full.grants + (heartbeat_runs * heartbeat_full.grants if heartbeat_full else 0.0)
            grant_requests = asked_grants * posts_sent / post_demand
            if not feasible:  # each poster waiting for the budget asks again every slot
                grant_requests += posters * spec.BUDGET_SLOTS_PER_SECOND
        # a second's first grant writes its row (one a second, a counter a slot): the chance a
        # second sees a grant, grants arriving at random
        second_rows = 1 - math.exp(-grant_requests)
        steady_ops = {"join": join_churn, "disconnect": churn, "chunk": chunks_per_second,
                      "keep_message": publishes if s.history_seconds else 0.0, "grant_first": second_rows,
                      "grant": grant_requests - second_rows, "register": churn if self.heartbeats else 0.0}
        storm_ops = {"join": joins, "register": joins if self.heartbeats else 0.0}

        def table_units(rates: Mapping[str, float]) -> float:
            return sum(rate * units[name].table for name, rate in rates.items())

        def index_units(rates: Mapping[str, float], index: Index) -> float:
            return sum(rate * units[name].index.get(index.name, 0.0) for name, rate in rates.items())

        state_reads = math.ceil(item_size(self.measured.state_row) / self.read_unit)
        table_reads = (publishes + join_churn) * state_reads  # a publish's and a join's consistent GetItem
        index_reads = (publishes * read_units * self.shards
                       + heartbeat_runs * heartbeat_read_units * spec.HEARTBEAT_SHARDS)

        # one partition of the largest channel's index: its reads, its joins' and leaves' writes
        entry_units = math.ceil(entry / self.write_unit)
        partition_reads = largest_rate * read_units
        partition_writes = (joins + 2 * w.members / spec.MAX_CONNECTION_SECONDS) * entry_units / self.shards
        read_limit = f["dynamodb_partition_read_units"].value
        write_limit = f["dynamodb_partition_write_units"].value
        table_limit = f["dynamodb_table_request_units"].value

        # SQS: sends (a batch per 64 KB), receives (per 64 KB) and deletes of each chunk
        payload_unit = f["sqs_request_payload_bytes"].value
        sqs_requests = 0.0
        for fan, rate in ((publish, publishes), (heartbeat, heartbeat_runs)):
            if fan is not None and fan.chunks:
                sqs_requests += rate * (fan.send_batches * math.ceil(fan.batch_bytes / payload_unit)
                                        + fan.chunks * (math.ceil(fan.chunk_body_bytes / payload_unit) + 1))

        loads = [
            Load(REQUESTS_ROW, requests_peak, self.account_quota, "requests/s", "api_gateway_requests_per_second"),
            Load(CONNECTIONS_ROW, connects, self.connection_quota, "connections/s",
                 "api_gateway_new_connections_per_second"),
        ]
        if paced:
            loads.append(Load(BUDGET_ROW, post_demand, float(budget or 0), "posts/s"))
            # a slot's row takes every grant request of its slot (one item: one partition)
            loads.append(Load(BUDGET_COUNTER_ROW, grant_requests * units["grant"].table, write_limit, "WCU/s",
                              "dynamodb_partition_write_units"))
        loads += [
            Load(PARTITION_READS_ROW, partition_reads, read_limit, "RCU/s", "dynamodb_partition_read_units"),
            Load(PARTITION_WRITES_ROW, partition_writes, write_limit, "WCU/s", "dynamodb_partition_write_units"),
            Load(PARTITION_ROW, partition_reads / read_limit + partition_writes / write_limit, 1.0, "share"),
            Load(TABLE_WRITES_ROW, table_units(steady_ops) + table_units(storm_ops), table_limit, "WRU/s",
                 "dynamodb_table_request_units"),
            Load(INDEX_WRITES_ROW, index_units(steady_ops, self.channel_index) + index_units(storm_ops,
                 self.channel_index), table_limit, "WRU/s", "dynamodb_table_request_units"),
            Load(READS_ROW, table_reads + joins * state_reads + index_reads, table_limit, "RRU/s",
                 "dynamodb_table_request_units"),
            Load(LAMBDA_ROW, sum(concurrency.values()), self.lambda_quota, "executions",
                 "lambda_concurrent_executions"),
            Load(FANOUT_ROW, fanout_busy, float(s.fanout_concurrency), "executions"),
        ]
        if heartbeat is not None:
            loads.append(Load(HEARTBEAT_ROW, listing + heartbeat.last_seconds, 60.0 * s.heartbeat_interval_minutes,
                              "s"))
        loads.append(Load(SQS_ROW, sqs_requests, None, "requests/s"))

        throttled = not paced and requests_peak > self.account_quota
        notes: list[str] = []
        if not feasible:
            excess = number(post_demand / (budget or 1))
            latency = Latency(None, None,
                              f"the posts asked for exceed the budget ×{excess}: fan-outs back up without end")
            notes.append(f"to carry this workload postsPerSecond must be at least {post_demand:,.0f} and the account "
                         f"quota at least {post_demand + other_requests:,.0f} requests/s")
        elif throttled:
            latency = Latency(None, None, f"posts beyond the account's {self.account_quota:,.0f} requests/s get 429 "
                                          f"and are dropped after {MAX_ATTEMPTS} attempts")
            if full.recipients > self.account_burst and full.asked_rate + other_requests > self.account_quota:
                notes.append(f"posts are not paced: a publish to the largest channel asks for "
                             f"{number(full.asked_rate)} posts/s while it runs, against the account's "
                             f"{number(self.account_quota)} requests/s")
            if post_demand + other_requests > self.account_quota:
                notes.append(f"posts are not paced: the workload asks for {number(post_demand)} posts/s, against "
                             f"the account's {number(self.account_quota)} requests/s")
        else:
            over = [load for load in loads if load.use is not None and load.use > 1]
            latency = (Latency(None, None, f"{over[0].resource} is over its limit: requests are throttled") if over
                       else Latency(reply_seconds * 1000, last_seconds * 1000))
        if paced and requests_peak > self.account_quota:
            notes.append("postsPerSecond and the clients' frames together exceed the account quota: lower it")
        rates = {"connects": connects, "pings": pings, "publishes": publishes, "join_churn": join_churn,
                 "message_posts": message_posts, "heartbeat_posts": heartbeat_posts, "heartbeat_runs": heartbeat_runs,
                 "chunks": chunks_per_second, "churn": churn}
        return _State(tuple(loads), latency, tuple(notes), publish, pages, read_units, durations, invocations,
                      steady_ops, table_reads, index_reads, sqs_requests, rates, full.asked_rate)

    # --- ceilings -----------------------------------------------------------------------

    def ceilings(self, vary: Callable[[float], _State]) -> Rate:
        """The rate at which each resource ``vary``'s traffic loads reaches its limit (0 when
        it is over its limit already, inf when no rate below MAX_CEILING reaches it), and
        the lowest of them."""
        base = {load.resource: load.use for load in vary(0.0).loads if load.use is not None}
        cache: dict[float, dict[str, float]] = {}

        def uses(rate: float) -> dict[str, float]:
            if rate not in cache:
                cache[rate] = {load.resource: load.use for load in vary(rate).loads if load.use is not None}
            return cache[rate]

        ceilings: dict[str, float] = {}
        for resource, use0 in base.items():
            if uses(MAX_CEILING)[resource] <= use0 + 1e-12:
                continue  # this traffic does not load it
            if use0 > 1:
                ceilings[resource] = 0.0
                continue
            if uses(MAX_CEILING)[resource] <= 1:
                ceilings[resource] = math.inf
                continue
            low, high = 0.0, 1.0
            while uses(high)[resource] <= 1:
                low, high = high, high * 2
            while high - low > max(1e-4 * high, 1e-9):
                middle = (low + high) / 2
                low, high = (middle, high) if uses(middle)[resource] <= 1 else (low, middle)
            ceilings[resource] = low
        if not ceilings:
            return Rate(math.inf, "none", {})
        limit = min(ceilings, key=lambda name: ceilings[name])
        return Rate(ceilings[limit], limit, ceilings)

    def run(self) -> Plan:
        w = self.w
        state = self.evaluate(w.publishes_per_second, w.joins_per_second)
        steady = self.evaluate(w.publishes_per_second, 0.0)  # what a month costs: no join storm
        return Plan(
            workload=w, settings=self.s, environment=self.e, loads=state.loads, latency=state.latency,
            max_publish_rate=self.ceilings(lambda rate: self.evaluate(rate, 0.0)),
            max_join_rate=self.ceilings(lambda rate: self.evaluate(0.0, rate)),
            cost_lines=tuple(self.cost(steady)), figures=self.figures(state), facts=self.facts, notes=state.notes,
        )

    # --- cost -----------------------------------------------------------------------------

    def cost(self, state: _State) -> list[CostLine]:
        """What a month costs, line by line, at the steady rates (a join storm is a peak)."""
        w, s, f = self.w, self.s, self.facts
        r = state.rates
        seconds = w.hours * 3600
        lines: list[CostLine] = []

        def line(service: str, item: str, key: str, quantity: float, unit: str) -> None:
            lines.append(CostLine(service, item, quantity, unit, quantity * f[key].value / f[key].per))

        # the clients' frames, one reply to each (the route responses) and the posts
        frames = r["publishes"] * self.messages(self.publish_frame) + r["join_churn"] + r["pings"]
        replies = r["publishes"] + r["join_churn"] + r["pings"]
        messages = (frames + replies + r["message_posts"] * self.messages(self.message)
                    + r["heartbeat_posts"] * self.messages(self.heartbeat_frame)) * seconds
        line("API Gateway", "messages", "api_gateway_message", messages, "messages")
        line("API Gateway", "connection minutes", "api_gateway_connection_minute", w.connections * w.hours * 60,
             "minutes")
        gb_second = f"lambda_gb_second_{s.lambda_architecture}"
        for name, rate in state.invocations.items():
            if rate > 0:
                billed = math.ceil(state.durations[name] * 1000 - 1e-9) / 1000
                memory = s.memory_mb(FUNCTION[name])
                line("Lambda", f"{name} requests", "lambda_request", rate * seconds, "requests")
                line("Lambda", f"{name} duration ({number(memory)} MB)", gb_second,
                     rate * seconds * billed * memory / 1024, "GB-seconds")
        write_units = sum(rate * self.units[name].total for name, rate in state.steady_ops.items()) * seconds
        line("DynamoDB", "writes", "dynamodb_write_request_unit", write_units, "write units")
        line("DynamoDB", "reads", "dynamodb_read_request_unit", (state.table_reads + state.index_reads) * seconds,
             "read units")
        line("DynamoDB", "storage", "dynamodb_storage_gb_month", self.storage_gb(r) * w.hours / HOURS_PER_MONTH,
             "GB-months")
        line("SQS", "requests", "sqs_request", state.sqs_requests * seconds, "requests")
        line("Scheduler", "invocations", "scheduler_invocation", r["heartbeat_runs"] * seconds, "invocations")
        return lines

    def stored_bytes(self, item: Mapping[str, Any]) -> int:
        """An item's storage: itself and each index entry, each with DynamoDB's overhead."""
        overhead = int(self.facts["dynamodb_item_overhead_bytes"].value)
        total = item_size(item) + overhead
        for index in self.indexes:
            entry = index.entry(item)
            if entry is not None:
                total += item_size(entry) + overhead
        return total

    def storage_gb(self, rates: Mapping[str, float]) -> float:
        """Gigabytes stored while the workload runs: state rows and memberships, tombstones
        until they expire, chunk claims, kept messages and budget rows until theirs."""
        w, s, m = self.w, self.s, self.measured
        members = w.channels * w.members
        unjoined = (w.connections - members) if self.heartbeats else 0
        stored = (members * (self.stored_bytes(m.state_row) + self.stored_bytes(m.membership_row))
                  + unjoined * self.stored_bytes(m.registered_row)
                  + rates["churn"] * spec.ROW_TTL_SECONDS * self.stored_bytes(m.tombstone_row)
                  + rates["chunks"] * spec.FANOUT_RETENTION_SECONDS * self.stored_bytes(m.chunk_row))
        if s.history_seconds:
            stored += rates["publishes"] * s.history_seconds * self.stored_bytes(m.kept_message_row)
        if s.posts_per_second is not None:
            stored += spec.BUDGET_ROW_SECONDS * self.stored_bytes(m.budget_row)
        return stored / 2**30

    def figures(self, state: _State) -> dict[str, Any]:
        """The per-operation figures the plan used, by name."""
        m, publish = self.measured, state.publish
        figures: dict[str, Any] = {
            "message frame bytes": len(self.message),
            "API Gateway messages a post": self.messages(self.message),
            "state row bytes": item_size(m.state_row),
            "membership row bytes": item_size(m.membership_row),
            "channel index entry bytes": self.entry_bytes(self.channel_index, m.membership_row),
            "query pages a shard, largest channel": state.pages,
            "read units a publish a shard": state.read_units,
            "write units a join": _units_text(self.units["join"]),
            "write units a move to another channel": _units_text(self.units["move"]),
            "write units a $disconnect": _units_text(self.units["disconnect"]),
            "write units a chunk's claim and finish": _units_text(self.units["chunk"]),
            "write units a budget grant, the second's first": _units_text(self.units["grant_first"]),
            "write units a budget grant, later": _units_text(self.units["grant"]),
            "members a chunk": publish.per_chunk,
            "chunk body bytes": publish.chunk_body_bytes,
            "chunks a publish, largest channel": publish.chunks,
            "posts a second a function sends, unpaced": self.post_rate(spec.FANOUT),
            "posts a second a publish to the largest channel asks for, unpaced": state.asked_rate,
        }
        if self.heartbeats:
            figures["heartbeat index entry bytes"] = self.entry_bytes(self.heartbeat_index, m.state_row)
            figures["write units a registration"] = _units_text(self.units["register"])
        return figures


def _units_text(units: Units) -> str:
    indexes_text = ", ".join(f"{name} {value:g}" for name, value in sorted(units.index.items()) if value)
    return f"table {units.table:g}" + (f", {indexes_text}" if indexes_text else "")


def _available(budget: int | None, demand: float, part: float) -> float:
    """Posts a second the budget leaves for ``part`` of the ``demand``: what the rest leaves
    of it, or (the budget exceeded) its share in proportion; unbounded without a budget."""
    if budget is None:
        return math.inf
    if demand <= budget:
        return budget - (demand - part)
    return budget * part / demand if demand else float(budget)


def _pings(interval: float, incoming_per_second: float) -> float:
    """Pings a second of a connection that receives ``incoming_per_second`` frames: one
    per interval when frames arrive less often than that, else none."""
    if interval <= 0 or incoming_per_second * interval >= 1:
        return 0.0
    return 1 / interval


def plan(workload: Workload, settings: Settings, environment: Environment = Environment(),
         facts: Mapping[str, Fact] | None = None) -> Plan:
    """The plan of ``workload`` on ``settings``."""
    return Model(workload, settings, environment, facts).run()


# --- a discrete workload's requests: tests/test_plan_model.py counts them in local mode ----------

@dataclass(frozen=True)
class Session:
    """A discrete workload, event by event (``tests/test_plan_model.py`` drives one through
    local mode). Each publish is given by its recipients: the channel's members but its sender."""

    connects: int = 0
    joins: int = 0
    """Joins: a connection's first, or one that moves it from another channel."""
    publishes: tuple[int, ...] = ()
    disconnects: int = 0
    """$disconnects of joined connections."""
    unjoined_disconnects: int = 0
    message_bytes: int = 100
    """The ``data`` each publish carries: a JSON string of this many characters."""


@dataclass(frozen=True)
class SessionRequests:
    """The requests a :class:`Session` makes: DynamoDB's and SQS's by operation (HTTP
    requests; SQS bills one per started 64 KB of a request's payload), and the posts to
    the management API."""

    dynamodb: Counter[str]
    sqs: Counter[str]
    posts: int


def session_requests(session: Session, settings: Settings, facts: Mapping[str, Fact] | None = None) -> SessionRequests:
    """The requests ``session`` makes on ``settings``, from the model's own figures: each
    operation's :data:`REQUESTS`, a publish's :func:`publish_requests` (its Query pages a
    shard as the model reads them), and each fan-out's parts as the model splits it
    (``Model.fan_out``): the inline posts, the chunks (``spec.FANOUT_CHUNK_MEMBERS`` members,
    fewer when the frame is large), the SendMessageBatch calls that queue them (ten
    chunks, or 256 KB, a call), each chunk claimed and finished, received and deleted by the
    fan-out mapping (one chunk an invocation), and with the budget the model's grants
    (:func:`grants`: one per ``posts_in_flight`` posts of the inline part and of each chunk).
    Not counted: who else posts (heartbeats, server publishes) and members found gone."""
    largest = max(session.publishes, default=0) + 1
    workload = Workload(connections=max(session.connects, largest), channels=1, members=largest,
                        publishes_per_second=0.0, message_bytes=session.message_bytes)
    model = Model(workload, settings, Environment(), facts)
    dynamodb: Counter[str] = Counter()
    sqs: Counter[str] = Counter()

    def add(operation: str, times: int) -> None:
        dynamodb.update({name: count * times for name, count in REQUESTS[operation].items()})

    if model.heartbeats:
        add("connect_heartbeats", session.connects)
    add("join", session.joins)
    add("disconnect", session.disconnects)
    add("disconnect_unjoined", session.unjoined_disconnects)
    entry = model.entry_bytes(model.channel_index, model.measured.membership_row)
    for recipients in session.publishes:
        fan = model.fan_out(recipients, model.message, EXAMPLE_CHANNEL_ID, math.inf, FUNCTION["publish"])
        pages, _ = query_read_units((recipients + 1) / model.shards, entry, model.page_bytes, model.read_unit)
        dynamodb.update(publish_requests(recipients, pages=pages, shards=model.shards,
                                         history=bool(settings.history_seconds)))
        add("chunk", fan.chunks)
        if settings.posts_per_second is not None:
            add("grant", fan.grants)
        if fan.chunks:
            sqs["SendMessageBatch"] += fan.send_batches
            # the mapping's receive of each chunk, and its delete once the function returned
            sqs["ReceiveMessage"] += fan.chunks
            sqs["DeleteMessageBatch"] += fan.chunks
    return SessionRequests(+dynamodb, +sqs, sum(session.publishes))


# --- output -----------------------------------------------------------------------------------

def number(value: float | None) -> str:
    """A figure as the output prints it: thousands separated, three significant digits
    below 100, "∞" for no bound and "-" for none."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "∞"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return _significant(value)


def _significant(value: float) -> str:
    """Three significant digits, never in exponent notation (0.0000243, not 2.43e-05)."""
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"


def percent(use: float | None) -> str:
    if use is None:
        return ""
    return "∞" if math.isinf(use) else f"{number(use * 100)}%"


def dollars(value: float) -> str:
    return "$" + (f"{value:,.0f}" if value >= 100 else _significant(value) if value else "0")


#: The width text output wraps its prose at.
WIDTH = 100


def _wrapped(head: str, body: str) -> list[str]:
    """``body`` after ``head``, wrapped at WIDTH, continuation lines indented under it."""
    return textwrap.wrap(body, WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                         break_on_hyphens=False, break_long_words=False) or [head.rstrip()]


def _workload_text(w: Workload, frame_bytes: int) -> str:
    channels = f"{number(w.channels)} channel{'s' if w.channels != 1 else ''} of {number(w.members)} members"
    joins = f"{number(w.joins_per_second)} joins/s at peak" if w.joins_per_second else "no join storm"
    pings = f"clients ping after {number(w.client_ping_seconds)} s idle" if w.client_ping_seconds else "no client pings"
    return (f"{number(w.connections)} connections; {channels}; {number(w.publishes_per_second)} publishes/s a "
            f"channel of {number(w.message_bytes)} bytes of data ({number(frame_bytes)}-byte frames); {joins}; "
            f"{pings}; {number(w.hours)} hours a month")


def _settings_text(s: Settings) -> str:
    heartbeats = (f"heartbeatIntervalMinutes {s.heartbeat_interval_minutes}" if s.heartbeat_interval_minutes
                  else "no heartbeats")
    history = f"historySeconds {number(s.history_seconds)}" if s.history_seconds else "no history"
    return (f"postsInFlight {number(s.posts_in_flight)}; inlineFanoutLimit {number(s.inline_fanout_limit)}; "
            f"{heartbeats}; {history}; publishMemoryMb {number(s.publish_memory_mb)}, "
            f"lambdaMemoryMb {number(s.lambda_memory_mb)} ({s.lambda_architecture})")


def _changed_text(s: Settings) -> str:
    budget = "none" if s.posts_per_second is None else number(s.posts_per_second)
    return (f"postsPerSecond {budget}; channelIndexShards {s.channel_index_shards}; "
            f"fanoutConcurrency {s.fanout_concurrency}")


def _assumed_text(e: Environment) -> str:
    cpu = f"{number(e.post_cpu_us)} µs CPU a post" if e.post_cpu_us else "CPU a post not given"
    return (f"management API round trip {number(e.round_trip_ms)} ms; DynamoDB and SQS calls "
            f"{number(e.dynamodb_ms)} ms; {cpu}")


def _quotas_text(plan: Plan) -> str:
    limits = {load.fact: load.limit for load in plan.loads if load.fact}
    burst = plan.facts["api_gateway_requests_per_second"].burst
    return (f"{number(limits.get('api_gateway_requests_per_second'))} requests/s (burst {number(burst)}); "
            f"{number(limits.get('api_gateway_new_connections_per_second'))} new connections/s; "
            f"{number(limits.get('lambda_concurrent_executions'))} Lambda executions")


def _load_cell(load: Load | None) -> str:
    if load is None:
        return "-"
    if load.limit is None:
        return number(load.load)
    if load.unit == "share":
        return percent(load.use)
    return f"{number(load.load)} / {number(load.limit)} {percent(load.use)}"


def _first_limit_text(plan: Plan) -> str:
    first = plan.first_limit
    if first is None or first.use is None:
        return "no limit"
    if first.use > 1:
        return f"first limit {first.resource} ×{number(first.use)}"
    return f"no limit reached; nearest {first.resource} at {percent(first.use)}"


def _latency_text(latency: Latency) -> str:
    if latency.reply_ms is None:
        return f"a publish to the largest channel: no bound ({latency.why})"
    return (f"a publish to the largest channel: reply {number(latency.reply_ms)} ms, last delivery "
            f"{number(latency.last_delivery_ms)} ms")


def _ceiling_rows(plans: Sequence[Plan]) -> list[list[str]]:
    names = list(dict.fromkeys(name for plan in plans for rate in (plan.max_publish_rate, plan.max_join_rate)
                               for name in rate.ceilings))
    rows = []
    for name in names:
        cells = [number(plan.max_publish_rate.ceilings.get(name)) for plan in plans]
        cells += [number(plan.max_join_rate.ceilings.get(name)) for plan in plans]
        rows.append([name, *cells])
    rows.append(["lowest", *[number(plan.max_publish_rate.value) for plan in plans],
                 *[number(plan.max_join_rate.value) for plan in plans]])
    return rows


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
            .rstrip() for row in rows]


def text(plans: Sequence[Plan], labels: Sequence[str]) -> str:
    """The plans of one workload (one, or the unpaced server's and these settings' side by side) as text."""
    first = plans[0]
    frame_bytes = int(first.figures["message frame bytes"])
    lines = [*_wrapped("Workload: ", _workload_text(first.workload, frame_bytes)),
             *_wrapped("Settings: ", _settings_text(first.settings))]
    compare = len(plans) > 1
    for label, plan in zip(labels, plans, strict=True):
        lines += _wrapped(f"  {label}: ".ljust(10) if compare else "          ", _changed_text(plan.settings))
    lines += [*_wrapped("Assumed:  ", _assumed_text(first.environment)), *_wrapped("Quotas:   ", _quotas_text(first)),
              ""]
    names = list(dict.fromkeys(load.resource for plan in plans for load in plan.loads))
    by_name = [{load.resource: load for load in plan.loads} for plan in plans]
    columns = ["Resource: load / limit, use", *(labels if compare else [""])]
    lines += _table([columns, *[[name, *(_load_cell(loads.get(name)) for loads in by_name)] for name in names]])
    lines.append("")
    for label, plan in zip(labels, plans, strict=True):
        head = f"{label}: ".ljust(7) if compare else ""
        lines += _wrapped(head, _first_limit_text(plan))
        lines += _wrapped(" " * len(head), _latency_text(plan.latency))
    lines.append("")
    short = {"unpaced": "unpaced", "paced": "paced"}
    ceiling_head = (["Ceilings of the largest channel", *(f"pub/s {short.get(label, label)}" for label in labels),
                     *(f"joins/s {short.get(label, label)}" for label in labels)] if compare
                    else ["Ceilings of the largest channel", "publishes/s", "joins/s"])
    lines += _table([ceiling_head, *_ceiling_rows(plans)])
    lines.append("")
    cost_rows = [["Cost a month", *(labels if compare else [""])]]
    items = list(dict.fromkeys((line.service, line.item) for plan in plans for line in plan.cost_lines))
    by_item = [{(line.service, line.item): line.usd for line in plan.cost_lines} for plan in plans]
    for service in dict.fromkeys(service for service, _ in items):
        cost_rows.append([service, *(dollars(plan.cost.get(service, 0.0)) for plan in plans)])
        cost_rows += [[f"  {item}", *(dollars(usd[(service, item)]) if (service, item) in usd else "-"
                                      for usd in by_item)]
                      for line_service, item in items
                      if line_service == service and any(usd.get((service, item)) for usd in by_item)]
    cost_rows.append(["total", *(dollars(sum(plan.cost.values())) for plan in plans)])
    lines += _table(cost_rows)
    notes = [(label, note) for label, plan in zip(labels, plans, strict=True) for note in plan.notes]
    if notes:
        lines.append("")
    for label, note in notes:
        lines += _wrapped(f"Note, {label}: " if compare else "Note: ", note)
    return "\n".join(lines) + "\n"


def figures_text(plan: Plan) -> str:
    """The per-operation figures and the prices and quotas of ``plan``, with their sources."""
    lines = ["DynamoDB requests an operation (tests/test_requests.py checks them):"]
    lines += [f"  {name}: " + ", ".join(f"{operation} {count}" for operation, count in requests.items())
              for name, requests in REQUESTS.items()]
    lines.append("Per operation, from the code (handlers/store.py, handoff.py, spec.py, args.py):")
    lines += [f"  {name}: {value if isinstance(value, str) else number(value)}" for name, value in plan.figures.items()]
    lines.append("Prices and quotas (components/plan_prices.json):")
    for fact in plan.facts.values():
        if fact.price:
            usd = f"{fact.value:.10f}".rstrip("0").rstrip(".")
            value = f"${usd}" + (f" per {number(fact.per)}" if fact.per != 1 else "")
        else:
            value = number(fact.value) + (f", burst {number(fact.burst)}" if fact.burst else "")
        lines += _wrapped(f"  {fact.key}: ", f"{value}: {fact.unit}")
        lines += _wrapped("    ", f"{fact.source}, read {fact.read}")
        if fact.read_via:
            lines += _wrapped("    ", f"read in: {fact.read_via}")
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every infinite float as None (JSON has no infinity)."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def to_json(plan: Plan) -> dict[str, Any]:
    """``plan`` as plain data (None where there is no bound)."""
    first = plan.first_limit
    data: dict[str, Any] = _finite({
        "workload": dataclasses.asdict(plan.workload),
        "settings": dataclasses.asdict(plan.settings),
        "environment": dataclasses.asdict(plan.environment),
        "loads": [{"resource": load.resource, "load": load.load, "limit": load.limit, "unit": load.unit,
                   "use": load.use, "quota": load.fact} for load in plan.loads],
        "first_limit": None if first is None else {"resource": first.resource, "use": first.use},
        "latency": dataclasses.asdict(plan.latency),
        "max_publish_rate": dataclasses.asdict(plan.max_publish_rate),
        "max_join_rate": dataclasses.asdict(plan.max_join_rate),
        "cost": {**plan.cost, "total": sum(plan.cost.values())},
        "cost_lines": [dataclasses.asdict(line) for line in plan.cost_lines],
        "figures": plan.figures,
        "requests": REQUESTS,
        "facts": {key: dataclasses.asdict(fact) for key, fact in plan.facts.items()},
        "notes": list(plan.notes),
    })
    return data


# --- the command ---------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    defaults, environment = default_settings(), Environment()
    p = argparse.ArgumentParser(
        prog="python -m channel_server.plan",
        description="A workload's load on each AWS quota and partition limit, its first limit, the latency of a "
                    "publish to its largest channel, the ceilings of that channel and the monthly cost "
                    "(docs/capacity.md).")
    w = p.add_argument_group("workload")
    w.add_argument("--connections", type=_whole, help="connections at once (default: channels × members)")
    w.add_argument("--channels", type=_whole, default=1, help="channels of --members members each (default 1)")
    w.add_argument("--members", type=_whole, default=1000, help="members of each channel, the largest's (default 1000)")
    w.add_argument("--publishes-per-second", type=_positive, default=1.0, help="publishes a second per channel "
                   "(default 1)")
    w.add_argument("--message-bytes", type=_message_bytes, default=100,
                   help="characters of a publish's data (default 100)")
    w.add_argument("--joins-per-second", type=_positive, default=0.0, help="joins a second to the largest channel at "
                   "peak, each from a new connection (default 0)")
    w.add_argument("--client-ping-seconds", type=_positive, default=_client_ping_default(),
                   help="seconds idle after which a client pings, 0 never (default: ChannelClient's, %(default)g)")
    w.add_argument("--hours", type=_hours, default=HOURS_PER_MONTH, help="hours a month the workload runs "
                   "(default %(default)g, all month)")
    s = p.add_argument_group("settings (the component's; defaults from components/args.py)")
    s.add_argument("--posts-per-second", type=_whole, default=defaults.posts_per_second)
    s.add_argument("--channel-index-shards", type=_whole, default=defaults.channel_index_shards)
    s.add_argument("--fanout-concurrency", type=_whole, default=defaults.fanout_concurrency)
    s.add_argument("--posts-in-flight", type=_whole, default=defaults.posts_in_flight)
    s.add_argument("--inline-fanout-limit", type=_whole, default=defaults.inline_fanout_limit)
    s.add_argument("--heartbeat-interval-minutes", type=int, default=defaults.heartbeat_interval_minutes)
    s.add_argument("--history-seconds", type=int, default=defaults.history_seconds)
    s.add_argument("--lambda-memory-mb", type=_whole, default=defaults.lambda_memory_mb)
    s.add_argument("--publish-memory-mb", type=_whole, default=defaults.publish_memory_mb)
    s.add_argument("--lambda-architecture", default=defaults.lambda_architecture)
    e = p.add_argument_group("assumed (not measured on AWS) and quotas (defaults: plan_prices.json)")
    e.add_argument("--round-trip-ms", type=_above_zero, default=environment.round_trip_ms,
                   help="the management API's round trip from Lambda (default %(default)g, as bench/fanout.py)")
    e.add_argument("--dynamodb-ms", type=_above_zero, default=environment.dynamodb_ms,
                   help="a DynamoDB or SQS call's round trip from Lambda (default %(default)g)")
    e.add_argument("--post-cpu-us", type=_above_zero, help="CPU a post takes, µs of a full core: measure it with "
                   ".venv/bin/python bench/post_cpu.py (default: not given, the round trip alone bounds posting)")
    e.add_argument("--account-requests-per-second", type=_above_zero, help="API Gateway's account quota")
    e.add_argument("--new-connections-per-second", type=_above_zero, help="API Gateway's new connection quota")
    e.add_argument("--lambda-concurrency", type=_above_zero, help="Lambda's concurrent executions quota")
    o = p.add_argument_group("output")
    o.add_argument("--compare", action="store_true",
                   help="the server before its account budget (posts not paced, one index partition a channel) "
                   "beside these settings")
    o.add_argument("--json", action="store_true", help="JSON instead of text")
    o.add_argument("--figures", action="store_true", help="the per-operation figures, prices and quotas, "
                                                          "with their sources")
    return p


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number of at least 1")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: must be a number") from None


def _positive(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: must be a number of at least 0")
    return value


def _above_zero(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: must be a number above 0")
    return value


def _hours(text: str) -> float:
    value = _above_zero(text)
    if value > HOURS_PER_MONTH:
        raise argparse.ArgumentTypeError(f"{text}: a month has {HOURS_PER_MONTH:g} hours")
    return value


def _message_bytes(text: str) -> int:
    value = _whole(text)
    if value > protocol.API_GATEWAY_MAX_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(f"{text}: a message frame is at most {protocol.API_GATEWAY_MAX_MESSAGE_BYTES} "
                                         "bytes (API Gateway's limit), its data less")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    options = p.parse_args(argv)
    connections = options.connections or options.channels * options.members
    try:
        component_args.resolve({
            "posts_per_second": options.posts_per_second, "channel_index_shards": options.channel_index_shards,
            "fanout_concurrency": options.fanout_concurrency, "posts_in_flight": options.posts_in_flight,
            "inline_fanout_limit": options.inline_fanout_limit,
            "heartbeat_interval_minutes": options.heartbeat_interval_minutes,
            "history_seconds": options.history_seconds, "lambda_memory_mb": options.lambda_memory_mb,
            "publish_memory_mb": options.publish_memory_mb, "lambda_architecture": options.lambda_architecture,
        })
    except component_args.ChannelServerArgsError as exc:
        p.error(str(exc))
    settings = dataclasses.replace(
        default_settings(), posts_per_second=options.posts_per_second,
        channel_index_shards=options.channel_index_shards, fanout_concurrency=options.fanout_concurrency,
        posts_in_flight=options.posts_in_flight, inline_fanout_limit=options.inline_fanout_limit,
        heartbeat_interval_minutes=options.heartbeat_interval_minutes, history_seconds=options.history_seconds,
        lambda_memory_mb=options.lambda_memory_mb, publish_memory_mb=options.publish_memory_mb,
        lambda_architecture=options.lambda_architecture)
    workload = Workload(connections=connections, channels=options.channels, members=options.members,
                        publishes_per_second=options.publishes_per_second, message_bytes=options.message_bytes,
                        joins_per_second=options.joins_per_second, client_ping_seconds=options.client_ping_seconds,
                        hours=options.hours)
    environment = Environment(round_trip_ms=options.round_trip_ms, dynamodb_ms=options.dynamodb_ms,
                              post_cpu_us=options.post_cpu_us,
                              account_requests_per_second=options.account_requests_per_second,
                              new_connections_per_second=options.new_connections_per_second,
                              lambda_concurrency=options.lambda_concurrency)
    facts = load_facts()
    try:
        plans = [plan(workload, settings.unpaced(), environment, facts)] if options.compare else []
        plans.append(plan(workload, settings, environment, facts))
    except ValueError as exc:
        p.error(str(exc))
    labels = ["unpaced", "paced"] if options.compare else ["paced"]
    if options.json:
        data = {label: to_json(one) for label, one in zip(labels, plans, strict=True)}
        print(json.dumps(data if options.compare else data["paced"], indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(text(plans, labels))
        if options.figures:
            sys.stdout.write("\n" + figures_text(plans[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
