"""The channel-server component package: hosts ``ChannelServer`` for Pulumi
programs in any language (``pulumi package add``).

Pulumi runs this file as the package's plugin; it serves the component over
gRPC with Pulumi's component provider host, which infers the package schema
from the type annotations of ``ChannelServerArgs`` and ``ChannelServer``.
This folder is apart from the repository's own program (``../__main__.py``):
a plugin's ``__main__.py`` is what the plugin runs.
"""

from importlib.metadata import version

from pulumi.provider.experimental import component_provider_host

from channel_server import ChannelServer
from channel_server.component import PACKAGE_NAME

if __name__ == "__main__":
    component_provider_host([ChannelServer], name=PACKAGE_NAME, version=version("channel-server"))
