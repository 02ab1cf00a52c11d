"""The reference HTTP backend: ``python -m channel_server.http_backend``.

What it is
----------
With ``ChannelServerArgs.backend`` set, API Gateway calls no Lambda function:
each WebSocket event (a ``$connect``, a ``$disconnect``, every message frame)
is POSTed as one JSON *envelope* to an HTTP server you run
(``channel_server.backend`` is that contract). This is such a server, small
enough to start from. It serves the channel protocol with the very code the
Lambda handlers run (``channel_server.handlers.app.ChannelApp``: the same
table, the same store, the same sender), so the two backends cannot drift:

- each envelope becomes the Lambda event it stands for
  (``backend.lambda_event``) and goes to the ``ChannelApp`` method of its
  route, found in ``spec.ROUTES`` (a route key it does not know is served as
  ``$default``);
- the method's reply frame is the HTTP answer's body, which API Gateway sends
  back to the client on the two-way routes (join, publish, ping,
  ``$default``);
- messages for the other members of a channel go out through API Gateway's
  management API (``POST @connections/{id}``), as the Lambda handlers post
  them.

How API Gateway reaches it
--------------------------
Every route's integration POSTs to the one URL deployed as ``backend.url``
(``backendUrl``). The path is not read: POST the envelope to ``/`` or to any
other path, so the URL may carry whatever path a proxy in front needs. API
Gateway must be able to reach the URL (a public https endpoint, or one behind
a load balancer); it waits ``backend.timeout_ms`` for an answer, and that is
this server's ``--timeout-ms``: a publish stops starting posts to members in
time to answer within it.

Run it::

    export AWS_REGION=us-east-1            # and credentials, as for any AWS client
    python -m channel_server.http_backend --port 8000 \\
        --table chat-connections-1a2b3c \\
        --management-endpoint https://k7x2mq9ehd.execute-api.us-east-1.amazonaws.com/dev

Against local mode (its table, its DynamoDB, its management API) it needs no
AWS account at all: see "Region and credentials" below.

It prints ``channel-server HTTP backend on http://127.0.0.1:8000/`` on stdout
once it serves (flushed at once, the only line it prints there: whoever
started it reads the URL from it, ``http://[::1]:8000/`` for an IPv6 host),
logs one line per request (route key, connection id, status, time;
never a frame's content) on stderr, and stops cleanly on Ctrl-C or SIGTERM
(exit status 0): it stops accepting, finishes the requests in flight (for up
to the timeout), then exits. A port in use is one line on stderr and exit
status 1; a missing or invalid setting is an argparse error (exit status 2)
that names what to set.

Flags (a flag wins over its environment variable)
-------------------------------------------------
``--host ADDR``
    The address to listen on (default 127.0.0.1; 0.0.0.0 for every interface).
``--port N``
    Required: the port to listen on; 0 picks a free one (printed when ready).
``--table NAME``
    The connections table; else ``$CHANNEL_TABLE_NAME``. Required.
``--management-endpoint URL``
    The stage's management API, ``https://{api}.execute-api.{region}.amazonaws.com/{stage}``;
    else ``$CHANNEL_MANAGEMENT_ENDPOINT``. Required.
``--index NAME``
    The table's channel index; else ``$CHANNEL_INDEX_NAME``; else ``byChannel``
    (``spec.CHANNEL_INDEX``, the index the component declares).
``--dynamodb-endpoint URL``
    Another DynamoDB (DynamoDB Local, local mode's embedded one): the app's
    ``AWS_ENDPOINT_URL_DYNAMODB``. Default: the environment's, that is AWS.
``--timeout-ms N``
    The integration's timeout, as deployed (``backend.timeout_ms``): 50 to
    29000, default 29000.
``--workers N``
    Requests the channel code runs at once (default 64); more wait their turn,
    their wait counted against the timeout.
``--handler-log-level LEVEL``
    The level of the channel code's own logging (default WARNING).

Environment
-----------
Every other ``CHANNEL_*`` variable is handed to ``ChannelApp`` as it is
(``CHANNEL_ID_PATTERN``, ``CHANNEL_MAX_MESSAGE_BYTES``,
``CHANNEL_POSTS_IN_FLIGHT``, ...: the names in ``channel_server.handlers.spec``),
parsed once into its settings (``channel_server.handlers.settings``), with
the ``AWS_*`` variables its clients read; the process's environment is never
changed.
Without ``CHANNEL_FANOUT_QUEUE_URL`` a publish posts to every member itself;
with it, members beyond ``CHANNEL_INLINE_FANOUT_LIMIT`` are queued, and
something must consume that queue (``ChannelApp.fanout``): the component
builds no queue and no fan-out function for an HTTP backend.

Region and credentials
----------------------
They come from the environment as for any AWS client (``AWS_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, a container
role); both are checked at start-up, and one that is missing is an argparse
error naming what to set.

When every endpoint it talks to is on loopback (``localhost``, 127.0.0.0/8,
``::1``): DynamoDB's (``--dynamodb-endpoint``, else
``AWS_ENDPOINT_URL_DYNAMODB``, else ``AWS_ENDPOINT_URL``), the management
API, and SQS's when ``CHANNEL_FANOUT_QUEUE_URL`` sets a queue, nothing there
checks a signature: what the environment lacks, it takes from local mode
(``channel_server.local.placeholders``), the placeholder credentials
``local``/``local`` and the region us-east-1, and says so in one log line at
start-up. Credentials the environment has are still used (DynamoDB Local
keeps one database per access key and region): a signature carries the
access key id, never the secret key. Placeholders never go anywhere else:
with any endpoint off this machine the checks above stand.

What it answers
---------------
``POST`` with an envelope:
    the route's answer as ``ChannelApp`` returns it: 200, with the reply frame
    as an ``application/json`` body on the message routes, and no body on
    ``$connect`` and ``$disconnect``. Failures in the channel code become
    protocol replies there (``joinFailure``, ``error``, ...), still 200.
``400``
    The body is not UTF-8 JSON, or not an envelope (a field missing or of the
    wrong type): ``{"message": "..."}`` says which.
``405``
    Any method but POST (``Allow: POST``).
``411`` / ``413``
    No ``Content-Length``; a body over 1 MiB (an envelope of API Gateway's
    largest frame, 128 KiB, escaped, is under 800 KiB).
``500``
    The channel code raised (it rarely does: it answers most failures with a
    protocol reply).
``503``
    No app yet (``HttpBackend`` built without one), or the server is stopping.

Every non-2xx answer carries ``{"message": "..."}``; API Gateway shows the
client none of it: it refuses a ``$connect``, and answers a frame with its
"Internal server error" frame.

From Python
-----------
``HttpBackend(app, host=..., port=...)`` binds at once, so its ``url`` is known
before anything else is built; ``app`` is a ``ChannelApp``, its settings
(``AppSettings``) or an environment mapping to build one from (the
``CHANNEL_*`` settings and the ``AWS_*`` variables: endpoints and region
come from it alone, credentials from it or else botocore's chain), or a
function that builds one, and may be supplied later with
:meth:`HttpBackend.set_app`. ``start()`` serves on a thread, ``stop()``
stops; as a context manager it does both.

The modules: ``server`` (``HttpBackend``: HTTP, the thread pool, stopping),
``cli`` (the command line), ``wiring`` (the command's settings into a ready
``ChannelApp``).
"""

from __future__ import annotations

# where it is safe to sign with local mode's placeholders (shared with the publisher)
from ..local.placeholders import is_loopback, local_placeholders
from ..local.ports import PortInUse
from .server import (DEFAULT_ROUTE, MAX_BODY_BYTES, ROUTE_METHODS, TAKES_CONTEXT, Answer, AppSource, HttpBackend,
                     RequestContext)

__all__ = [
    "DEFAULT_ROUTE", "MAX_BODY_BYTES", "ROUTE_METHODS", "TAKES_CONTEXT", "Answer", "AppSource", "HttpBackend",
    "PortInUse", "RequestContext", "is_loopback", "local_placeholders",
]
