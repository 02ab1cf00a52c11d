"""What history costs a publish, and what a resume costs: history off (the baseline) and on,
in one run.

    python bench/history_cost.py [--members 1000] [--publishes 20] [--latency-ms 20] [--missed 50]

In one process: the embedded DynamoDB (moto) with the table the component
declares, a management API that answers every post after ``--latency-ms``
(standing in for the round trip to AWS), and two ``ChannelApp``s on that
table, one with history off and one with ``historySeconds`` on, each with the
handlers' own DynamoDB client wrapped to count (and time) the calls the entry
point makes. N + 1 connections join one channel through the join entry point;
then the publisher publishes ``--publishes`` times through each app,
alternately, and the script prints, for each: DynamoDB calls per publish by
operation, the time spent in each, and the publish entry point's time (median
and p90). With history on it also prints the write units the kept row implies
(1 per KB of the item, and 1 for its ``byChannel`` entry, which holds its keys
and ``expiresAt``), and times a resume: ``--missed`` messages published while a
connection was away, then its join with ``since`` against a join without
``since`` and one with ``since`` that missed nothing (5 of each, median).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fanout import percentile  # noqa: E402

HISTORY_SECONDS = 3600
STAGE = "dev"
PAD = "x" * 100
RESUMES = 5
JOINS_IN_FLIGHT = 16


class Counted:
    """A DynamoDB client whose calls are counted and timed by operation
    (``put_item`` -> ``PutItem``): the calls the handlers make, not retries."""

    def __init__(self, client: Any):
        self._client = client
        self.calls: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.items: list[dict] = []  # what PutItem wrote

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        operation = "".join(part.title() for part in name.split("_"))

        def counted(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[operation] += time.perf_counter() - started
                self.calls[operation] += 1
                if operation == "PutItem":
                    self.items.append(kwargs["Item"])

        return counted

    def take(self) -> tuple[Counter[str], dict[str, float]]:
        taken = self.calls, dict(self.seconds)
        self.calls, self.seconds = Counter(), defaultdict(float)
        return taken


class Management:
    """POST /{stage}/@connections/{id}: waits ``latency`` seconds, answers 200
    and counts the post for that id."""

    def __init__(self, latency: float):
        self.posts: Counter[str] = Counter()
        lock = threading.Lock()
        prefix = f"/{STAGE}/@connections/"
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the sender's pool expects

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(latency)
                with lock:
                    api.posts[unquote(self.path[len(prefix):])] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/{STAGE}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def frame_event(route: str, connection_id: str, frame: dict) -> dict:
    return {"requestContext": {"routeKey": route, "eventType": "MESSAGE", "connectionId": connection_id,
                               "requestId": f"bench-{time.monotonic_ns()}", "stage": STAGE},
            "body": json.dumps(frame, separators=(",", ":")), "isBase64Encoded": False}


def call(app: Any, route: str, connection_id: str, frame: dict) -> tuple[dict, float]:
    """The reply frame of entry point ``route`` and its time in seconds."""
    from channel_server.handlers.events import WebSocketEvent

    started = time.perf_counter()
    response = getattr(app, route)(WebSocketEvent(frame_event(route, connection_id, frame)))
    return json.loads(response["body"]), time.perf_counter() - started


def join(app: Any, connection_id: str, channel: str, since: str | None = None) -> tuple[dict, float]:
    frame = {"type": "join", "channelId": channel, **({"since": since} if since is not None else {})}
    reply, seconds = call(app, "join", connection_id, frame)
    assert reply["type"] == "joinSuccess", reply
    return reply, seconds


def item_bytes(item: dict) -> int:
    """DynamoDB's size of ``item``: each attribute's name and value (a number
    about one byte per two significant digits, plus one)."""
    size = 0
    for name, value in item.items():
        ((kind, raw),) = value.items()
        size += len(name.encode("utf-8"))
        size += math.ceil(len(raw.strip("-").lstrip("0").replace(".", "")) / 2) + 1 if kind == "N" else \
            len(raw.encode("utf-8"))
    return size


def write_units(item: dict) -> tuple[int, int]:
    """Write units of keeping ``item``: the table's (1 per KB) and its ``byChannel`` entry's."""
    from channel_server.handlers import spec

    entry = {name: value for name, value in item.items()
             if name in (spec.CONNECTION_ID, spec.CHANNEL_ID, *spec.INDEX_PROJECTED)}
    return math.ceil(item_bytes(item) / 1024), math.ceil(item_bytes(entry) / 1024)


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:6.1f} ms, p90 {percentile(values, .9) * 1000:6.1f} ms"


def by_operation(calls: Counter[str], seconds: dict[str, float], runs: int) -> str:
    return ", ".join(f"{operation} {count / runs:g} ({seconds[operation] / count * 1000:.1f} ms)"
                     for operation, count in sorted(calls.items()))


def run(members: int, publishes: int, latency_ms: float, missed: int) -> None:
    for name, default in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local"),
                          ("AWS_REGION", "us-east-1")):
        os.environ.setdefault(name, default)
    from channel_server import ChannelServer
    from channel_server.handlers import app as handlers, dynamodb, spec
    from channel_server.local.dynamodb import EmbeddedDynamoDB, create_table
    from channel_server.local.server import GC_THRESHOLDS
    from channel_server.mocks import deploy

    table = deploy(lambda: ChannelServer("bench")).one("aws:dynamodb/table:Table")
    with EmbeddedDynamoDB() as server:
        management = Management(latency_ms / 1000)
        environ = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": server.endpoint}
        import boto3

        tables = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name=os.environ["AWS_REGION"])
        create_table(tables, table["name"], dict(table.inputs))
        base = {spec.ENV_TABLE_NAME: table["name"], spec.ENV_INDEX_NAME: spec.CHANNEL_INDEX,
                spec.ENV_MANAGEMENT_ENDPOINT: management.endpoint}
        apps = {}
        for mode, history in (("off", {}), ("on", {spec.ENV_HISTORY_SECONDS: str(HISTORY_SECONDS)})):
            counted = Counted(dynamodb.client(environ, max_attempts=handlers.DYNAMODB_MAX_ATTEMPTS,
                                              pool_size=handlers.DYNAMODB_POOL_CONNECTIONS))
            apps[mode] = (handlers.ChannelApp({**environ, **base, **history}, dynamodb=counted), counted)

        ids = [f"bench{number:010d}=" for number in range(members + 3)]
        publisher, audience, away, writer = ids[0], ids[1:members + 1], ids[members + 1], ids[members + 2]
        on, counted_on = apps["on"]
        with ThreadPoolExecutor(JOINS_IN_FLIGHT) as pool:
            list(pool.map(lambda connection: join(on, connection, "bench"), [publisher, *audience]))
        gc.collect()
        gc.freeze()  # as local mode does once started: what setup built stays out of the collector's walks
        gc.set_threshold(*GC_THRESHOLDS)
        print(f"{members} members besides the publisher, management latency {latency_ms:g} ms, "
              f"{publishes} publishes each")

        # --- publishes, alternately with history off and on ---------------------------------------
        times: dict[str, list[float]] = {"off": [], "on": []}
        calls: dict[str, tuple[Counter[str], defaultdict[str, float]]] = {
            mode: (Counter(), defaultdict(float)) for mode in apps}
        for number in range(publishes + 1):  # the first of each warms the connections up, untimed
            for mode, (app, counted) in apps.items():
                counted.take()
                before = sum(management.posts.values())
                reply, seconds = call(app, "publish", publisher, {"type": "publish", "data": {"n": number, "pad": PAD}})
                assert reply["type"] == "publishSuccess", reply
                assert sum(management.posts.values()) - before == members
                taken, spent = counted.take()
                if number:
                    times[mode].append(seconds)
                    calls[mode][0].update(taken)
                    for operation, value in spent.items():
                        calls[mode][1][operation] += value
        for mode, label in (("off", "history off (baseline)"), ("on", f"history on ({HISTORY_SECONDS} s)")):
            print(f"{label:24s}: publish {ms(times[mode])}; DynamoDB calls per publish: "
                  f"{by_operation(*calls[mode], publishes)}")
        extra = statistics.median(times["on"]) - statistics.median(times["off"])
        print(f"on - off, medians: {extra * 1000:+.1f} ms ({extra / statistics.median(times['off']) * 100:+.1f}%)")
        kept = counted_on.items[-1]
        table_units, index_units = write_units(kept)
        print(f"kept row: {item_bytes(kept)} bytes (a {len(kept[spec.HISTORY_PAYLOAD]['S'])}-byte frame): "
              f"{table_units} write unit(s) + {index_units} for its byChannel entry = {table_units + index_units} "
              f"per publish (history off: 0)")
        for kilobytes in (4, 32, 127):
            bigger = {**kept, spec.HISTORY_PAYLOAD: {"S": "x" * (kilobytes * 1024)}}
            units = write_units(bigger)
            print(f"  a {kilobytes}-KB frame: {units[0]} + {units[1]} = {sum(units)} write units")

        # --- a resume ------------------------------------------------------------------------------
        position = join(on, away, "resume")[0]["position"]
        join(on, writer, "resume")
        join(on, away, "elsewhere")
        for number in range(missed):
            reply, _ = call(on, "publish", writer, {"type": "publish", "data": {"n": number, "pad": PAD}})
            assert reply["type"] == "publishSuccess", reply
        time.sleep(0.01)  # a position in a later millisecond than the last message's id
        latest = join(on, away, "resume")[0]["position"]  # after every missed message: nothing missed since
        resumes: dict[str, tuple[list[float], Counter[str], int]] = {}
        for kind, since in (("without since", None), ("since, nothing missed", latest),
                            (f"since, {missed} missed", position)):
            seconds_each: list[float] = []
            requests: Counter[str] = Counter()
            posts = 0
            for _ in range(RESUMES):
                join(on, away, "elsewhere")
                counted_on.take()
                before = management.posts[away]
                reply, seconds = join(on, away, "resume", since)
                if since is not None:
                    assert reply["resumed"] and reply["replayed"] == (missed if since == position else 0), reply
                seconds_each.append(seconds)
                requests.update(counted_on.take()[0])
                posts += management.posts[away] - before
            resumes[kind] = (seconds_each, requests, posts)
        print(f"resume ({RESUMES} joins each, history on):")
        for kind, (seconds_each, requests, posts) in resumes.items():
            operations = ", ".join(f"{operation} {count / RESUMES:g}" for operation, count in sorted(requests.items()))
            print(f"  join {kind:22s}: median {statistics.median(seconds_each) * 1000:7.1f} ms; "
                  f"DynamoDB calls {operations}; posts {posts / RESUMES:g}")
        base_join = statistics.median(resumes["without since"][0])
        replay = statistics.median(resumes[f"since, {missed} missed"][0]) - base_join
        print(f"  {missed} missed: {replay * 1000:+.0f} ms over a join without since "
              f"({replay / max(missed, 1) * 1000:.1f} ms a missed message)")
        management.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--missed", type=int, default=50)
    options = parser.parse_args()
    from channel_server.handlers import spec

    if not 1 <= options.missed <= spec.MAX_REPLAY_MESSAGES:
        parser.error(f"--missed: from 1 to {spec.MAX_REPLAY_MESSAGES} (a resume replays at most that many)")
    if options.members < 1 or options.publishes < 1:
        parser.error("--members and --publishes: at least 1")
    run(options.members, options.publishes, options.latency_ms, options.missed)


if __name__ == "__main__":
    main()
