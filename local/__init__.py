"""Local mode: the whole channel server on one machine, no AWS account.

``python -m channel_server.local`` serves the component's own routes and handler
code behind a local API Gateway (WebSocket endpoint and management API) with an
embedded DynamoDB. See ``channel_server.local.server``.
"""
