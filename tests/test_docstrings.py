"""Every module says what it is for: its docstring opens with a paragraph of at most two lines.

The rule (issue 23): the first paragraph of a module's docstring, the text up to its first
blank line, says in one or two lines of at most 100 characters what the module is for;
details follow after a blank line. The modules are the Python files of every folder below.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The folders whose modules follow the rule (tests/ itself: only its helpers).
FOLDERS = ("components", "handlers", "client", "local", "http_backend", "plugin", "bench", "examples",
           "tests/support")
MAX_LINES = 2
MAX_WIDTH = 100


def modules() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py")
                  if "__pycache__" not in path.parts)


def fault(path: Path) -> str | None:
    """What is wrong with the module's opening docstring, or None."""
    docstring = ast.get_docstring(ast.parse(path.read_text(), str(path)))
    if not docstring:
        return "no module docstring"
    lines = docstring.split("\n\n", 1)[0].splitlines()
    if len(lines) > MAX_LINES:
        return f"first paragraph has {len(lines)} lines (at most {MAX_LINES})"
    wide = max(len(line) for line in lines)
    if wide > MAX_WIDTH:
        return f"first paragraph has a line of {wide} characters (at most {MAX_WIDTH})"
    return None


def test_every_folder_has_modules() -> None:
    assert [folder for folder in FOLDERS if not any((ROOT / folder).rglob("*.py"))] == []


def test_every_module_opens_with_a_short_paragraph_on_what_it_is_for() -> None:
    offenders = {str(path.relative_to(ROOT)): fault(path) for path in modules()}
    assert {path: why for path, why in offenders.items() if why} == {}
