"""A sample ``$connect`` authorizer: a Lambda REQUEST authorizer for ChannelServer.

Try it in local mode from the repository's folder::

    python3 tasks.py local --authorizer examples/authorizer.py
    .venv/bin/python -m channel_server.client "ws://127.0.0.1:8080/dev?token=alice" --channel alice.inbox

A client connects with ``?token=NAME`` (the component's default identity
source, ``route.request.querystring.token``). This sample takes the token as
the user's name, which is fine for trying things and nothing else: a real
authorizer verifies a signed token (a JWT from your identity provider, say)
and reads the user from it. The answer allows ``execute-api:Invoke`` on the
connection's ``$connect`` and puts a ``channelPattern`` in its ``context``:
the connection may then join only the channels ``NAME.<anything>``
(docs/protocol.md, §7.1 "Authorizer context: channelPattern"). A token that is not a plain name is
refused with 401, the documented way (``raise Exception("Unauthorized")``).

Deploy it as a Lambda function of its own and give its ARN to the component
(``authorizerFunctionArn``); it needs only the standard library.
"""

import re

#: What this sample accepts as a user's name.
NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


def handler(event, context):
    token = (event.get("queryStringParameters") or {}).get("token", "")
    if not NAME.fullmatch(token):
        raise Exception("Unauthorized")  # API Gateway answers the handshake with 401
    return {
        "principalId": token,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": event["methodArn"]}],
        },
        # every later event of the connection carries this in requestContext.authorizer
        "context": {"channelPattern": re.escape(token) + r"\..+"},
    }
