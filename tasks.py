#!/usr/bin/env python3
"""Set up and run channel-server's jobs with nothing but python3.

    python3 tasks.py local [local-mode flags]   set up, then start local mode
    python3 tasks.py test  [pytest args]        set up, then run the whole test suite

Setup creates .venv/ beside this file (once) and installs the project with the
extras the job needs (pyproject.toml holds every version range). Later runs
reuse it: they install again only when pyproject.toml changed or the job needs
an extra that is not installed yet (an extra that includes another, like
`channel-server[local]` in the test extra, counts as both).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    sys.exit(f"tasks.py needs Python 3.11 or newer; this is {sys.version.split()[0]}")

ROOT = Path(__file__).resolve().parent
VENV_NAME = ".venv"
#: What setup installed into the virtualenv: pyproject.toml's hash and the extras.
STAMP_NAME = ".tasks-installed.json"


def venv_python(venv_dir: Path) -> Path:
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


PYTHON = venv_python(ROOT / VENV_NAME)

JOBS = {
    "local": ("local", [str(PYTHON), "-m", "channel_server.local"]),
    # two workers: most tests wait on local mode's processes, so two cores
    # run the suite faster than one; whole files per worker, so a module's
    # local-mode server starts once rather than on both workers
    "test": ("test", [str(PYTHON), "-m", "pytest", "-n", "2", "--dist", "loadfile"]),
}

#: What tests/test_page.py drives: Debian's chromium and its chromedriver.
BROWSER = (Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver"))
BROWSER_INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]

# A PEP 508 requirement's name, its extras, and the rest (version, URL, markers).
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?(.*)", re.S)


def _normalize(name: str) -> str:
    """PEP 503 / PEP 685 normalization of a project or extra name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_includes(pyproject: dict) -> dict[str, set[str]]:
    """Each extra of ``[project.optional-dependencies]`` mapped to the extras it
    names directly as the project's own requirement (``channel-server[local]``).
    A self-requirement with an environment marker is conditional, so it does not count."""
    project = pyproject.get("project", {})
    own_name = _normalize(project.get("name", ""))
    includes: dict[str, set[str]] = {}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        named = includes.setdefault(_normalize(extra), set())
        for requirement in requirements:
            match = _REQUIREMENT.match(requirement)
            if not match or _normalize(match[1]) != own_name or ";" in match[3]:
                continue
            named.update(_normalize(e) for e in (match[2] or "").split(",") if e.strip())
    return includes


def closure(extras: set[str], includes: dict[str, set[str]]) -> set[str]:
    """``extras`` and every extra they include, directly or not."""
    found: set[str] = set()
    todo = [_normalize(e) for e in extras]
    while todo:
        extra = todo.pop()
        if extra not in found:
            found.add(extra)
            todo.extend(includes.get(extra, ()))
    return found


def fewest(extras: set[str], includes: dict[str, set[str]]) -> list[str]:
    """The fewest of ``extras`` whose closure is the closure of all of them
    (``{local, test}`` → ``[test]``), for a readable pip command."""
    kept = sorted(extras)
    for extra in sorted(extras):
        if extra in closure(set(kept) - {extra}, includes):
            kept.remove(extra)
    return kept


def read_stamp(stamp: Path) -> tuple[str, set[str]]:
    """(pyproject.toml's hash, installed extras); ("", set()) when there is no usable stamp."""
    try:
        data = json.loads(stamp.read_text())
        return str(data["pyproject_sha256"]), {str(e) for e in data["extras"]}
    except (OSError, ValueError, KeyError, TypeError):
        return "", set()


def create_venv(venv_dir: Path) -> None:
    venv.EnvBuilder(with_pip=True).create(venv_dir)


def pip_install(python: Path, root: Path, spec: str) -> None:
    """``pip install -e spec`` with pip's own output (and, on a terminal, its progress bars)."""
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if not sys.stdout.isatty():
        command += ["--progress-bar", "off"]
    subprocess.run(command + ["-e", spec], cwd=root, check=True)


def setup(extra: str, root: Path = ROOT) -> None:
    """Create ``root``/.venv and install the project with ``extra``, unless what
    was installed from the same pyproject.toml already includes ``extra``.
    Prints one line per step it takes, nothing when there is nothing to do."""
    venv_dir = root / VENV_NAME
    python = venv_python(venv_dir)
    stamp = venv_dir / STAMP_NAME
    pyproject_bytes = (root / "pyproject.toml").read_bytes()
    wanted = hashlib.sha256(pyproject_bytes).hexdigest()
    includes = extra_includes(tomllib.loads(pyproject_bytes.decode()))
    extra = _normalize(extra)

    created = not python.exists()
    if created:
        print(f"creating the virtualenv {VENV_NAME}/", flush=True)
        create_venv(venv_dir)
        stamp.unlink(missing_ok=True)
    installed_hash, installed = read_stamp(stamp)
    if installed_hash == wanted and extra in installed:
        return

    if installed_hash == wanted:
        why = f"adding [{extra}] to [{','.join(fewest(installed, includes))}]"
        keep = installed
    elif installed_hash:
        why = "pyproject.toml changed"
        keep = installed & set(includes)  # the extras it still declares
    elif created:
        why = "the first install takes a minute or two"
        keep = set()
    else:
        why = f"nothing recorded as installed in {VENV_NAME}/ yet; this can take a minute or two"
        keep = set()
    extras = closure(keep | {extra}, includes)
    spec = f".[{','.join(fewest(extras, includes))}]"
    print(f"installing channel-server{spec[1:]} into {VENV_NAME}/ ({why})", flush=True)
    pip_install(python, root, spec)
    stamp.write_text(json.dumps({"pyproject_sha256": wanted, "extras": sorted(extras)}) + "\n")


def ensure_browser() -> None:
    """For the test job: install the browser the page's test drives when it is
    missing and apt-get can (as root), saying so in one line; otherwise say in
    one line that the test will be skipped. Nothing when it is installed."""
    missing = " and ".join(str(path) for path in BROWSER if not path.exists())
    if not missing:
        return
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(f"{missing} missing: the browser test (tests/test_page.py) will be skipped; install Debian's "
              "chromium and chromium-driver (`sudo apt-get install chromium chromium-driver`)", flush=True)
        return
    print(f"installing chromium and chromium-driver with apt-get ({missing} missing; the browser test needs them)",
          flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(BROWSER_INSTALL, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env)  # package lists missing (containers) or stale
        if subprocess.run(BROWSER_INSTALL, env=env).returncode != 0:
            print("apt-get could not install them: the browser test (tests/test_page.py) will be skipped", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__.strip())
        return 0
    if not argv or argv[0] not in JOBS:
        if argv:
            near = difflib.get_close_matches(argv[0], JOBS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            print(f"tasks.py: unknown job {argv[0]!r}{hint}; the jobs are {', '.join(JOBS)}\n", file=sys.stderr)
        print(__doc__.strip(), file=sys.stderr)
        return 2
    extra, command = JOBS[argv[0]]
    setup(extra)
    if argv[0] == "test":
        ensure_browser()
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
