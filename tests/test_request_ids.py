"""Request ids (docs/protocol.md §3): a client frame's ``requestId`` comes back in
its reply, whatever the reply is; a bad one gets an error and nothing is done;
frames without one are answered as before. Through the entry points, with the
embedded DynamoDB and the fake management API.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_server.handlers import protocol

RULES = protocol.Rules()


@pytest.mark.parametrize("frame, reply_type", [
    ({"type": "join", "channelId": "lobby"}, "joinSuccess"),
    ({"type": "join", "channelId": "$no"}, "joinFailure"),
    ({"type": "publish", "data": 1}, "publishSuccess"),
    ({"type": "publish"}, "publishFailure"),
    ({"type": "ping", "data": 7}, "pong"),
    ({"type": "dance"}, "error"),
    ({"requestId": "r"}, "error"),  # no type
])
def test_every_reply_carries_the_frames_request_id(client: Any, frame: dict, reply_type: str) -> None:
    alice = client()
    alice.join("lobby")

    alice.send({**frame, "requestId": "req-7:a.b_c"})

    reply = alice.frames()[-1]
    assert (reply["type"], reply["requestId"]) == (reply_type, "req-7:a.b_c")


def test_a_frame_without_a_request_id_gets_a_reply_without_one(client: Any) -> None:
    alice = client()
    alice.send({"type": "join", "channelId": "lobby"})
    alice.send({"type": "ping", "data": 1})
    assert [("requestId" in reply) for reply in alice.frames()] == [False, False]


def test_messages_to_the_other_members_never_carry_the_publishers_request_id(client: Any) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")

    alice.send({"type": "publish", "data": "hi", "requestId": "p1"})

    assert "requestId" not in bob.frames()[-1]
    assert alice.frames()[-1] == {"type": "publishSuccess", "requestId": "p1"}


@pytest.mark.parametrize("request_id", ["", "x" * 65, "has space", "ü", 7, [1], {"a": 1}])
def test_a_bad_request_id_gets_an_error_without_one_and_nothing_is_done(
        client: Any, world: Any, request_id: Any) -> None:
    alice = client()
    before = world.rows()

    alice.send({"type": "join", "channelId": "lobby", "requestId": request_id})

    assert alice.frames() == [{"type": "error", "data": protocol.BAD_REQUEST_ID}]
    assert world.rows() == before


def test_a_request_id_of_null_is_no_request_id() -> None:
    assert protocol.decode('{"type":"ping","requestId":null}', RULES) == protocol.Ping(None, False, None)


@settings(max_examples=200)
@given(request_id=st.from_regex(protocol.REQUEST_ID, fullmatch=True),
       frame=st.sampled_from([{"type": "ping"}, {"type": "publish"}, {"type": "join", "channelId": "$x"},
                              {"type": 5}, {}]))
def test_the_decoded_command_holds_every_valid_request_id_as_sent(request_id: str, frame: dict) -> None:
    command = protocol.decode(json.dumps({**frame, "requestId": request_id}), RULES)
    assert command.request_id == request_id
    reply = protocol.answering(command, command.frame if isinstance(command, protocol.Reply) else {"type": "x"})
    assert reply["requestId"] == request_id
