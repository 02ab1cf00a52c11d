"""The channel-server Pulumi program: one ChannelServer per stack.

Settings come from the stack's config (declared with types, defaults and
descriptions in Pulumi.yaml); unset keys keep the component's defaults.
"""

import pulumi

from channel_server import ChannelServer, from_config

server = ChannelServer("channel-server", from_config(pulumi.Config()))

pulumi.export("url", server.url)
pulumi.export("managementEndpoint", server.management_endpoint)
pulumi.export("tableName", server.table_name)
pulumi.export("apiId", server.api_id)
pulumi.export("stageName", server.stage_name)
if server.publish_url is not None:  # serverPublish
    pulumi.export("publishUrl", server.publish_url)
    pulumi.export("publishPolicyArn", server.publish_policy_arn)
