"""Local mode's embedded DynamoDB: what a publish reads costs as much beside
5,000 other connections as in an empty table.

A publish reads its sender's state row (GetItem) and its channel's members
(the store's Query of the channel index). moto answered an index query by
checking every item of the table: a publish to 10 members took 36 ms alone
and 441 ms beside 5,000 connections in another channel. The cost here is
counted, not timed: the Python calls the embedded server's threads make to
answer those requests (``threading.setprofile``), the same on any machine and
under any load. moto's own query, answering the same requests, is the control
that shows the count grows with the table when the work does.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import pytest

from channel_server.handlers import spec
from support.aws import FAKE_CREDENTIALS, REGION
from support.table import member_items

#: A channel index keyed on an attribute of its own ("<channel>#<n>"), as a sharded one is.
SHARD_INDEX, SHARD = spec.CHANNEL_SHARD_INDEX, spec.CHANNEL_SHARD  # the conftest sharded_table's third index
MEMBERS, OTHERS, SHARDS = 10, 5_000, 4


def server_calls(embedded: Any, work: Callable[[Any], None]) -> int:
    """Python calls made in moto's code and local mode's layer over it
    (local/dynamodb.py) to answer what ``work`` asks, through a new client of
    the handlers' own (new connections: the server answers each on a thread
    started after the count began). Only the answering is counted: each
    request's thread may still be closing its socket when the next begins."""
    from channel_server.handlers import dynamodb as handlers_dynamodb

    environ = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": embedded.endpoint, "AWS_REGION": REGION,
               "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
               "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"]}
    client = handlers_dynamodb.client(environ, max_attempts=1, pool_size=1)
    counted = 0
    here = threading.get_ident()
    answering = (f"{os.sep}moto{os.sep}", f"{os.sep}local{os.sep}dynamodb.py")

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal counted
        if event == "call" and threading.get_ident() != here and any(
                part in frame.f_code.co_filename for part in answering):
            counted += 1

    threading.setprofile(count)
    try:
        work(client)
    finally:
        threading.setprofile(None)
    return counted




def join(dynamodb: Any, table: str, channel: str, count: int, prefix: str) -> list[str]:
    """``count`` connections joined to ``channel`` as the store lays them out
    (state row with its heartbeat shard, membership row with its channel shard)."""
    from channel_server.handlers import spec
    from channel_server.handlers.store import heartbeat_shard

    expires = int(time.time()) + 3600
    ids = [f"{prefix}{n:05}" for n in range(count)]
    items = []
    for number, connection_id in enumerate(ids):
        state, membership = member_items(connection_id, channel, "sender", expires)
        state[spec.HEARTBEAT_SHARD] = {"N": str(heartbeat_shard(connection_id))}
        membership[SHARD] = {"S": f"{channel}#{number % SHARDS}"}
        items += [state, membership]
    for start in range(0, len(items), 25):
        dynamodb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item}}
                                                        for item in items[start:start + 25]]})
    return ids


def publish_reads(table: str, index: str, publisher: str) -> Callable[[Any], None]:
    """What a publish to "small" reads: the publisher's state row, then the
    channel's live members through ``index`` (every shard of it, for the
    sharded one), as the store queries them."""
    from channel_server.handlers import spec
    from channel_server.handlers.store import Store

    def read(client: Any) -> None:
        store = Store(client, table, spec.CHANNEL_INDEX)
        assert store.membership(publisher) is not None
        if index == spec.CHANNEL_INDEX:
            assert len(store.members("small")) == MEMBERS
            return
        found = []
        for shard in range(SHARDS):  # the store's query shape (Store._live_ids), one shard at a time
            page = client.query(
                TableName=table, IndexName=SHARD_INDEX, KeyConditionExpression="#h = :h",
                FilterExpression="#e > :now", ProjectionExpression="#k",
                ExpressionAttributeNames={"#h": SHARD, "#e": spec.EXPIRES_AT, "#k": spec.CONNECTION_ID},
                ExpressionAttributeValues={":h": {"S": f"small#{shard}"}, ":now": {"N": str(int(time.time()))}})
            found += page["Items"]
        assert len(found) == MEMBERS

    return read


@pytest.mark.parametrize("index", ["channel", "channelShard"])
def test_a_publish_reads_as_much_beside_5000_connections_as_alone(
        embedded_dynamodb: Any, dynamodb: Any, sharded_table: str, index: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from channel_server.handlers import spec
    from channel_server.local import dynamodb_index as embedded

    index_name = spec.CHANNEL_INDEX if index == "channel" else SHARD_INDEX
    publisher, *_ = join(dynamodb, sharded_table, "small", MEMBERS, "member")
    reads = publish_reads(sharded_table, index_name, publisher)
    server_calls(embedded_dynamodb, reads)  # the table's index of values is built by the first query

    alone = server_calls(embedded_dynamodb, reads)
    join(dynamodb, sharded_table, "crowd", OTHERS, "other")
    beside = server_calls(embedded_dynamodb, reads)
    monkeypatch.setattr(embedded, "QUERIES_BY_KEY", False)
    by_moto = server_calls(embedded_dynamodb, reads)

    assert beside == alone
    # the control: moto's own query of the same channel checks every one of the 10,010 rows
    assert by_moto > beside + 2 * OTHERS
