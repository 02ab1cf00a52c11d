"""``python -m channel_server.local``: see ``channel_server.local.server``."""

import json
import re
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit


def missing_requirements(extra: str = "local") -> list[str]:
    """The distributions ``channel-server[extra]`` requires that are not
    installed (read from the package's own metadata: pyproject.toml's extra)."""
    try:
        requirements = metadata.requires("channel-server") or []
    except metadata.PackageNotFoundError:  # run from a source tree: nothing to check against
        return []
    missing = []
    for requirement in requirements:
        if not re.search(rf"""extra\s*==\s*["']{extra}["']""", requirement):
            continue
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group()
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def install_command(extra: str = "local") -> str:
    """The pip command that adds ``extra`` to this installation: from the
    folder it was installed from (pip records it in direct_url.json), else
    from the checkout this code runs from, else from the package index."""
    try:
        recorded = metadata.distribution("channel-server").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        recorded = None
    source = json.loads(recorded) if recorded else {}
    url = source.get("url", "")
    if url.startswith("file://"):
        editable = "-e " if (source.get("dir_info") or {}).get("editable") else ""
        return f"pip install {editable}'{unquote(urlsplit(url).path)}[{extra}]'"
    checkout = Path(__file__).resolve().parents[1]  # <checkout>/local/__main__.py
    if not url and (checkout / "pyproject.toml").is_file():
        return f"pip install -e '{checkout}[{extra}]'"
    return f"pip install 'channel-server[{extra}]'"


if __name__ == "__main__":
    missing = missing_requirements()
    if missing:
        sys.exit(f"local mode needs {', '.join(missing)}: {install_command()}")

    from .server import main

    sys.exit(main())
