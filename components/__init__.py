"""channel-server: a WebSocket channel server on AWS as one Pulumi component.

    from channel_server import ChannelServer, ChannelServerArgs

    server = ChannelServer("chat", ChannelServerArgs(stage_name="prod"))
    pulumi.export("url", server.url)

The Lambda handlers travel inside this package (``channel_server.handlers``) so
the component can build their archive wherever it is installed.
"""

from .args import ChannelServerArgs, ChannelServerArgsError, from_config
from .component import TYPE_TOKEN, ChannelServer

__all__ = ["ChannelServer", "ChannelServerArgs", "ChannelServerArgsError", "TYPE_TOKEN", "from_config"]
