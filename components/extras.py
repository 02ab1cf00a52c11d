"""Which of the package's extras are installed, and the pip command that adds one.

Entry points that need an extra (``python -m channel_server.local``,
``python -m channel_server.client``) check it before importing anything from
it, so a missing library is one line naming the command that installs it,
not a traceback.
"""

import json
import re
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit


def missing_requirements(extra: str) -> list[str]:
    """The distributions ``channel-server[extra]`` requires that are not
    installed, including those of the extras it names (``channel-server[client]``),
    read from the package's own metadata: pyproject.toml's extras."""
    try:
        requirements = metadata.requires("channel-server") or []
    except metadata.PackageNotFoundError:  # run from a source tree: nothing to check against
        return []
    missing: list[str] = []
    todo, seen = [extra], set()
    while todo:
        wanted = todo.pop()
        if wanted in seen:
            continue
        seen.add(wanted)
        for requirement in requirements:
            if not re.search(rf"""extra\s*==\s*["']{wanted}["']""", requirement):
                continue
            match = re.match(r"([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", requirement)
            assert match is not None  # a requirement starts with its project's name
            name, extras = match.groups()
            if name.lower().replace("_", "-") == "channel-server":
                todo.extend(e.strip() for e in (extras or "").split(",") if e.strip())
                continue
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                if name not in missing:
                    missing.append(name)
    return missing


def install_command(extra: str) -> str:
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
    checkout = Path(__file__).resolve().parents[1]  # <checkout>/components/extras.py
    if not url and (checkout / "pyproject.toml").is_file():
        return f"pip install -e '{checkout}[{extra}]'"
    return f"pip install 'channel-server[{extra}]'"


def require(extra: str, what: str) -> None:
    """Exit with one line when ``channel-server[extra]`` is not fully installed:
    ``<what> needs <libraries>: <pip command>``."""
    missing = missing_requirements(extra)
    if missing:
        raise SystemExit(f"{what} needs {', '.join(missing)}: {install_command(extra)}")

