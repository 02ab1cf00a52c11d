"""What local mode serves, read from the component itself.

:func:`from_component` deploys ``ChannelServer`` under Pulumi's mock engine
(``channel_server.mocks``) and follows what it registered, as API Gateway
would: the API's route selection expression; each Route → its Integration →
the Function whose invoke ARN the integration targets → that function's
handler, code archive, environment, timeout and memory; the Table's keys,
indexes and TTL; the Stage's name. Nothing about routes, handlers, environment
or schema is written down a second time here, so local mode serves whatever
the component declares, and proves its wiring every time it starts.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pulumi

from .. import mocks
from ..handlers import spec

API = "aws:apigatewayv2/api:Api"
ROUTE = "aws:apigatewayv2/route:Route"
INTEGRATION = "aws:apigatewayv2/integration:Integration"
FUNCTION = "aws:lambda/function:Function"
TABLE = "aws:dynamodb/table:Table"
STAGE = "aws:apigatewayv2/stage:Stage"


class WiringError(Exception):
    """The component registered something API Gateway could not serve."""


@dataclass(frozen=True)
class FunctionDef:
    """One Lambda function as the component declared it."""

    name: str
    handler: str
    environment: Mapping[str, str]
    files: Mapping[str, Path]
    """Archive path → source file: the function's code archive."""
    timeout_seconds: float
    memory_mb: int
    arn: str
    log_group: str

    def unpack(self, into: Path) -> Path:
        """Lay the archive out as Lambda does under /var/task."""
        for name, source in self.files.items():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return into


@dataclass(frozen=True)
class World:
    """The channel server as registered: what local mode builds and serves."""

    stage: str
    route_selection_expression: str
    routes: Mapping[str, FunctionDef]
    """Route key → the function behind it."""
    table_name: str
    table: Mapping[str, Any] = field(repr=False)
    """The registered inputs of the Table (keys, attributes, indexes, TTL)."""
    management_endpoint: str = ""
    """The stage's management API in AWS (``https://{api}.execute-api…/{stage}``):
    local mode points every environment value equal to it at its own."""

    @property
    def message_routes(self) -> set[str]:
        """Route keys a frame can select (everything but $connect/$disconnect/$default)."""
        return {key for key in self.routes if not key.startswith("$")}


def from_component(stage: str = "dev", name: str = "channel-server", args: Mapping[str, Any] | None = None) -> World:
    """Deploy ``ChannelServer(name, {stage_name: stage, **args})`` under mocks and
    read the world it declares."""
    from .. import ChannelServer

    settings = {**(args or {}), "stage_name": stage}
    return from_program(lambda: ChannelServer(name, settings))  # type: ignore[arg-type]


def from_program(program: Callable[[], Any]) -> World:
    """Read the world of any program that creates exactly one ChannelServer."""
    deployment = _deploy_isolated(program)
    return _read(deployment)


def _deploy_isolated(program: Callable[[], Any]) -> mocks.Deployment:
    """Run the mock deployment on a thread of its own, so Pulumi's event loop
    never meets the server's."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            outcome["deployment"] = mocks.deploy(program)
        except BaseException as exc:  # re-raised on the caller's thread
            outcome["error"] = exc
        finally:
            loop.close()
            asyncio.set_event_loop(None)

    thread = threading.Thread(target=run, name="mock-deploy")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["deployment"]


def _read(deployment: mocks.Deployment) -> World:
    api = deployment.one(API)
    stage = deployment.one(STAGE)
    table = deployment.one(TABLE)
    functions_by_invoke_arn = {f["invokeArn"]: f for f in deployment.of_type(FUNCTION)}
    routes: dict[str, FunctionDef] = {}
    for route in deployment.of_type(ROUTE):
        key = route["routeKey"]
        target = route.get("target") or ""
        if not target.startswith("integrations/"):
            raise WiringError(f"route {key} has no integration target ({target!r})")
        integration = deployment.by_id(target.removeprefix("integrations/"), INTEGRATION)
        if integration.get("integrationType") != "AWS_PROXY":
            raise WiringError(f"route {key}: local mode serves AWS_PROXY integrations, not {integration.get('integrationType')}")
        function = functions_by_invoke_arn.get(integration.get("integrationUri"))
        if function is None:
            raise WiringError(f"route {key}: its integration targets no function of this component")
        routes[key] = _function_def(function)
    if not routes:
        raise WiringError("the component registered no routes")
    return World(
        stage=stage["name"],
        route_selection_expression=api["routeSelectionExpression"],
        routes=routes,
        table_name=table["name"],
        table=dict(table.inputs),
        management_endpoint=spec.management_endpoint(api["apiEndpoint"], stage["name"]),
    )


def _function_def(function: mocks.Registered) -> FunctionDef:
    code = function["code"]
    if not isinstance(code, pulumi.AssetArchive):
        raise WiringError(f"function {function.name}: code is {type(code).__name__}, expected an AssetArchive")
    files: dict[str, Path] = {}
    for name, asset in code.assets.items():
        if not isinstance(asset, pulumi.FileAsset):
            raise WiringError(f"function {function.name}: archive entry {name} is not a file")
        files[name] = Path(asset.path)
    variables = ((function.get("environment") or {}).get("variables")) or {}
    return FunctionDef(
        name=function["name"],
        handler=function["handler"],
        environment={key: str(value) for key, value in variables.items()},
        files=files,
        timeout_seconds=float(function.get("timeout") or 3),
        memory_mb=int(function.get("memorySize") or 128),
        arn=function["arn"],
        log_group=((function.get("loggingConfig") or {}).get("logGroup")) or f"/aws/lambda/{function['name']}",
    )


def scratch_dir() -> Path:
    """A private folder for unpacked archives; removed by the caller."""
    return Path(tempfile.mkdtemp(prefix="channel-server-local-"))
