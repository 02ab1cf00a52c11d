"""``python -m channel_server.local``: see ``channel_server.local.server``."""

import sys

from ..extras import require

if __name__ == "__main__":
    require("local", "local mode")

    from .server import main

    sys.exit(main())
