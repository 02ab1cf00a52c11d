"""The Lambda code archive: exactly the handler modules, the same archive for the
same sources, and nothing inside that the Lambda runtime lacks (stdlib + boto3)."""

from __future__ import annotations

import ast
import os
import shutil
import sys
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


def test_handler_archive_holds_a_file_asset_per_handler_module() -> None:
    code = archive.handler_archive()
    assert isinstance(code, pulumi.AssetArchive)
    assert all(isinstance(asset, pulumi.FileAsset) for asset in code.assets.values())
    assert {name: asset.path for name, asset in code.assets.items()} == {
        name: str(path) for name, path in archive.handler_files().items()
    }


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


def test_changing_one_byte_changes_the_digest(handlers_copy: Path) -> None:
    before = archive.archive_digest(handlers_copy)
    app = handlers_copy / "app.py"
    source = app.read_bytes()
    app.write_bytes(source[:-1] + bytes([source[-1] ^ 1]))
    assert archive.archive_digest(handlers_copy) != before


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
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", list(archive.handler_files()))
def test_archived_module_imports_only_the_stdlib_boto3_and_its_siblings(name: str) -> None:
    imports = _absolute_imports(archive.handler_files()[name])
    foreign = sorted(imports - set(sys.stdlib_module_names) - RUNTIME_PACKAGES)
    assert foreign == []
