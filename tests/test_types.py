"""The type checker: mypy, with pyproject.toml's ``[tool.mypy]`` (strict for
the handlers, the client and the component), over the package as it is imported,
``channel_server``, and over tests/ and bench/ (checked, not strict). A
finding fails the suite with mypy's own report, its paths the checkout's;
``.venv/bin/python tests/test_types.py`` runs it alone.

mypy knows neither setuptools' package-dir mapping (channel_server is
components/, channel_server.handlers is handlers/, ...) nor the editable
install's import hook, so it checks a tree of symlinks in the temporary
directory that has the installed layout; its cache stays there too (the
suite writes nothing into the checkout), and a run after the first takes a
few seconds instead of about 45 (most of it reading pulumi_aws).

One run checks all three, each module once with its own options. The package
is named by its directory in the tree (mypy takes packages or files, not
both); tests/ and bench/ by the checkout's, so mypy resolves their sibling
imports (``support.*``, ``test_*``, bench's ``_local``) there and
``channel_server`` in the tree."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "channel_server"
#: Where each part of the package lives in the checkout (pyproject.toml's package-dir).
SUBPACKAGES = ("handlers", "client", "http_backend", "local")
#: Checked beside the package, from the checkout, at [tool.mypy]'s global level.
CHECKOUT_DIRS = ("tests", "bench")


def _tree() -> Path:
    """The package's layout as installed, in symlinks to the checkout (kept
    between runs, per checkout, with mypy's cache beside it)."""
    base = Path(tempfile.gettempdir()) / f"channel-server-mypy-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"
    package = base / "tree" / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    wanted = {path.name: path for path in (ROOT / "components").glob("*.py")}
    wanted.update({name: ROOT / name for name in SUBPACKAGES})
    for link in package.iterdir():
        if link.name not in wanted or not link.is_symlink() or Path(os.readlink(link)) != wanted[link.name]:
            link.unlink()
    for name, target in wanted.items():
        if not (package / name).is_symlink():
            (package / name).symlink_to(target)
    return base


def _checkout_paths(report: str) -> str:
    """mypy's report with the checkout's paths (handlers/app.py, not channel_server/handlers/app.py;
    tests/test_client.py, not the absolute path)."""
    report = report.replace(f"{ROOT}/", "")
    for name in SUBPACKAGES:
        report = report.replace(f"{PACKAGE}/{name}/", f"{name}/")
    return report.replace(f"{PACKAGE}/", "components/")


def run_mypy() -> subprocess.CompletedProcess[str]:
    base = _tree()
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(base / "cache"), PACKAGE, *(str(ROOT / name) for name in CHECKOUT_DIRS)],
        cwd=base / "tree", capture_output=True, text=True,
    )
    result.stdout, result.stderr = _checkout_paths(result.stdout), _checkout_paths(result.stderr)
    return result


def test_mypy_finds_nothing() -> None:
    result = run_mypy()
    assert result.returncode == 0, f"mypy found:\n{result.stdout}{result.stderr}"


if __name__ == "__main__":
    outcome = run_mypy()
    sys.stdout.write(outcome.stdout + outcome.stderr)
    sys.exit(outcome.returncode)


def test_every_module_of_the_component_is_checked_strictly() -> None:
    """The strict override names the component's modules one by one (the
    package's root is also where local/ and http_backend/ hang, which are not
    strict): a new module of components/ must be added there."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    strict = next(o["module"] for o in config["overrides"] if o.get("disallow_untyped_defs"))
    wanted = {PACKAGE} | {f"{PACKAGE}.{path.stem}" for path in (ROOT / "components").glob("*.py")
                          if path.stem != "__init__"}
    assert wanted - set(strict) == set(), "add these to [tool.mypy]'s strict override"
