"""CPU per post: the handlers' sender against boto3's post_to_connection.

    python bench/post_cpu.py [--posts 5000] [--workers 32]

Starts a sink in another process (a minimal HTTP/1.1 server on a loopback port
that answers every POST 200 at once, so its CPU is not counted), then posts
the same 200-byte frame to it, signed, over keep-alive connections:

- boto3: ``post_to_connection`` in a loop (the baseline; the previous sender);
- boto3, 32 threads: the previous ``post_many`` (boto3 client, 32 threads);
- ours, one by one: :class:`ManagementApi` ``post`` in a loop;
- ours, fan-out: ``Sender.post_many`` with ``--workers`` posts in flight.

The sink answers at once: this measures CPU, not latency (bench/fanout.py does).

Prints, for each, the process CPU time per post (user + system, this process
only) and the wall time, then the ratio of boto3's CPU per post to ours.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channel_server.handlers.sender import Sender, management_client  # noqa: E402

FRAME = b'{"type":"message","channelId":"bench","senderId":"AbCdEfGhIjKlMnOpQrStUv","data":"' + b"x" * 120 + b'"}'
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


class _Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a server's stream transport, which writes
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            line_end = head.find(b"\r\n", start)
            length = int(head[start + 15:line_end if line_end > 0 else None]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: application/json\r\n\r\n")


def _serve(ready: "multiprocessing.Queue[int]") -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Sink, "127.0.0.1", 0)
        ready.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _measure(label: str, posts: int, run) -> float:
    run(min(200, posts))  # warm: connections open, code paths loaded
    cpu, wall = time.process_time(), time.perf_counter()
    run(posts)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:28s} {cpu / posts * 1e6:7.1f} µs CPU per post   {posts / wall:8.0f} posts/s")
    return cpu / posts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=64)
    options = parser.parse_args()
    os.environ.update(CREDENTIALS)

    ready: multiprocessing.Queue[int] = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_serve, args=(ready,), daemon=True)
    sink.start()
    endpoint = f"http://127.0.0.1:{ready.get(timeout=30)}/bench"
    ids = [f"conn{n:011d}=" for n in range(options.posts)]
    try:
        import boto3
        from botocore.config import Config

        boto = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1",
                            config=Config(max_pool_connections=32, retries={"total_max_attempts": 1}))
        baseline = _measure("boto3, one by one", options.posts,
                            lambda n: [boto.post_to_connection(ConnectionId=i, Data=FRAME) for i in ids[:n]])
        with ThreadPoolExecutor(32) as pool:
            _measure("boto3, 32 threads", options.posts,
                     lambda n: list(pool.map(lambda i: boto.post_to_connection(ConnectionId=i, Data=FRAME), ids[:n])))

        api = management_client(endpoint, posts_in_flight=options.workers)
        single = _measure("ours, one by one", options.posts, lambda n: [api.post(i, FRAME) for i in ids[:n]])
        assert api.post(ids[0], FRAME) == (200, None)
        sender = Sender(api, posts_in_flight=options.workers)

        def fan_out(n: int) -> None:
            result = sender.post_many(ids[:n], FRAME)
            assert result.delivered == n, result

        fanned = _measure(f"ours, post_many ({options.workers} in flight)", options.posts, fan_out)
        print(f"boto3 / ours: {baseline / single:.1f}x one by one, {baseline / fanned:.1f}x in the fan-out")
    finally:
        sink.terminate()


if __name__ == "__main__":
    main()
