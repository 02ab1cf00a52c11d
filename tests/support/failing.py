"""Running a program that is meant to fail under Pulumi's mocks."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from channel_server.mocks import deploy


def deploy_failing(program: Callable[[], Any]) -> Exception:
    """Run ``program`` under the mocks on a thread of its own and return the
    exception the run raised (AssertionError when it did not raise).

    A failed run leaves CPython 3.11.7's AST recursion accounting of its
    thread off (CPython issue gh-106905): a later ``ast.parse`` on that
    thread, such as pytest's assertion rewriting of the next test module,
    raises "SystemError: AST constructor recursion depth mismatch". On a
    thread of its own, the test process's own threads stay clean."""
    with ThreadPoolExecutor(1) as thread:
        try:
            thread.submit(_deploy_on_own_loop, program).result()
        except Exception as exc:  # noqa: BLE001 - whatever the run raised is the answer
            return exc
    raise AssertionError("the program deployed without an error")


def _deploy_on_own_loop(program: Callable[[], Any]) -> Any:
    """``deploy(program)`` on this thread's own event loop. A failed run
    leaves its loop behind with hundreds of Pulumi's tasks still pending and
    futures whose exception nobody retrieves; when the process exits, asyncio
    would report each one (a traceback apiece: megabytes of output and
    seconds of a test worker's exit). The run's exception is the answer, so
    that loop reports nothing."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)
    asyncio.set_event_loop(loop)
    return deploy(program)
