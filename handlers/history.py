"""History (docs/protocol.md §4.2–4.3): a publish keeps its message before any copy is sent,
and a join with ``since`` is sent what it missed before its joinSuccess.

History is on with the component's ``historySeconds``. Like ``presence``, these functions
are the app's history behaviour kept out of ``app``: each takes the
:class:`app.ChannelApp` and does nothing more than the protocol asks when history is off.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import protocol, spec

logger = logging.getLogger("channel_server")


def keep(app: Any, channel: str, outgoing: Any) -> None:
    """With history on, keep the message before any copy is sent: a join that
    reads the history after this finds it (docs/architecture.md, "History and
    resume"). A failure raises: the publish then sends nothing."""
    if app.settings.history_seconds:
        app.store.keep_message(channel, outgoing.message_id, outgoing.payload, app.settings.history_seconds)


def resume(app: Any, event: Any, channel: str, since: str | None, position: str,
           deadline: float | None) -> dict[str, Any]:
    """The history fields of a joinSuccess: ``position`` with history on (taken
    before the membership was written), and for a join with ``since``,
    ``replayed`` and ``resumed`` once the missed messages were sent
    (:func:`_replay`)."""
    fields: dict[str, Any] = {"position": position} if app.settings.history_seconds else {}
    if since is not None:
        replayed, resumed = _replay(app, event, channel, since, deadline)
        fields.update(replayed=replayed, resumed=resumed)
    return fields


def _replay(app: Any, event: Any, channel: str, since: str, deadline: float | None) -> tuple[int, bool]:
    """Send the joined connection the channel's kept messages after
    ``since``, oldest first, one post after another (the membership is
    written: a message kept after the read below reaches the connection
    live). Returns how many were sent and whether that was all it missed:
    False when history is off, ``since`` is older than what is kept, there
    were more than MAX_REPLAY_MESSAGES, or a read or post failed (logged)."""
    if not app.settings.history_seconds:
        return 0, False
    where = {"connectionId": event.connection_id, "routeKey": event.route_key}
    complete = protocol.message_time(since) + app.settings.history_seconds > time.time()
    try:
        kept = app.store.messages_since(channel, since, spec.MAX_REPLAY_MESSAGES + 1)
    except Exception:
        logger.exception("reading the channel's history failed", extra=where)
        return 0, False
    complete = complete and len(kept) <= spec.MAX_REPLAY_MESSAGES
    sent = 0
    for payload in kept[:spec.MAX_REPLAY_MESSAGES]:
        try:
            app.sender.post(event.connection_id, payload, deadline)
        except Exception:
            logger.exception("sending a missed message failed", extra=where)
            return sent, False
        sent += 1
    return sent, complete
