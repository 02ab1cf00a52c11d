"""The server publish endpoint: a backend's publish into a channel, through a Lambda
function URL, at most once per idempotency key.

Like ``history`` and ``presence``, this is the app's behaviour for one function
kept out of ``app``: :func:`publish` takes the :class:`app.ChannelApp`, whose
store claims the keys and whose fan-out sends the message.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from . import history, protocol, spec

logger = logging.getLogger("channel_server")


def publish(app: Any, event: Mapping[str, Any], deadline: float | None) -> dict[str, Any]:
    """A backend's publish into a channel: ``event`` is a Lambda function
    URL's (payload format 2.0), which only SigV4-signed requests with IAM's
    permission reach. The message goes to every member, from
    :data:`protocol.SERVER_SENDER_ID`, by the app's fan-out. The answer is an
    HTTP response: 200 with the outcome, or a 4xx/500 with ``{"message": reason}``.

    With an ``idempotencyKey``, the key is claimed first (one conditional
    write): a request whose key was used in the window publishes nothing and
    gets the first request's outcome back (``replayed``), 409 while that one
    runs or if it stopped without an outcome, 422 if it was another message.
    A publish that fails before its first post frees the key again."""
    import base64

    method = ((event.get("requestContext") or {}).get("http") or {}).get("method")
    if method != "POST":
        return _http(405, {"message": "use POST"}, {"allow": "POST"})
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body).decode("utf-8")
        except ValueError:
            return _http(400, {"message": "body is not UTF-8 text"})
    request = protocol.decode_server_publish(body, app.rules)
    if isinstance(request, protocol.Refusal):
        return _http(request.status, {"message": request.reason})
    channel = request.channel_id
    outgoing = protocol.prepare_message(channel, protocol.SERVER_SENDER_ID, request.data, app.rules)
    if outgoing.failure is not None:
        return _http(400, {"message": outgoing.failure["data"]})
    assert outgoing.payload is not None  # prepare_message gives a payload or a failure
    context_log = {"channelId": channel, "function": spec.SERVER_PUBLISH.function}
    key, fingerprint, claim = request.idempotency_key, protocol.publish_fingerprint(channel, request.data), None
    try:
        if key is not None:
            claim = app.store.claim_publish(key, fingerprint)
            if not claim.mine:
                return _replay(claim, fingerprint)
        history.keep(app, channel, outgoing)
        targets = sorted(set(app.store.members(channel)))
    except Exception:
        logger.exception("server publish failed before sending", extra=context_log)
        _release(app, key, claim)
        return _http(500, {"message": protocol.INTERNAL_ERROR})
    try:
        deliveries, queued, lost = app.fan_out(spec.SERVER_PUBLISH.function, targets, outgoing.payload, channel,
                                                 deadline, context_log)
    except Exception:
        # some members may have it: the key stays claimed, without an outcome (409 to a retry)
        logger.exception("server publish failed while sending", extra=context_log)
        return _http(500, {"message": protocol.INTERNAL_ERROR})
    outcome = protocol.publish_outcome(deliveries.delivered, len(deliveries.failed) + lost, queued)
    if claim is not None:
        assert key is not None  # the claim is the key's
        try:
            app.store.record_publish(key, fingerprint, claim.started_at, outcome)
        except Exception:
            # a retry with this key gets 409 (outcome unknown), never a second copy
            logger.exception("recording a server publish's outcome failed", extra=context_log)
    return _http(200, outcome)


def _release(app: Any, key: str | None, claim: Any) -> None:
    """Free an idempotency key whose publish sent nothing."""
    if claim is None or not claim.mine:
        return
    assert key is not None  # the claim is the key's
    try:
        app.store.release_publish(key)
    except Exception:
        logger.exception("freeing an idempotency key failed; retries get 409 until its window ends")


def _http(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A function URL's answer: ``body`` as JSON."""
    import json

    return {"statusCode": status, "headers": {"content-type": "application/json", **(headers or {})},
            "body": json.dumps(body, separators=(",", ":"))}


def _replay(claim: Any, fingerprint: str) -> dict[str, Any]:
    """The answer to a server publish whose idempotency key was claimed before."""
    if claim.fingerprint != fingerprint:
        return _http(422, {"message": protocol.KEY_REUSED})
    if claim.outcome is None:
        from .sender import POST_RESERVE_SECONDS

        running = time.time() - claim.started_at < spec.SERVER_PUBLISH_TIMEOUT_SECONDS + POST_RESERVE_SECONDS
        return _http(409, {"message": protocol.KEY_IN_PROGRESS if running else protocol.KEY_OUTCOME_UNKNOWN})
    return _http(200, {**claim.outcome, "replayed": True})
