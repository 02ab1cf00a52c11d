"""What local mode signs its requests with where AWS would supply them: a
region and placeholder credentials.

Its own process, its functions and the reference HTTP backend
(``channel_server.http_backend``, when every endpoint it talks to is on
loopback and the environment has none of its own) all use these, so they
agree on one region and never need an AWS account. No third-party import:
the backend imports this without local mode's dependencies.
"""

from __future__ import annotations

REGION = "us-east-1"
#: Credentials for the embedded DynamoDB and the local management API, which
#: accept any signature. Real credentials never go there.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
