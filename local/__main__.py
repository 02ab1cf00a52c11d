"""``python -m channel_server.local``: see ``channel_server.local.server``."""

import sys

from .server import main

sys.exit(main())
