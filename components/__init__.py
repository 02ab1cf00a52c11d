"""channel-server: a WebSocket channel server on AWS as one Pulumi component.

    from channel_server import ChannelServer, ChannelServerArgs

    server = ChannelServer("chat", ChannelServerArgs(stage_name="prod"))
    pulumi.export("url", server.url)

The Lambda handlers travel inside this package (``channel_server.handlers``) so
the component can build their archive wherever it is installed.
"""

from typing import TYPE_CHECKING, Any

from .args import ChannelServerArgs, ChannelServerArgsError
from .config import from_config

if TYPE_CHECKING:
    from .component import TYPE_TOKEN, ChannelServer

__all__ = ["ChannelServer", "ChannelServerArgs", "ChannelServerArgsError", "TYPE_TOKEN", "from_config"]


def __getattr__(name: str) -> Any:
    # The component (and Pulumi with it) is imported on first use: local mode
    # and the handlers' tools import this package without needing Pulumi.
    if name in ("ChannelServer", "TYPE_TOKEN"):
        from . import component

        return getattr(component, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
