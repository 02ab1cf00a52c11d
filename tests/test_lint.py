"""The linter: ruff, with the rules pyproject.toml's ``[tool.ruff]`` chooses (and
says why), over the whole tree. A finding fails the suite with ruff's own
report; ``.venv/bin/ruff check --fix .`` fixes the ones ruff can fix itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_tree() -> None:
    # --no-cache: the suite writes nothing into the checkout
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check found:\n{result.stdout}{result.stderr}"
