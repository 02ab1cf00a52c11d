"""A channel spread over several partitions of the channel index (``channel_index_shards``):
every member found once, a publish delivered once to each, the rows spread over every shard.

- Local mode serving a Pulumi program that declares a sharded ChannelServer: forty members
  of one channel, a publish handed partly to the fan-out function, each other member's copy
  arriving exactly once, and the membership rows carrying ``channelShard`` over all shards.
- The store on the sharded table as the component declares it: members listed once after
  joins that move connections between channels, and the documented caveat, a membership
  written without shards (one shard) is not listed until its connection joins again.
"""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from channel_server.handlers import spec
from channel_server.handlers.store import Store, channel_shard
from channel_server.local.placeholders import LOCAL_CREDENTIALS, REGION
from channel_server.local.server import running
from support.table import create_test_table, rows

SHARDS = 4
MEMBERS = 40
INLINE = 10

SHARDED_PROGRAM = f"""
from channel_server import ChannelServer

ChannelServer("sharded", {{"channel_index_shards": {SHARDS}}})
"""


def sharded_project(folder: Path) -> Path:
    """A Pulumi project whose program declares a ChannelServer with a sharded channel index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Pulumi.yaml").write_text("name: sharded\nruntime: python\n")
    (folder / "__main__.py").write_text(SHARDED_PROGRAM)
    return folder


def next_frame(ws: Any) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=60))


def test_local_mode_delivers_a_sharded_channels_publish_once_to_every_member(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    channel = f"stadium-{uuid.uuid4().hex[:8]}"
    with running(port=0, program=sharded_project(tmp_path / "sharded"), inline_fanout_limit=INLINE) as server:
        assert server.world is not None
        environment = server.world.routes["publish"].environment
        assert (environment[spec.ENV_INDEX_NAME], environment[spec.ENV_CHANNEL_INDEX_SHARDS]) == (
            spec.CHANNEL_SHARD_INDEX, str(SHARDS))
        with contextlib.ExitStack() as opened:
            members = [opened.enter_context(connect(server.url, open_timeout=30, compression=None))
                       for _ in range(MEMBERS)]
            for n, ws in enumerate(members):
                ws.send(json.dumps({"type": "join", "channelId": channel, "requestId": f"j{n}"}))
                assert next_frame(ws)["type"] == "joinSuccess"

            members[0].send(json.dumps({"type": "publish", "data": "goal", "requestId": "p"}))
            # the reply: the members beyond the inline limit went to the fan-out function
            assert next_frame(members[0]) == {"type": "publishSuccess", "queued": MEMBERS - 1 - INLINE,
                                              "requestId": "p"}
            copies: Counter[str] = Counter()
            for ws in members[1:]:
                frame = next_frame(ws)
                assert (frame["type"], frame["channelId"], frame["data"]) == ("message", channel, "goal"), frame
                copies[frame["messageId"]] += 1
            assert list(copies.values()) == [MEMBERS - 1]  # one message, a copy to each
            # every member has its copy; a round trip on each socket: a second copy would come before the pong
            for n, ws in enumerate(members):
                ws.send(json.dumps({"type": "ping", "requestId": f"after-{n}"}))
            for n, ws in enumerate(members):
                assert next_frame(ws) == {"type": "pong", "requestId": f"after-{n}"}  # the publisher's too: none to it

            client = boto3.client("dynamodb", endpoint_url=server.dynamodb_endpoint, region_name=REGION,
                                  aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
            table = rows(client, server.table_name)
    memberships = [row for row in table if row[spec.CHANNEL_ID] == channel]
    assert len(memberships) == MEMBERS
    for row in memberships:
        assert row[spec.CHANNEL_SHARD] == channel_shard(channel, row[spec.CONNECTION_ID], SHARDS)
    spread = Counter(int(row[spec.CHANNEL_SHARD].rsplit("#", 1)[1]) for row in memberships)
    assert set(spread) == set(range(SHARDS)), spread  # 40 random ids: every shard has some
    # only membership rows are in the sharded index: no state row carries the attribute
    states = [row for row in table if row[spec.CHANNEL_ID].startswith(spec.STATE_ROW_PREFIX)
              and row.get(spec.CURRENT_CHANNEL) == channel]
    assert len(states) == MEMBERS and not any(spec.CHANNEL_SHARD in row for row in states)


# --- the store, on the sharded table -------------------------------------------------------------

@pytest.fixture(scope="module")
def sharded_definition() -> Any:
    """The table as the component declares it with a sharded channel index."""
    from channel_server import ChannelServer
    from channel_server.mocks import deploy
    from channel_server.resource_types import TABLE

    return deploy(lambda: ChannelServer("test", {"channel_index_shards": SHARDS})).one(TABLE)


@pytest.fixture
def component_sharded_table(dynamodb: Any, sharded_definition: Any) -> Iterator[str]:
    indexes = {index["name"]: [key["attributeName"] for key in index["keySchemas"] if key["keyType"] == "HASH"]
               for index in sharded_definition.inputs["globalSecondaryIndexes"]}
    assert indexes.get(spec.CHANNEL_SHARD_INDEX) == [spec.CHANNEL_SHARD] and spec.CHANNEL_INDEX not in indexes
    name = create_test_table(dynamodb, sharded_definition)
    yield name
    dynamodb.delete_table(TableName=name)


def sharded_store(dynamodb: Any, table: str) -> Store:
    return Store(dynamodb, table, spec.CHANNEL_SHARD_INDEX, index_shards=SHARDS)


def test_a_sharded_store_lists_each_member_once_after_moves(dynamodb: Any, component_sharded_table: str) -> None:
    store = sharded_store(dynamodb, component_sharded_table)
    ids = [f"conn-{n:02d}=" for n in range(24)]
    for connection_id in ids:
        store.join(connection_id, "lobby", f"s-{connection_id}")
    # a third move to the kitchen; of them, half come back to the lobby; one joins the lobby again
    for connection_id in ids[::3]:
        store.join(connection_id, "kitchen", f"s-{connection_id}")
    for connection_id in ids[::6]:
        store.join(connection_id, "lobby", f"s-{connection_id}")
    store.join(ids[1], "lobby", f"s-{ids[1]}")

    kitchen = [connection_id for n, connection_id in enumerate(ids) if n % 3 == 0 and n % 6 != 0]
    lobby = [connection_id for connection_id in ids if connection_id not in kitchen]
    for channel, expected in (("lobby", lobby), ("kitchen", kitchen)):
        listed = store.members(channel)
        assert len(listed) == len(set(listed)), f"{channel}: listed twice: {listed}"
        assert sorted(listed) == sorted(expected)
    # the lobby's members spread over every shard, as their ids' hash puts them
    assert {zlib.crc32(connection_id.encode()) % SHARDS for connection_id in lobby} == set(range(SHARDS))
    memberships = [row for row in rows(dynamodb, component_sharded_table) if not row[spec.CHANNEL_ID].startswith("$")]
    assert len(memberships) == len(ids)
    assert all(row[spec.CHANNEL_SHARD] == channel_shard(row[spec.CHANNEL_ID], row[spec.CONNECTION_ID], SHARDS)
               for row in memberships)


def test_a_membership_written_under_one_shard_is_not_listed_until_it_joins_again(
        dynamodb: Any, component_sharded_table: str) -> None:
    sharded = sharded_store(dynamodb, component_sharded_table)
    one_shard = Store(dynamodb, component_sharded_table, spec.CHANNEL_INDEX, index_shards=1)  # writes rows as before
    sharded.join("new=", "lobby", "s-new")
    one_shard.join("old=", "lobby", "s-old")
    (old_row,) = [row for row in rows(dynamodb, component_sharded_table)
                  if row[spec.CONNECTION_ID] == "old=" and row[spec.CHANNEL_ID] == "lobby"]
    assert spec.CHANNEL_SHARD not in old_row

    # the documented caveat (docs/architecture.md): not in the sharded index, so not listed
    assert sharded.members("lobby") == ["new="]
    # found again once it joins again, in the same channel
    sharded.join("old=", "lobby", "s-old")
    assert sorted(sharded.members("lobby")) == ["new=", "old="]


def test_local_mode_refuses_a_table_that_exists_without_the_declared_index() -> None:
    from channel_server.local.program import from_component

    # one shard, then four, under one table name: the first server's table has no byChannelShard
    name = f"reshard-{uuid.uuid4().hex[:8]}"
    with running(port=0, world=from_component("dev", args={"table_name": name})):
        pass
    with pytest.raises(OSError, match=rf"the table {name} in the DynamoDB at .* exists without the index "
                                      rf"{spec.CHANNEL_SHARD_INDEX} the program declares \(was channelIndexShards "
                                      r"changed\?\): delete the table, or serve another table name"):
        with running(port=0, world=from_component("dev", args={"table_name": name, "channel_index_shards": SHARDS})):
            pass
