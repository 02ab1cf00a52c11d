"""Local mode's capacity: N WebSocket clients in one channel.

    python bench/local_capacity.py [--clients 1000] [--in-flight 50]

Starts ``python -m channel_server.local --port 0`` as a user would (its own
process tree), then from this process: connects N clients, has them join one
channel with ``--in-flight`` joins outstanding at a time, has one publish and
waits until the other N-1 received it, and closes all N at once. Prints join
latency (p50, p95), failed joins, the publish's delivery time, the
``$disconnect`` outcomes local mode logged, and the resident memory of local
mode's whole process tree (after the joins, and its peak as sampled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import ROOT, local_mode, process_tree  # noqa: E402


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB."""
    total = 0
    for current in process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(clients: int, in_flight: int) -> None:
    with local_mode() as (process, url, log):
        rss, peak = await measure(process, url, clients, in_flight)
    # local mode has stopped: its log holds every $disconnect
    text = "".join(log)
    ok = len(re.findall(r"^\S+ disconnect \S+ \d+$", text, re.MULTILINE))
    failed = len(re.findall(r"disconnect \S+ \d+: integration failed", text))
    print(f"$disconnect: {ok} succeeded, {failed} failed")
    print(f"local mode's process tree: {rss:.0f} MB resident after the joins, peak {peak:.0f} MB sampled")


async def measure(process: subprocess.Popen, url: str, clients: int, in_flight: int) -> tuple[float, float]:
    """Connect, join, publish, close; returns local mode's resident memory
    after the joins and its sampled peak, in MB."""
    sockets = [await websockets.connect(url, max_size=None, open_timeout=60) for _ in range(clients)]
    print(f"{clients} clients connected")
    peak = tree_rss_mb(process.pid)
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    failures: list[str] = []

    async def join(ws) -> None:
        async with gate:
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "join", "channelId": "capacity"}))
            reply = json.loads(await ws.recv())
            latencies.append(time.perf_counter() - started)
            if reply.get("type") != "joinSuccess":
                failures.append(str(reply)[:120])

    started = time.perf_counter()
    await asyncio.gather(*(join(ws) for ws in sockets))
    joined_in = time.perf_counter() - started
    rss = tree_rss_mb(process.pid)
    peak = max(peak, rss)
    print(f"joins: {len(latencies) - len(failures)} of {clients} succeeded in {joined_in:.1f} s "
          f"({in_flight} in flight); p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms")
    for failure in failures[:3]:
        print("  failed:", failure)

    publisher, audience = sockets[0], sockets[1:]
    started = time.perf_counter()
    await publisher.send(json.dumps({"type": "publish", "data": "to everyone"}))

    async def receive(ws) -> bool:
        frame = json.loads(await ws.recv())
        return frame.get("type") == "message"

    received = await asyncio.gather(*(receive(ws) for ws in audience))
    reply = json.loads(await publisher.recv())
    print(f"publish: {sum(received)} of {len(audience)} received it in "
          f"{(time.perf_counter() - started) * 1000:.0f} ms; publisher got {reply.get('type')}")
    peak = max(peak, tree_rss_mb(process.pid))

    await asyncio.gather(*(ws.close() for ws in sockets))
    print(f"closed all {clients} at once")
    return rss, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=50)
    options = parser.parse_args()
    os.chdir(ROOT)
    asyncio.run(run(options.clients, options.in_flight))


if __name__ == "__main__":
    main()
