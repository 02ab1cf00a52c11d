"""What processes run on this machine, read from Linux's /proc: to prove local
mode leaves no process behind, and which thread of a process takes a signal."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _pids() -> Iterator[int]:
    return (int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit())


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, ended but not reaped, does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def children_of(pid: int) -> set[int]:
    """Every process below ``pid``: its children, theirs, and so on."""
    parents = {child: stat[1] for child in _pids() if (stat := _stat(child)) is not None}
    below, found = {pid}, set[int]()
    while True:
        new = {child for child, parent in parents.items() if parent in below} - below
        if not new:
            return found
        below |= new
        found |= new


def running_from(folder: Path) -> list[int]:
    """Live processes whose command line names ``folder`` (a function's unpacked archive)."""
    found = []
    for pid in _pids():
        try:
            command = (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(folder) in command and alive(pid):
            found.append(pid)
    return found


def threads_taking(pid: int, signum: int) -> list[int]:
    """The threads of process ``pid`` that do not block ``signum`` (Linux's /proc)."""
    taking = []
    for task in sorted((PROC / str(pid) / "task").iterdir(), key=lambda path: int(path.name)):
        try:
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended since the listing takes nothing
            continue
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        if not blocked & (1 << (signum - 1)):
            taking.append(int(task.name))
    return taking
