"""Local mode's server: :class:`LocalServer`, and :func:`running` to run one on a thread.

Builds, in one process, the world a Pulumi program's ``ChannelServer`` declares
(``world``): an embedded DynamoDB with the component's table, each of the
component's functions running its own archive in a process of its own
(``functions``), and a local API Gateway in front of them (``gateway``). The
handlers reach DynamoDB and the management API with endpoints from their
environment, exactly as in AWS. The command line, ``python -m
channel_server.local``, is ``local.cli``; the options' rules are ``local.options``.

Start-up binds the port first (a port in use is reported before anything else
is done) and listens on it last, once every function has started: whoever
connects the moment the port accepts finds the whole server ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Mapping

from aiohttp import web

from ..handlers import spec
from . import account as account_module
from . import authorizer as authorizer_module
from . import gateway as gateway_module
from . import queues as queues_module
from . import schedules as schedules_module
from .function_urls import FUNCTION_URL_PREFIX
from .functions import DEFAULT_CONCURRENCY, LocalFunction
from .management_port import GatewaySite
from .options import REFERENCE_BACKEND, SERVER_PUBLISH_WITH_BACKEND, authorizer_problem, check_option, url_problem
from .placeholders import LOCAL_CREDENTIALS, REGION
from .ports import PortInUse, bind, port_in_use_reported  # noqa: F401 - PortInUse: importable here as before
from .program import ProgramError
from .world import FunctionDef, World, scratch_dir

log = logging.getLogger("channel_server.local")

#: Local mode's garbage collector thresholds (Python's defaults: 700, 10, 10):
#: young collections every 10,000 allocations, older ones 50 times rarer each.
#: With the defaults, collections walking moto's tables took a third of a
#: 1,000-member publish (bench/fanout.py, README "Performance").
GC_THRESHOLDS = (10_000, 50, 50)
#: What the functions inherit from this process when DynamoDB is a real endpoint.
PASSED_THROUGH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                  "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "HOME")


#: The handlers' DynamoDB read timeout when DynamoDB is the embedded one, whose
#: query of a channel takes about 0.5 ms per member (2 s, the timeout sized for
#: AWS, at 5,000 members).
EMBEDDED_DYNAMODB_READ_TIMEOUT = 15

#: The backend URL a served world is built with when local mode starts the
#: reference backend: replaced by the backend's own once it listens.
REFERENCE_BACKEND_PLACEHOLDER = "http://127.0.0.1/reference-backend"


class LocalServer:
    """The whole channel server on one machine.

    ``await start()`` then use ``url`` (clients) and ``management_url``;
    ``await stop()`` closes every connection (each gets its ``$disconnect``),
    then stops the functions and the embedded DynamoDB.

    What it serves: ``world`` when given; else the ChannelServer of the Pulumi
    program at ``program`` (a project folder or program file) with ``stack``'s
    config (``component`` picks one when it declares several); else
    ``ChannelServer`` with its defaults. ``stage`` replaces the stage name the
    program declares (the URL's path).

    ``authorizer`` (``PATH[:FUNCTION]``, a Python file and its handler) is the
    code of ``$connect``'s authorizer function: the one the program's
    authorizer names when the program does not define it (or replaces the
    one it defines); without a program, ChannelServer is served with an
    authorizer whose identity sources are ``authorizer_identity_sources``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        stage: str | None = None,
        program: str | Path | None = None,
        stack: str = "dev",
        component: str | None = None,
        stack_required: bool = False,
        dynamodb_endpoint: str | None = None,
        management_latency_ms: float = 0,
        management_from_anywhere: bool = False,
        idle_timeout: float = gateway_module.IDLE_TIMEOUT_SECONDS,
        max_lifetime: float = gateway_module.MAX_LIFETIME_SECONDS,
        function_concurrency: int = DEFAULT_CONCURRENCY,
        inline_fanout_limit: int | None = None,
        posts_per_second: int | None = None,
        account_quota: float = account_module.DEFAULT_RATE,
        heartbeat_seconds: float | None = None,
        backend: str | None = None,
        authorizer: str | None = None,
        authorizer_identity_sources: list[str] | tuple[str, ...] | None = None,
        world: World | None = None,
        handler_log_level: str = "WARNING",
        config: Mapping[str, str] | None = None,
        server_publish: bool = False,
    ):
        for flag, value in (("--port", port), ("--idle-timeout", idle_timeout), ("--max-lifetime", max_lifetime),
                            ("--function-concurrency", function_concurrency),
                            ("--inline-fanout-limit", inline_fanout_limit), ("--heartbeat-seconds", heartbeat_seconds),
                            ("--posts-per-second", posts_per_second), ("--account-quota", account_quota),
                            ("--management-latency-ms", management_latency_ms)):
            check_option(flag, value)
        self._function_concurrency = function_concurrency
        self._inline_fanout_limit = inline_fanout_limit
        self._posts_per_second = posts_per_second
        self._account_quota = account_quota
        self._heartbeat_seconds = heartbeat_seconds
        #: Whether local mode starts the reference HTTP backend itself (``--backend reference``).
        self._reference_backend = backend == REFERENCE_BACKEND
        if self._reference_backend:
            backend = REFERENCE_BACKEND_PLACEHOLDER
        elif backend is not None:
            problem = url_problem(backend)
            if problem:
                raise ValueError(f"--backend {backend}: {problem}, or reference")
        self._backend = backend
        if server_publish and backend is not None:
            raise ValueError(SERVER_PUBLISH_WITH_BACKEND)
        #: Whether ChannelServer is served with its server publish endpoint (``--server-publish``).
        self._server_publish = server_publish
        if config and program is None:
            raise ValueError("--config: sets a Pulumi program's config; give --program PATH, or run from a folder "
                             "with a Pulumi.yaml")
        self._config = dict(config or {})
        problem = authorizer_problem(authorizer, authorizer_identity_sources, backend,
                                     served=program is not None or world is not None)
        if problem:
            raise ValueError(problem)
        self._authorizer_file = authorizer_module.parse_spec(authorizer) if authorizer is not None else None
        self._identity_sources = tuple(authorizer_identity_sources or ())
        self.host, self.port = host, port
        self._stage_override = stage
        self.stage = stage or (world.stage if world is not None else "dev")
        self._program, self._stack, self._component = program, stack, component
        self._stack_required = stack_required
        self._dynamodb_endpoint = dynamodb_endpoint
        self._latency = management_latency_ms
        self._management_from_anywhere = management_from_anywhere
        self._idle_timeout, self._max_lifetime = idle_timeout, max_lifetime
        self.world = world
        self._handler_log_level = handler_log_level
        self._socket: socket.socket | None = None
        self._embedded: Any = None
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self._functions: dict[str, LocalFunction] = {}
        #: Functions behind event source mappings, by function name, and their pollers.
        self._workers: dict[str, LocalFunction] = {}
        self._pollers: list[queues_module.Poller] = []
        self._schedulers: list[schedules_module.Scheduler] = []
        self._http: Any = None
        self._sends = queues_module.SendWatcher()
        #: Declared queue URL → the local queue's URL.
        self._queue_urls: dict[str, str] = {}
        self._local_queues: dict[str, tuple[str, str]] = {}
        self._scratch: Path | None = None
        self.gateway: gateway_module.Gateway | None = None
        #: The event loop it runs on, once started (a test waits for the gateway's events on it).
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The $connect authorizer's function, when the world has an authorizer.
        self._authorizer_function: LocalFunction | None = None
        #: The functions behind function URLs, by function name.
        self._url_functions: dict[str, LocalFunction] = {}
        #: The reference HTTP backend's process, with ``--backend reference``.
        self._reference: Any = None

    @property
    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literals in brackets
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The clients' WebSocket URL, ``ws://HOST:PORT/STAGE``."""
        return f"ws://{self._authority}/{self.stage}"

    @property
    def page_url(self) -> str:
        """The page to try channels in a browser, ``http://HOST:PORT/``."""
        return f"http://{self._authority}/"

    @property
    def management_url(self) -> str:
        """The management API's base URL, ``http://HOST:PORT/STAGE``."""
        return f"http://{self._authority}/{self.stage}"

    @property
    def publish_url(self) -> str | None:
        """The server publish endpoint, ``http://HOST:PORT/@lambda-url/{function}/``
        (its function URL in AWS), when the world has one; else None."""
        for url in self.world.function_urls if self.world is not None else ():
            if url.function.handler == spec.SERVER_PUBLISH.handler:
                return self.function_url(url.function.name)
        return None

    def function_url(self, function_name: str) -> str:
        """Where local mode serves the function URL of ``function_name``."""
        return f"http://{self._authority}{FUNCTION_URL_PREFIX}/{function_name}/"

    @property
    def dynamodb_endpoint(self) -> str:
        return self._dynamodb_endpoint or self._embedded.endpoint

    @property
    def sqs_endpoint(self) -> str:
        return self._embedded.endpoint

    @property
    def table_name(self) -> str:
        assert self.world is not None
        return self.world.table_name

    def _load_world(self) -> World:
        """The world to serve. A program runs in a child process: Pulumi's
        runtime (about 50 MB) never stays in local mode's own memory."""
        if self.world is not None:
            return self.world
        if self._program is None:  # a program's run is logged by the child, with the program file it found
            log.info("building ChannelServer with its defaults under Pulumi's mock engine")
        request = [str(self._program) if self._program is not None else None, self._stack, self._component,
                   self._stack_required, self._stage_override,
                   logging.getLogger("channel_server.local").getEffectiveLevel(), self._default_args(),
                   self._config, self._turn_on()]
        # A session of its own, as the functions have: a terminal's Ctrl-C
        # reaches local mode only, which stops once the world is read. It
        # imports local.program only, not this module (aiohttp and the rest).
        # It ignores SIGINT too: a Ctrl-C that reached it all the same (under a heavy
        # load, once: exit status -2) would end the start-up with a failure.
        child = subprocess.run(
            [sys.executable, "-c", "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
             "from channel_server.local.program import load_world_child; load_world_child()"],
            input=json.dumps(request).encode(), stdout=subprocess.PIPE, start_new_session=True, check=False,
        )
        if child.returncode != 0 or not child.stdout:
            raise ProgramError(f"reading the program failed (exit status {child.returncode}); see the lines above")
        outcome = pickle.loads(child.stdout)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _default_args(self) -> dict[str, Any]:
        """What the command line asks of ChannelServer when no program is
        served: heartbeats (at the shortest interval, shortened further by
        ``heartbeat_seconds``) and the HTTP backend."""
        args: dict[str, Any] = {}
        if self._heartbeat_seconds is not None:
            args["heartbeat_interval_minutes"] = spec.MIN_HEARTBEAT_MINUTES
        if self._backend is not None:
            args["backend"] = {"url": self._backend}
        if self._server_publish:
            args["server_publish"] = True
        if self._authorizer_file is not None:
            from ..args import DEFAULT_IDENTITY_SOURCES

            args["authorizer"] = {
                "function_arn": authorizer_module.PLACEHOLDER_FUNCTION_ARN,
                "identity_sources": list(self._identity_sources or DEFAULT_IDENTITY_SOURCES),
            }
        return args

    def _turn_on(self) -> list[tuple[str, str, str]]:
        """For a served program: the config each feature flag turns its feature
        on with, when the stack's config leaves it off (``(flag, key,
        value)``; see ``program.from_project``). The keys are those
        ``channel_server.from_config`` reads, as this repository's program does."""
        from ..config import config_key, object_config_keys

        turn_on = []
        if self._heartbeat_seconds is not None:
            turn_on.append(("--heartbeat-seconds", config_key("heartbeat_interval_minutes"),
                            str(spec.MIN_HEARTBEAT_MINUTES)))
        if self._backend is not None:
            turn_on.append(("--backend", object_config_keys("backend")["url"], self._backend))
        if self._server_publish:
            turn_on.append(("--server-publish", config_key("server_publish"), "true"))
        if self._authorizer_file is not None:
            turn_on.append(("--authorizer", object_config_keys("authorizer")["function_arn"],
                            authorizer_module.PLACEHOLDER_FUNCTION_ARN))
        return turn_on

    def _check_world(self, world: World) -> None:
        """Refuse flags the world cannot honour: a program decides what it has.
        Each flag has tried to turn its feature on through the config key
        ``from_config`` reads (``_turn_on``); a program that does not read it
        must turn the feature on itself."""
        keys = {flag: key for flag, key, _ in self._turn_on()}

        def refuse(flag: str, lacks: str, field: str) -> ProgramError:
            return ProgramError(
                f"{flag}: the program's ChannelServer {lacks}, and the config key {keys[flag]} does not turn it on "
                f"(the program does not read it); turn it on in the program's ChannelServerArgs ({field}), or set "
                "the config key the program reads for this run with --config KEY=VALUE")

        if self._heartbeat_seconds is not None and not world.schedules:
            raise refuse("--heartbeat-seconds", "has no heartbeat schedule", "heartbeat_interval_minutes")
        if self._backend is not None and not world.http_routes:
            raise refuse("--backend", "serves its routes from the Lambda handlers", "backend")
        if self._authorizer_file is not None and world.authorizer is None:
            raise refuse("--authorizer", "has no authorizer on $connect", "authorizer")
        if self._server_publish and not world.function_urls:
            raise refuse("--server-publish", "has no server publish endpoint", "server_publish")
        if self._inline_fanout_limit is not None and not world.subscriptions:
            raise ProgramError("--inline-fanout-limit: the program's ChannelServer has no fan-out queue (its routes "
                               "are served by an HTTP backend), so every publish posts to all members itself")
        if world.authorizer is not None and world.authorizer.function is None and self._authorizer_file is None:
            raise ProgramError(f"the authorizer on $connect cannot be run: {world.authorizer.unavailable}; give its "
                               "code with --authorizer PATH[:FUNCTION] (a Python file and its handler, "
                               "default handler)")

    def _authorizer_definition(self, world: World) -> FunctionDef:
        """The function the $connect authorizer runs: the file given, else the program's."""
        assert world.authorizer is not None
        if self._authorizer_file is not None:
            path, function = self._authorizer_file
            if world.authorizer.function is not None:
                log.info("--authorizer: %s:%s replaces the program's authorizer function %s",
                         path, function, world.authorizer.function.name)
            return authorizer_module.function_from_file(path, function, world.authorizer.function_arn)
        assert world.authorizer.function is not None
        return world.authorizer.function

    async def start(self) -> None:
        """Bind the port, read the world, start DynamoDB and every function,
        then listen. On failure, call :meth:`stop`."""
        self.loop = asyncio.get_running_loop()
        # a port in use is the first thing to know, before seconds of start-up
        self._socket = bind(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        world = await self._read_world()
        # moto serves the queues, and DynamoDB unless --dynamodb-endpoint names another
        await asyncio.to_thread(self._ensure_table)
        await asyncio.to_thread(self._ensure_queues)
        await self._set_up_gateway(world)
        self._create_functions(world)
        await self._connect_backend(world)
        # The fan-out and heartbeat functions start with their first chunk or
        # run (a cold start, as in Lambda): most sessions never have a channel
        # that large, and their processes would be memory spent for nothing.
        # The authorizer's starts now, as the routes' do: the first handshake
        # does not wait for its cold start, and a file that cannot be imported
        # stops start-up here.
        await asyncio.gather(*(f.start() for f in {id(f): f for f in [
            *self._functions.values(), *self._url_functions.values(), *self._authorizer_functions()]}.values()))
        self._start_pollers(world)
        self._start_schedulers(world)
        # only now: every connection finds every function ready
        assert self._runner is not None and self.gateway is not None  # set up by _set_up_gateway
        # plain management API calls are answered by the gateway itself, the rest by aiohttp
        self._site = GatewaySite(self._runner, self._socket, self.gateway)
        with port_in_use_reported(self.host, self.port):  # another process bound it too and listened first
            await self._site.start()

    async def _read_world(self) -> World:
        """Start the embedded DynamoDB and SQS while the world is read; check
        the world against the flags, and serve it."""
        from .dynamodb import EmbeddedDynamoDB

        # moto starts while the program runs
        log.info("starting the embedded DynamoDB and SQS" if self._dynamodb_endpoint is None else
                 f"starting the embedded SQS (DynamoDB: {self._dynamodb_endpoint})")
        # loopback only, whatever --host says: moto has no authentication
        embedded = asyncio.create_task(asyncio.to_thread(
            lambda: EmbeddedDynamoDB("127.0.0.1", middleware=self._sends).start()))
        try:
            world = await asyncio.to_thread(self._load_world)
        finally:
            self._embedded = await embedded
        if self._stage_override:
            world = dataclasses.replace(world, stage=self._stage_override)
        self._check_world(world)
        self.world, self.stage = world, world.stage
        return world

    async def _set_up_gateway(self, world: World) -> None:
        """The local API Gateway in front of the world's functions, its app set up (not listening yet)."""
        self.gateway = gateway_module.Gateway(
            world,
            self._invoke,
            idle_timeout=self._idle_timeout,
            max_lifetime=self._max_lifetime,
            management_latency_ms=self._latency,
            management_from_anywhere=self._management_from_anywhere,
            authorize=self._authorize if world.authorizer is not None else None,
            invoke_url=self._invoke_url if world.function_urls else None,
            account=account_module.AccountQuota(self._account_quota),
        )
        self._runner = web.AppRunner(self.gateway.app(), access_log=None, handle_signals=False)
        await self._runner.setup()

    def _create_functions(self, world: World) -> None:
        """A LocalFunction for each of the world's functions (routes, event
        source mappings and schedules, function URLs, the authorizer), none started yet."""
        starting = (len({d.name for d in [*world.routes.values(), *(u.function for u in world.function_urls)]})
                    + (world.authorizer is not None))
        if starting:
            log.info("starting %d function%s", starting, "" if starting == 1 else "s")
        self._scratch = scratch_dir()
        for route_key, definition in world.routes.items():
            task_dir = self._scratch / definition.name
            self._functions[route_key] = LocalFunction(
                definition, task_dir, self._environment(definition.environment), self._function_concurrency
            )
        # the functions behind event source mappings and schedules
        for definition in [*(s.function for s in world.subscriptions), *(s.function for s in world.schedules)]:
            if definition.name not in self._workers:
                self._workers[definition.name] = LocalFunction(
                    definition, self._scratch / definition.name, self._environment(definition.environment),
                    self._function_concurrency,
                )
        # function URLs' functions start now, as the routes' do: a backend's
        # first request does not wait for a cold start
        for url in world.function_urls:
            definition = url.function
            shared = next((f for f in self._functions.values() if f.definition.name == definition.name), None)
            self._url_functions[definition.name] = shared or LocalFunction(
                definition, self._scratch / definition.name, self._environment(definition.environment),
                self._function_concurrency,
            )
        if world.authorizer is not None:
            definition = self._authorizer_definition(world)
            self._authorizer_function = LocalFunction(
                definition, self._scratch / f"authorizer-{definition.name}", self._environment(definition.environment),
                self._function_concurrency,
            )

    async def _connect_backend(self, world: World) -> None:
        """With ``--backend reference``, start the reference HTTP backend; with
        HTTP routes, the client that posts them to their backend."""
        if self._reference_backend:
            from .reference_backend import ReferenceBackend

            log.info("starting the reference HTTP backend (python -m channel_server.http_backend)")
            self._reference = await ReferenceBackend.start(
                table=world.table_name, dynamodb_endpoint=self.dynamodb_endpoint,
                management_endpoint=self.management_url, environment=self._environment({}),
                log_level=self._handler_log_level)
            self._backend = self._reference.url
        if world.http_routes:
            from .http_integration import HttpBackendClient

            self._http = HttpBackendClient(world.http_routes, self._backend)
            log.info("routes %s post to the HTTP backend %s", ", ".join(sorted(world.http_routes)),
                     ", ".join(sorted({self._http.url_of(key) for key in world.http_routes})))

    def _start_pollers(self, world: World) -> None:
        """Poll each event source mapping's local queue for its function."""
        for subscription in world.subscriptions:
            poller = queues_module.Poller(
                subscription, self._local_queues[subscription.queue.arn][0],
                self._workers[subscription.function.name], self._sqs_client(), REGION, self._function_concurrency,
            )
            self._sends.listen(poller.wake)
            poller.start()
            self._pollers.append(poller)

    def _start_schedulers(self, world: World) -> None:
        """Run each schedule's function at its interval (``--heartbeat-seconds`` shortens it)."""
        for schedule in world.schedules:
            worker = self._workers[schedule.function.name]

            async def run(event: dict, request_id: str, worker: LocalFunction = worker) -> Any:
                return await worker.invoke(event, request_id, wait_for_slot=True)

            scheduler = schedules_module.Scheduler(schedule, run, self._heartbeat_seconds)
            scheduler.start()
            self._schedulers.append(scheduler)

    @property
    def requests(self) -> Counter[str]:
        """The requests the embedded DynamoDB and SQS served so far, by
        ``X-Amz-Target`` (a copy); the management API's are its gateway's
        (``gateway.account``)."""
        return Counter(self._sends.requests)

    def _environment(self, declared: Mapping[str, str]) -> dict[str, str]:
        """The function's environment as declared, pointed at this machine."""
        assert self.world is not None
        env = {
            key: self.management_url if value == self.world.management_endpoint else value
            for key, value in declared.items()
        }
        env = {key: self._queue_urls.get(value, value) for key, value in env.items()}
        if self._inline_fanout_limit is not None:
            env[spec.ENV_INLINE_FANOUT_LIMIT] = str(self._inline_fanout_limit)
        if self._posts_per_second is not None:
            env[spec.ENV_POSTS_PER_SECOND] = str(self._posts_per_second)
        env.update({
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint, "AWS_ENDPOINT_URL_SQS": self._embedded.endpoint,
        })
        inherited = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        if self._dynamodb_endpoint is not None and ("AWS_ACCESS_KEY_ID" in inherited or "AWS_PROFILE" in inherited):
            # another DynamoDB (perhaps AWS): this shell's credentials, keys or profile
            env.update(inherited)
        else:
            env.update(LOCAL_CREDENTIALS)
        env["LOCAL_LAMBDA_LOG_LEVEL"] = self._handler_log_level
        if self._dynamodb_endpoint is None:
            env[spec.ENV_DYNAMODB_READ_TIMEOUT] = str(EMBEDDED_DYNAMODB_READ_TIMEOUT)
        return env

    def _authorizer_functions(self) -> list[LocalFunction]:
        """The $connect authorizer's function, when it has one: a list to add to the others."""
        return [self._authorizer_function] if self._authorizer_function is not None else []

    def extra_lines(self) -> list[str]:
        """What the start-up banner says beyond the endpoints: the fan-out
        queue, heartbeats, backend, authorizer."""
        assert self.world is not None
        lines = []
        for url in self.world.function_urls:
            if self.function_url(url.function.name) == self.publish_url:
                lines.append(f"Publish URL:    {self.publish_url}")
            else:
                lines.append(f"Function URL:   {self.function_url(url.function.name)} (function {url.function.name})")
        if self.world.queues:
            lines.append(f"SQS:            {self.sqs_endpoint} (fan-out queue)")
        if self._posts_per_second is not None:
            lines.append(f"Budget:         the functions post at most {self._posts_per_second:,} times a second "
                         "(--posts-per-second)")
        if self._account_quota != account_module.DEFAULT_RATE:
            lines.append(f"Account quota:  the management API takes {self._account_quota:,g} requests a second "
                         "(--account-quota)")
        if self._inline_fanout_limit is not None:
            members = "member" if self._inline_fanout_limit == 1 else "members"
            lines.append(f"Fan-out:        a publish posts to {self._inline_fanout_limit} {members} itself and queues "
                         "the rest (--inline-fanout-limit)")
        if self._authorizer_function is not None:
            assert self.world is not None and self.world.authorizer is not None
            if self._authorizer_file is not None:
                code = f"{self._authorizer_file[0]}:{self._authorizer_file[1]}"
            else:
                code = f"function {self._authorizer_function.definition.name} of the program"
            sources = ", ".join(self.world.authorizer.identity_sources)
            lines.append(f"Authorizer:     {code} on $connect (identity: {sources})")
        for scheduler in self._schedulers:
            lines.append(f"Heartbeats:     every {scheduler.interval:g} s ({scheduler.schedule.expression} declared)")
        if self._http is not None:
            urls = sorted({self._http.url_of(key) for key in self.world.http_routes})
            reference = " (the reference backend, python -m channel_server.http_backend)" if self._reference else ""
            lines.append(f"HTTP backend:   {', '.join(urls)}{reference}")
        return lines

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
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            create_table(client, self.world.table_name, self.world.table)
        except client.exceptions.ResourceInUseException:
            self._check_existing_table(client)
            log.info("table %s exists; using it", self.world.table_name)
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"cannot create the table {self.world.table_name} in the DynamoDB at "
                          f"{self.dynamodb_endpoint}: {exc}") from None

    def _check_existing_table(self, client: Any) -> None:
        """Refuse a table that exists without an index the program declares
        (``channelIndexShards`` changed since it was made, say): every publish
        would fail on it. Local mode never changes an existing table."""
        assert self.world is not None
        name = self.world.table_name
        existing = {index["IndexName"] for index in
                    client.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", ())}
        declared = {index["name"] for index in self.world.table.get("globalSecondaryIndexes") or ()}
        missing = sorted(declared - existing)
        if missing:
            raise OSError(f"the table {name} in the DynamoDB at {self.dynamodb_endpoint} exists without the "
                          f"index {', '.join(missing)} the program declares (was channelIndexShards changed?): "
                          "delete the table, or serve another table name (tableName); local mode does not "
                          "change a table that exists")

    def _sqs_client(self) -> Any:
        import boto3

        return boto3.client("sqs", endpoint_url=self._embedded.endpoint, region_name=REGION,
                            aws_access_key_id="local", aws_secret_access_key="local")

    def _ensure_queues(self) -> None:
        assert self.world is not None
        self._local_queues = queues_module.create_queues(self._sqs_client(), self.world.queues)
        self._queue_urls = queues_module.local_urls(self._local_queues, self.world.queues)

    async def _invoke(self, route_key: str, event: dict, request_id: str) -> Any:
        if route_key not in self._functions:  # an HTTP integration's route
            return await self._http.invoke(route_key, event)
        # A throttled $disconnect would leave the connection's rows to TTL (on
        # AWS too); local mode waits for a slot instead, so closing many
        # connections at once, or stopping, cleans up every one of them.
        return await self._functions[route_key].invoke(event, request_id,
                                                       wait_for_slot=route_key == spec.DISCONNECT_ROUTE)

    async def _invoke_url(self, function_name: str, event: dict, request_id: str) -> Any:
        return await self._url_functions[function_name].invoke(event, request_id)

    async def _authorize(self, event: dict, request_id: str) -> Any:
        assert self._authorizer_function is not None
        return await self._authorizer_function.invoke(event, request_id)

    async def stop(self) -> None:
        """Stop accepting connections, let the frames under way finish, close
        every open connection (each gets its ``$disconnect``), stop the
        schedules and queues; only then close the port, and the management API
        with it; then stop the functions and the embedded DynamoDB. Safe to
        call after a failed or partial start."""
        try:
            if self.gateway is not None:
                # The port stays open to the end: the management API on it
                # answers the posts of every invocation under way. Closed
                # first, it refused them: 6 publishes to 99 members logged 594
                # "delivery failed after retries" and took 4.8 s to stop.
                self.gateway.refuse_connections()  # handshakes get 503 from here on
                await self.gateway.finish_in_flight()
                await self.gateway.close_all()
        finally:
            try:
                # their invocations under way post too
                await asyncio.gather(*(s.stop() for s in self._schedulers), return_exceptions=True)
                self._schedulers.clear()
                for poller in self._pollers:
                    self._sends.forget(poller.wake)
                await asyncio.gather(*(p.stop() for p in self._pollers), return_exceptions=True)
                self._pollers.clear()
                if self._site is not None:
                    await self._site.stop()
                    self._site = None
            finally:
                if self._socket is not None:
                    self._socket.close()
                    self._socket = None
                try:
                    if self._runner is not None:
                        await self._runner.cleanup()
                        self._runner = None
                    if self._http is not None:
                        await self._http.close()
                        self._http = None
                    if self._reference is not None:
                        await self._reference.stop()
                        self._reference = None
                    functions = {id(f): f for f in [*self._functions.values(), *self._workers.values(),
                                                    *self._url_functions.values(), *self._authorizer_functions()]}
                    await asyncio.gather(*(f.stop() for f in functions.values()), return_exceptions=True)
                    self._functions.clear()
                    self._url_functions.clear()
                    self._workers.clear()
                    self._authorizer_function = None
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
