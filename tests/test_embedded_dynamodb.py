"""Local mode's embedded DynamoDB (moto's server, local/dynamodb.py and dynamodb_index.py) where it differs from moto's own.

Its transactions are cheap, yet a cancelled one still changes nothing and none
copies a table; a query of an index reads the items of its partition only, from
an index of values that follows every kind of write, and answers as moto's own
query does; the store's own query of an index partition, answered without
moto's query, is answered byte for byte as moto answers it."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from channel_server.handlers import spec
from support.table import rows


def put(connection_id: str, channel_id: str, **extra: str) -> dict:
    return {"connectionId": {"S": connection_id}, "channelId": {"S": channel_id},
            **{name: {"S": value} for name, value in extra.items()}}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(dynamodb: Any, table: str) -> None:
    # GIVEN an item to overwrite, one to delete, and one whose condition fails
    dynamodb.put_item(TableName=table, Item=put("a", "x", note="before"))
    dynamodb.put_item(TableName=table, Item=put("b", "y", note="kept"))
    dynamodb.put_item(TableName=table, Item=put("c", "z", note="guard"))
    before = rows(dynamodb, table)

    # WHEN a transaction overwrites, creates and deletes, and its last part's condition fails
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": put("a", "x", note="after")}},
            {"Put": {"TableName": table, "Item": put("new", "n")}},
            {"Delete": {"TableName": table, "Key": {"connectionId": {"S": "b"}, "channelId": {"S": "y"}}}},
            {"ConditionCheck": {"TableName": table, "Key": {"connectionId": {"S": "c"}, "channelId": {"S": "z"}},
                                "ConditionExpression": "attribute_not_exists(connectionId)"}},
        ])

    # THEN nothing changed, as in DynamoDB
    assert rows(dynamodb, table) == before


def test_a_transaction_that_goes_through_writes_every_part(dynamodb: Any, table: str) -> None:
    dynamodb.put_item(TableName=table, Item=put("b", "y"))

    dynamodb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": put("a", "x", note="written")}},
        {"Delete": {"TableName": table, "Key": {"connectionId": {"S": "b"}, "channelId": {"S": "y"}}}},
    ])

    assert rows(dynamodb, table) == [{"connectionId": "a", "channelId": "x", "note": "written"}]


def test_transactions_copy_no_table(dynamodb: Any, table: str) -> None:
    """moto deep-copied each table per transaction and kept every copy: 51
    tables alive after 50 joins, and each join slower than the last."""
    from moto.dynamodb.models import Table

    def tables_alive() -> int:
        gc.collect()
        return sum(isinstance(thing, Table) for thing in gc.get_objects())

    alive = tables_alive()
    for number in range(50):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": put(f"conn{number}", "lobby")}},
        ])

    assert tables_alive() == alive
    assert len(rows(dynamodb, table)) == 50


def test_rows_read_and_written_are_not_kept_once_answered(dynamodb: Any, table: str) -> None:
    """moto keeps every model object it makes for its dashboard: every row a
    query, scan or write handled stayed alive, so a long-running local mode
    held every row each publish had read."""
    from moto.dynamodb.models import Item

    def items_alive() -> int:
        gc.collect()
        return sum(isinstance(thing, Item) for thing in gc.get_objects())

    for number in range(20):
        dynamodb.put_item(TableName=table, Item=put(f"conn{number}", "lobby"))
    stored = items_alive()
    for _ in range(20):
        assert len(rows(dynamodb, table)) == 20

    assert items_alive() == stored


def test_a_request_that_arrives_later_does_not_overtake_one_that_waits() -> None:
    """A plain lock let a thread that had just been served take the lock again
    ahead of requests already waiting (for seconds, under load, past the
    clients' 2 s read timeout)."""
    import threading

    from channel_server.local.dynamodb import _Serialized

    release = threading.Event()
    served: list[str] = []

    def app(environ: dict, start_response: Any) -> list[bytes]:
        if environ["name"] == "first":
            release.wait(10)  # holds its turn until the waiting request has queued
        served.append(environ["name"])
        return [b""]

    serialized = _Serialized(app)

    def first_then_again() -> None:
        serialized({"name": "first"}, None)
        serialized({"name": "again"}, None)  # at once, as a keep-alive client would

    first = threading.Thread(target=first_then_again)
    first.start()
    waiting = threading.Thread(target=serialized, args=({"name": "waiting"}, None))
    waited = 0
    while serialized._next_ticket < 1:  # "first" has its turn
        assert waited < 10_000, "the first request never arrived"
        threading.Event().wait(0.001)
        waited += 1
    waiting.start()
    while serialized._next_ticket < 2:  # "waiting" has queued
        assert waited < 10_000, "the second request never queued"
        threading.Event().wait(0.001)
        waited += 1
    release.set()
    first.join(10)
    waiting.join(10)

    assert served == ["first", "waiting", "again"]


@pytest.mark.parametrize("service, target", [
    ("dynamodb", "DynamoDB_20120810.GetItem"),
    ("dynamodb", "DynamoDB_20120810.TransactWriteItems"),
    ("sqs", "AmazonSQS.SendMessageBatch"),
    ("sqs", "AmazonSQS.ReceiveMessage"),
])
def test_a_request_goes_to_the_app_moto_itself_would_pick(service: str, target: str) -> None:
    """The shortcut by X-Amz-Target (local/dynamodb.py, _ByTarget) picks the
    app moto's own dispatcher picks for a request signed as the clients sign it."""
    import io

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from channel_server.local.dynamodb import _ByTarget

    def environ() -> dict:
        return {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000", "wsgi.url_scheme": "http",
            "CONTENT_TYPE": "application/x-amz-json-1.0", "CONTENT_LENGTH": "2", "wsgi.input": io.BytesIO(b"{}"),
            "HTTP_X_AMZ_TARGET": target,
            "HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/{service}/aws4_request, "
                                  "SignedHeaders=host;x-amz-date, Signature=0",
        }

    shortcut = _ByTarget(DomainDispatcherApplication(create_backend_app))
    ours = shortcut.service_app(environ())
    theirs = shortcut.dispatcher.get_application(environ())

    assert ours is theirs  # the same app instance: moto created it once, for the backend it chose
    assert shortcut.service_app({**environ(), "HTTP_X_AMZ_TARGET": "Other.Thing"}) is None


# --- index queries read the items their key can match, not the table -------------------------------


def channel_queries(table: str) -> list[dict[str, Any]]:
    """Queries of the channel index as the handlers make them, and then some:
    pages, reverse order, a projection, a filter, a count, an empty channel."""
    from channel_server.handlers import spec

    def of(channel: str, **more: Any) -> dict[str, Any]:
        return {"TableName": table, "IndexName": spec.CHANNEL_INDEX, "KeyConditionExpression": "#c = :c",
                "ExpressionAttributeNames": {"#c": spec.CHANNEL_ID, **more.pop("names", {})},
                "ExpressionAttributeValues": {":c": {"S": channel}, **more.pop("values", {})}, **more}

    def shard(n: int, **more: Any) -> dict[str, Any]:
        return {"TableName": table, "IndexName": spec.HEARTBEAT_INDEX, "KeyConditionExpression": "#s = :s",
                "ExpressionAttributeNames": {"#s": spec.HEARTBEAT_SHARD},
                "ExpressionAttributeValues": {":s": {"N": str(n)}}, **more}

    return [of("small"), of("big"), of("nobody"), of("big", Limit=7), of("small", ScanIndexForward=False),
            of("big", ProjectionExpression="#c, connectionId"), of("big", Select="COUNT"),
            of("big", FilterExpression="begins_with(connectionId, :p)", values={":p": {"S": "c0"}}),
            shard(0), shard(2, Limit=3), shard(7)]


def answers(dynamodb: Any, queries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each query's pages (followed to the end), less the request metadata."""
    answered = []
    for query in queries:
        pages, start = [], None
        while True:
            page = dynamodb.query(**query, **({"ExclusiveStartKey": start} if start else {}))
            page.pop("ResponseMetadata")
            pages.append(page)
            start = page.get("LastEvaluatedKey")
            if not start:
                break
            assert len(pages) < 500, f"no end to the pages of {query}"  # a start key that does not move on
        answered.append(pages)
    return answered


@pytest.fixture
def two_channels(dynamodb: Any, table: str) -> str:
    """A table with a channel of 5 and one of 40, state rows beside them, and
    connections in both."""
    for n in range(40):
        dynamodb.put_item(TableName=table, Item=put(f"c{n:02}", "big", note=str(n % 5)))
        dynamodb.put_item(TableName=table, Item=put(f"c{n:02}", f"$connection#c{n:02}"))
    for n in range(5):
        dynamodb.put_item(TableName=table, Item=put(f"s{n}", "small"))
    for n in range(12):  # state rows in the heartbeat index, 3 shards
        dynamodb.put_item(TableName=table, Item={**put(f"h{n:02}", f"$connection#h{n:02}"),
                                                 "heartbeatShard": {"N": str(n % 3)}})
    dynamodb.put_item(TableName=table, Item=put("c07", "small"))  # in both
    return table


def test_an_index_query_answers_as_moto_itself_does(dynamodb: Any, two_channels: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from channel_server.local import dynamodb_index as embedded

    queries = channel_queries(two_channels)
    by_key = answers(dynamodb, queries)
    monkeypatch.setattr(embedded, "QUERIES_BY_KEY", False)
    assert by_key == answers(dynamodb, queries)
    assert [sum(page["Count"] for page in pages) for pages in by_key] == [6, 40, 0, 40, 6, 40, 40, 10, 4, 4, 0]


def test_an_index_query_checks_only_the_items_its_key_can_match(dynamodb: Any, two_channels: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """moto checked every item of the table for every index query: a publish
    to a 10-member channel took 5 ms alone and 34 ms beside 5,000 connections,
    and a heartbeat run checked every row for each of its 10 shards."""
    from moto.dynamodb.models.table import Table

    scans: list[str] = []
    every_item = Table.all_items

    def counted(self: Any) -> Any:
        scans.append(self.name)
        return every_item(self)

    monkeypatch.setattr(Table, "all_items", counted)
    queries = channel_queries(two_channels)
    assert [pages[0]["Count"] for pages in answers(dynamodb, [queries[0], queries[-3]])] == [6, 4]
    assert scans == []  # neither the channel's query nor the heartbeat shard's checked every item
    # a query of the table itself is still moto's own
    dynamodb.query(TableName=two_channels, KeyConditionExpression="connectionId = :c",
                   ExpressionAttributeValues={":c": {"S": "c01"}})
    assert scans == [two_channels]


# --- the store's query of an index partition, answered without moto's query ------------------------

#: A channel index keyed on an attribute of its own, as a sharded channel index is
#: (``channelShard``, "<channel>#<n>"): built here, whatever the component declares today.
SHARD_INDEX, SHARD = spec.CHANNEL_SHARD_INDEX, spec.CHANNEL_SHARD  # the conftest sharded_table's third index
NOW = 1_800_000_000


def live_ids(table: str, index: str, attribute: str, value: dict[str, str], **more: Any) -> dict[str, Any]:
    """The store's query of an index partition (handlers/store.py, Store._live_ids)."""
    from channel_server.handlers import spec

    return {"TableName": table, "IndexName": index, "KeyConditionExpression": "#h = :h",
            "FilterExpression": "#e > :now", "ProjectionExpression": "#k",
            "ExpressionAttributeNames": {"#h": attribute, "#e": spec.EXPIRES_AT, "#k": spec.CONNECTION_ID},
            "ExpressionAttributeValues": {":h": value, ":now": {"N": str(NOW)}}, **more}




@pytest.fixture
def crowd(dynamodb: Any, sharded_table: str) -> str:
    """Members live, expired and without an expiry; state rows in heartbeat
    shards (one shard number written "2.0", one as a string); a channel of
    rows big enough to fill moto's 1 MB pages."""
    from channel_server.handlers import spec

    def write(connection_id: str, channel_id: str, expires: int | None, **extra: dict[str, str]) -> None:
        item = {spec.CONNECTION_ID: {"S": connection_id}, spec.CHANNEL_ID: {"S": channel_id}, **extra}
        if expires is not None:
            item[spec.EXPIRES_AT] = {"N": str(expires)}
        dynamodb.put_item(TableName=sharded_table, Item=item)

    for n in range(60):  # 10 expired, 3 that never expire (no expiresAt), the others live
        expires = None if n % 20 == 3 else NOW - 5 if n % 6 == 0 else NOW + n
        write(f"m{n:02}", "big", expires, channelShard={"S": f"big#{n % 4}"})
        shard = {"N": "2.0"} if n == 7 else {"S": "1"} if n == 8 else {"N": str(n % 3)}
        write(f"m{n:02}", f"$connection#m{n:02}", NOW + 9 if n % 5 else NOW, heartbeatShard=shard)
    for n in range(5):
        write(f"s{n}", "small", NOW + 1, channelShard={"S": "small#0"})
    for n in range(8):  # 300 KB each: a page holds three
        write(f"h{n}", "heavy", NOW + 1, channelShard={"S": "heavy#0"}, pad={"S": "x" * 300_000})
    return sharded_table


def store_queries(table: str) -> list[dict[str, Any]]:
    from channel_server.handlers import spec

    channels = [live_ids(table, spec.CHANNEL_INDEX, spec.CHANNEL_ID, {"S": name})
                for name in ("big", "small", "heavy", "nobody")]
    shards = [live_ids(table, SHARD_INDEX, SHARD, {"S": f"{name}#{n}"})
              for name, n in [("big", 0), ("big", 1), ("big", 3), ("heavy", 0), ("big", 9)]]
    beats = [live_ids(table, spec.HEARTBEAT_INDEX, spec.HEARTBEAT_SHARD, {"N": n}) for n in ("0", "1", "2", "2.00", "7")]
    varied = [{**query, **more} for query in (channels[0], channels[2], shards[0], beats[2])
              for more in ({"Limit": 1}, {"Limit": 7}, {"ScanIndexForward": False},
                           {"Limit": 4, "ScanIndexForward": False}, {"Limit": 100})]
    return channels + shards + beats + varied


def raw_answers(dynamodb: Any, queries: list[dict[str, Any]]) -> list[list[tuple[bytes, list[str]]]]:
    """Each query's pages, followed to the end: the body as sent, byte for
    byte, and the names of the headers."""
    sent: list[tuple[bytes, list[str]]] = []

    def keep(http_response: Any, **_: Any) -> None:
        sent.append((http_response.content, sorted(name.lower() for name in http_response.headers)))

    dynamodb.meta.events.register("after-call.dynamodb.Query", keep)
    try:
        answers(dynamodb, queries)
        pages = []
        for query in queries:  # again, page by page, to pair the raw pages with their query
            sent.clear()
            answers(dynamodb, [query])
            pages.append(list(sent))
        return pages
    finally:
        dynamodb.meta.events.unregister("after-call.dynamodb.Query", keep)


@pytest.fixture
def moto_queried(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables moto's own query answered, in order, from now on."""
    from moto.dynamodb.models.table import Table

    queried: list[str] = []
    moto_query = Table.query

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        queried.append(self.name)
        return moto_query(self, *args, **kwargs)

    monkeypatch.setattr(Table, "query", counted)
    return queried


def test_the_stores_query_is_answered_as_moto_answers_it(dynamodb: Any, crowd: str, moto_queried: list[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every index, paged by Limit, by moto's 1 MB and in both orders: the same
    bodies, byte for byte, and the same headers, as moto's own query sends."""
    from channel_server.local import dynamodb_index as embedded

    queried = moto_queried
    queries = store_queries(crowd)
    ours = raw_answers(dynamodb, queries)
    assert queried == []  # answered here, every page
    monkeypatch.setattr(embedded, "QUERIES_BY_KEY", False)
    theirs = raw_answers(dynamodb, queries)
    assert queried  # and then by moto

    assert ours == theirs
    counts = [[json.loads(body)["Count"] for body, _ in pages] for pages in ours]
    # live members only (10 expired, 3 without expiresAt); shard "2.0" is shard 2, shard "1" as a string is none
    assert [sum(c) for c in counts[:14]] == [47, 5, 8, 0, 10, 15, 12, 8, 0, 16, 15, 16, 16, 0]
    assert counts[2] == [3, 3, 2]  # heavy: pages of moto's 1 MB
    assert any(len(pages) > 5 for pages in ours)  # Limit 1 and 7: many pages, each by LastEvaluatedKey


def test_queries_it_does_not_answer_go_to_moto(dynamodb: Any, crowd: str, moto_queried: list[str]) -> None:
    """Other shapes, and this shape with a request moto refuses, are moto's own."""
    from channel_server.handlers import spec

    queried = moto_queried
    channel = live_ids(crowd, spec.CHANNEL_INDEX, spec.CHANNEL_ID, {"S": "big"})
    others = [
        {**channel, "Select": "SPECIFIC_ATTRIBUTES"},
        {**channel, "ReturnConsumedCapacity": "TOTAL"},
        {**channel, "ProjectionExpression": "#k, #e"},
        {**channel, "ExpressionAttributeNames": {**channel["ExpressionAttributeNames"], "#k": spec.SENDER_ID}},
    ]
    for number, query in enumerate(others, start=1):
        dynamodb.query(**query)
        assert len(queried) == number
    with pytest.raises(dynamodb.exceptions.ClientError, match="ValidationException"):
        dynamodb.query(**channel, ConsistentRead=True)  # a global secondary index: moto refuses, as DynamoDB does


def _moto_table(name: str) -> Any:
    from moto.dynamodb.models import dynamodb_backends

    (table,) = [backend.tables[name] for regions in dynamodb_backends.values() for backend in regions.values()
                if name in backend.tables]
    return table


def _indexed(index: Any) -> dict[str, dict[Any, set]]:
    return {name: {value: set(items) for value, items in by_value.items()} for name, by_value in index.by_value.items()}


def test_the_index_of_values_follows_every_kind_of_write(dynamodb: Any, crowd: str) -> None:
    """Puts that move a row to another partition, deletes, updates in place
    (SET, REMOVE, one that creates its row, one whose condition fails),
    transactions that go through or are cancelled, batches: the index kept
    through them is the one built anew from the table."""
    from channel_server.handlers import spec
    from channel_server.local.dynamodb_index import _ValueIndex

    def key(connection_id: str, channel_id: str) -> dict[str, Any]:
        return {spec.CONNECTION_ID: {"S": connection_id}, spec.CHANNEL_ID: {"S": channel_id}}

    dynamodb.query(**live_ids(crowd, spec.CHANNEL_INDEX, spec.CHANNEL_ID, {"S": "big"}))  # builds it
    table = _moto_table(crowd)
    kept = _ValueIndex.kept(table)
    assert kept is not None

    dynamodb.put_item(TableName=crowd, Item={**key("m01", "big"), SHARD: {"S": "big#3"}})  # moved shard
    dynamodb.put_item(TableName=crowd, Item={**key("new", "small"), SHARD: {"S": "small#1"}})
    dynamodb.delete_item(TableName=crowd, Key=key("m02", "big"))
    dynamodb.delete_item(TableName=crowd, Key=key("nobody", "nowhere"))
    dynamodb.update_item(TableName=crowd, Key=key("m04", "$connection#m04"), UpdateExpression="SET #s = :s",
                         ExpressionAttributeNames={"#s": spec.HEARTBEAT_SHARD}, ExpressionAttributeValues={":s": {"N": "9"}})
    dynamodb.update_item(TableName=crowd, Key=key("m05", "$connection#m05"), UpdateExpression="REMOVE #s",
                         ExpressionAttributeNames={"#s": spec.HEARTBEAT_SHARD})
    dynamodb.update_item(TableName=crowd, Key=key("fresh", "$connection#fresh"), UpdateExpression="SET #s = :s",
                         ExpressionAttributeNames={"#s": spec.HEARTBEAT_SHARD}, ExpressionAttributeValues={":s": {"N": "1"}})
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.update_item(TableName=crowd, Key=key("m06", "$connection#m06"), UpdateExpression="SET #s = :s",
                             ConditionExpression="attribute_not_exists(#s)", ExpressionAttributeNames={"#s": spec.HEARTBEAT_SHARD},
                             ExpressionAttributeValues={":s": {"N": "4"}})
    dynamodb.transact_write_items(TransactItems=[
        {"Put": {"TableName": crowd, "Item": {**key("m10", "big"), SHARD: {"S": "big#0"}}}},
        {"Delete": {"TableName": crowd, "Key": key("m11", "big")}},
        {"Update": {"TableName": crowd, "Key": key("m12", "$connection#m12"), "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": spec.HEARTBEAT_SHARD}, "ExpressionAttributeValues": {":s": {"N": "5"}}}},
    ])
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": crowd, "Item": {**key("m13", "big"), SHARD: {"S": "big#2"}}}},
            {"Delete": {"TableName": crowd, "Key": key("m14", "big")}},
            {"ConditionCheck": {"TableName": crowd, "Key": key("m15", "big"),
                                "ConditionExpression": "attribute_not_exists(connectionId)"}},
        ])
    dynamodb.batch_write_item(RequestItems={crowd: [
        {"PutRequest": {"Item": {**key("b1", "big"), SHARD: {"S": "big#1"}}}},
        {"DeleteRequest": {"Key": key("m16", "big")}},
    ]})

    assert _ValueIndex.kept(table) is kept  # kept all along, never dropped and built again
    assert _indexed(kept) == _indexed(_ValueIndex(table))
    assert {"m01", "new", "fresh", "m10", "b1"} <= {
        item.attrs[spec.CONNECTION_ID].value for by_value in kept.by_value.values() for items in by_value.values()
        for item in items.values()}
