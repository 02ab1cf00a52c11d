"""An embedded DynamoDB: moto's server, in-process, on a free loopback port.

moto's backends are not safe under concurrent requests (a few dozen concurrent
transactions and index queries fail with "dictionary changed size during
iteration"), so requests to it are served one at a time. That is cheap only
because of :func:`_cheap_transactions`: moto backs up every table a
transaction touches with a deep copy, so each join cost time in proportion to
the whole table (36 ms at first, 152 ms after 800 joins) and every copy stayed
alive in moto's instance tracker (51 tables after 50 joins; 3 GB with 1,000
clients). An index query reads the items its key can match, not the whole
table, and the store's own query is answered as moto answers it
(:mod:`.dynamodb_index`): a publish to 10 members reads as much beside 5,000
other connections as alone (``tests/test_local_cost.py``).
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from moto.backends import SERVICE_NAMES

from ..handlers import dynamodb, handoff
from . import dynamodb_index  # noqa: F401 - importing it makes moto's index queries read only their partition


def _cheap_transactions() -> None:
    """Make moto's TransactWriteItems back up only the items it writes.

    moto 5's ``DynamoDBBackend.transact_write_items`` deep-copies each table
    it touches (``copy.deepcopy`` through its module's ``copy``) and assigns
    the copy back to roll back. Here that module sees a ``copy`` whose
    ``deepcopy`` returns a table itself, so moto's own rollback is a no-op,
    and the wrapper below saves the items the transaction names beforehand and
    puts them back (or deletes what was not there) when the transaction
    fails, whatever moto raised. Everything else is moto's own code. Applied
    once, at import; ``tests/test_local.py`` checks a cancelled transaction
    changes nothing and that no table copies pile up.
    """
    from moto.dynamodb import models

    backend = models.DynamoDBBackend
    if getattr(backend.transact_write_items, "_cheap", False):
        return
    if getattr(models, "copy", None) is not copy or not hasattr(models, "Table"):
        raise RuntimeError("moto's DynamoDB models changed shape: review local/dynamodb.py's _cheap_transactions")

    class _TablesByReference:
        """The ``copy`` module, except that a Table is "copied" as itself."""

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, models.Table) else copy.deepcopy(value, memo)

    models.copy = _TablesByReference()  # type: ignore[assignment]
    original = backend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = _saved_items(self, transact_items)
        try:
            original(self, transact_items)
        except BaseException:
            for table_name, key, item in reversed(saved):
                if item is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, item)
            raise

    transact_write_items._cheap = True  # type: ignore[attr-defined]
    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _saved_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[str, dict, dict | None]]:
    """(table, key, the item's attributes as DynamoDB JSON or None) for each
    item a transaction names, as it is before the transaction."""
    saved = []
    for item in transact_items:
        for op_type, op in item.items():
            table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None:
                continue  # moto itself refuses it, and nothing is written
            if op_type == "Put":
                attrs = op.get("Item") or {}
                names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
                if not all(name in attrs for name in names):
                    continue
                key = {name: attrs[name] for name in names}
            else:
                key = op.get("Key") or {}
            try:
                current = backend.get_item(table.name, key)
            except Exception:
                continue  # a malformed key: moto refuses the transaction before writing
            saved.append((table.name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
    return saved


_cheap_transactions()


def _quicker_dispatch() -> None:
    """Make moto find a response class's actions once, not per request.

    moto's ``BaseResponse`` lists its own methods with ``inspect.getmembers``
    for every request to check the action exists (0.55 ms of a GetItem's
    3.5 ms). The list depends only on the class, so it is kept per class.
    Only speed rests on it: if moto changed shape, nothing is patched.
    """
    import functools

    from moto.core import responses, utils

    if getattr(responses, "method_names_from_class", None) is not utils.method_names_from_class:
        return
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(utils.method_names_from_class)


_quicker_dispatch()




class _Untracked(list):
    """An instance tracker that keeps nothing."""

    def append(self, instance: Any) -> None:
        pass


def _untracked_models() -> None:
    """Keep moto's DynamoDB and SQS models out of its instance tracker.

    moto keeps a reference to every model object it ever creates, for its
    server's dashboard (``BaseModel.instances_tracked``), and DynamoDB makes an
    ``Item`` for every row a query, scan or write returns: a long-running local
    mode held every row every publish had read (and the thorough property run
    grew by tens of KB an example). Nothing here uses the dashboard.
    """
    import moto.dynamodb.models  # noqa: F401 - defines the models, so they are in model_data
    import moto.sqs.models  # noqa: F401
    from moto.core.model_instances import model_data

    for service in ("dynamodb", "sqs"):
        for model in model_data.get(service, {}).values():
            cast(Any, model).instances_tracked = _Untracked()  # moto types its models as object


_untracked_models()


class _ByTarget:
    """moto's dispatcher, except that a request whose ``X-Amz-Target`` names
    DynamoDB's or SQS's JSON API goes straight to that service's app.
    moto's ``DomainDispatcherApplication`` works the service out anew for
    every request (listing moto's modules on disk: 1.3 ms of a GetItem's
    3.5 ms); for these requests it always finds the same one
    (``tests/test_embedded_dynamodb.py`` checks)."""

    SERVICES: dict[str, SERVICE_NAMES] = {dynamodb.TARGET_PREFIX: "dynamodb", handoff.TARGET_PREFIX: "sqs"}

    def __init__(self, dispatcher: DomainDispatcherApplication):
        self.dispatcher = dispatcher

    def service_app(self, environ: dict) -> Any:
        """The app a request goes to, when its target says; else None."""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        for prefix, service in self.SERVICES.items():
            if target.startswith(prefix):
                dispatcher = self.dispatcher
                with dispatcher.lock:
                    app = dispatcher.app_instances.get(service)
                    if app is None:
                        app = dispatcher.app_instances[service] = dispatcher.create_app(service)
                return app
        return None

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        app = self.service_app(environ)
        return (app or self.dispatcher)(environ, start_response)


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any) -> None:  # one line per DynamoDB call is noise
        pass


class _Serialized:
    """A WSGI app that lets one request at a time into ``app``, in the order
    they arrived. A plain lock is not fair: under load some requests waited
    for seconds while later ones went first, past the clients' 2 s read
    timeout (a join's p95 was 10 s with 50 joins in flight)."""

    def __init__(self, app: Any):
        self._app = app
        self._turns = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        with self._turns:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._turns.wait_for(lambda: self._serving == ticket)
        try:
            # consume the body inside the turn: moto builds it lazily
            return list(self._app(environ, start_response))
        finally:
            with self._turns:
                self._serving += 1
                self._turns.notify_all()


#: How often the server's loop looks for a stop request (socketserver's
#: default, 0.5 s, made every stop wait about that long; local mode stops it
#: last, and tests stop one per local-mode server).
STOP_POLL_SECONDS = 0.05


class EmbeddedDynamoDB:
    """moto's DynamoDB (and every other moto service) at ``self.endpoint``.

    moto keeps its state process-wide: a second instance in the same process
    sees the first one's tables. :meth:`reset` clears them.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, middleware: Callable[[Any], Any] | None = None):
        """``middleware`` wraps moto's WSGI app (fault-injection tests use it to
        answer some requests with DynamoDB's errors)."""
        app: Any = _ByTarget(DomainDispatcherApplication(create_backend_app))
        if middleware is not None:
            app = middleware(app)
        app = _Serialized(app)
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": STOP_POLL_SECONDS},
                                        name="embedded-dynamodb", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = cast("tuple[str, int]", self._server.server_address[:2])  # a TCP server's
        return f"http://{host}:{port}"

    def start(self) -> "EmbeddedDynamoDB":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget every table (moto's state is shared by the whole process)."""
        import urllib.request

        reset = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=5).read()
        _untracked_models()  # moto's reset gives every model a new tracker

    def __enter__(self) -> "EmbeddedDynamoDB":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def create_table(client: Any, name: str, table: Any) -> None:
    """Create table ``name`` as the component declared it: ``table`` holds the
    registered inputs of its ``aws.dynamodb.Table`` (keys, attributes, global
    secondary indexes with their projections, TTL). Waits until it is active."""
    schema = [{"AttributeName": table["hashKey"], "KeyType": "HASH"}]
    if table.get("rangeKey"):
        schema.append({"AttributeName": table["rangeKey"], "KeyType": "RANGE"})
    indexes = []
    for index in table.get("globalSecondaryIndexes") or ():
        keys = index.get("keySchemas") or [{"attributeName": index["hashKey"], "keyType": "HASH"}]
        projection = {"ProjectionType": index["projectionType"]}
        if index.get("nonKeyAttributes"):
            projection["NonKeyAttributes"] = list(index["nonKeyAttributes"])
        indexes.append({
            "IndexName": index["name"],
            "KeySchema": [{"AttributeName": k["attributeName"], "KeyType": k["keyType"]} for k in keys],
            "Projection": projection,
        })
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": schema,
        "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]} for a in table["attributes"]],
        "BillingMode": table.get("billingMode") or "PAY_PER_REQUEST",
    }
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = indexes
    created = client.create_table(**kwargs)
    if created["TableDescription"].get("TableStatus") != "ACTIVE":  # moto's tables are active at once
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    ttl = table.get("ttl") or {}
    if ttl.get("enabled"):
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["attributeName"]}
        )
