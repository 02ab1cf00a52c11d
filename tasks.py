#!/usr/bin/env python3
"""Set up and run channel-server's jobs with nothing but python3.

    python3 tasks.py local [local-mode flags]   set up, then start local mode
    python3 tasks.py test  [pytest args]        set up, then run the whole test suite

Setup creates .venv/ beside this file (once) and installs the project with the
extras the job needs (pyproject.toml holds every version range). Later runs
reuse it and only reinstall when pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")

JOBS = {
    "local": ("local", [str(PYTHON), "-m", "channel_server.local"]),
    "test": ("test", [str(PYTHON), "-m", "pytest"]),
}


def setup(extra: str) -> None:
    """Create the virtualenv and install the project with ``extra``, unless the
    same pyproject.toml was already installed with it."""
    if not PYTHON.exists():
        print(f"creating {VENV.relative_to(ROOT)}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extra}"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"installing channel-server[{extra}] into {VENV.relative_to(ROOT)}/", flush=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f".[{extra}]"],
        cwd=ROOT,
        check=True,
    )
    stamp.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    extra, command = JOBS[argv[0]]
    setup(extra)
    os.chdir(ROOT)
    if os.name == "posix":
        # become the job: Ctrl-C and SIGTERM reach it directly, so local mode can
        # close its connections (each with its $disconnect) before it exits
        sys.stdout.flush()
        os.execv(command[0], command + argv[1:])
    return subprocess.run(command + argv[1:]).returncode


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
