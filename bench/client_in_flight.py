"""Requests in flight: one ChannelClient publishing N messages, through local mode.

    python bench/client_in_flight.py [--publishes 200] [--latency-ms 20] [--in-flight 1 16]

Starts local mode (its own process tree) with ``--management-latency-ms``
standing in for the round trip to AWS, joins a publisher and one listener to
a channel, and for each ``--in-flight`` value has the publisher send
``--publishes`` messages through ``ChannelClient.publish`` calls made all at
once (the client keeps at most that many requests in flight, pairing replies
by ``requestId``). Prints publishes a second and the time to the last reply
for each value; the first value (1: one request at a time, as before request
ids) is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _local import local_mode  # noqa: E402
from channel_server.client import ChannelClient  # noqa: E402


async def run(publishes: int, latency_ms: float, in_flights: list[int]) -> None:
    with local_mode({}, "--management-latency-ms", str(latency_ms)) as (_, url, _log):
        print(f"{publishes} publishes to a channel of 2, management latency {latency_ms:g} ms")
        baseline = None
        for in_flight in in_flights:
            async with ChannelClient(url, max_in_flight=in_flight) as publisher, ChannelClient(url) as listener:
                await publisher.join("bench")
                await listener.join("bench")
                started = time.perf_counter()
                await asyncio.gather(*(publisher.publish(n) for n in range(publishes)))
                elapsed = time.perf_counter() - started
                received = 0
                async for _ in listener:  # every message arrived, once
                    received += 1
                    if received == publishes:
                        break
            rate = publishes / elapsed
            baseline = baseline or rate
            print(f"max_in_flight={in_flight:3d}: {elapsed * 1000:7.0f} ms, {rate:6.0f} publishes/s "
                  f"({rate / baseline:.1f}x the first)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 16])
    options = parser.parse_args()
    asyncio.run(run(options.publishes, options.latency_ms, options.in_flight))


if __name__ == "__main__":
    main()
