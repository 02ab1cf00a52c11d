"""``python -m channel_server.local``: see ``channel_server.local.cli``."""

import sys

from ..extras import require

if __name__ == "__main__":
    require("local", "local mode")

    from .cli import main

    sys.exit(main())
