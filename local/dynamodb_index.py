"""The embedded DynamoDB's index queries read the items their key can match,
from an index of values kept as moto writes, not the whole table.

moto answers an index query by walking every item of the table: a publish to a
10-member channel beside 5,000 other connections read all 5,010. Here each
table keeps an index of its items by the value of every index's partition key
(:class:`_ValueIndex`, kept up to date as moto writes: :func:`_indexed_writes`);
an index query reads only that partition's items (:func:`_queries_by_key`), and
the store's own query of an index partition is answered as moto answers it,
byte for byte, without moto's query (:func:`_answered_queries`;
``tests/test_embedded_dynamodb.py`` compares the two). moto stays the store of
record: nothing here writes. Importing this module patches moto;
:data:`QUERIES_BY_KEY` turns the queries back into moto's own (benches' baseline).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Hashable
from decimal import Decimal
from typing import Any, Callable, Mapping, cast


#: The GSI hash key types an index of values keeps (DynamoDB's key types).
_KEY_TYPES = ("S", "N", "B")


def _value_key(value: Any) -> tuple[str, Any] | None:
    """``value`` (moto's ``DynamoType``) as a dict key that is equal, and
    hashes equal, exactly when moto's own ``==`` holds (type and cast value:
    a number by its Decimal); None for a type no key can have."""
    kind = value.type
    if kind == "N":
        try:
            return kind, Decimal(value.value)
        except (ArithmeticError, TypeError, ValueError):
            return None
    if kind in _KEY_TYPES and isinstance(value.value, Hashable):
        return kind, value.value
    return None


def _item_key(item: Any) -> tuple:
    """An item's primary key as moto's ``Table.items`` tells items apart."""
    hash_key = _value_key(item.hash_key)
    return (hash_key, _value_key(item.range_key)) if item.range_key is not None else (hash_key,)


class _ValueIndex:
    """One table's items by the value of each of its global secondary
    indexes' partition keys: what DynamoDB reads for a Query of an index.

    moto keeps items as ``{partition key: {sort key: item}}`` and answers an
    index query by checking every one. Kept here, per table (an attribute of
    moto's ``Table``), up to date through moto's three ways of writing an
    item (:func:`_indexed_writes`); built from the table the first time a
    query needs it, and again if its items or indexes were replaced. Any
    surprise (a key value that is not a key type, a write that failed half
    way) drops it, and the next query builds it anew."""

    ATTRIBUTE = "_channel_server_value_index"

    def __init__(self, table: Any):
        self.items_of = table.items  # the dict it indexes: moto replaces it on a restore
        self.attributes = _partition_attributes(table)
        self.by_value: dict[str, dict[tuple, dict[tuple, Any]]] = {name: {} for name in self.attributes}
        self.placed: dict[tuple, list[tuple[str, tuple]]] = {}
        for partition in table.items.values():
            for item in partition.values() if table.range_key_attr else [partition]:
                self.place(item)

    @classmethod
    def of(cls, table: Any) -> "_ValueIndex":
        """The table's index, built first if it has none or it is out of date
        (:class:`_Unindexable` when moto's writes do not keep one)."""
        if not _WRITES_INDEXED:
            raise _Unindexable("moto's writes are not indexed")
        index = table.__dict__.get(cls.ATTRIBUTE)
        if index is None or index.items_of is not table.items or index.attributes != _partition_attributes(table):
            try:
                index = cls(table)
            except Exception as exc:  # a value no key can have: moto answers, by its own query
                cls.drop(table)
                raise _Unindexable(str(exc)) from exc
            setattr(table, cls.ATTRIBUTE, index)
        return index

    @classmethod
    def kept(cls, table: Any) -> "_ValueIndex | None":
        """The table's index if it has one (writes keep it; none is built for them)."""
        return table.__dict__.get(cls.ATTRIBUTE)

    @classmethod
    def drop(cls, table: Any) -> None:
        table.__dict__.pop(cls.ATTRIBUTE, None)

    def place(self, item: Any) -> None:
        """Index ``item`` under its values, in place of what its key had."""
        key = _item_key(item)
        self.remove(key)
        places = []
        for name in self.attributes:
            value = item.attrs.get(name)
            if value is None:
                continue  # not in that index (sparse)
            found = _value_key(value)
            if found is None:
                raise _Unindexable(f"{name} is a {value.type}")
            self.by_value[name].setdefault(found, {})[key] = item
            places.append((name, found))
        if places:
            self.placed[key] = places

    def remove(self, key: tuple) -> None:
        for name, found in self.placed.pop(key, ()):
            items = self.by_value[name][found]
            del items[key]
            if not items:
                del self.by_value[name][found]

    def items(self, attribute: str, value: Any) -> list[Any]:
        """The items whose ``attribute`` equals ``value`` (moto's ``DynamoType``)."""
        found = _value_key(value)
        return list(self.by_value[attribute].get(found, {}).values()) if found is not None else []


class _Unindexable(Exception):
    """An item's value cannot be indexed: the table's index is dropped."""


def _partition_attributes(table: Any) -> tuple[str, ...]:
    """The attributes that are a global secondary index's partition key."""
    return tuple(sorted({key["AttributeName"] for index in table.global_indexes or ()
                         for key in index.schema if key["KeyType"] == "HASH"}))


def _keeping_index(table: Any, change: Callable[["_ValueIndex"], None]) -> None:
    """Apply ``change`` to the table's index, if it has one; any failure drops it."""
    index = _ValueIndex.kept(table)
    if index is None:
        return
    try:
        change(index)
    except Exception:
        _ValueIndex.drop(table)


def _indexed_writes() -> None:
    """Keep each table's :class:`_ValueIndex` as moto writes items: its
    ``Table.put_item`` and ``Table.delete_item`` (which its PutItem,
    DeleteItem, BatchWriteItem and transactions go through) and its
    backend's ``update_item`` (which changes the stored item in place). An
    update re-indexes the item under its key whatever happened, even if it
    raised half way. ``tests/test_embedded_dynamodb.py`` checks the index
    equals one built anew after every kind of write."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    global _WRITES_INDEXED
    put_item = getattr(Table, "put_item", None)
    delete_item = getattr(Table, "delete_item", None)
    update_item = getattr(DynamoDBBackend, "update_item", None)
    if put_item is None or delete_item is None or update_item is None or not hasattr(DynamoDBBackend, "get_keys_value"):
        return  # moto changed shape: no index is kept, and queries are moto's own
    if getattr(put_item, "_indexed", False):
        _WRITES_INDEXED = True
        return

    def put(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = put_item(self, *args, **kwargs)
        _keeping_index(self, lambda index: index.place(item))
        return item

    def delete(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = delete_item(self, *args, **kwargs)
        if item is not None:
            _keeping_index(self, lambda index: index.remove(_item_key(item)))
        return item

    def update(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return update_item(self, table_name, key, *args, **kwargs)
        finally:
            table = self.tables.get(table_name)
            if table is not None and _ValueIndex.kept(table) is not None:
                def again(index: _ValueIndex) -> None:
                    hash_key, range_key = self.get_keys_value(table, key)
                    item = table.get_item(hash_key, range_key)
                    if item is not None:
                        index.place(item)
                    else:
                        index.remove((_value_key(hash_key), _value_key(range_key)) if range_key is not None
                                     else (_value_key(hash_key),))
                _keeping_index(table, again)

    for patched in (put, delete, update):
        cast(Any, patched)._indexed = True
    Table.put_item = put  # type: ignore[method-assign]  # moto's methods, wrapped on purpose
    Table.delete_item = delete  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update  # type: ignore[method-assign]
    _WRITES_INDEXED = True


#: Whether moto's writes keep the index of values (:func:`_indexed_writes`): without, it is never used.
_WRITES_INDEXED = False
_indexed_writes()


def _queries_by_key() -> None:
    """Make a query of an index read only the items its partition key can
    match, not every item of the table.

    moto answers an index query by checking every item of the table: a publish
    to a 10-member channel took 5 ms with nobody else in the table and 34 ms
    beside 5,000 connections in another channel, and a heartbeat run listed
    each of its 10 shards by checking every row. Here the items come from the
    table's :class:`_ValueIndex`, whatever attribute the index is keyed on
    (the table's sort key for the channel index, an attribute of its own for
    the heartbeat and sharded channel indexes), and moto's own query (its key
    checks, order, pagination, projection, filter) runs over those only: same
    inputs, same answer (``tests/test_embedded_dynamodb.py`` compares the
    two). Only speed rests on it: if moto changed shape, nothing is patched.
    It changes moto's ``Table`` for the whole process, and each query sets the
    table's item view for its own span: safe because this server, moto's only
    user in local mode and in the suite, serves one request at a time
    (:class:`_Serialized`).
    """
    from moto.dynamodb.models import table as tables

    query = getattr(tables.Table, "query", None)
    if query is None or getattr(query, "_by_key", False) or not hasattr(tables.Table, "all_items"):
        return

    signature = inspect.signature(query)

    def by_key(self: Any, *args: Any, **kwargs: Any) -> Any:
        asked = signature.bind(self, *args, **kwargs).arguments
        candidates = _candidates(self, asked.get("index_name"), asked.get("hash_key_conditions"))
        if candidates is None or not QUERIES_BY_KEY:
            return query(self, *args, **kwargs)
        self.all_items = lambda: candidates  # this query's view; requests are served one at a time
        try:
            return query(self, *args, **kwargs)
        finally:
            del self.all_items

    by_key._by_key = True  # type: ignore[attr-defined]
    tables.Table.query = by_key  # type: ignore[method-assign]  # moto's method, replaced on purpose


def _candidates(table: Any, index_name: str | None, conditions: Any) -> list[Any] | None:
    """The items a query of global secondary index ``index_name`` can match,
    by its one partition key condition, from the table's
    :class:`_ValueIndex`. None for any other query: moto scans."""
    if not index_name or not conditions or len(conditions) != 1:
        return None
    index = next((i for i in table.global_indexes or () if i.name == index_name), None)
    hash_keys = [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"] if index else []
    (attribute, value), = conditions
    if hash_keys != [attribute]:
        return None
    try:
        return _ValueIndex.of(table).items(attribute, value)
    except _Unindexable:
        return None


#: Whether :func:`_queries_by_key` and :func:`_answered_live_ids` answer (the
#: tests that compare them with moto's own turn it off).
QUERIES_BY_KEY = True
_queries_by_key()


# --- the store's own query of an index, answered here ---------------------------------------------

#: The one query shape answered without moto's query (the store's listing of
#: an index partition's live connection ids: handlers/store.py, Store._live_ids).
_LIVE_IDS = {
    "KeyConditionExpression": re.compile(r"\s*(#\w+)\s*=\s*(:\w+)\s*"),
    "FilterExpression": re.compile(r"\s*(#\w+)\s*>\s*(:\w+)\s*"),
    "ProjectionExpression": re.compile(r"\s*(#\w+)\s*"),
}
_LIVE_IDS_REQUIRED = {"TableName", "IndexName", "ExpressionAttributeNames", "ExpressionAttributeValues", *_LIVE_IDS}
_LIVE_IDS_OPTIONAL = {"ExclusiveStartKey", "Limit", "ScanIndexForward"}


def _answered_queries() -> None:
    """Answer the store's query of an index partition (KeyCondition
    ``#h = :h``, Filter ``#e > :now``, Projection ``#k``) without moto's query.

    Given a channel's 1,000 items only, moto's query of them still took 126
    ms (179 ms in local mode, beside its gateway: nine of the sixteen 20 ms
    rounds of a 1,000-member fan-out): it deep-copies every item, projects
    each twice through plain JSON and back, evaluates the filter on objects
    and serializes the answer by its service model. Answered here, 7 ms.
    :func:`_answered_live_ids` reads the same items (the table's
    :class:`_ValueIndex`) and computes what moto's query answers, step by step
    (order, the start key, Limit and moto's 1 MB page, the filter on the index's
    projection, the projection), into the same body, byte for byte
    (``tests/test_embedded_dynamodb.py`` compares the two on every shape and
    page). moto stays the store: nothing here writes. Any other query, or
    anything unusual about this one (a type, an attribute the index does not
    project), goes to moto's own query.
    """
    from moto.dynamodb.responses import DynamoHandler

    query = DynamoHandler.query
    if getattr(query, "_answered", False):
        return

    def answered(self: Any) -> Any:
        if QUERIES_BY_KEY:
            body = _answered_live_ids(self.dynamodb_backend, self.body)
            if body is not None:
                return body, {"Content-Type": _JSON_CONTENT_TYPE, "status": 200}
        return query(self)

    answered._answered = True  # type: ignore[attr-defined]
    DynamoHandler.query = answered  # type: ignore[method-assign]  # moto's method, wrapped on purpose


_JSON_CONTENT_TYPE = "application/x-amz-json-1.0"


def _answered_live_ids(backend: Any, asked: Mapping[str, Any]) -> str | None:
    """moto's answer (its JSON body) to ``asked``, a Query of the live ids'
    shape; None when it is not one, or is one this does not answer as moto
    would (then moto answers it)."""
    from moto.dynamodb.models.table import RESULT_SIZE_LIMIT, GlobalSecondaryIndex

    if not _LIVE_IDS_REQUIRED <= asked.keys() <= _LIVE_IDS_REQUIRED | _LIVE_IDS_OPTIONAL:
        return None
    placeholders: list[str] = []
    for field, pattern in _LIVE_IDS.items():
        matched = pattern.fullmatch(asked[field]) if isinstance(asked[field], str) else None
        if matched is None:
            return None
        placeholders.extend(matched.groups())
    h, h_value, e, now_value, k = placeholders
    names, values = asked["ExpressionAttributeNames"], asked["ExpressionAttributeValues"]
    if set(names) != {h, e, k} or len({h, e, k}) != 3 or set(values) != {h_value, now_value} or h_value == now_value:
        return None
    table = backend.tables.get(asked["TableName"])
    index = next((i for i in (table.global_indexes or ()) if i.name == asked["IndexName"]), None) if table else None
    if index is None or not isinstance(index, GlobalSecondaryIndex):
        return None
    partition = [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"]
    if partition != [names[h]] or len(index.schema) != 1:
        return None  # an index with a sort key of its own: moto's query
    key_attributes = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    projected = _projected(index, key_attributes)
    expires, listed = names[e], names[k]
    if expires in key_attributes or expires == partition[0] or (projected is not None and expires not in projected):
        return None  # moto refuses a filter on a key, or finds nothing to filter on
    if listed != table.hash_key_attr or table.hash_key_type != "S":
        return None
    now = _number(values[now_value])
    partition_value = values[h_value]
    if now is None or not (isinstance(partition_value, dict) and len(partition_value) == 1):
        return None
    (kind, raw), = partition_value.items()
    if kind not in _KEY_TYPES:
        return None
    from moto.dynamodb.models.dynamo_type import DynamoType

    try:
        candidates = _ValueIndex.of(table).items(partition[0], DynamoType(partition_value))
    except _Unindexable:
        return None
    # moto's order: the index's partition key, then the table's keys
    order = [partition[0], *key_attributes]
    keyed = []
    types: list[set[str]] = [set() for _ in order]
    for item in candidates:
        sort_key = []
        for position, name in enumerate(order):
            value = item.attrs[name]
            types[position].add(value.type)
            sort_key.append(Decimal(value.value) if value.type == "N" else value.value)
        keyed.append((tuple(sort_key), item))
    if any(len(kinds) > 1 or not kinds <= set(_KEY_TYPES) for kinds in types):
        return None  # moto would compare values of different types
    forward = asked.get("ScanIndexForward", True)
    if not isinstance(forward, bool):
        return None
    keyed.sort(key=lambda pair: pair[0], reverse=not forward)
    start = 0
    if "ExclusiveStartKey" in asked:
        after = _start_key(asked["ExclusiveStartKey"], order, types)
        if after is None:
            return None
        # moto skips each item at or before the start key, and stops skipping at the first after it
        while start < len(keyed) and (keyed[start][0] <= after if forward else keyed[start][0] >= after):
            start += 1
    limit = asked.get("Limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        return None
    page: list[Any] = []
    size = 0
    last = None
    for _, item in keyed[start:]:
        item_size = item.size()
        if len(page) == limit or size + item_size > RESULT_SIZE_LIMIT:
            last = page[-1]
            break
        page.append(item)
        size += item_size
    listed_ids = []
    for item in page:
        expires_at = item.attrs.get(expires)
        if expires_at is None:
            continue
        if expires_at.type != "N" or len(expires_at.value) > 38:
            return None  # moto compares other types, or rounds, its own way
        if Decimal(expires_at.value) > now:
            listed_ids.append({listed: {"S": item.attrs[listed].value}})
    answer: dict[str, Any] = {"Items": listed_ids, "Count": len(listed_ids), "ScannedCount": len(page)}
    if last is not None:
        answer["LastEvaluatedKey"] = {
            name: {value.type: value.value}
            for name, value in [(table.hash_key_attr, last.hash_key),
                                *([(table.range_key_attr, last.range_key)] if table.range_key_attr else []),
                                (partition[0], last.attrs[partition[0]])]
        }
    return json.dumps(answer)


def _projected(index: Any, key_attributes: list[str]) -> set[str] | None:
    """The attributes ``index`` projects (None: all of them)."""
    projection = index.projection or {}
    kind = projection.get("ProjectionType")
    if kind == "ALL" or not projection:
        return None
    keys = {*key_attributes, *(key["AttributeName"] for key in index.schema)}
    return keys | set(projection.get("NonKeyAttributes") or ()) if kind == "INCLUDE" else keys


def _number(value: Any) -> Decimal | None:
    """A number attribute value ({"N": "12"}) as moto compares it, or None."""
    if not (isinstance(value, dict) and set(value) == {"N"} and isinstance(value["N"], str) and len(value["N"]) <= 38):
        return None
    try:
        return Decimal(value["N"])
    except ArithmeticError:
        return None


def _start_key(start: Any, order: list[str], types: list[set[str]]) -> tuple | None:
    """An ExclusiveStartKey as a sort key of :func:`_answered_live_ids`, when
    it names every attribute of the order with its items' types; else None."""
    if not isinstance(start, dict):
        return None
    key: list[Any] = []
    for name, kinds in zip(order, types, strict=True):
        value = start.get(name)
        if not (isinstance(value, dict) and len(value) == 1):
            return None
        (kind, raw), = value.items()
        if kinds and kind not in kinds or kind not in _KEY_TYPES or not isinstance(raw, str):
            return None
        if kind == "N":
            number = _number(value)
            if number is None:
                return None
            key.append(number)
        else:
            key.append(raw)
    return tuple(key)


_answered_queries()
