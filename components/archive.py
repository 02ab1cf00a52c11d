"""The Lambda code archive, built from an explicit list of files.

``pulumi.FileArchive(folder)`` would zip whatever lies in the folder
(``__pycache__`` included), so the archive, and every function, would change
between runs. Here the archive holds exactly the handler modules, under the
path they import as in Lambda (``channel_server/handlers/*.py``; there
``channel_server`` is a namespace package), so the same sources always give
the same archive and a second ``pulumi up`` changes nothing.

Each module is shipped as :func:`shipped` makes it: its docstrings and
comments blanked, line for line, as ``python -OO`` drops docstrings. The code
and every line number stay as in the repository (a traceback from Lambda
points at the source), and the archive stays within its 32 KB while the
sources keep their documentation.
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from pathlib import Path

import pulumi

from . import handlers

#: The handlers folder, wherever this package is installed.
HANDLERS_DIR = Path(handlers.__file__).resolve().parent
#: Where the handler modules sit inside the archive.
ARCHIVE_PREFIX = "channel_server/handlers/"


def handler_files(source: Path = HANDLERS_DIR) -> dict[str, Path]:
    """Archive path → source file, for every handler module (``*.py`` directly in
    the folder; no bytecode, no tests, no subfolders), in sorted order."""
    return {ARCHIVE_PREFIX + path.name: path for path in sorted(source.glob("*.py")) if path.is_file()}


def handler_sources(source: Path = HANDLERS_DIR) -> dict[str, str]:
    """Archive path → the module's text as the archive holds it (:func:`shipped`)."""
    return {name: shipped(path.read_text(encoding="utf-8")) for name, path in handler_files(source).items()}


def handler_archive(source: Path = HANDLERS_DIR) -> pulumi.AssetArchive:
    """The archive every handler function deploys."""
    return pulumi.AssetArchive({name: pulumi.StringAsset(text) for name, text in handler_sources(source).items()})


def archive_digest(source: Path = HANDLERS_DIR) -> str:
    """SHA-256 over the archive's names and contents: what decides whether the
    functions' code changed."""
    digest = hashlib.sha256()
    for name, text in handler_sources(source).items():
        digest.update(name.encode() + b"\0" + text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def shipped(text: str) -> str:
    """``text`` (a Python module) with every comment removed and every string
    statement (docstrings, and string literals standing alone as statements)
    emptied, keeping its lines: a string over k lines becomes ``\"\"\"`` with
    k-1 newlines. Nothing else changes: the code compiles to what it did, on
    the same line numbers."""
    # the lines as Python counts them (\n, \r\n, \r), not str.splitlines (which also splits at \f, U+2028, ...)
    lines = io.StringIO(text, newline="").readlines()
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(row: int, byte_col: int) -> int:
        """ast's (1-based line, UTF-8 byte column) as an index into ``text``."""
        return starts[row - 1] + len(lines[row - 1].encode("utf-8")[:byte_col].decode("utf-8"))

    cuts: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            value = node.value
            assert value.end_lineno is not None and value.end_col_offset is not None
            span = value.end_lineno - value.lineno
            cuts.append((offset(value.lineno, value.col_offset), offset(value.end_lineno, value.end_col_offset),
                         '"""' + "\n" * span + '"""' if span else '""'))
    for token in tokenize.generate_tokens(iter(lines).__next__):
        if token.type == tokenize.COMMENT:
            (row, col), (_, end) = token.start, token.end
            before = lines[row - 1][:col]
            cuts.append((starts[row - 1] + len(before.rstrip()), starts[row - 1] + end, ""))
    for start, end, replacement in sorted(cuts, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text
