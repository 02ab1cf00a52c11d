"""``client.resume.Resume``, the bookkeeping behind ChannelClient's resume
(protocol §4.3), on plain values: what it delivers, holds and drops, and the
position a rejoin resumes from. End to end: tests/test_history.py."""

from __future__ import annotations

from channel_server.client import Message
from channel_server.client.resume import DELIVER, DUPLICATE, HOLD, Resume
from channel_server.handlers import protocol

POSITION = protocol.position(1_700_000_000.0)


def message(n: int, sender: str = "other", channel: str = "room") -> Message:
    return Message(channel, sender, n, protocol.new_message_id(1_700_000_000.0 + n))


def joined(resume: Resume, sender: str = "me", **frame: object) -> None:
    resume.joined({"position": POSITION, **frame}, sender, new_channel=True)


def test_a_message_is_delivered_once_and_moves_the_position_on() -> None:
    resume = Resume(remembered=10)
    joined(resume)
    first = message(1)
    assert resume.take(first, "room") == DELIVER
    assert resume.take(first, "room") == DUPLICATE
    assert (resume.position, resume.duplicates) == (first.message_id, 1)


def test_a_rejoin_holds_what_arrives_and_releases_it_in_id_order() -> None:
    resume = Resume(remembered=10)
    joined(resume)
    assert resume.rejoining() == {"since": POSITION}
    late, early = message(2), message(1)
    assert [resume.take(m, "room") for m in (late, early)] == [HOLD, HOLD]
    released = resume.rejoined({"position": POSITION}, "me-again")
    assert released == [early, late]
    assert [resume.take(m, "room") for m in released] == [DELIVER, DELIVER]


def test_own_messages_a_replay_brings_back_are_dropped_and_not_counted_as_copies() -> None:
    resume = Resume(remembered=10)
    joined(resume, sender="me-before")
    assert resume.take(message(1, sender="me-before"), "room") == DUPLICATE
    assert resume.duplicates == 0


def test_only_the_last_remembered_ids_are_kept() -> None:
    resume = Resume(remembered=2)
    joined(resume)
    first, *rest = [message(n) for n in range(3)]
    for m in (first, *rest):
        assert resume.take(m, "room") == DELIVER
    assert resume.take(first, "room") == DELIVER  # forgotten: it is not known as a copy any more


def test_without_history_there_is_no_position_and_a_rejoin_asks_for_nothing() -> None:
    resume = Resume(remembered=10)
    resume.joined({}, "me", new_channel=True)
    assert resume.take(message(1), "room") == DELIVER
    assert (resume.position, resume.rejoining()) == (None, {})


def test_messages_of_another_channel_or_without_an_id_are_delivered_as_they_come() -> None:
    resume = Resume(remembered=10)
    joined(resume)
    resume.rejoining()
    assert resume.take(message(1, channel="elsewhere"), "room") == DELIVER
    assert resume.take(Message("room", "other", 1, None), "room") == DELIVER
