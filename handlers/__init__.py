"""Lambda code of the channel server: stdlib + boto3 only.

Layout (a sans-I/O core with thin edges):

- ``spec``      facts shared with the component: route set, entry points, table
                schema, environment variable names, IAM needs of each route.
- ``protocol``  the wire protocol: parses frames, validates them, builds replies.
                Pure; never imports boto3.
- ``events``    a read-only view of an API Gateway WebSocket event.
- ``store``     the DynamoDB edge (memberships).
- ``sender``    the management API edge (post to connections) and its errors.
- ``app``       the Lambda entry points, one per route, each a few lines.

This package travels in the Lambda archive as ``channel_server/handlers/``
(``channel_server`` is a namespace package there), so modules import each other
relatively and nothing here may import from outside this folder.
"""
