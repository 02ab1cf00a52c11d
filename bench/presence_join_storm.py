"""A join storm with presence: N watching members join one channel at once, through local mode.

    python bench/presence_join_storm.py [--members 100] [--latency-ms 20]

Starts local mode (its own process tree) serving this repository's program
with ``presence`` on (``presenceMaxMembers`` = N) and
``--management-latency-ms`` standing in for the round trip to AWS, connects N
WebSocket clients, then sends all N joins with ``"presence": true`` at once.
Each listed join is announced to the members already watching, so the storm
costs up to N(N-1)/2 ``memberJoined`` posts. Prints the joins, the
announcement frames delivered and the time from the first join sent to the
last joinSuccess, and the same storm with presence off (the baseline), in the
same run. Client, local mode and handlers share this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets  # noqa: E402

from _local import local_mode  # noqa: E402


async def storm(url: str, members: int) -> tuple[int, int, float]:
    """All joins at once: the joins that succeeded, memberJoined frames
    delivered, seconds from the first join to the last joinSuccess."""
    sockets = [await websockets.connect(url, max_size=None, open_timeout=60) for _ in range(members)]
    announced = 0

    async def join(ws) -> bool:
        nonlocal announced
        await ws.send(json.dumps({"type": "join", "channelId": "storm", "presence": True}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "memberJoined":
                announced += 1
            else:
                return frame["type"] == "joinSuccess"

    async def rest(ws) -> None:
        # announcements come before the reply of a later request (they are posted before a join answers)
        nonlocal announced
        await ws.send(json.dumps({"type": "ping", "data": "done"}))
        while (frame := json.loads(await ws.recv()))["type"] != "pong":
            announced += frame["type"] == "memberJoined"

    started = time.perf_counter()
    joined = await asyncio.gather(*(join(ws) for ws in sockets))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(rest(ws) for ws in sockets))
    await asyncio.gather(*(ws.close() for ws in sockets))
    return sum(joined), announced, elapsed


async def run(members: int, latency_ms: float) -> None:
    print(f"{members} members joining one channel at once, management latency {latency_ms:g} ms")
    for presence in (True, False):
        config = {"presence": presence, "presenceMaxMembers": members}
        with local_mode(config, "--management-latency-ms", str(latency_ms)) as (_, url, _log):
            joins, announced, elapsed = await storm(url, members)
        print(f"presence {'on ' if presence else 'off'}: {joins} joins, {announced} announcement frames delivered "
              f"(at most {members * (members - 1) // 2 if presence else 0}), {elapsed * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20)
    options = parser.parse_args()
    asyncio.run(run(options.members, options.latency_ms))


if __name__ == "__main__":
    main()
