"""``python -m channel_server.local``: see ``channel_server.local.server``."""

import re
import sys
from importlib import metadata


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


if __name__ == "__main__":
    missing = missing_requirements()
    if missing:
        sys.exit(
            f"local mode needs {', '.join(missing)}: pip install 'channel-server[local]' "
            "(from a checkout: pip install '/path/to/channel-server[local]')"
        )

    from .server import main

    sys.exit(main())
