"""Lambda code of the channel server: the standard library only.

- ``spec``: facts shared with the component (routes, entry points, table
  schema, environment variable names, each route's IAM needs).
- ``protocol``: the wire protocol; pure.
- ``events``: a read-only view of an API Gateway WebSocket event.
- ``store``: the DynamoDB edge (memberships), through ``dynamodb``.
- ``sender``: the management API edge (posts to connections).
- ``handoff``: a large channel's members, in chunks, to the fan-out queue.
- ``awsjson``, ``dynamodb``, ``sigv4``, ``http1``, ``aws``: the AWS clients underneath.
- ``app``: the Lambda entry points, one per route.

It travels in the archive as ``channel_server/handlers/`` (a namespace
package there): modules import each other relatively, nothing from outside.
"""
