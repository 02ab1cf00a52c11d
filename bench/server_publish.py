"""Server publish against a member's publish: one channel of N members, through local mode.

    python bench/server_publish.py [--members 1000] [--publishes 5] [--latency-ms 20]

Starts local mode (its own process tree) serving this repository's program with
``serverPublish`` on and ``--management-latency-ms`` standing in for the round
trip to AWS, joins N + 1 WebSocket clients to one channel, then alternates:
one member publishes (the baseline: it reaches the N others), and a backend
publishes through the signed endpoint with ``channel_server.publish``
(reaching all N + 1). Prints, for each, the time from sending the request to
its answer and to the last member's delivery (p50 and p95), measured in the
same run. Client, local mode and handlers share this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets  # noqa: E402

from _local import local_mode  # noqa: E402
from fanout import join_all, percentile  # noqa: E402


async def deliveries(sockets: list, started: float) -> float:
    """When the last of ``sockets`` got its message, in seconds after ``started``."""
    async def receive(ws) -> float:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "message", frame
        return time.perf_counter()

    return max(await asyncio.gather(*(receive(ws) for ws in sockets))) - started


async def run(members: int, publishes: int, latency_ms: float) -> None:
    from channel_server.publish import Publisher

    with local_mode({"serverPublish": True}, "--management-latency-ms", str(latency_ms)) as (_, url, log):
        found = re.search(r"Publish URL:\s+(\S+)", "".join(log))
        assert found, "local mode's log names the publish URL"
        publish_url = found.group(1)
        publisher = Publisher(publish_url)
        sockets = [await websockets.connect(url, max_size=None, open_timeout=60) for _ in range(members + 1)]
        await join_all(sockets, "bench")
        member, others = sockets[0], sockets[1:]
        times: dict[str, tuple[list[float], list[float]]] = {"member": ([], []), "server": ([], [])}
        print(f"{members} members besides the publishing one, management latency {latency_ms:g} ms")
        for number in range(publishes):
            # the baseline: a member's publish, to the N others
            started = time.perf_counter()
            await member.send(json.dumps({"type": "publish", "data": {"n": number, "pad": "x" * 100}}))
            arrived = asyncio.ensure_future(deliveries(others, started))
            reply = json.loads(await member.recv())
            assert reply["type"] == "publishSuccess", reply
            times["member"][0].append(time.perf_counter() - started)
            times["member"][1].append(await arrived)
            # a backend's publish, to all N + 1
            started = time.perf_counter()
            arrived = asyncio.ensure_future(deliveries(sockets, started))
            outcome = await asyncio.to_thread(publisher.publish, "bench", {"n": number, "pad": "x" * 100})
            assert outcome.failed == 0, outcome
            times["server"][0].append(time.perf_counter() - started)
            times["server"][1].append(await arrived)
        for kind, (answers, lasts) in times.items():
            print(f"{kind:6s} publish: answer p50 {percentile(answers, .5) * 1000:6.0f} ms p95 "
                  f"{percentile(answers, .95) * 1000:6.0f} ms; "
                  f"last delivery p50 {percentile(lasts, .5) * 1000:6.0f} ms "
                  f"p95 {percentile(lasts, .95) * 1000:6.0f} ms")
        ratio = percentile(times["server"][1], .5) / percentile(times["member"][1], .5)
        print(f"server / member, last delivery p50: {ratio:.2f}")
        await asyncio.gather(*(ws.close() for ws in sockets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=20)
    options = parser.parse_args()
    asyncio.run(run(options.members, options.publishes, options.latency_ms))


if __name__ == "__main__":
    main()
