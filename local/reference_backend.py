"""``--backend reference``: local mode runs the reference HTTP backend itself.

With an HTTP backend, API Gateway calls no Lambda function: it posts every
event to the backend's URL (``channel_server.backend``). To try that with one
command, local mode starts ``python -m channel_server.http_backend`` (the
reference backend) as a process of its own, pointed at local mode's table,
DynamoDB and management API, on a free loopback port, and serves the routes
from it. The backend's request lines go to local mode's stderr; it stops after
every connection's ``$disconnect`` has reached it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from typing import Mapping

log = logging.getLogger("channel_server.local")

#: The line the reference backend prints on stdout once it serves, before its URL.
READY = "channel-server HTTP backend on "
#: How long it may take to finish its requests in flight when asked to stop.
STOP_SECONDS = 10


class ReferenceBackendFailed(OSError):
    """The reference backend exited before it served."""


class ReferenceBackend:
    """The reference backend's process, and the URL it serves on."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, relay: asyncio.Task):
        self.process, self.url = process, url
        assert process.stdout is not None
        # what it prints after its ready line is read, so it never blocks on a full pipe
        self._relays = [relay, asyncio.create_task(_relay(process.stdout))]

    @classmethod
    async def start(cls, *, table: str, dynamodb_endpoint: str, management_endpoint: str,
                    environment: Mapping[str, str], log_level: str) -> "ReferenceBackend":
        """Start it on a free port of 127.0.0.1; return once it serves."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "channel_server.http_backend", "--port", "0", "--table", table,
            "--dynamodb-endpoint", dynamodb_endpoint, "--management-endpoint", management_endpoint,
            "--handler-log-level", log_level,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **environment},
            # a session of its own, as the functions have: a terminal's Ctrl-C
            # reaches local mode only, which stops the backend after the $disconnects
            start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        relay = asyncio.create_task(_relay(process.stderr))
        while line := (await process.stdout.readline()).decode(errors="replace"):
            if line.startswith(READY):
                return cls(process, line[len(READY):].strip(), relay)
        status = await process.wait()
        await relay
        raise ReferenceBackendFailed(f"the reference HTTP backend exited with status {status} before it served; "
                                     "see its lines above")

    async def stop(self) -> None:
        """Ask it to finish its requests in flight and exit (SIGTERM); kill it if it does not."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.gather(*self._relays, return_exceptions=True)


#: The start of the reference backend's own log lines (time, level, logger),
#: which local mode's log line has already.
_OWN_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO [\w.]+: ")


async def _relay(stream: asyncio.StreamReader) -> None:
    """Its lines, in local mode's log, marked as its own."""
    while line := await stream.readline():
        log.info("reference backend: %s", _OWN_PREFIX.sub("", line.decode(errors="replace").rstrip()))
