"""Fan-out: one publish to a channel of N members, through local mode.

    python bench/fanout.py [--members 200 500 1000] [--publishes 5] [--latency-ms 20] [--in-flight 64]

Starts local mode (its own process tree) with ``--management-latency-ms``
standing in for the round trip to AWS and ``postsInFlight`` from
``--in-flight``, connects the largest N + 1 WebSocket clients, and for each N
(ascending: more clients join the same channel) has one client publish
``--publishes`` times. Prints, for each N, the time from sending the frame to
the publisher's reply and to the last member's delivery (p50 and p95), the
floor the round trip sets when the publish posts to every member itself
(ceil(N / posts in flight) round trips, one after another) and the last
delivery's p50 against it, local mode's CPU per
publish (its whole process tree), and the baseline measured in the same run:
the same signed posts to the same management API one at a time (100 posts
timed, scaled to N), and the speed-up over it. For each N it also times the
query a publish makes, alone, against the embedded DynamoDB.

Client, local mode and handlers share this machine. The members are the bare
clients of ``_audience`` (permessage-deflate offered as ``websockets``
offers it), which stamp each message as its frame is read: 1,000 of them
take 35-45 ms of this process's CPU a publish, 1,000 ``websockets`` clients
took 65-75 ms, from the cores local mode runs on. The publisher is a
``websockets`` client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets  # noqa: E402

from _audience import Member, join_members  # noqa: E402
from _local import local_mode, tree_cpu_seconds  # noqa: E402
from channel_server.handlers import spec  # noqa: E402

JOINS_IN_FLIGHT = 50
BASELINE_POSTS = 100


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def join_all(sockets: list, channel: str) -> None:
    """Join ``websockets`` clients (bench/server_publish.py's) to ``channel``."""
    gate = asyncio.Semaphore(JOINS_IN_FLIGHT)

    async def join(ws) -> None:
        async with gate:
            await ws.send(json.dumps({"type": "join", "channelId": channel}))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "joinSuccess", reply

    await asyncio.gather(*(join(ws) for ws in sockets))


async def one_by_one(management_url: str, target: str, member: Member) -> float:
    """Seconds per post when posting one at a time (the loop a fan-out replaces)."""
    from channel_server.handlers.sender import management_client

    api = management_client(management_url, posts_in_flight=1)
    payload = b'{"type":"message","channelId":"bench","senderId":"baseline","data":0}'

    def loop() -> float:
        started = time.perf_counter()
        for _ in range(BASELINE_POSTS):
            assert api.post(target, payload)[0] == 200
        return (time.perf_counter() - started) / BASELINE_POSTS

    async def receive_all() -> None:
        for _ in range(BASELINE_POSTS):
            await member.next_message()

    drain = asyncio.ensure_future(receive_all())
    per_post = await asyncio.get_running_loop().run_in_executor(None, loop)
    await drain
    return per_post


def query_time(log: list[str], channel: str) -> float:
    """Seconds the embedded DynamoDB takes to answer the query a publish makes
    for ``channel`` (the handlers' own Store and client; median of 3)."""
    import re

    from channel_server.handlers import dynamodb, spec
    from channel_server.handlers.store import Store

    found = re.search(r"DynamoDB:\s+(\S+) \(table (\S+)\)", "".join(log))
    assert found, "local mode's log names its DynamoDB endpoint and table"
    endpoint, table = found.groups()
    client = dynamodb.client({**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": endpoint}, max_attempts=1, pool_size=1,
                             read_timeout=60)
    store = Store(client, table, spec.CHANNEL_INDEX)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        store.members(channel)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def run(sizes: list[int], publishes: int, latency_ms: float, in_flight: int) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    config = {"postsInFlight": in_flight}
    with local_mode(config, "--management-latency-ms", str(latency_ms)) as (process, url, log):
        publisher = await websockets.connect(url, max_size=None, open_timeout=60)
        await publisher.send(json.dumps({"type": "join", "channelId": "bench"}))
        assert json.loads(await publisher.recv())["type"] == "joinSuccess"
        members = [await Member.connect(url) for _ in range(max(sizes))]
        management_url = url.replace("ws://", "http://", 1)
        joined = 0
        per_post = None
        print(f"postsInFlight={in_flight}, management latency {latency_ms:g} ms")
        for size in sorted(sizes):
            await join_members(members[joined:size], "bench", JOINS_IN_FLIGHT)
            joined = size
            audience = members[:size]
            replies, lasts = [], []
            queued = 0  # members handed to the fan-out queue (beyond inlineFanoutLimit)
            cpu = tree_cpu_seconds(process.pid)
            for number in range(publishes):
                started = time.perf_counter()
                await publisher.send(json.dumps({"type": "publish", "data": {"n": number, "pad": "x" * 100}}))
                reply = json.loads(await publisher.recv())
                replied = time.perf_counter()
                if reply["type"] != "publishSuccess":  # not everybody will get it: do not wait for them
                    raise RuntimeError(f"members={size}, publish {number}: {reply}")
                queued = max(queued, reply.get("queued", 0))
                arrivals = [await member.next_message() for member in audience]
                assert all(frame["type"] == "message" and frame["data"]["n"] == number for _, frame in arrivals)
                replies.append(replied - started)
                lasts.append(max(arrived for arrived, _ in arrivals) - started)
            cpu = (tree_cpu_seconds(process.pid) - cpu) / publishes
            if per_post is None:
                while len(_connection_ids(log)) < 2:  # local mode's log of the connects is on its way
                    await asyncio.sleep(0.05)
                target = _connection_ids(log)[1]  # members[0]: the second client to connect
                per_post = await one_by_one(management_url, target, members[0])
            baseline = per_post * size
            floor = math.ceil(size / in_flight) * latency_ms / 1000
            query = await asyncio.get_running_loop().run_in_executor(None, query_time, log, "bench")
            print(f"members={size:5d}: reply p50 {percentile(replies, .5) * 1000:6.0f} ms p95 "
                  f"{percentile(replies, .95) * 1000:6.0f} ms; "
                  f"last delivery p50 {percentile(lasts, .5) * 1000:6.0f} ms "
                  f"p95 {percentile(lasts, .95) * 1000:6.0f} ms; one by one {baseline * 1000:7.0f} ms "
                  f"({per_post * 1000:.1f} ms/post): {baseline / statistics.median(lasts):5.1f}x"
                  + (f"; {queued} through the fan-out queue" if queued else "")
                  + (f"\n{'':15s}floor (ceil({size} / {in_flight}) round trips) {floor * 1000:.0f} ms: last delivery "
                     f"p50 {percentile(lasts, .5) / floor:.2f}x it" if floor and not queued else "")
                  + f"\n{'':15s}local mode's CPU a publish, its whole process tree: {cpu * 1000:.0f} ms"
                  + f"\n{'':15s}of which the embedded DynamoDB's query of the channel, alone: {query * 1000:.0f} ms")
        await publisher.close()
        await asyncio.gather(*(member.close() for member in members))


def _connection_ids(log: list[str]) -> list[str]:
    """Connection ids in the order local mode accepted them (its log's
    ``connect ID`` lines): clients are never told their own id."""
    return [line.split()[2] for line in list(log) if len(line.split()) == 3 and line.split()[1] == "connect"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--publishes", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--in-flight", type=int, default=spec.DEFAULT_POSTS_IN_FLIGHT)
    options = parser.parse_args()
    asyncio.run(run(options.members, options.publishes, options.latency_ms, options.in_flight))


if __name__ == "__main__":
    main()
