"""An embedded DynamoDB: moto's server, in-process, on a free loopback port.

moto's backends are not safe under concurrent requests (a few dozen concurrent
transactions and index queries fail with "dictionary changed size during
iteration"), so requests to it are served one at a time. At local-mode scale
that costs little.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any) -> None:  # one line per DynamoDB call is noise
        pass


class _Serialized:
    """A WSGI app that lets one request at a time into ``app``."""

    def __init__(self, app: Any):
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        with self._lock:
            # consume the body inside the lock: moto builds it lazily
            return list(self._app(environ, start_response))


class EmbeddedDynamoDB:
    """moto's DynamoDB (and every other moto service) at ``self.endpoint``.

    moto keeps its state process-wide: a second instance in the same process
    sees the first one's tables. :meth:`reset` clears them.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, middleware: Callable[[Any], Any] | None = None):
        """``middleware`` wraps moto's WSGI app (fault-injection tests use it to
        answer some requests with DynamoDB's errors)."""
        app: Any = DomainDispatcherApplication(create_backend_app)
        if middleware is not None:
            app = middleware(app)
        app = _Serialized(app)
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-dynamodb", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
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

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=5).read()

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
    client.create_table(**kwargs)
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    ttl = table.get("ttl") or {}
    if ttl.get("enabled"):
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["attributeName"]}
        )
