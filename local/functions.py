"""Local Lambda: each function in a process of its own (``lambda_bootstrap.py``),
with its own environment and its code unpacked from its own archive.

Where it differs from Lambda: concurrent invocations of one function share its
process (threads stand in for separate environments), and an invocation that
times out is answered as failed but keeps running to its end, so its side
effects may still land. A process that dies is started again (a cold start)
on the next invocation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Mapping

from .world import FunctionDef

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")


class InvocationError(Exception):
    """The function raised, timed out or its process died (API Gateway answers
    such invocations with "Internal server error")."""


class LocalFunction:
    """One running function: ``await invoke(event)`` returns its result."""

    def __init__(self, definition: FunctionDef, task_dir: Path, environment: Mapping[str, str]):
        self.definition = definition
        self._task_dir = task_dir
        self._environment = dict(environment)
        self._process: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task | None = None
        self._stderr: asyncio.Task | None = None
        self._starting = asyncio.Lock()
        self._stopped = False

    async def start(self) -> None:
        """Unpack the archive and start the function's process (its cold start)."""
        d = self.definition
        d.unpack(self._task_dir)
        await self._spawn()

    async def _spawn(self) -> None:
        d = self.definition
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
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BOOTSTRAP),
            str(self._task_dir),
            d.handler,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=16 * 1024 * 1024,
        )
        process = self._process
        assert process.stdout is not None and process.stderr is not None
        self._stderr = asyncio.create_task(self._relay_stderr(process.stderr))
        first = await process.stdout.readline()
        try:
            ready = json.loads(first)
        except ValueError:
            ready = {"init_error": {"errorMessage": f"process exited ({first[:200]!r})"}}
        if "init_error" in ready:
            raise InvocationError(f"function {d.name} failed to start: {ready['init_error']}")
        # answers of this process resolve this process's invocations only
        self._pending = {}
        self._reader = asyncio.create_task(self._read_answers(process.stdout, self._pending))

    async def invoke(self, event: dict, request_id: str | None = None) -> Any:
        """Invoke with ``event``; returns the handler's result or raises
        :class:`InvocationError`. Invocations run concurrently."""
        process = await self._running()
        d = self.definition
        invocation = next(self._ids)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        pending = self._pending
        pending[invocation] = future
        context = {
            "function_name": d.name,
            "invoked_function_arn": d.arn,
            "memory_limit_in_mb": d.memory_mb,
            "aws_request_id": request_id or str(uuid.uuid4()),
            "log_group_name": d.log_group,
            "log_stream_name": f"local/[$LATEST]{uuid.uuid4().hex}",
            "timeout_seconds": d.timeout_seconds,
        }
        process.stdin.write(json.dumps({"id": invocation, "event": event, "context": context}).encode() + b"\n")
        try:
            await process.stdin.drain()
            answer = await asyncio.wait_for(future, timeout=d.timeout_seconds)
        except asyncio.TimeoutError:
            raise InvocationError(f"{d.name} timed out after {d.timeout_seconds:g} s") from None
        except (ConnectionError, BrokenPipeError) as exc:
            raise InvocationError(f"{d.name} is not running: {exc}") from None
        finally:
            pending.pop(invocation, None)
        if "error" in answer:
            raise InvocationError(f"{d.name}: {answer['error'].get('errorType')}: {answer['error'].get('errorMessage')}")
        return answer.get("result")

    async def _running(self) -> asyncio.subprocess.Process:
        """The function's process, started again if it died."""
        async with self._starting:
            process = self._process
            if self._stopped:
                raise InvocationError(f"function {self.definition.name} is stopped")
            if process is None or process.returncode is not None or process.stdin is None:
                if process is not None:
                    sys.stderr.write(f"[{self.definition.name}] process exited ({process.returncode}); starting it again\n")
                await self._spawn()
                process = self._process
            assert process is not None
            return process

    async def _read_answers(self, stdout: asyncio.StreamReader, pending: dict[int, asyncio.Future]) -> None:
        while True:
            line = await stdout.readline()
            if not line:
                break
            try:
                answer = json.loads(line)
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                sys.stderr.write(f"[{self.definition.name}] unexpected output: {line[:200]!r}\n")
                continue
            future = pending.get(answer.get("id"))
            if future is not None and not future.done():
                future.set_result(answer)
        for future in pending.values():
            if not future.done():
                future.set_result({"error": {"errorType": "Runtime.ExitError", "errorMessage": "process exited"}})

    async def _relay_stderr(self, stderr: asyncio.StreamReader) -> None:
        while True:
            line = await stderr.readline()
            if not line:
                return
            sys.stderr.write(line.decode(errors="replace"))

    async def stop(self) -> None:
        """End the process once its running invocations have answered."""
        self._stopped = True
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
        for task in (self._reader, self._stderr):
            if task is not None:
                try:
                    await asyncio.wait_for(task, timeout=1)
                except asyncio.TimeoutError:
                    task.cancel()
                except Exception as exc:  # a broken reader must not stop the shutdown
                    sys.stderr.write(f"[{self.definition.name}] {type(exc).__name__} while stopping: {exc}\n")
        self._process = None
