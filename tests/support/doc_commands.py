"""The shell commands the README and docs/ show, and the means to run them as shown.

A command is a line of a fenced block tagged ``sh`` (a line ending in ``\\``
goes on on the next), or a line after a prompt (``$ `` or ``A$ ``) in any
other fenced block; a trailing ``# comment`` is not part of it. Code spans in
prose name commands and show their syntax; what a reader is meant to run is
in a fenced block.

The tests run each command as shown, through ``sh -c`` in the repository's
folder, with these substitutions and no others (the README says so too):

- every port a command names (``8080``, ``9000``) becomes a free port, the
  same one for every command of one test, so clients reach the server the
  docs start;
- a placeholder (``<the table local mode prints>``, ``/path/to/channel-server``,
  ``~/src/chat-infra``) becomes what it stands for;
- commands that run the test suite get ``--collect-only`` (the suite cannot
  run itself inside itself), and benchmarks run with small sizes.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")))
#: How long a documented command may take to print what a test waits for: a
#: net under a hung process, never what a test synchronises on.
PATIENCE = 120

_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.S | re.M)
_PROMPT = re.compile(r"^[A-Z]?\$ (.+)$")
_SHELL_TAGS = {"sh", "bash", "shell"}


@dataclass(frozen=True)
class Command:
    """One command as a doc shows it."""

    doc: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _without_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes, after a blank)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def commands(doc: str) -> list[Command]:
    """The commands ``doc`` shows, in order."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    found: list[Command] = []
    for block in _FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(2)) + 1
        pending, pending_line = "", 0
        for offset, raw in enumerate(block.group(2).splitlines()):
            number = first_line + offset
            if block.group(1) in _SHELL_TAGS:
                line = raw
            else:
                prompt = _PROMPT.match(raw)
                if not prompt:
                    continue
                line = prompt.group(1)
            line = _without_comment(line)
            if not line.strip():
                continue
            if not pending:
                pending_line = number
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            found.append(Command(doc, pending_line, " ".join((pending + line).split())))
            pending = ""
    return sorted(found, key=lambda command: command.line)


def documented() -> list[Command]:
    """Every command of the README and docs/."""
    return [command for doc in DOCS for command in commands(doc)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_ports(text: str, ports: dict[str, int]) -> str:
    """``text`` with each documented port (a key of ``ports``) replaced by its free one."""
    for documented_port, port in ports.items():
        text = re.sub(rf"(?<![0-9]){documented_port}(?![0-9])", str(port), text)
    return text


class Shell:
    """A documented command running through ``sh -c`` in the repository's folder;
    its stdout and stderr read line by line as it prints them."""

    def __init__(self, command: str, *, stdin: bool = False, env: dict[str, str] | None = None):
        self.command = command
        self.process = subprocess.Popen(
            ["sh", "-c", f"exec {command}"], cwd=ROOT, text=True, bufsize=1,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,  # a signal reaches the command only, as from its own terminal
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str) -> re.Match:
        """The first match of ``pattern`` (a regex) in a line printed so far or from now on."""
        compiled = re.compile(pattern)
        for printed in self.lines:
            if match := compiled.search(printed):
                return match
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"`{self.command}` did not print {pattern!r}:\n{self.output}") from None
            if line is None:
                self._new.put(None)
                raise AssertionError(f"`{self.command}` exited ({self.process.wait()}) before printing "
                                     f"{pattern!r}:\n{self.output}")
            self.lines.append(line)
            if match := compiled.search(line):
                return match

    def type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def end_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def finish(self) -> int:
        """Wait for it to exit, having read all it printed; its exit status."""
        try:
            while (line := self._new.get(timeout=PATIENCE)) is not None:
                self.lines.append(line)
        except queue.Empty:
            raise AssertionError(f"`{self.command}` neither printed nor exited for {PATIENCE} s:\n"
                                 f"{self.output}") from None
        self._new.put(None)
        return self.process.wait(timeout=PATIENCE)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to it; its exit status once it stopped."""
        self.process.send_signal(signal.SIGINT)
        return self.finish()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run(command: str, *, input: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A documented command to its end, with ``input`` on stdin."""
    return subprocess.run(["sh", "-c", command], cwd=ROOT, input=input, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=PATIENCE * 5)


def words(command: str) -> list[str]:
    return shlex.split(command)
