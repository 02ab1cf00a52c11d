"""What goes over the wire: the frame limits, the client's frames as text, and the server's
frames it hands to the caller.

The client's frames are made by :func:`encode` and :func:`fragments`; the server's are
:class:`Message`, :class:`Joined` and :class:`Published`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from ..handlers import protocol
from .errors import FrameTooLarge

MAX_MESSAGE_BYTES = protocol.API_GATEWAY_MAX_MESSAGE_BYTES
MAX_FRAME_BYTES = protocol.API_GATEWAY_MAX_FRAME_BYTES


@dataclass(frozen=True)
class Message:
    """A ``message`` frame: ``data`` published by ``sender_id`` in
    ``channel_id``; ``message_id`` is the publish's own, time-ordered id
    (None from a server that sends none)."""

    channel_id: str
    sender_id: str
    data: Any
    message_id: Optional[str] = None


@dataclass(frozen=True)
class Joined:
    """A ``joinSuccess``: this connection is in ``channel_id`` as ``sender_id``."""

    channel_id: str
    sender_id: str


@dataclass(frozen=True)
class Published:
    """A ``publishSuccess``. ``queued``: how many members of a large channel the
    message was handed to the server's fan-out queue for (accepted for
    delivery, not yet delivered; protocol §5); 0 in a smaller channel."""

    queued: int = 0




def encode(frame: Mapping[str, Any]) -> str:
    """``frame`` as the compact JSON text the client sends: UTF-8 characters
    unescaped, except in a frame with a lone surrogate, which UTF-8 cannot carry
    (then everything non-ASCII is escaped). :class:`FrameTooLarge` if it is over
    API Gateway's 128 KB; ValueError or TypeError if it is not JSON."""
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        text = json.dumps(frame, separators=(",", ":"), allow_nan=False)
        size = len(text)
    if size > MAX_MESSAGE_BYTES:
        raise FrameTooLarge(f"{frame.get('type')} frame is {size} bytes encoded; "
                            f"API Gateway's limit is {MAX_MESSAGE_BYTES}; nothing was sent")
    return text


def fragments(text: str, limit: int = MAX_FRAME_BYTES) -> Iterator[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes, never inside a
    character: the frames of one fragmented message."""
    data = text.encode("utf-8")
    start = 0
    while start < len(data):
        end = min(len(data), start + limit)
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a character's continuation byte
            end -= 1
        yield data[start:end].decode("utf-8")
        start = end

