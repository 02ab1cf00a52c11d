"""Publish into a channel from a backend: the server publish endpoint's client.

    from channel_server.publish import Publisher

    publisher = Publisher("https://abc123.lambda-url.eu-west-1.on.aws/")
    outcome = publisher.publish("lobby", {"text": "the order shipped"}, idempotency_key="order-1042-shipped")
    print(outcome.delivered, outcome.failed, outcome.queued, outcome.replayed)

The endpoint (the stack output of the ``serverPublish`` option) is a Lambda
function URL that takes only SigV4-signed requests: ``POST`` the URL with
``{"channelId", "data", "idempotencyKey"?}`` as JSON, signed for the service
``lambda``. This module signs with botocore's ``SigV4Auth`` and sends with
botocore's HTTP session (its proxies, its CA bundle), so it behaves as any AWS
client on the same machine does.

Credentials and region
----------------------
Credentials come from botocore's chain, as for the AWS CLI: the environment
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), a profile
(``AWS_PROFILE``), a container's or an instance's role; or from the botocore
``session`` you pass. Temporary credentials are refreshed by botocore.

The region is the one the request is signed for, which must be the
function's: the ``region`` argument, else the one a function URL names
(``https://<id>.lambda-url.<region>.on.aws/``), else ``AWS_REGION``, else the
session's (``AWS_DEFAULT_REGION``, the profile's ``region``).

Against local mode (a URL on loopback: ``localhost``, 127.0.0.0/8, ``::1``)
nothing checks a secret: what the environment lacks, the publisher takes from
local mode (``channel_server.local.placeholders``), the credentials
``local``/``local`` and the region us-east-1. Credentials that are found are
used as they are. Placeholders never go to any other host: there, missing
credentials or a missing region is a :class:`PublisherSetupError` that names
what to set.

Retries and the idempotency key
-------------------------------
A publish *with* an ``idempotency_key`` is sent up to ``max_attempts`` times
(3 by default) when it gets no answer (a refused connection, a timeout, a
dropped connection), a 5xx, or a 429, with exponential backoff and full jitter
between attempts. That is safe: the endpoint publishes a key once within its
window (minutes) and answers a repeat with the first attempt's outcome,
``replayed`` set. A publish *without* a key is sent once and never retried:
when an attempt gets no answer, its message may have reached the members
already, and a second attempt could publish it twice. Pass a key whenever a
duplicate would matter, and retry with the same key yourself after a
:class:`PublishFailed`.

Failures
--------
Everything :meth:`Publisher.publish` and the constructor raise for a failed
publish is a :class:`PublishError`:

- :class:`PublisherSetupError`: the publisher cannot sign as asked: a URL
  that is not ``http(s)://``, no credentials or no region for a URL off this
  machine, a profile that does not exist. Raised by the constructor; nothing
  was sent.
- :class:`PublishRejected`: a 4xx other than 409 and 429 (``.status``,
  ``.reason`` from the answer's ``message``, or AWS's ``Message``). The
  request was refused and not retried, and nothing was published: 400 a
  malformed request (a bad channel id, a message over the size limit: the
  protocol's reasons), 403 unsigned or not allowed (AWS answers
  ``Forbidden``), 422 the key was used for another message.
- :class:`PublishFailed`: no answer, a 5xx or a 429 (``.status``, None when
  there was no answer; ``.attempts``), after the retries a key allows; an
  answer that is not a publish outcome (not retried); or a 409 for the key:
  its first publish stopped without an outcome, or is still running after
  the function's time (a retry that meets it running waits for its outcome
  first: that is the lost-answer case). Whether the message was delivered is
  unknown.

Invalid arguments (``data`` that is not a JSON value, an idempotency key
that is not 1 to 128 letters, digits, ``_``, ``.``, ``:`` or ``-``) raise
``TypeError``/``ValueError`` before anything is sent. The channel id is
checked by the endpoint, which knows its rules.

Command line
------------
``python -m channel_server.publish URL --channel C --data JSON
[--idempotency-key K] [--region R]`` publishes once (with a key: with its
retries) and prints the outcome as one JSON line on stdout, exit status 0; a
rejection or failure is one line on stderr, exit status 1; a bad argument or
a missing setting (region, credentials) is an argparse error, exit status 2.

The module needs botocore (``pip install 'channel-server[publish]'``);
importing it does not, so its names can be imported anywhere.
"""

from __future__ import annotations

import argparse
import http
import json
import os
import re
import socket
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence, TypeGuard
from urllib.parse import urlsplit

from .extras import install_command
from .handlers import aws, protocol, spec
from .local.placeholders import is_loopback, local_placeholders

if TYPE_CHECKING:
    import botocore.session

__all__ = [
    "Publisher", "Published", "PublishError", "PublisherSetupError", "PublishRejected", "PublishFailed",
    "function_url_region", "main",
]

#: The name a function URL's requests are signed for.
SERVICE = "lambda"
#: ``<url-id>.lambda-url.<region>.on.aws``: the region a function URL names.
FUNCTION_URL_HOST = re.compile(r"[a-z0-9]+\.lambda-url\.([a-z]{2}(?:-[a-z0-9]+)+-\d+)\.on\.aws\.?")
#: Seconds to wait for a connection, and for the answer: a little longer than
#: the function may run, so an answer is not given up on while its publish
#: still runs (a retry with the key would only meet 409 "in progress").
DEFAULT_TIMEOUT = spec.SERVER_PUBLISH_TIMEOUT_SECONDS + 10.0
#: Attempts of a publish with an idempotency key, as botocore's standard retry mode.
DEFAULT_MAX_ATTEMPTS = 3
#: How long past the function's timeout a retry waits for the key's first
#: publish to finish (409 "in progress"), and how often it asks again.
IN_PROGRESS_MARGIN_SECONDS = 10.0
IN_PROGRESS_POLL_SECONDS = 2.0
#: How much of an answer that is not JSON a reason quotes.
MAX_REASON_CHARS = 200
#: What an idempotency key may be, as the endpoint says it.
KEY_RULE = "1 to 128 letters, digits, '_', '.', ':' or '-'"


# --- what a publish returns and raises ---------------------------------------------


@dataclass(frozen=True)
class Published:
    """A publish's outcome: members the message was posted to, members that
    could not be reached, members handed to the fan-out queue (delivered
    later), and whether this is the first outcome of an idempotency key
    answered again (nothing was published this time)."""

    delivered: int
    failed: int
    queued: int
    replayed: bool = False


class PublishError(Exception):
    """Every failure of the publisher."""


class PublisherSetupError(PublishError):
    """The publisher cannot sign as asked (no credentials, no region, not an
    http(s) URL). Nothing was sent."""


class PublishRejected(PublishError):
    """The endpoint refused the publish (a 4xx other than 409 and 429): nothing was published."""

    def __init__(self, status: int, reason: str, hint: str = ""):
        self.status = status
        self.reason = reason
        super().__init__(f"publish rejected ({status}): {reason}{hint}")


class PublishFailed(PublishError):
    """No usable answer: a 5xx, a 429, no answer at all (``status`` None), one
    that is not a publish outcome, or a 409 for an idempotency key whose first
    publish is still running (after waiting for it) or stopped without an
    outcome. Whether it was published is unknown."""

    def __init__(self, status: int | None, reason: str, attempts: int = 1, *, retryable: bool = True):
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.attempts = attempts
        self.retryable = retryable

    def __str__(self) -> str:
        after = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        if self.status is None:
            return f"publish failed: {self.reason}{after}"
        return f"publish failed ({self.status}): {self.reason}{after}"


# --- the publisher ------------------------------------------------------------------


def function_url_region(url: str) -> str | None:
    """The region a Lambda function URL names (``https://<id>.lambda-url.<region>.on.aws/``), else None."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    found = FUNCTION_URL_HOST.fullmatch(host or "")
    return found.group(1) if found else None


class Publisher:
    """Publishes into channels through the server publish endpoint at ``url``
    (sent to as given, path and query included).

    ``region``: the region to sign for (see the module's docstring for where
    it is found otherwise); ``session``: the botocore session whose
    credentials and configuration to use (default: a new one, which reads
    the environment and ``~/.aws``); ``timeout``: seconds to wait for a
    connection and for the answer; ``max_attempts``: attempts of a publish
    with an idempotency key (a publish without one is sent once).

    Raises :class:`PublisherSetupError` when it cannot sign as asked. Safe to
    share between threads; :meth:`close` (or ``with``) closes its connections.
    """

    def __init__(self, url: str, *, region: str | None = None,
                 session: botocore.session.Session | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
        try:
            import botocore.exceptions
            import botocore.session
            from botocore.credentials import Credentials
            from botocore.httpsession import URLLib3Session
            from botocore.utils import get_environ_proxies
        except ImportError as exc:
            raise ImportError(f"the publisher needs botocore: {install_command('publish')}") from exc
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a port out of range)
        except ValueError as exc:
            raise PublisherSetupError(f"{url!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PublisherSetupError(f"{url!r} is not an http:// or https:// URL with a host")
        self.url = url
        self._max_attempts = max_attempts
        session = session if session is not None else botocore.session.Session()
        try:
            region = (region or function_url_region(url) or os.environ.get("AWS_REGION")
                      or session.get_config_variable("region"))
            credentials = session.get_credentials()
            verify = session.get_config_variable("ca_bundle") or True
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            # a missing profile, credentials set in part, a role the profile may not assume
            raise PublisherSetupError(f"cannot read the AWS configuration: {exc}") from None
        # On loopback (local mode) what is missing is local mode's placeholders; nowhere else.
        added = local_placeholders({"the publish endpoint": url}, {"AWS_REGION": region} if region else {},
                                   lambda: credentials is not None)
        if "AWS_ACCESS_KEY_ID" in added:
            credentials = Credentials(added["AWS_ACCESS_KEY_ID"], added["AWS_SECRET_ACCESS_KEY"])
        region = added.get("AWS_REGION", region)
        if not region:
            raise PublisherSetupError(
                f"no region to sign for: pass one (--region, or Publisher(url, region=...)) or set AWS_REGION; "
                f"{url} is not a function URL (https://<id>.lambda-url.<region>.on.aws/), which names its own")
        if credentials is None:
            raise PublisherSetupError(
                "no AWS credentials to sign with: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                "(a profile in ~/.aws), or run where a role supplies them (ECS, EC2, Lambda)")
        #: The region requests are signed for.
        self.region: str = region
        self._credentials = credentials
        self._on_aws = not is_loopback(url)
        # TCP_NODELAY as botocore's clients set it: the session sends the
        # headers and the body in two writes, and without it the body waits
        # for the server's delayed ACK of the headers (40 ms on Linux)
        self._http = URLLib3Session(verify=verify, proxies=get_environ_proxies(url), timeout=timeout,
                                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        # what botocore's HTTP session raises when no answer came: refused,
        # timed out, closed early (HTTPClientError), or no connection at all
        self._no_answer = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)
        self._no_credentials = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)

    def __repr__(self) -> str:
        return f"Publisher({self.url!r}, region={self.region!r})"

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections kept open for the next publish."""
        self._http.close()

    def publish(self, channel_id: str, data: Any, *, idempotency_key: str | None = None) -> Published:
        """Publish ``data`` (any JSON value) to every member of ``channel_id``.

        With ``idempotency_key``, a publish that gets no answer, a 5xx or a
        429 is sent again, up to ``max_attempts`` times: the endpoint
        publishes a key once within its window and answers a repeat with the
        first outcome (``replayed``). Without a key it is sent once, never
        again: an attempt that got no answer may have published, and a
        second could publish twice.

        Returns the outcome; raises :class:`PublishRejected` (4xx) or
        :class:`PublishFailed` (no answer, 5xx, 429), and ``TypeError`` or
        ``ValueError`` for arguments it cannot send."""
        body = _body(channel_id, data, idempotency_key)
        attempts = self._max_attempts if idempotency_key is not None else 1
        attempt = 1
        # a retry may meet the first attempt still running (its answer was
        # lost, not its publish): wait for that one, as long as it can run
        running_until = time.monotonic() + spec.SERVER_PUBLISH_TIMEOUT_SECONDS + IN_PROGRESS_MARGIN_SECONDS
        while True:
            try:
                return self._send(body)
            except PublishFailed as failure:
                if failure.reason == protocol.KEY_IN_PROGRESS and time.monotonic() < running_until:
                    time.sleep(min(aws.backoff_delay(attempt), IN_PROGRESS_POLL_SECONDS))
                    continue
                if attempt >= attempts or not failure.retryable:
                    failure.attempts = attempt
                    raise
            time.sleep(aws.backoff_delay(attempt))
            attempt += 1

    def _send(self, body: bytes) -> Published:
        """One signed attempt, its answer read."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        try:
            credentials = self._credentials.get_frozen_credentials()  # refreshed by botocore when temporary
        except self._no_credentials as exc:  # temporary ones that could not be renewed
            raise PublishFailed(None, f"cannot renew the AWS credentials: {exc}") from None
        request = AWSRequest(method="POST", url=self.url, data=body, headers={"content-type": "application/json"})
        SigV4Auth(credentials, SERVICE, self.region).add_auth(request)
        try:
            response = self._http.send(request.prepare())
        except self._no_answer as exc:
            raise PublishFailed(None, f"no answer from {self.url}: {exc}") from None
        status, content = response.status_code, response.content
        if 200 <= status < 300:
            outcome = _outcome(content)
            if outcome is None:
                raise PublishFailed(status, f"the answer is not a publish outcome: {_text(content) or 'no body'}",
                                    retryable=False)
            return outcome
        reason = _reason(status, content)
        if status == 429 or status >= 500:
            raise PublishFailed(status, reason)
        if status == 409:  # the key's first publish runs, or stopped mid-way: this one's fate is its
            raise PublishFailed(status, reason, retryable=False)
        if 400 <= status < 500:
            hint = ""
            if status == 403 and self._on_aws:  # AWS says no more than "Forbidden"
                hint = (f" (signed for {self.region} as {credentials.access_key}: the function URL takes requests "
                        f"signed for its region by principals allowed lambda:InvokeFunctionUrl and "
                        f"lambda:InvokeFunction on it)")
            raise PublishRejected(status, reason, hint)
        raise PublishFailed(status, reason, retryable=False)  # 1xx, 3xx: not a publish endpoint's answer


def _body(channel_id: str, data: Any, idempotency_key: str | None) -> bytes:
    """The request's JSON body; TypeError or ValueError for what cannot be sent."""
    if not isinstance(channel_id, str):
        raise TypeError(f"channel_id must be a str, not {type(channel_id).__name__}")
    request: dict[str, Any] = {"channelId": channel_id, "data": data}
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not protocol.IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValueError(f"idempotency_key must be {KEY_RULE}, not {idempotency_key!r}")
        request["idempotencyKey"] = idempotency_key
    try:
        return json.dumps(request, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # a set, an object, NaN
        raise type(exc)(f"data must be a JSON value: {exc}") from None


def _outcome(content: bytes) -> Published | None:
    """The outcome a 200 carries, or None when it carries none."""
    try:
        answer = json.loads(content)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    delivered, failed, queued = (answer.get(name) for name in ("delivered", "failed", "queued"))
    if not (_is_count(delivered) and _is_count(failed) and _is_count(queued)):
        return None
    return Published(delivered, failed, queued, replayed=answer.get("replayed") is True)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason(status: int, content: bytes) -> str:
    """Why an answer is not an outcome: its ``message`` (ours) or
    ``Message`` (AWS's), else its text, else the status's name."""
    try:
        answer = json.loads(content)
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        for field in ("message", "Message"):
            message = answer.get(field)
            if isinstance(message, str) and message:
                return message
    text = _text(content)
    if text:
        return text
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "no reason given"


def _text(content: bytes) -> str:
    """An answer's text on one line (a proxy's HTML page, say), cut short."""
    text = " ".join(content.decode("utf-8", "replace").split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "…"


# --- the command line ---------------------------------------------------------------


def _json_value(text: str) -> Any:
    def not_json(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=not_json)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a JSON value ({exc}); text is a JSON string: --data '\"hello\"'") from None


def _key(text: str) -> str:
    if not protocol.IDEMPOTENCY_KEY.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not {KEY_RULE}")
    return text


def _url(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL with a host")
    return text


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps flags and host names whole (``--idempotency-key``,
    ``lambda-url``) where argparse would break a line at their hyphens."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m channel_server.publish``."""
    parser = argparse.ArgumentParser(
        prog="python -m channel_server.publish",
        formatter_class=_HelpFormatter,
        description="Publish a message into a channel through the server publish endpoint, signed\n"
        "with your AWS credentials (found as the AWS CLI finds them). Prints the outcome\n"
        "as one JSON line: {\"delivered\": N, \"failed\": M, \"queued\": Q, \"replayed\": false}.",
        epilog="With --idempotency-key, a publish that gets no answer, a 5xx or a 429 is retried\n"
        "(the endpoint publishes a key once); without a key it is sent once, never again.\n\n"
        "Exit status: 0 published (the outcome on stdout); 1 rejected or failed (one line\n"
        "on stderr); 2 a bad argument or a missing setting (region, credentials).",
    )
    parser.add_argument("url", metavar="URL", type=_url,
                        help="the endpoint: the stack output (https://<id>.lambda-url.<region>.on.aws/), or "
                        "local mode's (http://127.0.0.1:<port>/...)")
    parser.add_argument("--channel", required=True, metavar="C", help="the channel to publish into")
    parser.add_argument("--data", required=True, type=_json_value, metavar="JSON",
                        help="the message, any JSON value: '{\"text\": \"hi\"}', '\"hi\"', 42")
    parser.add_argument("--idempotency-key", type=_key, metavar="K",
                        help=f"publish once per key within the endpoint's window, and retry safely ({KEY_RULE})")
    parser.add_argument("--region", metavar="R",
                        help="the region to sign for (default: the function URL's, else AWS_REGION, else "
                        "the profile's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        publisher = Publisher(options.url, region=options.region)
    except PublisherSetupError as exc:
        parser.error(str(exc))
    except ImportError as exc:  # botocore missing where the package's metadata does not know the extra
        print(exc, file=sys.stderr)
        return 1
    try:
        with publisher:
            outcome = publisher.publish(options.channel, options.data, idempotency_key=options.idempotency_key)
    except PublishError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the publish may or may not have happened", file=sys.stderr)
        return 130
    print(json.dumps(asdict(outcome)), flush=True)
    return 0


if __name__ == "__main__":
    from .extras import require

    require("publish", "the publisher")
    sys.exit(main())
