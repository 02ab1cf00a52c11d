"""The connections table in tests: made as the component declares it, read back
as plain rows, and written to directly.

``table_definition`` is the ``aws:dynamodb/table:Table`` the component
registers under Pulumi's mocks (conftest's ``table_definition`` fixture).
"""

from __future__ import annotations

import uuid
from typing import Any

from channel_server.handlers import spec


def create_test_table(dynamodb: Any, table_definition: Any) -> str:
    """A fresh, uniquely named table declared as the component declares it; its name."""
    from channel_server.local.dynamodb import create_table

    name = f"{table_definition['name']}-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, name, dict(table_definition.inputs))
    return name


def function_environ(table_definition: Any, table: str, management_endpoint: str) -> dict[str, str]:
    """The functions' environment for ``table`` and the management API at
    ``management_endpoint``, by the variable names the handlers read."""
    (index,) = [i for i in table_definition.inputs["globalSecondaryIndexes"] if i["name"] == spec.CHANNEL_INDEX]
    return {
        spec.ENV_TABLE_NAME: table,
        spec.ENV_INDEX_NAME: index["name"],
        spec.ENV_MANAGEMENT_ENDPOINT: management_endpoint,
    }


def rows(dynamodb: Any, table: str) -> list[dict]:
    """Every row in the table, as plain Python values (numbers as ints), sorted by key."""
    items: list[dict] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    plain = [{name: _plain(value) for name, value in item.items()} for item in items]
    return sorted(plain, key=lambda row: (row[spec.CONNECTION_ID], row[spec.CHANNEL_ID]))


def rows_of(dynamodb: Any, table: str, connection_id: str) -> list[dict]:
    """The rows of one connection, as :func:`rows` gives them."""
    return [row for row in rows(dynamodb, table) if row[spec.CONNECTION_ID] == connection_id]


def is_tombstone(row: dict) -> bool:
    """The state row $disconnect leaves: the connection closed for good."""
    return spec.CLOSED_AT in row


def open_rows(dynamodb: Any, table: str) -> list[dict]:
    """Every row but the tombstones of closed connections."""
    return [row for row in rows(dynamodb, table) if not is_tombstone(row)]


def closed(dynamodb: Any, table: str, connection_id: str) -> bool:
    """The connection's only row is its tombstone: closed for good, nothing left."""
    left = rows_of(dynamodb, table, connection_id)
    return len(left) == 1 and is_tombstone(left[0]) and left[0][spec.CHANNEL_ID] == spec.STATE_ROW_PREFIX + connection_id


def _plain(value: dict) -> Any:
    ((kind, raw),) = value.items()
    return int(raw) if kind == "N" else raw


def write_member(dynamodb: Any, table: str, connection_id: str, channel_id: str, sender_id: str, expires_at: int) -> None:
    """Write a joined connection's two rows directly, as Store.join lays them out."""
    dynamodb.batch_write_item(RequestItems={table: [
        {"PutRequest": {"Item": item}} for item in member_items(connection_id, channel_id, sender_id, expires_at)
    ]})


def member_items(connection_id: str, channel_id: str, sender_id: str, expires_at: int) -> list[dict]:
    """The two DynamoDB items of a connection joined to ``channel_id``: its
    state row and its membership row."""
    expires = {"N": str(expires_at)}
    return [
        {
            spec.CONNECTION_ID: {"S": connection_id},
            spec.CHANNEL_ID: {"S": spec.STATE_ROW_PREFIX + connection_id},
            spec.CURRENT_CHANNEL: {"S": channel_id},
            spec.SENDER_ID: {"S": sender_id},
            spec.VERSION: {"N": "1"},
            spec.EXPIRES_AT: expires,
        },
        {
            spec.CONNECTION_ID: {"S": connection_id},
            spec.CHANNEL_ID: {"S": channel_id},
            spec.SENDER_ID: {"S": sender_id},
            spec.EXPIRES_AT: expires,
        },
    ]
