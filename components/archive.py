"""The Lambda code archive, built from an explicit list of files.

``pulumi.FileArchive(folder)`` would zip whatever lies in the folder
(``__pycache__`` included), so the archive, and every function, would change
between runs. Here the archive holds exactly the handler modules, under the
path they import as in Lambda (``channel_server/handlers/*.py``; there
``channel_server`` is a namespace package), so the same sources always give
the same archive and a second ``pulumi up`` changes nothing.
"""

from __future__ import annotations

import hashlib
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


def handler_archive(source: Path = HANDLERS_DIR) -> pulumi.AssetArchive:
    """The archive every handler function deploys."""
    return pulumi.AssetArchive({name: pulumi.FileAsset(str(path)) for name, path in handler_files(source).items()})


def archive_digest(source: Path = HANDLERS_DIR) -> str:
    """SHA-256 over the archive's names and contents: what decides whether the
    functions' code changed."""
    digest = hashlib.sha256()
    for name, path in handler_files(source).items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
