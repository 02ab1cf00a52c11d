"""The command line of local mode, ``python -m channel_server.local``: its
options, the start-up banner, signal handling and ``main``; the server itself is ``local.server``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from . import account as account_module
from . import authorizer as authorizer_module
from . import gateway as gateway_module
from .functions import DEFAULT_CONCURRENCY, InvocationError
from .options import (
    MAX_MANAGEMENT_LATENCY_MS,
    OPTION_CHECKS,
    REFERENCE_BACKEND,
    SERVER_PUBLISH_WITH_BACKEND,
    authorizer_problem,
    identity_source_problem,
    url_problem,
)
from .program import LOG_DATE_FORMAT, LOG_FORMAT, ProgramError
from .server import GC_THRESHOLDS, LocalServer
from .world import WiringError


def default_program(directory: Path | None = None) -> Path | None:
    """The program local mode serves when none is named: the Pulumi project in
    ``directory`` (the current one), when it has a Pulumi.yaml and a program."""
    directory = directory or Path.cwd()
    if not (directory / "Pulumi.yaml").is_file():
        return None
    try:
        from ..mocks import Project, ProjectError

        return Project.load(directory).program
    except ProjectError:
        return None


def _checked(flag: str, kind: type, unit: str) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) of ``unit``, within ``flag``'s check (:data:`OPTION_CHECKS`)."""
    def parse(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {unit}") from None
        if kind is float and number != number:  # nan passes every comparison's negation
            raise argparse.ArgumentTypeError(f"{value!r} is not {unit}")
        problem = OPTION_CHECKS[flag](number)
        if problem:
            raise argparse.ArgumentTypeError(f"{value}: {problem}")
        return number
    parse.__name__ = flag  # what argparse names in "invalid ... value"
    return parse


def _url(flag: str, also: str = "") -> Callable[[str], str]:
    """An argparse type: an http(s) URL with a host (or one of ``also``'s words)."""
    def parse(value: str) -> str:
        if value == also:
            return value
        problem = url_problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{value!r}: {problem}" + (f", or {also}" if also else ""))
        return value
    parse.__name__ = flag
    return parse


def _config_setting(value: str) -> tuple[str, str]:
    key, equals, setting = value.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: give KEY=VALUE, as `pulumi config set KEY VALUE` would set "
                                         "(for example heartbeatIntervalMinutes=1)")
    return key.strip(), setting


def _authorizer_spec(value: str) -> str:
    try:
        authorizer_module.parse_spec(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _identity_source(value: str) -> str:
    problem = identity_source_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"{value!r}: {problem}")
    return value


def _stage_name(value: str) -> str:
    from ..args import ChannelServerArgsError, resolve

    try:
        return resolve({"stage_name": value}).stage_name
    except ChannelServerArgsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m channel_server.local``."""
    parser = argparse.ArgumentParser(
        prog="python -m channel_server.local",
        description="Run the channel server on this machine: the routes and handlers a Pulumi "
        "program's ChannelServer declares, behind a local API Gateway, with an embedded DynamoDB and SQS.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=_checked("--port", int, "a port number"), default=8080,
                        help="port for WebSocket and management API; 0 picks a free one (default %(default)s)")
    parser.add_argument("--program", metavar="PATH", type=Path,
                        help="the Pulumi program to serve: a project folder or its program file (default: the "
                        "project in the current folder when it has a Pulumi.yaml, else ChannelServer with its "
                        "defaults)")
    parser.add_argument("--stack", metavar="NAME",
                        help="read the program's config from Pulumi.NAME.yaml (default: dev, when that file exists)")
    parser.add_argument("--config", type=_config_setting, action="append", metavar="KEY=VALUE",
                        help="set a config key of the program for this run, over the stack's, as `pulumi config set "
                        "KEY VALUE` would (repeatable; a key without a namespace is the project's)")
    parser.add_argument("--component", metavar="NAME",
                        help="which ChannelServer to serve, by its name, when the program declares several")
    parser.add_argument("--stage", type=_stage_name, metavar="NAME",
                        help="serve under this stage name, the URL's path (default: the program's)")
    parser.add_argument("--dynamodb-endpoint", metavar="URL", type=_url("--dynamodb-endpoint"),
                        help="use this DynamoDB (DynamoDB Local, or AWS) instead of the embedded one; the functions "
                        "get this shell's AWS credentials, and the table is created there unless it exists")
    parser.add_argument("--management-latency-ms", type=_checked("--management-latency-ms", float, "a number of "
                        "milliseconds"), default=0.0, metavar="N",
                        help="add N ms to every management API call, like the round trip to AWS "
                        f"(below {MAX_MANAGEMENT_LATENCY_MS:g})")
    parser.add_argument("--management-from-anywhere", action="store_true",
                        help="let other hosts use the management API and the function URLs (they check a "
                        "request's signature's shape, not its secret: only on a network you trust); default: "
                        "loopback addresses only")
    parser.add_argument("--idle-timeout", type=_checked("--idle-timeout", float, "a number of seconds"),
                        default=gateway_module.IDLE_TIMEOUT_SECONDS, metavar="SECONDS",
                        help="close connections idle this long (default %(default)g, as AWS)")
    parser.add_argument("--max-lifetime", type=_checked("--max-lifetime", float, "a number of seconds"),
                        default=gateway_module.MAX_LIFETIME_SECONDS, metavar="SECONDS",
                        help="close connections this old (default %(default)g, as AWS)")
    parser.add_argument("--function-concurrency", type=_checked("--function-concurrency", int, "a whole number"),
                        default=DEFAULT_CONCURRENCY, metavar="N",
                        help="invocations each function runs at once; beyond that a frame is throttled at once, as by "
                        "Lambda, and answered \"Internal server error\" (default %(default)s)")
    parser.add_argument("--inline-fanout-limit", type=_checked("--inline-fanout-limit", int, "a whole number"),
                        metavar="N",
                        help="members one publish posts to itself before it queues the others for the fan-out "
                        "function (default: the program's inlineFanoutLimit)")
    parser.add_argument("--posts-per-second", type=_checked("--posts-per-second", int, "a whole number"),
                        metavar="N",
                        help="the account budget: posts a second all the functions together send (default: the "
                        "program's postsPerSecond)")
    parser.add_argument("--account-quota", type=_checked("--account-quota", float, "a number"),
                        default=account_module.DEFAULT_RATE, metavar="N",
                        help="requests a second the management API takes before it answers 429, as API "
                        "Gateway's account quota does (default %(default)s, AWS's default)")
    parser.add_argument("--heartbeat-seconds", type=_checked("--heartbeat-seconds", float, "a number of seconds"),
                        metavar="N",
                        help="turn heartbeats on and run them every N seconds instead of every "
                        "heartbeatIntervalMinutes (for trying them with a short --idle-timeout)")
    parser.add_argument("--backend", metavar="URL", type=_url("--backend", also=REFERENCE_BACKEND),
                        help="serve every route from this HTTP backend, or from the reference backend "
                        "(python -m channel_server.http_backend) that local mode starts itself with "
                        "'--backend reference'; replaces the program's backendUrl, or turns it on")
    parser.add_argument("--server-publish", action="store_true",
                        help="serve the server publish endpoint (serverPublish), which backends POST SigV4-signed "
                        "publishes to, at http://HOST:PORT/@lambda-url/FUNCTION/; turns it on when the program "
                        "leaves it off")
    parser.add_argument("--authorizer", type=_authorizer_spec, metavar="PATH[:FUNCTION]",
                        help="run this Python file's FUNCTION (default handler) as the $connect authorizer's Lambda "
                        "function: turns the authorizer on, or gives the code of the one the program declares")
    parser.add_argument("--authorizer-identity-source", type=_identity_source, action="append", metavar="SOURCE",
                        dest="authorizer_identity_sources",
                        help="without a program, where the authorizer reads the identity (repeatable): "
                        "route.request.querystring.NAME, route.request.header.NAME, stageVariables.NAME or "
                        "context.NAME (default route.request.querystring.token)")
    parser.add_argument("--handler-log-level", default="WARNING", type=str.upper, metavar="LEVEL",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="log level of the handlers' own logging: DEBUG, INFO, WARNING, ERROR or CRITICAL "
                        "(default %(default)s)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.program is not None and not options.program.exists():
        parser.error(f"--program {options.program}: no such file or folder")
    if options.program is None:
        options.program = default_program()
    if options.program is None and (options.stack or options.component or options.config):
        parser.error("--stack, --component and --config need a Pulumi program: give --program PATH, "
                     "or run from a folder with a Pulumi.yaml")
    problem = authorizer_problem(options.authorizer, options.authorizer_identity_sources, options.backend,
                                 served=options.program is not None)
    if problem:
        parser.error(problem)
    if options.server_publish and options.backend is not None:
        parser.error(SERVER_PUBLISH_WITH_BACKEND)
    return options


def server_from(options: argparse.Namespace) -> LocalServer:
    """The LocalServer the command line asks for."""
    return LocalServer(
        host=options.host,
        port=options.port,
        stage=options.stage,
        program=options.program,
        stack=options.stack or "dev",
        stack_required=options.stack is not None,
        component=options.component,
        dynamodb_endpoint=options.dynamodb_endpoint,
        management_latency_ms=options.management_latency_ms,
        management_from_anywhere=options.management_from_anywhere,
        idle_timeout=options.idle_timeout,
        max_lifetime=options.max_lifetime,
        function_concurrency=options.function_concurrency,
        inline_fanout_limit=options.inline_fanout_limit,
        posts_per_second=options.posts_per_second,
        account_quota=options.account_quota,
        heartbeat_seconds=options.heartbeat_seconds,
        backend=options.backend,
        authorizer=options.authorizer,
        authorizer_identity_sources=options.authorizer_identity_sources,
        handler_log_level=options.handler_log_level,
        config=dict(options.config or ()),
        server_publish=options.server_publish,
    )


async def serve(options: argparse.Namespace) -> None:
    server = server_from(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = False

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            if not started:  # said at once: start-up ends first (its processes are its own), then it stops
                print("stopping once start-up has ended (Ctrl-C again to stop at once)", flush=True)
            return
        # a second Ctrl-C: the user will not wait for the $disconnects. The
        # function processes end by themselves once their stdin closes.
        print("stopping at once", flush=True)
        os._exit(130)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        await server.start()
        started = True
        if not stop.is_set():  # else Ctrl-C came during start-up: no banner for a server that is stopping
            # What start-up built (moto, aiohttp, the world) lives as long as the
            # process: out of the collector's sight, and fewer collections, so a
            # full collection no longer walks it in the middle of a request.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            _print_banner(server)
            await stop.wait()
        print("stopping: closing connections (Ctrl-C again to stop at once)", flush=True)
    finally:
        await server.stop()
    print("stopped", flush=True)


def _print_banner(server: LocalServer) -> None:
    print(f"channel-server local mode, stage {server.stage}", flush=True)
    print(f"  WebSocket URL:  {server.url}", flush=True)
    print(f"  Browser page:   {server.page_url} (join a channel, publish, ping)", flush=True)
    print(f"  Management API: {server.management_url}/@connections/{{connectionId}}", flush=True)
    print(f"  DynamoDB:       {server.dynamodb_endpoint} (table {server.table_name})", flush=True)
    for line in server.extra_lines():
        print(f"  {line}", flush=True)
    print("Ctrl-C to stop.", flush=True)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT)
    try:
        asyncio.run(serve(options))
    except (OSError, ValueError, InvocationError, ProgramError, WiringError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
