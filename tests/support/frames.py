"""Expected ``message`` frames in tests: their ``messageId`` is fresh for every publish, so an
expected frame holds :data:`ANY_MESSAGE_ID`.

:data:`ANY_MESSAGE_ID` equals any string of a message id's shape (``protocol.MESSAGE_ID``)
and nothing else."""

from __future__ import annotations

from typing import Any

from channel_server.handlers import protocol


class _AnyMessageId:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and protocol.MESSAGE_ID.fullmatch(other) is not None

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<a messageId>"


ANY_MESSAGE_ID: Any = _AnyMessageId()
#: A message id of the right shape, for computing sizes: every id is as long.
SAMPLE_MESSAGE_ID = protocol.new_message_id(0)


def message(channel_id: str, sender_id: str, data: Any) -> dict:
    """The ``message`` frame a member gets for a publish of ``data``, whatever its id."""
    return protocol.message(channel_id, sender_id, data, ANY_MESSAGE_ID)
