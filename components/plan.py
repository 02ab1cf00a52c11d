"""The capacity and cost planner: a workload's load on each AWS quota, its first limit, its latency
and its monthly cost (``python -m channel_server.plan``).

    python -m channel_server.plan --connections 100000 --channels 1 --members 100000 \\
        --publishes-per-second 5 --joins-per-second 2000 --compare

This module is the model; its measured figures are :mod:`.plan_figures`, its output and
command line :mod:`.plan_report`. Every per-operation figure comes from the code, never
typed a second time:

- DynamoDB requests per operation: ``plan_figures.REQUESTS`` (``tests/test_requests.py``
  counts them against the embedded DynamoDB and asserts they are this table);
- bytes per row and index entry, and the write and read units of each operation: the
  items :class:`channel_server.handlers.store.Store` writes, captured by a recording
  client (``plan_figures.measure``) and sized by DynamoDB's rules;
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

import dataclasses
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import args as component_args
from .handlers import handoff, protocol, spec, store
from .handlers.app import NO_CHANNEL
from .handlers.sender import MAX_ATTEMPTS
from .plan_figures import (EXAMPLE_CHANNEL_ID, EXAMPLE_CONNECTION_ID, EXAMPLE_NOW, REQUESTS, Fact, Index, Units,
                           grants, indexes, item_size, load_facts, measure, publish_requests, query_read_units,
                           write_units)


# --- the workload and the settings ------------------------------------------------------------

#: The management API's round trip from Lambda, assumed: bench/fanout.py's default (not measured on AWS).
DEFAULT_ROUND_TRIP_MS = 20.0
#: A DynamoDB or SQS request's round trip from Lambda, assumed (not measured on AWS).
DEFAULT_DYNAMODB_MS = 10.0
#: Hours in an average month (365 × 24 / 12).
HOURS_PER_MONTH = 730.0
#: The functions whose invocations the model counts: the routes, the fan-out, the heartbeat.
FUNCTIONS: tuple[spec.Function, ...] = (*spec.ROUTES, spec.FANOUT, spec.HEARTBEAT)
#: Each of them by name (``spec.Function.function``).
FUNCTION: Mapping[str, spec.Function] = {function.function: function for function in FUNCTIONS}


def client_ping_default() -> float:
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


# --- figures as the plan words them --------------------------------------------------------

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
    return significant(value)


def significant(value: float) -> str:
    """Three significant digits, never in exponent notation (0.0000243, not 2.43e-05)."""
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"


if __name__ == "__main__":
    from .plan_report import main

    sys.exit(main())
