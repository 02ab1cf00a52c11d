"""Local mode's embedded DynamoDB (moto's server, local/dynamodb.py) where it differs from moto's own.

Its transactions are cheap, yet a cancelled one still changes nothing and none
copies a table; a query of the channel index reads that channel's items only,
and answers as moto's own query does."""

from __future__ import annotations

import gc
from typing import Any

import pytest

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
    from channel_server.local import dynamodb as embedded

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
