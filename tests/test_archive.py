"""The Lambda code archive: exactly the handler modules, the same archive for the
same sources, and nothing inside that the Lambda runtime lacks (stdlib + boto3)."""

from __future__ import annotations

import ast
import io
import os
import shutil
import sys
import tokenize
from pathlib import Path

import pulumi
import pytest

from channel_server import archive

REPO_HANDLERS = Path(__file__).resolve().parents[1] / "handlers"
#: What the Lambda Python runtime provides besides the standard library.
RUNTIME_PACKAGES = {"boto3", "botocore"}


@pytest.fixture
def handlers_copy(tmp_path: Path) -> Path:
    """A copy of the handler modules alone (no bytecode that may lie next to them)."""
    copy = tmp_path / "handlers"
    copy.mkdir()
    for path in REPO_HANDLERS.glob("*.py"):
        shutil.copy2(path, copy / path.name)
    return copy


def test_handlers_folder_is_the_repos_handlers_folder() -> None:
    assert archive.HANDLERS_DIR == REPO_HANDLERS


def test_handler_files_are_every_module_of_the_handlers_folder() -> None:
    modules = sorted(name for name in os.listdir(REPO_HANDLERS) if name.endswith(".py"))
    assert modules
    files = archive.handler_files()
    assert list(files) == [f"channel_server/handlers/{name}" for name in modules]
    assert [path.resolve() for path in files.values()] == [REPO_HANDLERS / name for name in modules]


def test_handler_archive_holds_each_handler_module_as_shipped() -> None:
    code = archive.handler_archive()
    assert isinstance(code, pulumi.AssetArchive)
    texts = {name: asset.text for name, asset in code.assets.items() if isinstance(asset, pulumi.StringAsset)}
    assert texts.keys() == code.assets.keys()  # every one a StringAsset
    assert texts == {
        name: archive.shipped(path.read_text(encoding="utf-8")) for name, path in archive.handler_files().items()
    }


# --- what is shipped: the code, line for line, without docstrings and comments ----------


def _code_shape(text: str) -> str:
    """The module's syntax tree with every node's lines and start column,
    each string statement emptied: what runs, and where. (End columns are
    left out: an emptied docstring ends a class or function sooner.)"""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            node.value.value = ""
        if hasattr(node, "end_col_offset"):
            del node.end_col_offset
    return ast.dump(tree, include_attributes=True)


@pytest.mark.parametrize("name", list(archive.handler_files()))
def test_a_shipped_module_is_its_source_without_docstrings_and_comments_on_the_same_lines(name: str) -> None:
    source = archive.handler_files()[name].read_text(encoding="utf-8")
    shipped = archive.shipped(source)

    assert _code_shape(shipped) == _code_shape(source)  # the same code, node for node, line for line
    assert shipped.count("\n") == source.count("\n")
    assert not [t for t in tokenize.generate_tokens(io.StringIO(shipped).readline) if t.type == tokenize.COMMENT]
    strings = [node.value.value for node in ast.walk(ast.parse(shipped)) if isinstance(node, ast.Expr)
               and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)]
    assert all(not text.strip() for text in strings)
    compile(shipped, name, "exec")


def test_shipping_keeps_strings_that_are_values_and_hashes_inside_strings() -> None:
    source = (
        'def f(x):\n'
        '    """Doc, over\n'
        '    two lines."""  # and a comment\n'
        '    y = "# not a comment"  # a comment\n'
        '    z = """a value,\n'
        'kept"""\n'
        '    return {"k": "ü"}["k"] + y + z  # trailing ü\n'
    )
    assert archive.shipped(source) == (
        'def f(x):\n'
        '    """\n'
        '"""\n'
        '    y = "# not a comment"\n'
        '    z = """a value,\n'
        'kept"""\n'
        '    return {"k": "ü"}["k"] + y + z\n'
    )


#: The archive's budget, zipped. Every function's cold start downloads and
#: unpacks it; history and presence brought it from 28 to 33 KB.
ARCHIVE_BUDGET_KB = 40


def test_the_archive_stays_within_its_budget_zipped() -> None:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, text in archive.handler_sources().items():
            zipped.writestr(name, text)
    assert len(buffer.getvalue()) <= ARCHIVE_BUDGET_KB * 1024


def test_bytecode_tests_and_other_files_stay_out_of_the_archive(handlers_copy: Path) -> None:
    # GIVEN a handlers folder with bytecode, a tests/ subfolder and a text file in it
    (handlers_copy / "__pycache__").mkdir()
    (handlers_copy / "__pycache__" / "x.pyc").write_bytes(b"\x00bytecode")
    (handlers_copy / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (handlers_copy / "tests").mkdir()
    (handlers_copy / "tests" / "test_app.py").write_text("def test_nothing():\n    pass\n")
    (handlers_copy / "notes.txt").write_text("not code\n")

    # THEN it gives the same file list and the same archive as the original
    assert [name for name in archive.handler_files(handlers_copy)] == list(archive.handler_files())
    assert archive.archive_digest(handlers_copy) == archive.archive_digest()


def test_the_same_sources_give_the_same_digest(handlers_copy: Path) -> None:
    assert archive.archive_digest(handlers_copy) == archive.archive_digest(handlers_copy) == archive.archive_digest()


def test_changing_one_byte_of_code_changes_the_digest(handlers_copy: Path) -> None:
    before = archive.archive_digest(handlers_copy)
    app = handlers_copy / "app.py"
    source = app.read_text(encoding="utf-8")
    assert 'OK = {"statusCode": 200}' in source
    app.write_text(source.replace('OK = {"statusCode": 200}', 'OK = {"statusCode": 201}'), encoding="utf-8")
    assert archive.archive_digest(handlers_copy) != before


def test_changing_only_comments_and_docstrings_leaves_the_archive_as_it_was(handlers_copy: Path) -> None:
    before = archive.archive_digest(handlers_copy)
    app = handlers_copy / "app.py"
    source = app.read_text(encoding="utf-8")
    changed = source.replace('"""Lambda entry points', '"""The Lambda entry points', 1).replace(
        "# Connection and route only", "# Only the connection and route", 1)
    assert changed.count("\n") == source.count("\n") and changed != source
    app.write_text(changed, encoding="utf-8")
    assert archive.archive_digest(handlers_copy) == before  # nothing to deploy


def test_a_handler_module_that_does_not_parse_stops_the_build(handlers_copy: Path) -> None:
    (handlers_copy / "app.py").write_text("def broken(:\n", encoding="utf-8")
    with pytest.raises(SyntaxError):
        archive.handler_archive(handlers_copy)


def test_adding_a_module_changes_the_file_list_and_the_digest(handlers_copy: Path) -> None:
    before = archive.archive_digest(handlers_copy)
    (handlers_copy / "extra.py").write_text("")
    assert "channel_server/handlers/extra.py" in archive.handler_files(handlers_copy)
    assert archive.archive_digest(handlers_copy) != before


def test_touching_mtimes_does_not_change_the_digest(handlers_copy: Path) -> None:
    before = archive.archive_digest(handlers_copy)
    for path in handlers_copy.iterdir():
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert archive.archive_digest(handlers_copy) == before


def _absolute_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports of a module (relative ones left out)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module is not None  # only a relative import (level > 0) names no module
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", list(archive.handler_files()))
def test_archived_module_imports_only_the_stdlib_boto3_and_its_siblings(name: str) -> None:
    imports = _absolute_imports(archive.handler_files()[name])
    foreign = sorted(imports - set(sys.stdlib_module_names) - RUNTIME_PACKAGES)
    assert foreign == []


@pytest.mark.parametrize("source", [
    'def a():\n    """d"""\n    return 1\n\x0c\ndef b():\n    """e"""\n    return 2  # c\n',  # a form feed line
    'x = 1  # a\u2028b\ny = """kept"""\n',  # U+2028 inside a comment
    'def f():\r    """d"""\r    return 1  # c\r',  # CR line ends
    'def f():\r\n    """d\r\n    e"""\r\n    return 1  # c\r\n',  # CRLF
], ids=["form feed", "line separator in a comment", "CR", "CRLF"])
def test_shipping_counts_lines_as_python_does(source: str) -> None:
    shipped = archive.shipped(source)

    compile(shipped, "module", "exec")
    assert _code_shape(shipped) == _code_shape(source)
    assert not [t for t in tokenize.generate_tokens(io.StringIO(shipped).readline) if t.type == tokenize.COMMENT]
