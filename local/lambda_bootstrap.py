"""A Lambda-like execution environment for one function (run as a script).

    python lambda_bootstrap.py TASK_DIR HANDLER CONCURRENCY

Local mode starts one of these per function, in its own process, with the
function's environment, exactly as Lambda would: ``TASK_DIR`` is the function's
code archive unpacked (Lambda's ``/var/task``) and ``HANDLER`` its handler string
(``channel_server.handlers.app.join``), resolved the way Lambda resolves it;
``CONCURRENCY`` is how many invocations it runs at once (local mode sends no
more than that: it throttles the rest, as Lambda does).

Invocations arrive on stdin, one JSON object per line
(``{"id": 1, "event": {...}, "context": {...}}``), and run concurrently on
threads; each answer is one line on stdout: ``{"id": 1, "result": ...}`` or
``{"id": 1, "error": {"errorType": ..., "errorMessage": ...}}``. The handler's
own logging and prints go to stderr.

This file imports nothing from channel_server: the handler code must come from
the archive alone, like in Lambda.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor


class LambdaContext:
    """The attributes and method of Lambda's Python context object."""

    def __init__(self, fields: dict):
        self.function_name = fields.get("function_name", "")
        self.function_version = "$LATEST"
        self.invoked_function_arn = fields.get("invoked_function_arn", "")
        self.memory_limit_in_mb = int(fields.get("memory_limit_in_mb", 128))
        self.aws_request_id = fields.get("aws_request_id", "")
        self.log_group_name = fields.get("log_group_name", "")
        self.log_stream_name = fields.get("log_stream_name", "")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + float(fields.get("timeout_seconds", 3))

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _NotPoolFull(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Connection pool is full")


def _load(task_dir: str, handler: str):
    # Only the task dir, then what the runtime provides (stdlib, boto3): the
    # folder this script lives in is not the function's code.
    sys.path[:] = [task_dir] + [p for p in sys.path[1:] if p != os.path.dirname(os.path.abspath(__file__))]
    top = handler.split(".", 1)[0]
    top_dir = os.path.join(task_dir, top)
    if os.path.isdir(top_dir) and not os.path.exists(os.path.join(top_dir, "__init__.py")):
        # A namespace package in the archive must not be shadowed by an
        # installed package of the same name (the project itself may be
        # installed in this interpreter): pin it to the archive's folder.
        module = type(sys)(top)
        module.__path__ = [top_dir]
        sys.modules[top] = module
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    if not callable(getattr(module, function_name, None)):
        # Lambda's Runtime.HandlerNotFound: nothing failed inside the code
        raise _HandlerNotFound(f"module {module_name} has no function {function_name}")
    return getattr(module, function_name)


class _HandlerNotFound(Exception):
    """The module imported, but has no such function (Runtime.HandlerNotFound)."""


def main(argv: list[str]) -> int:
    task_dir, handler_name, concurrency = argv[1], argv[2], int(argv[3])
    # Answers travel on a private copy of stdout; the handler's own prints go
    # to stderr (Lambda sends both to the function's logs), so a print() in a
    # handler can never corrupt the answer stream.
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Lambda's runtime owns the root handler; here it writes to stderr, which
    # local mode relays, at the level local mode was asked for.
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(os.environ.get("LOCAL_LAMBDA_LOG_LEVEL", "WARNING").upper())
    stream.setFormatter(logging.Formatter(
        f"[{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'lambda')}] %(levelname)s %(name)s: %(message)s"
    ))
    logging.getLogger().addHandler(stream)
    # Lambda runs each invocation in an environment of its own, with its own
    # clients and HTTP pools; here up to CONCURRENCY share one process, so a
    # handler's pool (sized for one invocation's fan-out) can overflow. urllib3
    # then opens an extra connection and says so; that is this stand-in's
    # doing, not the handler's, so that one warning is not relayed.
    logging.getLogger("urllib3.connectionpool").addFilter(_NotPoolFull())
    write = threading.Lock()

    def answer(message: dict) -> None:
        line = json.dumps(message, default=str)
        with write:
            answers.write(line + "\n")
            answers.flush()

    try:
        handler = _load(task_dir, handler_name)
    except Exception as exc:  # Runtime.ImportModuleError in Lambda
        if not isinstance(exc, _HandlerNotFound):  # an error inside the code: where it happened
            traceback.print_exc(file=sys.stderr)
        answer({"init_error": {"errorType": type(exc).__name__.lstrip("_"), "errorMessage": str(exc)}})
        return 1
    answer({"ready": True})

    def invoke(request: dict) -> None:
        try:
            result = handler(request["event"], LambdaContext(request.get("context") or {}))
            answer({"id": request["id"], "result": result})
        except Exception as exc:
            # Lambda's error payload; local mode decides where the trace goes
            answer({"id": request["id"], "error": {"errorType": type(exc).__name__, "errorMessage": str(exc),
                                                   "stackTrace": traceback.format_exception(exc)}})

    # Lambda runs concurrent invocations in separate environments; threads are
    # the local stand-in, so one connection's frames are never serialized.
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for line in sys.stdin:
            if line.strip():
                pool.submit(invoke, json.loads(line))
    return 0


if __name__ == "__main__":
    status = main(sys.argv)
    # A Lambda environment ends without the interpreter's teardown: the
    # handler's clients (an event loop and keep-alive sockets per thread) are
    # never finalized there. Finalizing them here, in whatever order the
    # collector picks, printed "Exception ignored in BaseEventLoop.__del__"
    # when a loop's self-pipe went before the loop did.
    sys.stderr.flush()
    os._exit(status)
