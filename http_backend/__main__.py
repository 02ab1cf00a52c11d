"""``python -m channel_server.http_backend``: the reference HTTP backend's command (``cli.main``)."""

import sys

from .cli import main

sys.exit(main())
