"""How the HTTP backend command's settings become a ready ``ChannelApp``, its clients built
at start-up so that a missing setting is found before serving.

What goes into it: the app's environment (the process's, with what the command line settled
on) and local mode's placeholders where every endpoint is on this machine.

Nothing here changes the process's environment: the app reads only the
settings it is given (``AppSettings``).
"""

from __future__ import annotations

import argparse
from typing import Mapping

from ..handlers import aws, sigv4, spec
from ..handlers.app import ChannelApp
from ..handlers.settings import AppSettings

#: Where the command line names another DynamoDB (``--dynamodb-endpoint``):
#: the variable botocore, and the app's DynamoDB client, read it from.
DYNAMODB_ENDPOINT = aws.endpoint_variable("dynamodb")
#: The settings the command line gives (flags, or their variables), not
#: listed among the environment's own in a start-up error.
FROM_THE_COMMAND_LINE = frozenset({spec.ENV_TABLE_NAME, spec.ENV_INDEX_NAME, spec.ENV_MANAGEMENT_ENDPOINT})


def app_environ(options: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """The app's environment: ``environ`` (its ``CHANNEL_*`` settings and the
    ``AWS_*`` variables its clients read) with the table, index, management
    API and DynamoDB endpoint the command line settled on."""
    app = dict(environ)
    app[spec.ENV_TABLE_NAME] = options.table
    app[spec.ENV_INDEX_NAME] = options.index
    app[spec.ENV_MANAGEMENT_ENDPOINT] = options.management_endpoint
    if options.dynamodb_endpoint:
        app[DYNAMODB_ENDPOINT] = options.dynamodb_endpoint
    return app


def environment_settings(environ: Mapping[str, str]) -> list[str]:
    """The ``CHANNEL_*`` settings ``environ`` gives besides the command line's, by name."""
    return sorted(name for name in environ if name.startswith("CHANNEL_") and name not in FROM_THE_COMMAND_LINE)


# --- endpoints on this machine ------------------------------------------------------


def endpoints(settings: AppSettings) -> dict[str, str | None]:
    """Where the app's clients will send their requests, by service, as they
    find it in ``settings`` (None: AWS's own endpoint): DynamoDB, the
    management API, and SQS when ``CHANNEL_FANOUT_QUEUE_URL`` sets a queue."""
    found: dict[str, str | None] = {
        "DynamoDB": aws.configured_endpoint("dynamodb", settings.aws),
        "management API": settings.management_endpoint,
    }
    if settings.fanout_queue_url:
        found["SQS"] = aws.configured_endpoint("sqs", settings.aws)
    return found


def credentials_found(environ: Mapping[str, str]) -> bool:
    """Whether the clients would find credentials: ``environ``'s keys, else
    botocore's chain (a profile, a container's or an instance's role), as
    ``aws.signer`` looks for them. Raises botocore's error for credentials
    set only in part or a profile that does not exist."""
    if sigv4.environment_credentials(environ) is not None:
        return True
    try:
        sigv4.botocore_credentials()
    except RuntimeError:  # none anywhere
        return False
    except ImportError:  # no botocore: the environment was the only place
        return False
    return True


def placeholders_line(added: Mapping[str, str]) -> str:
    """The start-up log line that says what ``local_placeholders`` added."""
    lacks, using = [], []
    if "AWS_ACCESS_KEY_ID" in added:
        lacks.append("no AWS credentials")
        using.append(f"local mode's placeholder credentials ({added['AWS_ACCESS_KEY_ID']!r})")
    if "AWS_REGION" in added:
        lacks.append("no region")
        using.append(f"region {added['AWS_REGION']}")
    return (f"every endpoint is on loopback and the environment has {' and '.join(lacks)}: "
            f"using {' and '.join(using)}")


# --- the app ------------------------------------------------------------------------


def setup_errors() -> tuple[type[Exception], ...]:
    """What a setting that is missing or wrong raises while the app's
    settings are parsed and its clients built: ours, and botocore's own
    (credentials set only in part, a profile that does not exist) when
    botocore is installed."""
    errors: tuple[type[Exception], ...] = (ValueError, RuntimeError, OSError)
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return errors
    return (*errors, BotoCoreError)


def ready_app(settings: AppSettings) -> ChannelApp:
    """A ChannelApp for ``settings`` whose clients are built already, so what
    they need (region, credentials, well-formed settings) is found missing
    now rather than on a client's request. Raises ValueError or
    RuntimeError, saying what is wrong."""
    app = ChannelApp(settings)
    app.store, app.sender, app.queue  # noqa: B018 (built for their checks)
    return app
