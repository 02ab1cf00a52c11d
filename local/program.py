"""Reads what local mode serves (a :class:`~.world.World`) from the component itself.

:func:`from_project` runs a Pulumi program with a stack's config (a team's own
program, or this repository's ``__main__.py``), :func:`from_component` a bare
``ChannelServer``, under Pulumi's mock engine (``channel_server.mocks``). Each
then follows what the ChannelServer registered (only what was created under it,
so other resources of the program are ignored), as API Gateway would: the
API's route selection expression; each Route → its Integration → the Function
whose invoke ARN the integration targets → that function's handler, code
archive, environment, timeout and memory; each Route's route
response, which makes the route two-way; ``$connect``'s authorizer → its
identity sources and the function it invokes (defined anywhere in the
program); the Table's keys,
indexes and TTL; the Stage's name; each SQS queue (with its redrive policy)
and the event source mapping that feeds a function from it; each function
URL → the function it names. Nothing about routes, handlers, environment
or schema is written down a second time here, so local mode serves whatever
the component declares, and proves its wiring every time it starts.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .. import resource_types
from ..handlers import spec
from ..resource_types import (API, AUTHORIZER, FUNCTION, FUNCTION_URL, INTEGRATION, INTEGRATION_RESPONSE, MAPPING,
                              QUEUE, ROUTE, ROUTE_RESPONSE, SCHEDULE, STAGE, TABLE)
from .placeholders import ACCOUNT, REGION
from .world import (AuthorizerDef, FunctionDef, FunctionUrlDef, HttpIntegration, QueueDef, ScheduleDef, Subscription,
                    WiringError, World)

if TYPE_CHECKING:
    from .. import mocks

# Pulumi and the mocks are imported where a deployment is run or read, not
# here: local mode runs the deployment in a child process (load_world_child),
# and keeps only the World's plain dataclasses, without Pulumi's memory.

#: Local mode's log lines (the command's, and the child that reads the world).
LOG_FORMAT, LOG_DATE_FORMAT = "%(asctime)s %(message)s", "%H:%M:%S"


class ProgramError(Exception):
    """The Pulumi program could not be run, or it declares no ChannelServer to
    serve (or several, and none was picked); the message says which."""


def from_component(stage: str = "dev", name: str = "channel-server", args: Mapping[str, Any] | None = None) -> World:
    """Deploy ``ChannelServer(name, {stage_name: stage, **args})`` under mocks and
    read the world it declares."""
    from .. import ChannelServer

    settings = {**(args or {}), "stage_name": stage}
    return from_program(lambda: ChannelServer(name, settings))  # type: ignore[arg-type]


def from_program(program: Callable[[], Any], component: str | None = None) -> World:
    """Read the world of the ChannelServer a program creates (the one named
    ``component`` when it creates several)."""
    from .. import mocks

    deployment = _deploy_isolated(lambda: mocks.deploy(program))
    return _read(deployment, component, "the program")


def from_project(path: str | Path, stack: str = "dev", component: str | None = None,
                 *, stack_required: bool = False, config: Mapping[str, str] | None = None,
                 turn_on: list[tuple[str, str, str]] | tuple[tuple[str, str, str], ...] = ()) -> World:
    """Read the world of the ChannelServer that the Pulumi project at ``path``
    (its folder or its program file) declares for ``stack``, run with the
    config ``pulumi up`` would give it: ``Pulumi.yaml``'s values overlaid with
    ``Pulumi.<stack>.yaml``'s (which must exist when ``stack_required``), then
    ``config`` (``--config KEY=VALUE``, as ``pulumi up --config`` would).

    ``turn_on`` holds ``(flag, key, value)``: a local-mode flag that needs a
    feature, and the config key and value that turn it on. Each is set when
    the config leaves the feature off (the key unset, empty or 0) and
    ``config`` does not name the key."""
    from .. import mocks

    try:
        project = mocks.Project.load(path)
        values, secrets = project.config(stack, required=stack_required)
    except mocks.ProjectError as exc:
        raise ProgramError(str(exc)) from None
    log = logging.getLogger("channel_server.local")
    log.info("running %s (stack %s) under Pulumi's mock engine", project.program, stack)
    if not (project.directory / f"Pulumi.{stack}.yaml").is_file():
        log.info("no Pulumi.%s.yaml in %s: the program gets Pulumi.yaml's config only", stack, project.directory)
    if secrets:
        log.warning(
            "secret config %s cannot be decrypted without the Pulumi CLI: the program gets a placeholder",
            ", ".join(secrets),
        )
    overrides = dict(config or {})
    if overrides:
        log.info("config from --config: %s", ", ".join(f"{key}={value}" for key, value in overrides.items()))
    undeclared = [key for key in overrides
                  if project.declared and mocks._qualified(project.name, key) not in project.declared]
    if undeclared:
        log.warning("--config %s: Pulumi.yaml declares no such key, so the program may not read it (it declares %s)",
                    ", ".join(undeclared), ", ".join(sorted(k.split(":", 1)[1] for k in project.declared
                                                           if k.startswith(f"{project.name}:"))))
    for flag, key, value in turn_on:
        if key in overrides or values.get(f"{project.name}:{key}") not in FEATURE_OFF:
            continue
        overrides[key] = value
        log.info("%s: stack %s's config leaves %s off; setting it for this run", flag, stack, key)

    try:
        deployment = _deploy_isolated(lambda: project.deploy(stack, required=stack_required, overrides=overrides))
    except Exception as exc:
        raise ProgramError(f"{project.program} failed: {_describe(exc, project.program)}") from exc
    unread = [key for key in (config or {}) if key not in undeclared
              and mocks._qualified(project.name, key) not in deployment.config_read]
    if unread:
        log.warning("--config %s: the program did not read it, so it changes nothing in this run",
                    ", ".join(unread))
    return _read(deployment, component, str(project.program))


#: Config values that leave a feature off: Pulumi.yaml declares each feature's
#: key with one of these as its default.
FEATURE_OFF = (None, "", 0, "0", False, "false")


def _describe(exc: BaseException, program: Path) -> str:
    """The exception, and where in the program it was raised from."""
    import traceback

    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == program.resolve()]
    return f"{text} (line {frames[-1].lineno})" if frames else text


def _deploy_isolated(deploy: Callable[[], mocks.Deployment]) -> mocks.Deployment:
    """Run the mock deployment on a thread of its own, so Pulumi's event loop
    never meets the server's."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            outcome["deployment"] = deploy()
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


def _read(deployment: mocks.Deployment, component: str | None, program: str) -> World:
    """The world of one ChannelServer in ``deployment``: the resources created
    under it, followed as API Gateway follows them."""
    from .. import mocks
    from ..component import TYPE_TOKEN

    servers = deployment.of_type(TYPE_TOKEN)
    names = ", ".join(sorted(s.name for s in servers))
    if component is not None:
        chosen = [s for s in servers if s.name == component]
        if not chosen:
            declared = f"it declares: {names}" if servers else "it declares none"
            raise ProgramError(f"{program} declares no ChannelServer named {component!r}; {declared}")
    elif len(servers) > 1:
        raise ProgramError(
            f"{program} declares {len(servers)} ChannelServers ({names}); pick one with --component NAME"
        )
    else:
        chosen = servers
    if not chosen:
        raise ProgramError(f"{program} declares no ChannelServer; local mode serves one")
    own = mocks.Deployment(resources=deployment.descendants(chosen[0].urn))

    api = own.one(API)
    stage = own.one(STAGE)
    table = own.one(TABLE)
    functions_by_invoke_arn = {f["invokeArn"]: f for f in own.of_type(FUNCTION)}
    routes: dict[str, FunctionDef] = {}
    http_routes: dict[str, HttpIntegration] = {}
    for route in own.of_type(ROUTE):
        key = route["routeKey"]
        target = route.get("target") or ""
        if not target.startswith("integrations/"):
            raise WiringError(f"route {key} has no integration target ({target!r})")
        integration = own.by_id(target.removeprefix("integrations/"), INTEGRATION)
        kind = integration.get("integrationType")
        if kind == "HTTP":
            http_routes[key] = _http_integration(own, key, integration)
            continue
        if kind != "AWS_PROXY":
            raise WiringError(f"route {key}: local mode serves AWS_PROXY and HTTP integrations, not {kind}")
        function = functions_by_invoke_arn.get(integration.get("integrationUri"))
        if function is None:
            raise WiringError(f"route {key}: its integration targets no function of this component")
        routes[key] = _function_def(function)
    two_way = _two_way_routes(own)
    if not routes and not http_routes:
        raise WiringError("the component registered no routes")
    queues = _queues(own)
    subscriptions = _subscriptions(own, {queue.arn: queue for queue in queues})
    # arn:aws:execute-api:{region}:{account}:{apiId}
    _, _, _, region, account, *_ = (api.get("executionArn") or f"arn:aws:execute-api:{REGION}:{ACCOUNT}:").split(":")
    return World(
        stage=stage["name"],
        route_selection_expression=api["routeSelectionExpression"],
        routes=routes,
        table_name=table["name"],
        table=dict(table.inputs),
        management_endpoint=spec.management_endpoint(api["apiEndpoint"], stage["name"]),
        two_way=frozenset(two_way),
        queues=queues,
        subscriptions=subscriptions,
        http_routes=http_routes,
        schedules=_schedules(own),
        authorizer=_authorizer(own, deployment),
        function_urls=_function_urls(own),
        stage_variables={key: str(value) for key, value in (stage.get("stageVariables") or {}).items()},
        region=region,
        account=account,
    )


def _authorizer(own: mocks.Deployment, deployment: mocks.Deployment) -> AuthorizerDef | None:
    """The authorizer ``$connect`` uses, as API Gateway would run it; a
    WiringError for one API Gateway would refuse (on another route, of a type
    WebSocket APIs lack). Its function is looked up in the whole deployment: a
    program may define it beside the ChannelServer rather than under it."""
    found = None
    for route in own.of_type(ROUTE):
        key, kind, authorizer_id = route["routeKey"], route.get("authorizationType"), route.get("authorizerId")
        if kind in (None, "", "NONE") and not authorizer_id:
            continue
        if key != spec.CONNECT_ROUTE:
            raise WiringError(f"route {key}: API Gateway authorizes a WebSocket API's $connect route only, "
                              f"not {key} (authorization type {kind or 'NONE'})")
        if kind != "CUSTOM":
            raise WiringError(f"route $connect: local mode serves Lambda REQUEST authorizers (authorization type "
                              f"CUSTOM), not {kind or 'NONE'}")
        if not authorizer_id:
            raise WiringError("route $connect: authorization type CUSTOM without an authorizer id")
        try:
            found = own.by_id(authorizer_id, AUTHORIZER)
        except LookupError:
            raise WiringError(f"route $connect: its authorizer {authorizer_id!r} is not one of this API's") from None
    if found is None:
        return None
    if found.get("authorizerType") != "REQUEST":
        raise WiringError(f"authorizer {found.name}: WebSocket APIs have REQUEST authorizers only, "
                          f"not {found.get('authorizerType')!r}")
    uri = found.get("authorizerUri") or ""
    function_arn = resource_types.invoked_function_arn(uri)
    if function_arn is None:
        raise WiringError(f"authorizer {found.name}: its authorizerUri is not a Lambda function's ({uri!r})")
    sources = tuple(found.get("identitySources") or ())
    function = _function_by_arn(deployment, function_arn, uri)
    if function is None:
        return AuthorizerDef(found.name, sources, function_arn,
                             unavailable=f"its function {function_arn} is not defined by the program")
    try:
        definition = _function_def(function)
    except WiringError as exc:
        return AuthorizerDef(found.name, sources, function_arn, unavailable=str(exc))
    return AuthorizerDef(found.name, sources, function_arn, definition)


def _function_by_arn(deployment: mocks.Deployment, arn: str, invoke_uri: str) -> mocks.Registered | None:
    """The program's function that ``arn`` names (an alias or version of it too)."""
    functions = deployment.of_type(FUNCTION)
    for function in functions:
        if function.get("arn") == arn or function.get("invokeArn") == invoke_uri:
            return function
    unqualified = ":".join(arn.split(":")[:7])  # arn:aws:lambda:{region}:{account}:function:{name}[:{qualifier}]
    return next((f for f in functions if f.get("arn") == unqualified), None)


def _http_integration(own: mocks.Deployment, key: str, integration: mocks.Registered) -> HttpIntegration:
    """A route's HTTP integration: only what API Gateway's non-proxy HTTP
    integrations do that local mode does too, else a WiringError."""
    templates = dict(integration.get("requestTemplates") or {})
    if not templates:
        raise WiringError(f"route {key}: its HTTP integration has no request template (local mode serves "
                          "non-proxy HTTP integrations, which post the rendered template)")
    responses = tuple(r["integrationResponseKey"] for r in own.of_type(INTEGRATION_RESPONSE)
                      if r["integrationId"] == integration.id)
    if not responses:
        raise WiringError(f"route {key}: a non-proxy integration needs an integration response; API Gateway "
                          "would fail every request after the backend answered")
    parameters = {}
    for name, value in (integration.get("requestParameters") or {}).items():
        if not (name.startswith("integration.request.header.") and value.startswith("'") and value.endswith("'")):
            raise WiringError(f"route {key}: local mode maps static headers only, not {name} = {value}")
        parameters[name] = value
    return HttpIntegration(
        url=integration["integrationUri"],
        timeout_ms=int(integration.get("timeoutMilliseconds") or spec.INTEGRATION_TIMEOUT_SECONDS * 1000),
        request_templates=templates,
        template_selection_expression=integration.get("templateSelectionExpression") or "",
        request_parameters=parameters,
        response_keys=responses,
    )


def _schedules(own: mocks.Deployment) -> tuple[ScheduleDef, ...]:
    functions = {function["arn"]: function for function in own.of_type(FUNCTION)}
    found = []
    for schedule in own.of_type(SCHEDULE):
        target = schedule.get("target") or {}
        function = functions.get(target.get("arn"))
        if function is None:
            raise WiringError(f"schedule {schedule.name}: it invokes no function of this component")
        found.append(ScheduleDef(schedule.name, schedule["scheduleExpression"], _function_def(function),
                                 target.get("input") or "{}"))
    for definition in found:
        definition.interval_seconds  # noqa: B018 (a schedule local mode cannot run fails here, at start-up)
    return tuple(found)


def _queues(own: mocks.Deployment) -> tuple[QueueDef, ...]:
    import json

    found = []
    for queue in own.of_type(QUEUE):
        redrive = json.loads(queue.get("redrivePolicy") or "{}")
        found.append(QueueDef(
            name=queue["name"],
            url=queue["url"],
            arn=queue["arn"],
            visibility_timeout_seconds=int(queue.get("visibilityTimeoutSeconds") or 30),
            dead_letter_arn=redrive.get("deadLetterTargetArn"),
            max_receives=int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
        ))
    arns = {queue.arn for queue in found}
    for definition in found:
        if definition.dead_letter_arn is not None and definition.dead_letter_arn not in arns:
            raise WiringError(f"queue {definition.name}: its dead-letter queue is not one of this component's")
    return tuple(sorted(found, key=lambda queue: queue.dead_letter_arn is not None))


def _functions_by_arn_and_name(own: mocks.Deployment) -> dict[str, mocks.Registered]:
    """The component's functions, by ARN and by name: Lambda takes either
    wherever a function is named (an event source mapping, a function URL)."""
    functions = {}
    for function in own.of_type(FUNCTION):
        functions[function["arn"]] = functions[function["name"]] = function
    return functions


def _named_function(functions: Mapping[str, mocks.Registered], resource: mocks.Registered,
                    kind: str) -> mocks.Registered:
    """The function ``resource`` (a ``kind``) names in its ``functionName``
    (see :func:`_functions_by_arn_and_name`); a WiringError when it is none of
    the component's."""
    function = functions.get(resource.get("functionName"))
    if function is None:
        raise WiringError(f"{kind} {resource.name}: it names no function of this component "
                          f"({resource.get('functionName')!r})")
    return function


def _subscriptions(own: mocks.Deployment, queues: Mapping[str, QueueDef]) -> tuple[Subscription, ...]:
    functions = _functions_by_arn_and_name(own)
    found = []
    for mapping in own.of_type(MAPPING):
        queue = queues.get(mapping.get("eventSourceArn"))
        if queue is None:
            raise WiringError(f"event source mapping {mapping.name}: "
                              "local mode serves SQS queues of this component only")
        function = _named_function(functions, mapping, "event source mapping")
        found.append(Subscription(queue, _function_def(function), int(mapping.get("batchSize") or 10)))
    return tuple(found)


def _function_urls(own: mocks.Deployment) -> tuple[FunctionUrlDef, ...]:
    """Each function URL → the function its ``functionName`` names (by name
    or ARN, as Lambda takes either), as local mode can serve it."""
    functions = _functions_by_arn_and_name(own)
    found = []
    for url in own.of_type(FUNCTION_URL):
        function = _named_function(functions, url, "function URL")
        kind = url.get("authorizationType")
        if kind not in ("AWS_IAM", "NONE"):
            raise WiringError(f"function URL {url.name}: its authorization type is AWS_IAM or NONE, not {kind!r}")
        if url.get("invokeMode") not in (None, "", "BUFFERED"):
            raise WiringError(f"function URL {url.name}: local mode serves BUFFERED function URLs, "
                              f"not {url.get('invokeMode')}")
        if url.get("qualifier"):
            raise WiringError(f"function URL {url.name}: local mode serves a function's $LATEST, "
                              f"not the qualifier {url.get('qualifier')!r}")
        found.append(FunctionUrlDef(_function_def(function), url["urlId"], url["functionUrl"], kind))
    return tuple(found)


def _two_way_routes(own: mocks.Deployment) -> set[str]:
    """Route keys whose answers API Gateway sends back: a ``$default`` route
    response on the route, picked by its route response selection expression."""
    routes_by_id = {route.id: route for route in own.of_type(ROUTE)}
    two_way = set()
    for response in own.of_type(ROUTE_RESPONSE):
        route = routes_by_id.get(response["routeId"])
        if route is None:
            raise WiringError(f"a route response is attached to no route of this component ({response['routeId']!r})")
        if response["routeResponseKey"] != spec.ROUTE_RESPONSE_KEY:
            raise WiringError(f"route {route['routeKey']}: WebSocket APIs have only the $default route response, "
                              f"not {response['routeResponseKey']!r}")
        if route.get("routeResponseSelectionExpression") != spec.ROUTE_RESPONSE_SELECTION_EXPRESSION:
            # without the expression, API Gateway never picks the response
            continue
        two_way.add(route["routeKey"])
    return two_way


def _function_def(function: mocks.Registered) -> FunctionDef:
    import pulumi

    code = function["code"]
    if not isinstance(code, pulumi.AssetArchive):
        raise WiringError(f"function {function.name}: code is {type(code).__name__}, expected an AssetArchive")
    files: dict[str, str] = {}
    for name, asset in code.assets.items():
        if isinstance(asset, pulumi.StringAsset):
            files[name] = asset.text
        elif isinstance(asset, pulumi.FileAsset):
            files[name] = Path(asset.path).read_text(encoding="utf-8")
        else:
            raise WiringError(f"function {function.name}: archive entry {name} is neither a file nor a text")
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



def load_world(program: str | Path | None, stack: str, component: str | None, stack_required: bool,
               stage: str | None, args: Mapping[str, Any] | None = None, config: Mapping[str, str] | None = None,
               turn_on: list[tuple[str, str, str]] | tuple[tuple[str, str, str], ...] = ()) -> World:
    """The world of ``program`` (with ``config`` and ``turn_on``, see
    :func:`from_project`; else ChannelServer with its defaults and ``args``,
    on ``stage``): what ``LocalServer._load_world`` runs in its child process
    (:func:`load_world_child`)."""
    if program is not None:
        return from_project(program, stack, component, stack_required=stack_required, config=config,
                            turn_on=turn_on)
    return from_component(stage or "dev", args=args)


def load_world_child() -> None:
    """The child process of ``LocalServer._load_world``: the request as JSON
    on stdin; the World, or the ProgramError/WiringError, pickled on stdout.
    Its log lines go to stderr, which it shares with local mode."""
    # No cycle collection in this short-lived process, and no interpreter
    # teardown at its end: Pulumi's runtime leaves event loops behind whose
    # finalizers, run by a collection after their sockets' own, printed
    # "Exception ignored in BaseEventLoop.__del__" tracebacks now and then.
    gc.disable()
    program, stack, component, stack_required, stage, level, args, config, turn_on = json.load(sys.stdin)
    logging.basicConfig(stream=sys.stderr, level=level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT)
    try:
        outcome: Any = load_world(program, stack, component, stack_required, stage, args, config,
                                  [tuple(entry) for entry in turn_on])
    except (ProgramError, WiringError) as exc:
        outcome = exc
    sys.stdout.buffer.write(pickle.dumps(outcome))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
