"""Start local mode for a benchmark as a user would: its own process tree, this
repository's program, and a stack whose config the benchmark chooses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def local_mode(config: dict[str, Any] | None = None, *args: str) -> Iterator[tuple[subprocess.Popen, str, list[str]]]:
    """``python -m channel_server.local --port 0`` serving this repository's
    program with ``config`` (keys of ChannelServerArgs' config, e.g.
    ``postsInFlight``) on a stack of its own; yields the process, the WebSocket
    URL and the log lines so far (more are appended as they come, and all of
    them are there once the block has ended: local mode is stopped then)."""
    project = Path(tempfile.mkdtemp(prefix="bench-project-"))
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copy(ROOT / "__main__.py", project / "__main__.py")
    name = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
    stack = {"config": {f"{name}:{key}": value for key, value in (config or {}).items()}}
    (project / "Pulumi.bench.yaml").write_text(yaml.safe_dump(stack))
    process = subprocess.Popen(
        [sys.executable, "-m", "channel_server.local", "--port", "0", "--program", str(project), "--stack", "bench",
         *args],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    log: list[str] = []
    reader = None
    try:
        url = None
        for line in process.stdout:  # type: ignore[union-attr]
            log.append(line)
            match = re.search(r"WebSocket URL:\s+(\S+)", line)
            if match:
                url = match.group(1)
            if line.startswith("Ctrl-C to stop"):
                break
        if url is None:
            raise RuntimeError("local mode did not start:\n" + "".join(log))
        reader = threading.Thread(target=lambda: log.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
        reader.start()
        yield process, url, log
    finally:
        process.terminate()  # local mode closes every connection, then stops its functions
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()  # its function processes end once their stdin closes
            process.wait()
        if reader is not None:
            reader.join(timeout=10)  # the log is complete once local mode's output ends
        shutil.rmtree(project, ignore_errors=True)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the /proc view)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants so far (the /proc view)."""
    total = 0.0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total
