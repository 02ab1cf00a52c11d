"""Local mode: ``python -m channel_server.local``.

Builds, in one process, the world the component declares (``world``): an
embedded DynamoDB with the component's table, each of the component's functions
running its own archive in a process of its own (``functions``), and a local
API Gateway in front of them (``gateway``). The handlers reach DynamoDB and the
management API through boto3, with endpoints from their environment, exactly
as in AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
from typing import Any, Iterator, Mapping

from aiohttp import web

from . import gateway as gateway_module
from .functions import InvocationError, LocalFunction
from .world import World, from_component, scratch_dir

log = logging.getLogger("channel_server.local")

REGION = "us-east-1"
#: Credentials for the embedded DynamoDB and the local management API, which
#: accept any signature. Real credentials never go there.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
#: What the functions inherit from this process when DynamoDB is a real endpoint.
PASSED_THROUGH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                  "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "HOME")


class LocalServer:
    """The whole channel server on one machine.

    ``await start()`` then use ``url`` (clients) and ``management_url``;
    ``await stop()`` closes every connection (each gets its ``$disconnect``),
    then stops the functions and the embedded DynamoDB.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        stage: str = "dev",
        dynamodb_endpoint: str | None = None,
        management_latency_ms: float = 0,
        idle_timeout: float = gateway_module.IDLE_TIMEOUT_SECONDS,
        max_lifetime: float = gateway_module.MAX_LIFETIME_SECONDS,
        world: World | None = None,
        handler_log_level: str = "WARNING",
    ):
        self.host, self.port, self.stage = host, port, stage
        self._dynamodb_endpoint = dynamodb_endpoint
        self._latency = management_latency_ms
        self._idle_timeout, self._max_lifetime = idle_timeout, max_lifetime
        self.world = world
        self._handler_log_level = handler_log_level
        self._embedded: Any = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._functions: dict[str, LocalFunction] = {}
        self._scratch = None
        self.gateway: gateway_module.Gateway | None = None

    @property
    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literals in brackets
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The clients' WebSocket URL, ``ws://HOST:PORT/STAGE``."""
        return f"ws://{self._authority}/{self.stage}"

    @property
    def management_url(self) -> str:
        """The management API's base URL, ``http://HOST:PORT/STAGE``."""
        return f"http://{self._authority}/{self.stage}"

    @property
    def dynamodb_endpoint(self) -> str:
        return self._dynamodb_endpoint or self._embedded.endpoint

    @property
    def table_name(self) -> str:
        assert self.world is not None
        return self.world.table_name

    async def start(self) -> None:
        """Read the component's world (unless given), start DynamoDB, bind the
        port, then start every function. On failure, call :meth:`stop`."""
        if self.world is None:
            self.world = await asyncio.to_thread(from_component, self.stage)
        world = self.world
        self.stage = world.stage
        if self._dynamodb_endpoint is None:
            from .dynamodb import EmbeddedDynamoDB

            # loopback only, whatever --host says: moto has no authentication
            self._embedded = EmbeddedDynamoDB("127.0.0.1").start()
        await asyncio.to_thread(self._ensure_table)

        # Bind first: the functions' environment needs the management URL.
        self.gateway = gateway_module.Gateway(
            world,
            self._invoke,
            idle_timeout=self._idle_timeout,
            max_lifetime=self._max_lifetime,
            management_latency_ms=self._latency,
        )
        self._runner = web.AppRunner(self.gateway.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

        self._scratch = scratch_dir()
        for route_key, definition in world.routes.items():
            task_dir = self._scratch / definition.name
            self._functions[route_key] = LocalFunction(definition, task_dir, self._environment(definition.environment))
        await asyncio.gather(*(f.start() for f in self._functions.values()))

    def _environment(self, declared: Mapping[str, str]) -> dict[str, str]:
        """The function's environment as declared, pointed at this machine."""
        assert self.world is not None
        env = {
            key: self.management_url if value == self.world.management_endpoint else value
            for key, value in declared.items()
        }
        env.update({"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint})
        inherited = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        if self._dynamodb_endpoint is not None and ("AWS_ACCESS_KEY_ID" in inherited or "AWS_PROFILE" in inherited):
            # another DynamoDB (perhaps AWS): this shell's credentials, keys or profile
            env.update(inherited)
        else:
            env.update(LOCAL_CREDENTIALS)
        env["LOCAL_LAMBDA_LOG_LEVEL"] = self._handler_log_level
        return env

    def _ensure_table(self) -> None:
        import boto3

        from .dynamodb import create_table

        assert self.world is not None
        env = self._environment({})
        client = boto3.client(
            "dynamodb",
            endpoint_url=self.dynamodb_endpoint,
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
        )
        try:
            create_table(client, self.world.table_name, self.world.table)
        except client.exceptions.ResourceInUseException:
            log.info("table %s exists; using it", self.world.table_name)

    async def _invoke(self, route_key: str, event: dict, request_id: str) -> Any:
        return await self._functions[route_key].invoke(event, request_id)

    async def stop(self) -> None:
        """Stop accepting connections, close every open one (each gets its
        ``$disconnect``), then stop the functions and the embedded DynamoDB.
        Safe to call after a failed or partial start."""
        try:
            if self._site is not None:
                await self._site.stop()  # no new connections from here on
            if self.gateway is not None:
                await self.gateway.close_all()
        finally:
            try:
                if self._runner is not None:
                    await self._runner.cleanup()
                    self._runner = None
                await asyncio.gather(*(f.stop() for f in self._functions.values()), return_exceptions=True)
                self._functions.clear()
            finally:
                if self._embedded is not None:
                    self._embedded.stop()
                    self._embedded = None
                if self._scratch is not None:
                    shutil.rmtree(self._scratch, ignore_errors=True)
                    self._scratch = None


@contextlib.contextmanager
def running(**options: Any) -> Iterator[LocalServer]:
    """Run a :class:`LocalServer` on a thread of its own (for tests and scripts):
    ``with running(port=0) as server: ...``. Stops it, ``$disconnect`` and all,
    when the block ends."""
    server = LocalServer(**options)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            loop.run_until_complete(server.stop())
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())

    thread = threading.Thread(target=serve, name="channel-server-local", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m channel_server.local",
        description="Run the channel server on this machine: the component's own routes and "
        "handlers behind a local API Gateway, with an embedded DynamoDB.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port for WebSocket and management API; 0 picks a free one (default 8080)")
    parser.add_argument("--stage", default="dev", help="stage name, the URL's path (default dev)")
    parser.add_argument("--dynamodb-endpoint", metavar="URL", help="use this DynamoDB (DynamoDB Local, or AWS) instead of the embedded one")
    parser.add_argument("--management-latency-ms", type=float, default=0, metavar="N", help="add N ms to every management API call, like the round trip to AWS")
    parser.add_argument("--idle-timeout", type=float, default=gateway_module.IDLE_TIMEOUT_SECONDS, metavar="SECONDS", help="close connections idle this long (default 600, as AWS)")
    parser.add_argument("--max-lifetime", type=float, default=gateway_module.MAX_LIFETIME_SECONDS, metavar="SECONDS", help="close connections this old (default 7200, as AWS)")
    parser.add_argument("--handler-log-level", default="WARNING", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="log level of the handlers' own logging (default WARNING)")
    return parser.parse_args(argv)


async def serve(options: argparse.Namespace) -> None:
    server = LocalServer(
        host=options.host,
        port=options.port,
        stage=options.stage,
        dynamodb_endpoint=options.dynamodb_endpoint,
        management_latency_ms=options.management_latency_ms,
        idle_timeout=options.idle_timeout,
        max_lifetime=options.max_lifetime,
        handler_log_level=options.handler_log_level,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        print(f"channel-server local mode, stage {server.stage}", flush=True)
        print(f"  WebSocket URL:  {server.url}", flush=True)
        print(f"  Management API: {server.management_url}/@connections/{{connectionId}}", flush=True)
        print(f"  DynamoDB:       {server.dynamodb_endpoint} (table {server.table_name})", flush=True)
        print("Ctrl-C to stop.", flush=True)
        await stop.wait()
        print("stopping: closing connections", flush=True)
    finally:
        await server.stop()
    print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        asyncio.run(serve(options))
    except (OSError, InvocationError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
