"""Channels larger than a publish posts to itself: the members beyond the
inline limit go, in chunks, through an SQS queue to the fan-out function.

- Through the entry points (``support.lambda_world``) with a real SQS queue in
  the embedded moto: what publish queues, what the fan-out function posts,
  the reply that says how many were queued, and the hand-off's failures.
- The chunks themselves (``handlers/handoff.py``): SQS's size limits and the
  characters SQS refuses.
- Local mode end to end: real WebSocket clients, the limit lowered by its flag,
  the event source mapping invoking the fan-out function.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import boto3
import pytest

from channel_server.handlers import awsjson, handoff, spec
from channel_server.local.cli import build_parser
from channel_server.local.queues import sqs_event
from channel_server.local.server import running
from support.aws import FAKE_CREDENTIALS, REGION
from support.local_mode import served_world
from support.table import closed
from support.frames import ANY_MESSAGE_ID

LIMIT = 2


@pytest.fixture
def sqs(embedded_dynamodb: Any) -> Any:
    return boto3.client("sqs", endpoint_url=embedded_dynamodb.endpoint, region_name=REGION, **FAKE_CREDENTIALS)


@pytest.fixture
def queue_url(sqs: Any, embedded_dynamodb: Any, monkeypatch: pytest.MonkeyPatch, request: Any) -> Iterator[str]:
    """A fresh queue in the embedded moto, which the handlers' SQS client reaches."""
    url = sqs.create_queue(QueueName=f"fanout-{abs(hash(request.node.nodeid))}")["QueueUrl"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", embedded_dynamodb.endpoint)
    yield url
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def large(app: Any, install_app: Any, queue_url: str) -> Any:
    """The app with the fan-out queue and an inline limit of LIMIT members
    (installed after conftest's ``app``, which it replaces)."""
    return install_app(**{spec.ENV_FANOUT_QUEUE_URL: queue_url, spec.ENV_INLINE_FANOUT_LIMIT: str(LIMIT)})


def queued(sqs: Any, queue_url: str) -> list[dict]:
    """Every message in the queue, received as the event source mapping
    receives them: hidden, not deleted."""
    taken: list[dict] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                    AttributeNames=["All"]).get("Messages", [])
        if not batch:
            return taken
        taken.extend(batch)





def run_fanout(world: Any, messages: list[dict]) -> list[Any]:
    """The fan-out function on each message, one per invocation (batch size 1)."""
    return [world.call("fanout", sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:q", REGION))
            for message in messages]


def message(channel: str, sender_id: str, data: Any) -> dict:
    return {"type": "message", "channelId": channel, "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": data}


def big_channel(world: Any, members: int) -> tuple[Any, list[Any], str]:
    """``members`` connections in "big": the first (who will publish), the
    others, and the first one's senderId."""
    alice, *others = [world.client() for _ in range(members)]
    sender_id = alice.join("big")
    for member in others:
        member.join("big")
    return alice, others, sender_id


def published_chunks(world: Any, sqs: Any, queue_url: str, members: int, data: Any) -> tuple[list[Any], str, list[dict]]:
    """A publish of ``data`` in a channel of ``members``: the others, the
    publisher's senderId, and the chunks it queued (received, not deleted)."""
    alice, others, sender_id = big_channel(world, members)
    alice.send({"type": "publish", "data": data})
    return others, sender_id, queued(sqs, queue_url)


def test_a_publish_beyond_the_limit_posts_to_some_and_queues_the_rest_for_the_fanout_function(
    large: Any, world: Any, sqs: Any, queue_url: str
) -> None:
    alice, others, sender_id = big_channel(world, 8)
    world.management.clear()

    alice.send({"type": "publish", "data": "hello"})

    # the reply says how many members the message is accepted for, not delivered to
    assert alice.frames() == [{"type": "publishSuccess", "queued": len(others) - LIMIT}]
    assert sum(1 for member in others if member.frames()) == LIMIT
    chunks = queued(sqs, queue_url)
    assert len(chunks) == 1

    assert run_fanout(world, chunks) == [{}]
    for member in others:
        assert member.frames() == [message("big", sender_id, "hello")]  # each exactly once
    assert alice.frames() == [{"type": "publishSuccess", "queued": len(others) - LIMIT}]


def test_a_posted_chunk_handed_over_again_is_not_posted_again(
    large: Any, world: Any, sqs: Any, queue_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQS delivers at least once: the chunk's finished claim in the table
    keeps every member at one copy."""
    others, sender_id, chunks = published_chunks(world, sqs, queue_url, 5, "once")

    run_fanout(world, chunks)
    run_fanout(world, chunks)  # the same message, handed over a second time

    for member in others:
        assert [f for f in member.frames() if f["type"] == "message"] == [message("big", sender_id, "once")]
    assert [r for r in caplog.records if r.getMessage() == "fan-out chunk already posted: not posted again"]
    claim = spec.CHUNK_CLAIM_PREFIX + chunks[0]["MessageId"]
    (row,) = [r for r in world.rows() if r["connectionId"] == claim]
    assert row["channelId"] == claim and row["expiresAt"] > 0  # it expires, after the queue's retention
    assert row[spec.CHUNK_FINISHED_AT] > 0


class Killed(BaseException):
    """The function's process ending mid-chunk (no handler sees it)."""


def test_a_chunk_whose_function_died_mid_delivery_is_posted_again_to_every_member_with_the_same_id(
    large: Any, world: Any, sqs: Any, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At least once per member, each copy with the message's id: the members
    posted before the death get a second copy, which ChannelClient drops."""
    others, sender_id, chunks = published_chunks(world, sqs, queue_url, 8, "again")
    (chunk,) = [handoff.decode(m["Body"]) for m in chunks]
    queued_members = [member for member in others if member.connection_id in chunk.connection_ids]
    assert len(queued_members) == len(others) - LIMIT
    sender = world.app.sender
    post_many = type(sender).post_many

    def dies_after_two(self: Any, connection_ids: Any, payload: bytes, deadline: Any = None) -> Any:
        post_many(self, list(connection_ids)[:2], payload, deadline)
        raise Killed()

    monkeypatch.setattr(type(sender), "post_many", dies_after_two)
    with pytest.raises(Killed):
        run_fanout(world, chunks)
    def messages(member: Any) -> list[dict]:
        return [f for f in member.frames() if f["type"] == "message"]

    assert sum(1 for member in queued_members if messages(member)) == 2  # the rest never got it
    monkeypatch.setattr(type(sender), "post_many", post_many)

    run_fanout(world, chunks)  # SQS hands it over after the visibility timeout

    copies = [messages(member) for member in queued_members]
    assert sorted(len(c) for c in copies) == [1] * (len(queued_members) - 2) + [2, 2]
    ids = {f["messageId"] for c in copies for f in c}
    assert len(ids) == 1 and all(f == message("big", sender_id, "again") for c in copies for f in c)
    run_fanout(world, chunks)  # finished now: a third delivery posts nothing
    assert sum(len(messages(member)) for member in queued_members) == len(queued_members) + 2


def test_a_chunk_that_cannot_be_claimed_fails_before_any_post_so_sqs_hands_it_over_again(
    large: Any, world: Any, sqs: Any, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channel_server.handlers.store import Store

    _, _, chunks = published_chunks(world, sqs, queue_url, 4, "later")
    (chunk,) = [handoff.decode(m["Body"]) for m in chunks]
    world.management.clear()

    def unavailable(self: Any, message_id: str) -> bool:
        raise RuntimeError("table unavailable")

    monkeypatch.setattr(Store, "claim_chunk", unavailable)
    with pytest.raises(RuntimeError):
        run_fanout(world, chunks)
    assert [world.management.frames(c) for c in chunk.connection_ids] == [[]] * len(chunk.connection_ids)


def test_members_are_queued_in_chunks_that_each_reach_their_own_members(
    large: Any, world: Any, sqs: Any, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spec, "FANOUT_CHUNK_MEMBERS", 3)
    others, sender_id, chunks = published_chunks(world, sqs, queue_url, 11, [1, 2])

    assert [len(handoff.decode(m["Body"]).connection_ids) for m in chunks] == [3, 3, 2]
    run_fanout(world, chunks)
    for member in others:
        assert member.frames()[-1] == message("big", sender_id, [1, 2])
        assert [f["type"] for f in member.frames()].count("message") == 1


def test_the_fanout_function_removes_the_members_it_finds_gone(
    large: Any, world: Any, sqs: Any, queue_url: str
) -> None:
    _, _, chunks = published_chunks(world, sqs, queue_url, 5, "x")
    (chunk,) = [handoff.decode(m["Body"]) for m in chunks]
    gone = chunk.connection_ids[0]
    world.management.gone.add(gone)

    run_fanout(world, chunks)

    assert closed(world.dynamodb, world.table, gone)
    assert [c for c in chunk.connection_ids[1:] if closed(world.dynamodb, world.table, c)] == []


def test_an_unreadable_chunk_is_logged_and_dropped_and_the_others_in_the_batch_are_posted(
    large: Any, world: Any, sqs: Any, queue_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    others, sender_id, good = published_chunks(world, sqs, queue_url, 4, "y")
    bad = {**good[0], "MessageId": "bad-1", "Body": "not a chunk"}

    result = world.call("fanout", sqs_event([bad, *good], "arn:aws:sqs:us-east-1:123456789012:q", REGION))

    assert result == {}  # the batch is never failed: nothing comes back to be posted twice
    assert [r for r in caplog.records if r.getMessage() == "unreadable fan-out chunk dropped"]
    assert all(member.frames()[-1] == message("big", sender_id, "y") for member in others)


def test_members_that_cannot_be_queued_count_as_failed(
    install_app: Any, world: Any, sqs: Any, queue_url: str, no_retry_delay: None
) -> None:
    install_app(**{spec.ENV_FANOUT_QUEUE_URL: queue_url + "-missing", spec.ENV_INLINE_FANOUT_LIMIT: str(LIMIT)})
    alice, others, _ = big_channel(world, 6)
    world.management.clear()

    alice.send({"type": "publish", "data": "z"})

    (reply,) = alice.frames()
    assert (reply["type"], reply["delivered"], reply["failed"]) == ("publishFailure", LIMIT, len(others) - LIMIT)
    assert "queued" not in reply


def test_without_a_queue_in_the_environment_a_publish_posts_to_every_member(world: Any) -> None:
    alice, others, _ = big_channel(world, LIMIT + 3)

    alice.send({"type": "publish", "data": 1})

    assert alice.frames()[-1] == {"type": "publishSuccess"}
    assert all(member.frames()[-1]["type"] == "message" for member in others)


# --- the chunks ----------------------------------------------------------------------


def test_a_chunk_carries_the_frame_and_the_ids_and_stays_within_sqs_limits() -> None:
    frame = json.dumps({"type": "message", "data": "\uffff\ufffe ok " + "x" * 120_000}, ensure_ascii=False)
    ids = [f"conn-{n:011d}=" for n in range(2500)]

    bodies, unsent = handoff.chunks("lobby", ids, frame.encode("utf-8"))

    assert unsent == []
    assert all(len(body.encode("utf-8")) <= handoff.MAX_BODY_BYTES for body, _ in bodies)
    assert all("\uffff" not in body and "\ufffe" not in body for body, _ in bodies)  # SQS refuses them
    decoded = [handoff.decode(body) for body, _ in bodies]
    assert [i for chunk in decoded for i in chunk.connection_ids] == ids
    assert [count for _, count in bodies] == [len(chunk.connection_ids) for chunk in decoded]
    assert all(json.loads(chunk.payload) == json.loads(frame) for chunk in decoded)  # the same JSON


def test_a_frame_too_large_for_any_chunk_leaves_its_members_unsent() -> None:
    frame = json.dumps({"data": "\uffff" * 90_000}, ensure_ascii=False).encode("utf-8")  # 540 KB escaped

    assert handoff.chunks("lobby", ["a", "b"], frame) == ([], ["a", "b"])


class RecordingSqs:
    """Answers SendMessageBatch as told, recording each call's entry ids."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        self.calls.append([entry["Id"] for entry in Entries])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(Entries)


def ok(entries: list[dict]) -> dict:
    return {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []}


def test_entries_sqs_failed_on_its_side_are_sent_again_and_the_senders_faults_are_not(
    no_retry_delay: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spec, "FANOUT_CHUNK_MEMBERS", 1)

    def partly(entries: list[dict]) -> dict:
        return {"Successful": [{"Id": "0"}], "Failed": [
            {"Id": "1", "SenderFault": False, "Code": "InternalError"},
            {"Id": "2", "SenderFault": True, "Code": "InvalidMessageContents"},
        ]}

    client = RecordingSqs(partly, ok)
    sent, lost = handoff.Queue(client, "q").send("lobby", ["a", "b", "c"], b"{}")

    assert client.calls == [["0", "1", "2"], ["1"]]
    assert (sent, lost) == (2, 1)


def test_no_batch_starts_after_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(spec, "FANOUT_CHUNK_MEMBERS", 1)
    client = RecordingSqs(ok)
    sent, lost = handoff.Queue(client, "q").send("lobby", [f"c{n}" for n in range(12)], b"{}",
                                                 deadline=time.monotonic() - 1)
    assert (sent, lost, client.calls) == (0, 12, [])


def test_a_batch_whose_answer_was_lost_is_not_sent_again() -> None:
    client = RecordingSqs(awsjson.TransportError("no answer", sent=True))

    assert handoff.Queue(client, "q").send("lobby", ["a", "b"], b"{}") == (0, 2)
    assert len(client.calls) == 1


def test_batches_hold_at_most_ten_entries() -> None:
    bodies = {n: "x" for n in range(23)}
    assert [len(group) for group in handoff._batches(bodies)] == [10, 10, 3]


# --- local mode -------------------------------------------------------------------------


def test_the_local_flag_refuses_a_limit_outside_the_settings_range(capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    assert parser.parse_args(["--inline-fanout-limit", "3"]).inline_fanout_limit == 3
    for bad in ("0", str(spec.MAX_INLINE_FANOUT_LIMIT + 1), "many"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--inline-fanout-limit", bad])
        assert "--inline-fanout-limit" in capsys.readouterr().err


def test_local_mode_hands_a_large_channel_to_the_fanout_function_through_its_queue(caplog: Any) -> None:
    from test_local import Client

    caplog.set_level(logging.INFO, logger="channel_server.local")
    with running(port=0, inline_fanout_limit=LIMIT, world=served_world()) as server:
        members = [Client(server.url) for _ in range(7)]
        try:
            sender_id = members[0].join("big")["senderId"]
            for member in members[1:]:
                member.join("big")

            members[0].send({"type": "publish", "data": "through the queue"})

            assert members[0].recv() == {"type": "publishSuccess", "queued": len(members) - 1 - LIMIT}
            for member in members[1:]:
                assert member.recv() == message("big", sender_id, "through the queue")
            assert all(member.nothing_more() for member in members)  # exactly once each
        finally:
            for member in members:
                member.close()
    fanout_lines = [r.getMessage() for r in caplog.records if "message(s) from" in r.getMessage()]
    assert fanout_lines and "fanout" in fanout_lines[0]
