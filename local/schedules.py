"""EventBridge Scheduler, for the schedules the component registered (the server heartbeat):
each invokes its function at its rate with its target's input.

Each run's context attributes are filled in as the scheduler fills them.

Runs of one schedule never overlap here: the next starts at its time, or
when the previous one ends if that is later. A run that fails is logged; the
next one comes at its time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from .world import ScheduleDef

log = logging.getLogger("channel_server.local")

Invoke = Callable[[dict, str], Awaitable[Any]]


def scheduler_input(schedule: ScheduleDef, arn: str, scheduled: float, attempt: int = 1) -> dict:
    """The event the scheduler sends: the target's input with its context
    attributes (``<aws.scheduler.scheduled-time>`` and the others) filled in.
    An input that is not JSON is refused at start-up (:class:`Scheduler`)."""
    text = schedule.input
    values = {
        "<aws.scheduler.schedule-arn>": arn,
        "<aws.scheduler.scheduled-time>":
            datetime.fromtimestamp(scheduled, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": str(attempt),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


class Scheduler:
    """Runs ``schedule`` every ``interval`` seconds (its own rate unless
    given: ``--heartbeat-seconds``) through ``invoke(event, request_id)``."""

    def __init__(self, schedule: ScheduleDef, invoke: Invoke, interval: float | None = None, arn: str = ""):
        self.schedule = schedule
        self.interval = interval if interval is not None else schedule.interval_seconds
        if self.interval <= 0:
            raise ValueError(f"schedule {schedule.name}: the interval must be above 0 s, not {self.interval:g}")
        scheduler_input(schedule, arn, time.time())  # an input that is not JSON fails at start-up
        self._invoke = invoke
        self._arn = arn
        self._task: asyncio.Task | None = None
        self._stopping = False
        #: Runs finished (whatever their outcome).
        self.runs = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stopping:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            event = scheduler_input(self.schedule, self._arn, time.time())
            try:
                await self._invoke(event, str(uuid.uuid4()))
            except Exception as exc:  # the scheduler logs a failed target; the next run comes anyway
                log.warning("schedule %s: invocation failed: %s", self.schedule.name, exc)
            self.runs += 1
            due = max(due + self.interval, time.monotonic())

    async def stop(self) -> None:
        # The flag as well as the cancel: Python 3.11's wait_for (under the
        # invocation) can swallow a cancel that meets its answer, and the
        # loop then ran on, every interval, with stop waiting for it forever.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
