"""Local Lambda: each function in a process of its own (``lambda_bootstrap.py``),
with its own environment and its code unpacked from its own archive.

Like Lambda, a function runs at most ``concurrency`` invocations at once and
throttles the next one at once (:class:`Throttled`); nothing waits in a hidden
queue, so an invocation's time starts when it runs. Where it differs from
Lambda: concurrent invocations of one function share its process (threads
stand in for separate environments); an invocation that times out is answered
as failed but keeps running, and keeps its slot, to its end, so its side
effects may still land; and an invocation may ask to wait for a free slot
instead of being throttled (local mode's ``$disconnect`` does). A process that
dies is started again (a cold start) on the next invocation.

Function processes run in a session of their own: a terminal's Ctrl-C (SIGINT
to the whole foreground process group) reaches local mode only, which decides
when they stop, after every connection's ``$disconnect``. If local mode itself
dies, each process sees its stdin close and ends once its invocations have.

What a function prints goes to local mode's stderr, as Lambda sends it to the
function's log, and so do the tracebacks of the invocations that raised; but
for a function whose errors are answers (:data:`ERRORS_ARE_ANSWERS`), those go
to the log at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Mapping

from .world import FunctionDef

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")

#: Invocations one function runs at once, by default, before it throttles (each
#: runs on a thread of the function's process, standing for a Lambda
#: environment). Lambda's default is 1,000 for a whole account; 100 per
#: function keeps the threads of seven functions modest while serving 50 joins
#: in flight with room to spare.
DEFAULT_CONCURRENCY = 100
#: Lambda's limit on a function's init phase (importing its handler).
INIT_TIMEOUT_SECONDS = 10
#: How long stopping waits for running invocations before it kills the process.
STOP_GRACE_SECONDS = 5
#: The largest answer line a function may write (one invocation's result).
ANSWER_LIMIT_BYTES = 16 * 1024 * 1024

EXITED = {"errorType": "Runtime.ExitError", "errorMessage": "process exited"}

log = logging.getLogger("channel_server.local")

#: True while invoking a function whose errors are answers, not failures: the
#: ``$connect`` authorizer refuses a handshake by raising
#: (``raise Exception("Unauthorized")``, the documented way), and its caller
#: logs each outcome in one line. The traceback of such an invocation goes to
#: the log at DEBUG instead of to stderr.
ERRORS_ARE_ANSWERS: contextvars.ContextVar[bool] = contextvars.ContextVar("errors_are_answers", default=False)


class InvocationError(Exception):
    """The function raised, timed out or its process died (API Gateway answers
    such invocations with "Internal server error")."""


class FunctionError(InvocationError):
    """The handler itself raised: Lambda's answer names the error's type and message."""

    def __init__(self, message: str, error_type: str, error_message: str):
        super().__init__(message)
        self.error_type = error_type
        self.error_message = error_message


class Throttled(InvocationError):
    """The function already runs as many invocations as its concurrency allows
    (Lambda's TooManyRequestsException); this one did not run."""


class _Process:
    """One process of a function: it owns its invocations' pending answers
    and the task that reads them, so an answer can only ever resolve an
    invocation sent to the same process."""

    def __init__(self, name: str, process: asyncio.subprocess.Process):
        self.name = name
        self.process = process
        self.pending: dict[int, asyncio.Future] = {}
        self.exited = False
        self._reader: asyncio.Task | None = None
        assert process.stderr is not None
        self._stderr = asyncio.create_task(self._relay_stderr(process.stderr))

    async def wait_ready(self) -> None:
        """Wait for the ready line (the end of the init phase), then read answers."""
        assert self.process.stdout is not None
        try:
            first = await asyncio.wait_for(self.process.stdout.readline(), INIT_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            await self.kill()
            raise InvocationError(f"function {self.name} failed to start: "
                                  f"init took over {INIT_TIMEOUT_SECONDS} s") from None
        try:
            ready = json.loads(first)
        except ValueError:
            ready = {"init_error": {"errorMessage": f"process exited ({first[:200]!r})"}}
        if not isinstance(ready, dict) or "init_error" in ready:
            await self.kill()
            detail = ready.get("init_error") if isinstance(ready, dict) else ready
            if isinstance(detail, dict):
                detail = ": ".join(str(detail[k]) for k in ("errorType", "errorMessage") if detail.get(k))
            raise InvocationError(f"function {self.name} failed to start: {detail}")
        self._reader = asyncio.create_task(self._read_answers(self.process.stdout))

    def send(self, invocation: int, request: bytes) -> asyncio.Future:
        """Hand one invocation to the process; its answer resolves the future.
        ConnectionError when the process can take no more."""
        if self.exited or self.process.stdin is None or self.process.stdin.is_closing():
            raise ConnectionResetError(f"{self.name}'s process has ended")
        future = asyncio.get_running_loop().create_future()
        self.pending[invocation] = future
        self.process.stdin.write(request)
        return future

    async def _read_answers(self, stdout: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                try:
                    answer = json.loads(line)
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    sys.stderr.write(f"[{self.name}] unexpected output: {line[:200]!r}\n")
                    continue
                answer_id: Any = answer.get("id")  # any JSON: one that is no request's pops nothing
                future = self.pending.pop(answer_id, None)
                if future is not None and not future.done():
                    future.set_result(answer)
        finally:
            # whatever ended the stream, nothing more will be answered
            self.exited = True
            for future in self.pending.values():
                if not future.done():
                    future.set_result({"error": EXITED})
            self.pending.clear()

    async def _relay_stderr(self, stderr: asyncio.StreamReader) -> None:
        while True:
            line = await stderr.readline()
            if not line:
                return
            sys.stderr.write(line.decode(errors="replace"))

    async def stop(self) -> None:
        """Close stdin (the process ends once its invocations have answered);
        kill it if it takes longer than STOP_GRACE_SECONDS."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_GRACE_SECONDS)
        except asyncio.TimeoutError:
            await self.kill()
        await self._finish_readers()

    async def kill(self) -> None:
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        await self.process.wait()
        await self._finish_readers()

    async def _finish_readers(self) -> None:
        for task in (self._reader, self._stderr):
            if task is None:
                continue
            try:
                await asyncio.wait_for(task, timeout=1)
            except asyncio.TimeoutError:
                task.cancel()
            except Exception as exc:  # a broken reader must not stop the shutdown
                sys.stderr.write(f"[{self.name}] {type(exc).__name__} while stopping: {exc}\n")


class LocalFunction:
    """One function: ``await start()``, then ``await invoke(event)`` returns its
    result, any number at once; ``await stop()`` ends it.

    Exactly one path starts a process (:meth:`_current`, under a lock), so an
    invocation that arrives while the process starts waits for it, and no
    process is ever started that :meth:`stop` does not end.
    """

    def __init__(
        self, definition: FunctionDef, task_dir: Path, environment: Mapping[str, str],
        concurrency: int = DEFAULT_CONCURRENCY,
    ):
        if concurrency < 1:
            raise ValueError(f"a function's concurrency must be at least 1, not {concurrency}")
        self.definition = definition
        self.concurrency = concurrency
        #: Invocations holding a slot: from the moment they are admitted until
        #: their process answers (or ends), even after they timed out.
        self._running = 0
        self._slot_freed = asyncio.Condition()
        self._task_dir = task_dir
        self._environment = dict(environment)
        self._process: _Process | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._unpacked = False
        self._stopped = False

    @property
    def pid(self) -> int | None:
        """The running process's id, if one runs."""
        return self._process.process.pid if self._process is not None and not self._process.exited else None

    @property
    def in_flight(self) -> int:
        """Invocations sent to the running process and not answered yet."""
        return len(self._process.pending) if self._process is not None else 0

    @property
    def running(self) -> int:
        """Invocations holding one of the ``concurrency`` slots."""
        return self._running

    async def _admit(self, wait: bool) -> None:
        """Take a slot, or raise :class:`Throttled` (wait for one if ``wait``)."""
        if self._running >= self.concurrency:
            if not wait:
                raise Throttled(
                    f"{self.definition.name} throttled: {self._running} invocations running, "
                    f"its concurrency is {self.concurrency}"
                )
            async with self._slot_freed:
                await self._slot_freed.wait_for(lambda: self._running < self.concurrency)
        self._running += 1

    def _release(self) -> None:
        self._running -= 1
        asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._slot_freed:
            self._slot_freed.notify()

    async def start(self) -> None:
        """Unpack the archive and start the function's process (its cold start)."""
        await self._current()

    async def _current(self) -> _Process:
        """The running process, started (again) if there is none."""
        async with self._lock:
            if self._stopped:
                raise InvocationError(f"function {self.definition.name} is stopped")
            process = self._process
            if process is None or process.exited:
                if process is not None:
                    sys.stderr.write(
                        f"[{self.definition.name}] process exited ({process.process.returncode}); starting it again\n"
                    )
                    await process.kill()  # reaps it and its readers
                self._process = None
                process = self._process = await self._spawn()
            return process

    async def _spawn(self) -> _Process:
        d = self.definition
        if not self._unpacked:
            d.unpack(self._task_dir)
            self._unpacked = True
        env = {
            # what Lambda's runtime puts in every function's environment
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(self._task_dir),
            "AWS_LAMBDA_FUNCTION_NAME": d.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(d.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": d.log_group,
            "_HANDLER": d.handler,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **self._environment,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BOOTSTRAP),
            str(self._task_dir),
            d.handler,
            str(self.concurrency),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=ANSWER_LIMIT_BYTES,
            # out of the terminal's signal path: local mode decides when it stops
            start_new_session=True,
        )
        running = _Process(d.name, process)
        await running.wait_ready()
        return running

    async def invoke(self, event: dict, request_id: str | None = None, *, wait_for_slot: bool = False) -> Any:
        """Invoke with ``event``; returns the handler's result or raises
        :class:`InvocationError` (:class:`Throttled` at once when all
        ``concurrency`` slots are taken, unless ``wait_for_slot``).
        Invocations run concurrently."""
        await self._admit(wait_for_slot)
        try:
            process = await self._current()
        except BaseException:
            self._release()
            raise
        # no await between finding the process and handing it the invocation:
        # the answer can only come from the process the invocation went to
        d = self.definition
        invocation = next(self._ids)
        context = {
            "function_name": d.name,
            "invoked_function_arn": d.arn,
            "memory_limit_in_mb": d.memory_mb,
            "aws_request_id": request_id or str(uuid.uuid4()),
            "log_group_name": d.log_group,
            "log_stream_name": f"local/[$LATEST]{uuid.uuid4().hex}",
            "timeout_seconds": d.timeout_seconds,
        }
        request = json.dumps({"id": invocation, "event": event, "context": context}).encode() + b"\n"
        try:
            future = process.send(invocation, request)
        except ConnectionError as exc:  # it died as the invocation arrived, like a crashed environment
            self._release()
            raise InvocationError(f"{d.name} is not running: {exc}") from None
        # the slot is free once the process answers (or ends), not before: a
        # timed-out invocation still occupies its thread
        future.add_done_callback(lambda _: self._release())
        try:
            assert process.process.stdin is not None
            await process.process.stdin.drain()
            answer = await asyncio.wait_for(asyncio.shield(future), timeout=d.timeout_seconds)
        except asyncio.TimeoutError:
            raise InvocationError(f"{d.name} timed out after {d.timeout_seconds:g} s") from None
        except ConnectionError as exc:
            raise InvocationError(f"{d.name} is not running: {exc}") from None
        if "error" in answer:
            error = answer["error"]
            error_type, error_message = str(error.get("errorType")), str(error.get("errorMessage"))
            trace = "".join(str(line) for line in error.get("stackTrace") or ())
            if trace and ERRORS_ARE_ANSWERS.get():
                log.debug("[%s] %s", d.name, trace.rstrip())
            elif trace:
                sys.stderr.write(trace)
            raise FunctionError(f"{d.name}: {error_type}: {error_message}", error_type, error_message)
        return answer.get("result")

    async def stop(self) -> None:
        """End the process once its running invocations have answered. Waits
        for a start in progress, so that process is ended too."""
        async with self._lock:
            self._stopped = True
            process, self._process = self._process, None
        if process is not None:
            await process.stop()
