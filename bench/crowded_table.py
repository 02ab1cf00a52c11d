"""A publish to a small channel, alone in local mode and beside a crowd.

    python bench/crowded_table.py [--members 10] [--others 5000] [--publishes 20]

Two parts, one run:

1. Through local mode (its own process tree): ``--members`` clients and a
   publisher join one channel; the publisher publishes ``--publishes`` times
   (reply and last delivery, p50 and p95; local mode's CPU per publish, its
   whole process tree). Then ``--others`` more clients connect and join
   another channel, and the same publishes are timed again.
2. The baseline, in this process: the embedded DynamoDB with the component's
   table, the two reads a publish makes (the publisher's state row, the
   channel's members through the channel index) with the same crowd beside
   the channel and without, each answered by local mode's index of values
   and by moto's own query (``QUERIES_BY_KEY`` off); and one listing of
   every live connection (a heartbeat run's, the heartbeat index's ten
   shards). Median of 5 each.

The members and the crowd are the bare clients of ``_audience``, which take
little CPU from local mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets  # noqa: E402

from _audience import Member, join_members  # noqa: E402
from _local import local_mode, tree_cpu_seconds  # noqa: E402
from local_capacity import tree_rss_mb  # noqa: E402

JOINS_IN_FLIGHT = 50


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def publishes(pid: int, publisher: Any, members: list[Member], count: int) -> str:
    """Time ``count`` publishes to ``members``; one line of figures."""
    replies, lasts = [], []
    cpu = tree_cpu_seconds(pid)
    for number in range(count):
        started = time.perf_counter()
        await publisher.send(json.dumps({"type": "publish", "data": {"n": number}}))
        reply = json.loads(await publisher.recv())
        replies.append(time.perf_counter() - started)
        assert reply["type"] == "publishSuccess", reply
        arrivals = [await member.next_message() for member in members]
        assert all(frame["type"] == "message" for _, frame in arrivals)
        lasts.append(max(arrived for arrived, _ in arrivals) - started)
    cpu = (tree_cpu_seconds(pid) - cpu) / count
    return (f"reply p50 {percentile(replies, .5) * 1000:5.1f} ms p95 {percentile(replies, .95) * 1000:5.1f} ms; "
            f"last delivery p50 {percentile(lasts, .5) * 1000:5.1f} ms p95 {percentile(lasts, .95) * 1000:5.1f} ms; "
            f"local mode's CPU {cpu * 1000:5.1f} ms a publish")


async def through_local_mode(members: int, others: int, count: int) -> None:
    with local_mode() as (process, url, _):
        publisher = await websockets.connect(url, open_timeout=60)
        await publisher.send(json.dumps({"type": "join", "channelId": "small"}))
        assert json.loads(await publisher.recv())["type"] == "joinSuccess"
        audience = [await Member.connect(url) for _ in range(members)]
        await join_members(audience, "small", JOINS_IN_FLIGHT)
        await publishes(process.pid, publisher, audience, 3)  # warm: the functions' first calls
        alone = await publishes(process.pid, publisher, audience, count)
        print(f"{members} members, nobody else:     {alone}")
        crowd = [await Member.connect(url) for _ in range(others)]
        await join_members(crowd, "crowd", JOINS_IN_FLIGHT)
        beside = await publishes(process.pid, publisher, audience, count)
        print(f"{members} members, {others:,} others: {beside}")
        clients = members + others + 1
        print(f"local mode's process tree: {tree_rss_mb(process.pid):.0f} MB resident with {clients:,} clients")
        await publisher.close()
        await asyncio.gather(*(member.close() for member in audience + crowd))


def embedded_reads(members: int, others: int) -> None:
    """The baseline: the publish's reads and a heartbeat listing in this process."""
    import boto3

    from channel_server import ChannelServer
    from channel_server.handlers import dynamodb as handlers_dynamodb
    from channel_server.handlers import spec
    from channel_server.handlers.store import Store, heartbeat_shard
    from channel_server.local import dynamodb_index as embedded
    from channel_server.local.dynamodb import EmbeddedDynamoDB, create_table
    from channel_server.mocks import deploy
    from channel_server.resource_types import TABLE

    credentials = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1"}
    definition = deploy(lambda: ChannelServer("bench")).one(TABLE)
    with EmbeddedDynamoDB() as server:
        writer = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        create_table(writer, "bench", dict(definition.inputs))
        client = handlers_dynamodb.client({**credentials, "AWS_ENDPOINT_URL_DYNAMODB": server.endpoint},
                                          max_attempts=1, pool_size=1, read_timeout=120)
        store = Store(client, "bench", spec.CHANNEL_INDEX, heartbeats=True)

        def join(channel: str, count: int) -> None:
            expires = {"N": str(int(time.time()) + 3600)}
            items = []
            for number in range(count):
                connection_id = f"{channel}{number:05}"
                items.append({spec.CONNECTION_ID: {"S": connection_id},
                              spec.CHANNEL_ID: {"S": spec.STATE_ROW_PREFIX + connection_id},
                              spec.CURRENT_CHANNEL: {"S": channel}, spec.SENDER_ID: {"S": "s"},
                              spec.VERSION: {"N": "1"}, spec.EXPIRES_AT: expires,
                              spec.HEARTBEAT_SHARD: {"N": str(heartbeat_shard(connection_id))}})
                items.append({spec.CONNECTION_ID: {"S": connection_id}, spec.CHANNEL_ID: {"S": channel},
                              spec.SENDER_ID: {"S": "s"}, spec.EXPIRES_AT: expires})
            for start in range(0, len(items), 25):
                writer.batch_write_item(RequestItems={"bench": [{"PutRequest": {"Item": item}}
                                                                for item in items[start:start + 25]]})

        def median_ms(read: Callable[[], Any]) -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                read()
                times.append(time.perf_counter() - started)
            return statistics.median(times) * 1000

        def publish_reads() -> None:
            assert store.membership("small00000") is not None
            assert len(store.members("small")) == members

        def measure(label: str) -> None:
            figures = []
            for by_key in (True, False):
                embedded.QUERIES_BY_KEY = by_key
                figures.append(f"{median_ms(publish_reads):6.1f} ms" + (
                    f" (listing {len(store.connections()):,} connections: {median_ms(store.connections):6.1f} ms)"))
            embedded.QUERIES_BY_KEY = True
            print(f"  {label}: local mode's index {figures[0]}; moto's own query {figures[1]}")

        print(f"The embedded DynamoDB, in this process: a publish's two reads (the state row, {members} members)")
        join("small", members)
        measure("nobody else      ")
        join("crowd", others)
        measure(f"{others:,} others     ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--others", type=int, default=5000)
    parser.add_argument("--publishes", type=int, default=20)
    options = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    print("Through local mode:")
    asyncio.run(through_local_mode(options.members, options.others, options.publishes))
    embedded_reads(options.members, options.others)


if __name__ == "__main__":
    main()
