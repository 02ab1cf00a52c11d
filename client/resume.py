"""Where a client is in its channel's history, and which messages it has had (protocol §4.3):
the bookkeeping behind ``ChannelClient``'s resume, with no I/O.

The client asks :meth:`Resume.take` what to do with each message.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Optional

from ..handlers import protocol
from .frames import Message

#: What :meth:`Resume.take` says of a message.
DELIVER, HOLD, DUPLICATE = "deliver", "hold", "duplicate"


class Resume:
    """The position a rejoin resumes from (the newest of the last join's
    ``position`` and the ids of the messages taken since; None on a server
    without history), the ids of the last ``remembered`` messages taken (a
    second copy is a duplicate), this client's senderIds in the channel (its
    own messages a replay brings back are duplicates too), and the messages
    held while a resuming rejoin waits for its reply."""

    def __init__(self, remembered: int):
        self.remembered = remembered
        self.position: Optional[str] = None
        #: Second copies dropped.
        self.duplicates = 0
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self._own_senders: set[str] = set()
        self._held: Optional[list[Message]] = None

    def joined(self, frame: Mapping[str, Any], sender_id: str, new_channel: bool) -> None:
        """A join's ``joinSuccess`` (``new_channel``: of another channel than before)."""
        if new_channel:
            self._seen.clear()
            self._order.clear()
            self._own_senders.clear()
        self._own_senders.add(sender_id)
        self.position = newest(frame.get("position"), self.position) if "position" in frame else None

    def rejoining(self) -> dict[str, Any]:
        """The fields a rejoin adds to its join (``since``, with history), and
        from now on the channel's messages are held until :meth:`rejoined`."""
        if self.position is None:
            return {}
        self._held = []
        return {"since": self.position}

    def rejoined(self, frame: Optional[Mapping[str, Any]], sender_id: Optional[str]) -> list[Message]:
        """The rejoin's reply (None: it failed): the held messages, in id
        order, each to be taken again."""
        if frame is not None and sender_id is not None:
            self._own_senders.add(sender_id)
            if "position" not in frame:
                self.position = None  # this server keeps no history (any more)
        held, self._held = self._held or [], None
        return sorted(held, key=lambda m: m.message_id or "")  # held: each has an id (see take)

    def take(self, message: Message, channel: Optional[str]) -> str:
        """DELIVER, HOLD or DUPLICATE ``message``; a delivered one moves the
        position on. Messages of another channel, or without an id, are
        delivered."""
        message_id = message.message_id
        if message.channel_id != channel or not isinstance(message_id, str):
            return DELIVER
        if self._held is not None:
            self._held.append(message)
            return HOLD
        if message_id in self._seen or message.sender_id in self._own_senders:
            self.duplicates += message_id in self._seen
            return DUPLICATE
        self._seen.add(message_id)
        self._order.append(message_id)
        while len(self._order) > self.remembered:
            self._seen.discard(self._order.popleft())
        if self.position is not None:
            self.position = newest(message_id, self.position)
        return DELIVER


def newest(*ids: Any) -> Optional[str]:
    """The newest of some message ids (or positions): they sort as they were stamped."""
    valid = [i for i in ids if isinstance(i, str) and protocol.MESSAGE_ID.fullmatch(i)]
    return max(valid) if valid else None
