"""Presence (docs/protocol.md §12): who is in a channel, and telling the
members who watch it when someone joins or leaves.

With the component's ``presence`` option, every join lists its member in a
presence row of the channel (``Store.join``'s transaction), up to
``presenceMaxMembers`` per channel; a join past that is neither listed nor
announced and does not watch, which bounds what each join and leave costs:
one post per watching member, at most the cap. A leave is a join elsewhere,
a ``$disconnect``, or a post that found the member gone (a publish, a
fan-out chunk, a heartbeat, an announcement).

These functions are the app's presence behaviour, kept out of ``app`` so
that the routes stay as they were: each takes the :class:`app.ChannelApp`
and does nothing when presence is off (``app.rules.presence_max_members``
is 0: the environment has no ``CHANNEL_PRESENCE_MAX_MEMBERS``). The frames
are built in ``protocol``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import protocol
from .store import PresenceEntry, PresenceRow

logger = logging.getLogger("channel_server")


@dataclass(frozen=True)
class JoinPlan:
    """What a join does about presence, decided before its transaction:
    ``entry`` is its row (None: the channel's list is full), ``rows`` the
    channel's listed members as read, ``before`` the connection's membership
    (the channel it leaves) and that channel's rows."""

    entry: PresenceEntry | None
    rows: list[PresenceRow]
    before: Any
    rows_before: list[PresenceRow]
    asked: bool


def plan_join(app: Any, event: Any, command: protocol.Join) -> JoinPlan | None:
    """Read what the join needs (the connection's membership, the channel's
    rows, the rows of the channel it leaves), or None with presence off. The
    member is listed when the channel has room, or lists it already."""
    cap = app.rules.presence_max_members
    if not cap:
        return None
    store, me = app.store, event.connection_id
    before = store.membership(me)
    rows = store.presence_rows(command.channel_id)
    rows_before = rows if before is None or before.channel_id == command.channel_id else \
        store.presence_rows(before.channel_id)
    others = [row for row in rows if row.connection_id != me]
    entry = PresenceEntry(protocol.shown_principal_id(event.authorizer), command.presence) \
        if len(others) < cap else None
    return JoinPlan(entry, rows, before, rows_before, command.presence)


def entry(plan: JoinPlan | None) -> PresenceEntry | None:
    """The presence row a join writes (None: none, or presence off)."""
    return plan.entry if plan is not None else None


def joined(app: Any, event: Any, plan: JoinPlan | None, membership: Any, reply: dict[str, Any]) -> dict[str, Any]:
    """After the join's transaction: announce the leave of the channel it left
    and the join of this one to their watchers, and the reply (a join that
    asked for presence learns whether it is listed). Announcing never fails
    the join: it is stored."""
    if plan is None:
        return reply
    me = event.connection_id
    try:
        before = plan.before
        if before is not None:
            mine = [row for row in plan.rows_before if row.connection_id == me and row.sender_id == before.sender_id]
            if mine:
                others = [row for row in plan.rows_before if row.connection_id != me]
                announce_left(app, before.channel_id, mine, others)
        if plan.entry is not None:
            member = protocol.Member(membership.sender_id, plan.entry.principal_id)
            others = [row for row in plan.rows if row.connection_id != me]
            _announce(app, membership.channel_id, [protocol.member_joined(membership.channel_id, member)], others)
    except Exception:
        logger.exception("announcing a join failed", extra={"connectionId": me})
    if plan.asked:
        return {**reply, "presence": plan.entry is not None}  # with its history fields, if any
    return reply


def close(app: Any, connection_id: str, deadline: float | None = None) -> str | None:
    """``Store.close_connection``, and with presence on: unlist the
    connection from its channel and announce its leave there."""
    channel: str | None = app.store.close_connection(connection_id)
    if channel is None or not app.rules.presence_max_members:
        return channel
    row = app.store.drop_presence(connection_id, channel)
    if row is not None:
        announce_left(app, channel, [row], app.store.presence_rows(channel), deadline)
    return channel


def remove_gone(app: Any, connection_ids: list[str], channel_id: str, deadline: float | None = None) -> None:
    """``Store.remove_gone`` (which unlists them too, with presence on), and
    their leave announced to the channel's watchers. The rows are read
    first: they name the gone members' senderIds."""
    if not app.rules.presence_max_members:
        app.store.remove_gone(connection_ids, channel_id)
        return
    rows = app.store.presence_rows(channel_id)
    app.store.remove_gone(connection_ids, channel_id)
    gone = set(connection_ids)
    announce_left(app, channel_id, [row for row in rows if row.connection_id in gone],
                  [row for row in rows if row.connection_id not in gone], deadline)


def announce_left(app: Any, channel_id: str, left: list[PresenceRow], rows: list[PresenceRow],
                  deadline: float | None = None) -> None:
    """Tell the watchers among ``rows`` that ``left`` left ``channel_id``."""
    frames = [protocol.member_left(channel_id, protocol.Member(row.sender_id, row.principal_id)) for row in left]
    leaving = {row.connection_id for row in left}
    _announce(app, channel_id, frames, [row for row in rows if row.connection_id not in leaving], deadline)


def _announce(app: Any, channel_id: str, frames: list[dict[str, Any]], rows: list[PresenceRow],
              deadline: float | None = None) -> None:
    """Post each frame to each watcher among ``rows``. Watchers found gone are
    removed from the channel (memberships and rows) and their own leave is
    announced to the rest, until no post finds anyone gone: each round
    removes at least one watcher, so it ends."""
    watchers = {row.connection_id: row for row in rows if row.watching}
    while frames and watchers:
        gone: set[str] = set()
        for frame in frames:
            targets = sorted(set(watchers) - gone)
            if not targets:
                break
            deliveries = app.sender.post_many(targets, protocol.encode(frame), deadline)
            gone.update(deliveries.gone)
            for failure in deliveries.failed:
                logger.warning("presence announcement failed after retries",
                               extra={"channelId": channel_id, "code": failure.code})
        if not gone:
            return
        app.store.remove_gone(sorted(gone), channel_id)
        frames = [protocol.member_left(channel_id, protocol.Member(watchers[c].sender_id, watchers[c].principal_id))
                  for c in sorted(gone)]
        watchers = {c: row for c, row in watchers.items() if c not in gone}


def members(app: Any, event: Any, command: protocol.Members) -> dict[str, Any]:
    """The reply to a members request (``$default``): a page of the sender's
    channel's listed members, or an error when it is in no channel."""
    membership = app.store.membership(event.connection_id)
    if membership is None:
        return protocol.error(protocol.MEMBERS_NOT_IN_CHANNEL)
    rows = app.store.presence_rows(membership.channel_id)
    listed = [protocol.Member(row.sender_id, row.principal_id) for row in rows]
    return protocol.members_page(membership.channel_id, listed, command.cursor, command.request_id)
