"""The reference HTTP backend's command line (``python -m channel_server.http_backend``): its
flags and their environment variables, start-up checks, the ready line, stopping on a signal.

The start-up checks are argparse errors that name what to set; the signals are Ctrl-C and
SIGTERM. The flags are described in the package's docstring.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any, Mapping

from .. import backend as contract
from ..handlers import aws, spec
from ..handlers.settings import AppSettings
from ..local.placeholders import local_placeholders
from .server import DEFAULT_HOST, DEFAULT_WORKERS, HttpBackend, log
from .wiring import (DYNAMODB_ENDPOINT, app_environ, credentials_found, endpoints, environment_settings,
                     placeholders_line, ready_app, setup_errors)

#: What stops the command: Ctrl-C and SIGTERM.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port}: a port is from 0 (any free one) to 65535")
    return port


def _timeout_ms(value: str) -> int:
    try:
        timeout = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of milliseconds") from None
    if not contract.MIN_TIMEOUT_MS <= timeout <= contract.MAX_TIMEOUT_MS:
        raise argparse.ArgumentTypeError(
            f"{timeout}: API Gateway's integration timeout is from {contract.MIN_TIMEOUT_MS} to "
            f"{contract.MAX_TIMEOUT_MS} ms"
        )
    return timeout


def _workers(value: str) -> int:
    try:
        workers = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if workers < 1:
        raise argparse.ArgumentTypeError(f"{workers}: at least 1 request must run at once")
    return workers


def _endpoint_problem(url: str) -> str | None:
    try:
        aws.Origin.of(url)
    except ValueError:
        return f"{url!r} is not an http:// or https:// URL with a host"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m channel_server.http_backend``."""
    parser = argparse.ArgumentParser(
        prog="python -m channel_server.http_backend",
        description="Serve the channel server's routes over HTTP for API Gateway's HTTP integrations "
        "(ChannelServerArgs.backend): POST an envelope, get the route's answer. Flags win over "
        "their environment variables; every other CHANNEL_* variable is passed to the channel code.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=_port, required=True, help="port to listen on; 0 picks a free one")
    parser.add_argument("--table", metavar="NAME",
                        help=f"the connections table (default: ${spec.ENV_TABLE_NAME}); required")
    parser.add_argument("--management-endpoint", metavar="URL",
                        help="the stage's management API, https://{api}.execute-api.{region}.amazonaws.com/{stage} "
                        f"(default: ${spec.ENV_MANAGEMENT_ENDPOINT}); required")
    parser.add_argument("--index", metavar="NAME",
                        help=f"the table's channel index (default: ${spec.ENV_INDEX_NAME}, else {spec.CHANNEL_INDEX})")
    parser.add_argument("--dynamodb-endpoint", metavar="URL",
                        help=f"another DynamoDB (DynamoDB Local, local mode's); the app's {DYNAMODB_ENDPOINT} "
                        "(default: the environment's, i.e. AWS)")
    parser.add_argument("--timeout-ms", type=_timeout_ms, default=contract.DEFAULT_TIMEOUT_MS, metavar="N",
                        help=f"the integration's timeout, {contract.MIN_TIMEOUT_MS} to {contract.MAX_TIMEOUT_MS} "
                        "(default %(default)s): a publish answers within it")
    parser.add_argument("--workers", type=_workers, default=DEFAULT_WORKERS, metavar="N",
                        help="requests the channel code runs at once (default %(default)s)")
    parser.add_argument("--handler-log-level", default="WARNING", type=str.upper, metavar="LEVEL",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="log level of the channel code's own logging (default %(default)s)")
    return parser


def parse_args(argv: list[str] | None = None, environ: Mapping[str, str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The command line, with the environment's fallbacks filled in; exits
    with an argparse error naming what to set when a setting is missing or
    invalid."""
    environ = os.environ if environ is None else environ
    parser = parser or build_parser()
    options = parser.parse_args(argv)
    options.table = options.table or environ.get(spec.ENV_TABLE_NAME) or None
    if not options.table:
        parser.error(f"no table: give --table NAME or set {spec.ENV_TABLE_NAME}")
    options.management_endpoint = options.management_endpoint or environ.get(spec.ENV_MANAGEMENT_ENDPOINT) or None
    if not options.management_endpoint:
        parser.error(f"no management API: give --management-endpoint URL or set {spec.ENV_MANAGEMENT_ENDPOINT}")
    problem = _endpoint_problem(options.management_endpoint)
    if problem:
        parser.error(f"--management-endpoint (or {spec.ENV_MANAGEMENT_ENDPOINT}): {problem}")
    options.index = options.index or environ.get(spec.ENV_INDEX_NAME) or spec.CHANNEL_INDEX
    if options.dynamodb_endpoint is not None:
        problem = _endpoint_problem(options.dynamodb_endpoint)
        if problem:
            parser.error(f"--dynamodb-endpoint: {problem}")
    return options


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM: exit status 0, 1 for a port in use,
    2 (argparse's) for a setting missing or wrong."""
    # Only the main thread may take the stop signals: one taken by another
    # thread runs the handler but never wakes the main thread from its wait,
    # which then waited for ever (seen on a busy machine). Every thread started
    # from here on, and every thread they start, inherits this mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    parser = build_parser()
    options = parse_args(argv, parser=parser)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("channel_server").setLevel(options.handler_log_level)
    log.setLevel(logging.INFO)
    # the app's settings, region and credentials: from this mapping alone
    environ = app_environ(options, os.environ)
    try:
        settings = AppSettings.from_environ(environ)
        added = local_placeholders(endpoints(settings), environ, lambda: credentials_found(environ))
        if added:
            environ.update(added)
            settings = AppSettings.from_environ(environ)
            log.info("%s", placeholders_line(added))
        app = ready_app(settings)
    except setup_errors() as exc:
        given = ", ".join(environment_settings(environ))
        parser.error(f"{exc}" + (f" (settings from the environment: {given})" if given else ""))
    try:
        server = HttpBackend(app, host=options.host, port=options.port, timeout_ms=options.timeout_ms,
                             workers=options.workers)
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait for the requests in flight
            print("stopping at once", file=sys.stderr, flush=True)
            os._exit(130)
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    server.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # The ready line, the only one on stdout: whoever started this process
    # (local mode, a script) reads the URL from it. The port listens and the
    # app is built by now, so a request sent on reading it is served; flushed,
    # as stdout is a pipe there.
    print(f"channel-server HTTP backend on {server.url}", flush=True)
    stop.wait()
    print("stopping: finishing the requests in flight", file=sys.stderr, flush=True)
    server.stop()
    print("stopped", file=sys.stderr, flush=True)
    return 0
