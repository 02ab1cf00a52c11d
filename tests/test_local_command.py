"""``python -m channel_server.local`` as a user runs it: a process of its own,
a real terminal for Ctrl-C, a client that connects the moment the port
accepts, a port someone else holds, an install without the local extra.

Every wait here is for something the process prints or a reply, bounded by
TIMEOUT only so that a broken build fails instead of hanging."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from channel_server.handlers import spec
from channel_server.local.dynamodb import EmbeddedDynamoDB
from support.processes import alive, children_of

TIMEOUT = 30
COMMAND = [sys.executable, "-m", "channel_server.local"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def table_rows(dynamodb: EmbeddedDynamoDB) -> list[dict]:
    """Every row but the tombstones $disconnect leaves (closed connections)."""
    client = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    items = []
    for table in client.list_tables()["TableNames"]:
        items.extend(client.scan(TableName=table, ConsistentRead=True)["Items"])
    return [item for item in items if spec.CLOSED_AT not in item]


@pytest.fixture
def dynamodb() -> Iterator[EmbeddedDynamoDB]:
    """A DynamoDB outside local mode, so the table can be read after it exits."""
    with EmbeddedDynamoDB() as server:
        try:
            yield server
        finally:
            server.reset()


class Terminal:
    """A process in a real terminal (a pty), as its session leader: Ctrl-C
    typed here is SIGINT to its whole foreground process group, as in a shell."""

    def __init__(self, args: list[str]):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the pty becomes its terminal
        )
        os.close(slave)
        self.output = ""

    def read_until(self, text: str) -> str:
        """Read what the process prints until ``text`` appears (or it exits)."""
        deadline = time.monotonic() + TIMEOUT
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed in time:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the process closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"exited before printing {text!r}:\n{self.output}")
                self.output += chunk.decode(errors="replace")
        return self.output

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self) -> int:
        """Read everything until the process exits; its exit code."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            ready, _, _ = select.select([self.master], [], [], 1)
            chunk = b""
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
            self.output += chunk.decode(errors="replace")
            if not chunk and self.process.poll() is not None:
                return self.process.returncode
            if time.monotonic() > deadline:
                raise AssertionError(f"did not exit in time:\n{self.output}")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.master)


def url_in(output: str) -> str:
    return output.split("WebSocket URL:")[1].split()[0]


def printed_until(process: subprocess.Popen, pattern: str) -> str:
    """What the process printed on its stdout pipe up to a line matching
    ``pattern`` (a regex), read from the pipe itself so that communicate()
    gets the rest; waits at most TIMEOUT."""
    assert process.stdout is not None  # started with stdout=PIPE
    output = b""
    deadline = time.monotonic() + TIMEOUT
    while not re.search(pattern.encode(), output):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{pattern!r} not printed in time:\n{output.decode(errors='replace')}"
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            assert chunk, f"exited before printing {pattern!r}:\n{output.decode(errors='replace')}"
            output += chunk
    return output.decode(errors="replace")


# --- start-up ----------------------------------------------------------------------------


def test_a_client_that_connects_the_moment_the_port_accepts_is_served(dynamodb):
    # GIVEN local mode starting on a known port
    port = free_port()
    process = subprocess.Popen(
        [*COMMAND, "--port", str(port), "--dynamodb-endpoint", dynamodb.endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        # WHEN a client connects as soon as the port accepts a connection: tried
        # without pause from the moment local mode starts its functions (it
        # listens only once they have started), so the try that succeeds is
        # the first one after it begins to listen
        printed_until(process, r"starting \d+ functions")
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the port never accepted"
        with connect(f"ws://127.0.0.1:{port}/dev", open_timeout=TIMEOUT) as ws:
            # THEN its handshake ($connect) and its first frames are answered
            ws.send(json.dumps({"type": "join", "channelId": "early"}))
            assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "joinSuccess"
            ws.send(json.dumps({"type": "ping", "data": "first"}))
            assert json.loads(ws.recv(timeout=TIMEOUT)) == {"type": "pong", "data": "first"}
            # ... and every process local mode started is one it will stop
            spawned = children_of(process.pid)
            assert spawned
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, output
        assert [pid for pid in spawned if alive(pid)] == [], output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_port_in_use_is_reported_first_with_the_way_out():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = subprocess.run([*COMMAND, "--port", str(port)], capture_output=True, text=True, timeout=TIMEOUT)

    assert result.returncode == 1
    assert f"cannot start: 127.0.0.1:{port} is already in use" in result.stderr
    assert "--port 0" in result.stderr
    # nothing was built or started before the conflict was found
    assert result.stdout == ""


def test_without_the_local_extra_one_line_says_what_to_install():
    # GIVEN an environment where aiohttp (a requirement of the local extra) is not installed
    hide_aiohttp = (
        "import importlib.metadata as m, runpy, sys\n"
        "real = m.distribution\n"
        "def distribution(name):\n"
        "    if name.lower() == 'aiohttp': raise m.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "m.distribution = distribution\n"
        "sys.modules['aiohttp'] = None\n"
        "sys.argv = ['channel_server.local']\n"
        "runpy.run_module('channel_server.local', run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", hide_aiohttp], capture_output=True, text=True, timeout=TIMEOUT)

    # THEN one line names it and the command that installs it from where this
    # installation came from (here: this checkout, installed editable)
    assert result.returncode == 1
    root = Path(__file__).resolve().parents[1]
    assert result.stderr.strip() == f"local mode needs aiohttp: pip install -e '{root}[local]'"
    assert "Traceback" not in result.stderr


def test_the_install_command_names_where_the_package_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from channel_server.extras import install_command

    class Installed:
        def __init__(self, recorded: str | None):
            self.recorded = recorded

        def read_text(self, name: str) -> str | None:
            return self.recorded if name == "direct_url.json" else None

    for recorded, command in [
        ('{"url": "file:///src/channel%20server", "dir_info": {}}', "pip install '/src/channel server[local]'"),
        ('{"url": "file:///src/cs", "dir_info": {"editable": true}}', "pip install -e '/src/cs[local]'"),
        ('{"url": "https://example.com/cs.tar.gz", "archive_info": {}}', "pip install 'channel-server[local]'"),
    ]:
        monkeypatch.setattr(metadata, "distribution", lambda name, recorded=recorded: Installed(recorded))
        assert install_command("local") == command


# --- stopping ----------------------------------------------------------------------------


def test_ctrl_c_in_a_terminal_disconnects_every_client_and_exits_cleanly(dynamodb):
    terminal = Terminal([*COMMAND, "--port", "0", "--dynamodb-endpoint", dynamodb.endpoint])
    try:
        url = url_in(terminal.read_until("Ctrl-C to stop."))
        with connect(url, open_timeout=TIMEOUT) as ws:
            ws.send(json.dumps({"type": "join", "channelId": "ctrl-c"}))
            assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "joinSuccess"
            assert table_rows(dynamodb)

            terminal.type(b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground process group

            assert terminal.wait() == 0, terminal.output
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert "Traceback" not in terminal.output
        assert "KeyboardInterrupt" not in terminal.output
        assert "integration failed" not in terminal.output
        # its $disconnect ran: the connection's membership is gone
        assert table_rows(dynamodb) == []
        assert "stopped" in terminal.output
    finally:
        terminal.close()


def test_ctrl_c_during_start_up_says_so_at_once_and_stops_without_a_banner(dynamodb):
    terminal = Terminal([*COMMAND, "--port", "0", "--dynamodb-endpoint", dynamodb.endpoint])
    try:
        # the program is being read (a child process of its own) when this line appears
        terminal.read_until("starting the embedded SQS")
        terminal.type(b"\x03")  # Ctrl-C

        assert terminal.wait() == 0, terminal.output
        said = terminal.output[terminal.output.index("starting the embedded SQS"):]
        assert "stopping once start-up has ended (Ctrl-C again to stop at once)" in said, said
        assert "Ctrl-C to stop." not in said and "WebSocket URL" not in said, said
        assert "stopped" in said and "Traceback" not in said, said
    finally:
        terminal.close()


def test_sigterm_delivers_disconnect_to_everyone(dynamodb):
    process = subprocess.Popen(
        [*COMMAND, "--port", "0", "--dynamodb-endpoint", dynamodb.endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C to stop." in line:
                break
        url = url_in("".join(lines))
        assert url.startswith("ws://127.0.0.1:")
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(url, open_timeout=TIMEOUT)) for _ in range(3)]
            for ws in clients:
                ws.send(json.dumps({"type": "join", "channelId": "shutdown"}))
                assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "joinSuccess"
            assert len(table_rows(dynamodb)) == 6  # a membership and a state row each

            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=TIMEOUT)

            assert process.returncode == 0, output
            for ws in clients:
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=TIMEOUT)
        assert output.count("disconnect ") == 3 and "stopped" in output
        assert table_rows(dynamodb) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
