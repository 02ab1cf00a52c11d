"""Fan-out benchmark: one publish to a channel of N members, through local mode.

    python bench/fanout.py [--members 200] [--publishes 5] [--latency-ms 20]

Starts local mode on a free loopback port with ``--management-latency-ms``
simulating the round trip to AWS, connects N WebSocket clients to one channel,
and has one of them publish. Prints, per publish, the time from sending the
frame to the publisher's reply and to the last member's delivery, and the
median over all publishes. Client, server and handlers share this machine, so
the figures are an upper bound for the handler's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets  # noqa: E402

from channel_server.local.server import LocalServer  # noqa: E402


async def run(members: int, publishes: int, latency_ms: float) -> None:
    server = LocalServer(port=0, management_latency_ms=latency_ms)
    await server.start()
    try:
        clients = [await websockets.connect(server.url, max_size=None) for _ in range(members + 1)]
        for client in clients:
            await client.send(json.dumps({"type": "join", "channelId": "bench"}))
            assert json.loads(await client.recv())["type"] == "joinSuccess"
        publisher, audience = clients[0], clients[1:]
        replies, lasts = [], []
        for number in range(publishes):
            started = time.perf_counter()
            await publisher.send(json.dumps({"type": "publish", "data": {"n": number, "pad": "x" * 200}}))

            async def receive(client) -> float:
                frame = json.loads(await client.recv())
                assert frame["type"] == "message", frame
                return time.perf_counter()

            delivered = asyncio.gather(*(receive(c) for c in audience))
            reply = json.loads(await publisher.recv())
            replied = time.perf_counter()
            last = max(await delivered)
            assert reply["type"] == "publishSuccess", reply
            replies.append(replied - started)
            lasts.append(last - started)
            print(f"publish {number + 1}: reply {replies[-1] * 1000:.0f} ms, last delivery {lasts[-1] * 1000:.0f} ms")
        print(
            f"members={members} latency={latency_ms:g}ms publishes={publishes}: "
            f"median reply {statistics.median(replies) * 1000:.0f} ms, "
            f"median last delivery {statistics.median(lasts) * 1000:.0f} ms, "
            f"{members / statistics.median(replies):.0f} posts/s"
        )
        for client in clients:
            await client.close()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--publishes", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20)
    options = parser.parse_args()
    asyncio.run(run(options.members, options.publishes, options.latency_ms))


if __name__ == "__main__":
    main()
