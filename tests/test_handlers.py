"""The Lambda entry points end to end: recorded-shape events in, the embedded
DynamoDB (a table declared by the component) and a fake management API out.

Every frame a client receives is read back from the fake management API, so
these tests see exactly what API Gateway would be asked to deliver.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from channel_server.handlers import protocol, spec
from support.events import event, new_connection_id
from support.lambda_world import answered
from support.table import closed, member_items, open_rows, rows, rows_of, write_member
from support.frames import ANY_MESSAGE_ID, SAMPLE_MESSAGE_ID, message

NOT_IN_CHANNEL = protocol.NOT_IN_CHANNEL


# --- $connect ---------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["connect", "connect_with_query"])
def test_connect_accepts_the_handshake_and_touches_nothing(
    fixture: str, world: Any, management: Any, dynamodb: Any, table: str
) -> None:
    assert world.call("connect", event(fixture)) == {"statusCode": 200}
    assert rows(dynamodb, table) == []
    assert management.attempts == []


# --- join -------------------------------------------------------------------------


def test_join_replies_join_success_with_a_sender_id_that_is_not_the_connection_id(client: Any) -> None:
    alice = client()

    result = alice.send({"type": "join", "channelId": "lobby"})

    (reply,) = alice.frames()
    assert result == answered(reply)
    assert reply == {"type": "joinSuccess", "channelId": "lobby", "senderId": reply["senderId"]}
    assert isinstance(reply["senderId"], str) and len(reply["senderId"]) >= 22
    assert reply["senderId"] != alice.connection_id


def test_join_writes_a_state_row_and_a_membership_row(client: Any, dynamodb: Any, table: str) -> None:
    alice = client()
    before = int(time.time())

    sender_id = alice.join("lobby")

    after = int(time.time())
    written = rows(dynamodb, table)
    expires_at = written[0]["expiresAt"]
    assert before + spec.ROW_TTL_SECONDS <= expires_at <= after + spec.ROW_TTL_SECONDS
    assert written == [
        {
            "connectionId": alice.connection_id,
            "channelId": "$connection#" + alice.connection_id,
            "currentChannel": "lobby",
            "senderId": sender_id,
            "version": 1,
            "expiresAt": expires_at,
        },
        {
            "connectionId": alice.connection_id,
            "channelId": "lobby",
            "senderId": sender_id,
            "expiresAt": expires_at,
        },
    ]


INVALID_JOINS = [
    ({"type": "join"}, "channelId is required"),
    ({"type": "join", "channelId": None}, "channelId is required"),
    ({"type": "join", "channelId": 42}, "channelId must be a string"),
    ({"type": "join", "channelId": ""}, "channelId must not be empty"),
    ({"type": "join", "channelId": "a" * 129}, "channelId must be at most 128 characters"),
    ({"type": "join", "channelId": "$x"}, "channelId must not start with '$' (reserved)"),
    ({"type": "join", "channelId": "has space"}, "channelId must match [A-Za-z0-9_.:-]+"),
    ({"type": "join", "channelId": "lobby/2"}, "channelId must match [A-Za-z0-9_.:-]+"),
]


@pytest.mark.parametrize("frame, reason", INVALID_JOINS)
def test_an_invalid_join_replies_join_failure_and_writes_nothing(
    frame: dict, reason: str, client: Any, dynamodb: Any, table: str
) -> None:
    alice = client()

    alice.send(frame)

    assert alice.frames() == [{"type": "joinFailure", "data": reason}]
    assert rows(dynamodb, table) == []


@pytest.mark.parametrize("frame, reason", INVALID_JOINS[::3])
def test_an_invalid_join_leaves_the_current_channel_as_it_was(
    frame: dict, reason: str, client: Any, dynamodb: Any, table: str
) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")
    before = rows(dynamodb, table)

    bob.send(frame)
    alice.send({"type": "publish", "data": "still there?"})

    assert bob.frames()[-2:] == [
        {"type": "joinFailure", "data": reason},
        {"type": "message", "channelId": "lobby", "senderId": alice.frames()[0]["senderId"], "messageId": ANY_MESSAGE_ID, "data": "still there?"},
    ]
    assert rows(dynamodb, table) == before


def test_a_channel_id_of_128_characters_can_be_joined(client: Any) -> None:
    alice = client()
    channel_id = "c" * 128

    alice.send({"type": "join", "channelId": channel_id})

    assert alice.frames()[0]["channelId"] == channel_id


def test_rejoining_moves_the_connection_to_the_new_channel_with_a_new_sender_id(
    client: Any, dynamodb: Any, table: str
) -> None:
    alice = client()
    first = alice.join("lobby")

    second = alice.join("kitchen")

    assert second != first
    written = rows(dynamodb, table)
    assert written == [
        {
            "connectionId": alice.connection_id,
            "channelId": "$connection#" + alice.connection_id,
            "currentChannel": "kitchen",
            "senderId": second,
            "version": 2,
            "expiresAt": written[0]["expiresAt"],
        },
        {
            "connectionId": alice.connection_id,
            "channelId": "kitchen",
            "senderId": second,
            "expiresAt": written[0]["expiresAt"],
        },
    ]


def test_rejoining_the_same_channel_gives_a_new_sender_id_and_keeps_one_membership(
    client: Any, dynamodb: Any, table: str
) -> None:
    alice = client()
    first = alice.join("lobby")

    second = alice.join("lobby")

    assert second != first
    assert [(row["channelId"], row["senderId"]) for row in rows(dynamodb, table)] == [
        ("$connection#" + alice.connection_id, second),
        ("lobby", second),
    ]


def test_after_rejoining_a_connection_talks_and_listens_in_the_new_channel_only(client: Any, management: Any) -> None:
    alice, lobby_member, kitchen_member = client(), client(), client()
    lobby_member.join("lobby")
    kitchen_member.join("kitchen")
    alice.join("lobby")
    sender_id = alice.join("kitchen")
    management.clear()

    alice.send({"type": "publish", "data": "moved"})
    lobby_member.send({"type": "publish", "data": "anyone left?"})

    assert kitchen_member.frames() == [{"type": "message", "channelId": "kitchen", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": "moved"}]
    assert lobby_member.frames() == [{"type": "publishSuccess"}]
    assert alice.frames() == [{"type": "publishSuccess"}]


# --- publish ----------------------------------------------------------------------

PAYLOADS = [
    pytest.param({"a": {"b": [1, {"c": None}], "d": True}, "e": []}, id="nested"),
    pytest.param("héllo wörld ✓ 😀 中文 \u0000 \"quoted\" \\ /", id="unicode"),
    pytest.param(None, id="null"),
    pytest.param(0, id="zero"),
    pytest.param(-17, id="negative"),
    pytest.param(2**63 + 1, id="big-int"),
    pytest.param(3.14159, id="float"),
    pytest.param(False, id="false"),
    pytest.param("", id="empty-string"),
    pytest.param([[], {}, ""], id="empty-containers"),
]


@pytest.mark.parametrize("data", PAYLOADS)
def test_publish_fans_out_to_the_other_members_only_with_data_exactly_as_sent(
    data: Any, client: Any, management: Any
) -> None:
    # GIVEN alice, bob and carol in "lobby", dave in "kitchen"
    alice, bob, carol, dave = client(), client(), client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    dave.join("kitchen")
    management.clear()

    # WHEN alice publishes
    assert alice.send({"type": "publish", "data": data}) == answered({"type": "publishSuccess"})

    # THEN bob and carol get the message, dave nothing, alice publishSuccess after
    message = {"type": "message", "channelId": "lobby", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": data}
    assert bob.frames() == [message]
    assert carol.frames() == [message]
    assert dave.frames() == []
    assert alice.frames() == [{"type": "publishSuccess"}]
    # one post per other member, none for the reply (a route response)
    assert sorted(management.recipients()) == sorted([bob.connection_id, carol.connection_id])
    sent = management.all_bodies()[0]
    assert sent == protocol.encode({**message, "messageId": json.loads(sent)["messageId"]})


def test_publish_forwards_the_data_as_compact_utf8_json(client: Any, management: Any) -> None:
    alice, bob = client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    management.clear()

    alice.send('{"type":"publish","data":{"z":1,"a":"ü\\u00fc","n":1.50}}')

    (body,) = management.all_bodies()
    message_id = json.loads(body)["messageId"]
    assert body == (
        '{"type":"message","channelId":"lobby","senderId":"' + sender_id + '","messageId":"' + message_id +
        '","data":{"z":1,"a":"üü","n":1.5}}'
    ).encode("utf-8")


def test_publish_alone_in_a_channel_only_answers_publish_success(client: Any, management: Any) -> None:
    alice = client()
    alice.join("lobby")
    management.clear()

    alice.send({"type": "publish", "data": "anyone?"})

    assert management.attempts == []
    assert alice.frames() == [{"type": "publishSuccess"}]


def test_publish_without_joining_replies_publish_failure(client: Any, management: Any) -> None:
    alice, bob = client(), client()
    bob.join("lobby")
    management.clear()

    alice.send({"type": "publish", "data": "hello?"})

    assert alice.frames() == [{"type": "publishFailure", "data": NOT_IN_CHANNEL}]
    assert management.attempts == []


def test_publish_without_data_replies_publish_failure(client: Any, management: Any) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")
    management.clear()

    alice.send({"type": "publish"})

    assert alice.frames() == [{"type": "publishFailure", "data": "publish needs a data field"}]
    assert bob.frames() == []


def test_publish_removes_gone_subscribers_and_still_succeeds(
    client: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN bob's connection is gone, though his rows remain
    alice, bob, carol = client(), client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    management.clear()
    management.gone.add(bob.connection_id)

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "hi"})

    # THEN the post to bob got a 410, he is closed (his membership gone), the others are served
    assert (bob.connection_id, 410) in management.attempts
    assert closed(dynamodb, table, bob.connection_id)
    assert carol.frames() == [{"type": "message", "channelId": "lobby", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": "hi"}]
    assert alice.frames() == [{"type": "publishSuccess"}]
    assert len(rows_of(dynamodb, table, alice.connection_id)) == 2
    assert len(rows_of(dynamodb, table, carol.connection_id)) == 2


def test_a_removed_gone_subscriber_is_not_posted_to_again(client: Any, management: Any) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")
    management.gone.add(bob.connection_id)
    alice.send({"type": "publish", "data": 1})
    management.clear()

    alice.send({"type": "publish", "data": 2})

    assert management.attempts == []


def test_a_subscriber_that_refuses_a_post_keeps_its_rows_and_the_sender_is_told(
    client: Any, management: Any, dynamodb: Any, table: str
) -> None:
    alice, bob, carol = client(), client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    management.faults[bob.connection_id] = (403, "ForbiddenException")
    management.clear()

    alice.send({"type": "publish", "data": "hi"})

    assert (bob.connection_id, 403) in management.attempts
    assert len(rows_of(dynamodb, table, bob.connection_id)) == 2
    assert carol.frames() == [{"type": "message", "channelId": "lobby", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": "hi"}]
    assert alice.frames() == [{
        "type": "publishFailure",
        "data": "could not deliver to 1 of 2 members; the others received the message",
        "delivered": 1,
        "failed": 1,
    }]


def test_a_reply_is_the_functions_answer_and_costs_no_management_api_call(client: Any, management: Any) -> None:
    alice = client()
    management.gone.add(alice.connection_id)  # posting to alice would fail: nothing is posted

    assert alice.send({"type": "ping"}) == answered({"type": "pong"})
    assert management.attempts == []


def test_an_expired_membership_is_not_delivered_to(
    client: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN bob's rows expired a minute ago (DynamoDB's TTL has not removed them yet)
    alice, bob, carol = client(), client(), client()
    write_member(dynamodb, table, bob.connection_id, "lobby", "b0bS3nderIdXXXXXXXXXXX", int(time.time()) - 60)
    sender_id = alice.join("lobby")
    carol.join("lobby")
    management.clear()

    alice.send({"type": "publish", "data": "hi"})

    assert bob.frames() == []
    assert bob.connection_id not in {cid for cid, _ in management.attempts}
    assert carol.frames() == [{"type": "message", "channelId": "lobby", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": "hi"}]


def test_publishing_from_an_expired_membership_replies_publish_failure(
    client: Any, management: Any, dynamodb: Any, table: str
) -> None:
    alice, bob = client(), client()
    bob.join("lobby")
    write_member(dynamodb, table, alice.connection_id, "lobby", "a1iceS3nderIdXXXXXXXXX", int(time.time()) - 60)
    management.clear()

    alice.send({"type": "publish", "data": "hi"})

    assert alice.frames() == [{"type": "publishFailure", "data": NOT_IN_CHANNEL}]
    assert bob.frames() == []


def test_publish_over_the_configured_size_limit_replies_publish_failure_and_posts_nothing(
    install_app: Any, client: Any, management: Any
) -> None:
    limit = 300
    install_app(**{spec.ENV_MAX_MESSAGE_BYTES: str(limit)})
    alice, bob = client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    empty = len(protocol.encode(protocol.message("lobby", sender_id, "", SAMPLE_MESSAGE_ID)))
    management.clear()

    alice.send({"type": "publish", "data": "x" * (limit - empty + 1)})

    assert alice.frames() == [{
        "type": "publishFailure",
        "data": f"message too large: {limit + 1} bytes encoded, the limit is {limit}",
    }]
    assert management.attempts == []


def test_publish_exactly_at_the_configured_size_limit_is_delivered(
    install_app: Any, client: Any, management: Any
) -> None:
    limit = 300
    install_app(**{spec.ENV_MAX_MESSAGE_BYTES: str(limit)})
    alice, bob = client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    data = "é" * ((limit - len(protocol.encode(protocol.message("lobby", sender_id, "", SAMPLE_MESSAGE_ID)))) // 2)
    management.clear()

    alice.send({"type": "publish", "data": data})

    assert [len(body) for body in management.all_bodies()][:1] == [limit]
    assert bob.frames() == [{"type": "message", "channelId": "lobby", "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": data}]
    assert alice.frames() == [{"type": "publishSuccess"}]


def test_a_custom_channel_id_pattern_from_the_environment_is_enforced(
    install_app: Any, client: Any
) -> None:
    install_app(**{spec.ENV_CHANNEL_ID_PATTERN: "room-[0-9]+"})
    alice = client()

    alice.send({"type": "join", "channelId": "lobby"})
    alice.send({"type": "join", "channelId": "room-12"})

    assert alice.frames()[0] == {"type": "joinFailure", "data": "channelId must match room-[0-9]+"}
    assert alice.frames()[1]["type"] == "joinSuccess"


class PagedQueries:
    """A DynamoDB client whose queries return at most ``page`` items, so a
    channel of a hundred members spans several pages."""

    def __init__(self, client: Any, page: int):
        self._client, self._page = client, page
        self.index_queries = 0

    def query(self, **kwargs: Any) -> dict:
        if kwargs.get("IndexName"):
            self.index_queries += 1
        return self._client.query(**{**kwargs, "Limit": self._page})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_every_member_of_a_channel_spanning_many_pages_receives_the_message(
    install_app: Any, client: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN 119 members written directly, and alice joined through the handler
    paged = PagedQueries(dynamodb, page=25)
    install_app(dynamodb=paged)
    members = [new_connection_id() for _ in range(119)]
    items = [
        {"PutRequest": {"Item": item}}
        for number, cid in enumerate(members)
        for item in member_items(cid, "crowd", f"sender{number:016d}", int(time.time()) + 600)
    ]
    for start in range(0, len(items), 25):
        dynamodb.batch_write_item(RequestItems={table: items[start:start + 25]})
    alice = client()
    sender_id = alice.join("crowd")
    management.clear()

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "to all"})

    # THEN all 119 others receive it once; the index was read page by page
    assert sorted(management.recipients()) == sorted(members)
    (body,) = set(management.all_bodies())  # one message, one id, for all of them
    assert json.loads(body) == message("crowd", sender_id, "to all")
    assert paged.index_queries >= 5  # 120 memberships, 25 a page


# --- ping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, reply",
    [
        ({"type": "ping"}, {"type": "pong"}),
        ({"type": "ping", "data": None}, {"type": "pong", "data": None}),
        ({"type": "ping", "data": 1795628755}, {"type": "pong", "data": 1795628755}),
        ({"type": "ping", "data": {"seq": [1, "ü"]}}, {"type": "pong", "data": {"seq": [1, "ü"]}}),
    ],
)
@pytest.mark.parametrize("joined", [False, True], ids=["not-joined", "joined"])
def test_ping_replies_pong_with_the_same_data(
    frame: dict, reply: dict, joined: bool, client: Any, management: Any
) -> None:
    alice = client()
    if joined:
        alice.join("lobby")
    management.clear()

    assert alice.send(frame) == answered(protocol.encode(reply))

    assert alice.frames() == [reply]
    assert management.attempts == []  # the pong is the function's answer: no post


def test_ping_with_a_lone_surrogate_escape_is_answered_not_crashed(client: Any, management: Any) -> None:
    alice = client()

    result = alice.send('{"type":"ping","data":"\\ud800"}')
    assert alice.frames() == [{"type": "pong", "data": "\ud800"}]
    assert result == answered(management.bodies(alice.connection_id)[-1])


# --- $default -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, reason",
    [
        ("", "empty frame; send a JSON object with a type"),
        ("hello", "frame is not valid JSON"),
        ('{"type":"join"', "frame is not valid JSON"),
        ("[1,2,3]", "frame must be a JSON object"),
        ('"publish"', "frame must be a JSON object"),
        ("{}", "frame has no type"),
        ('{"channelId":"lobby"}', "frame has no type"),
        ('{"type":7}', "type must be a string"),
        ('{"type":"subscribe","channelId":"lobby"}', "unknown type 'subscribe'; expected join, publish or ping"),
        ('{"type":"Publish","data":1}', "unknown type 'Publish'; expected join, publish or ping"),
    ],
)
def test_default_answers_malformed_frames_with_an_error(body: str, reason: str, client: Any, dynamodb: Any, table: str) -> None:
    alice = client()

    assert alice.send(body) == answered({"type": "error", "data": reason})

    assert alice.frames() == [{"type": "error", "data": reason}]
    assert rows(dynamodb, table) == []


def test_default_with_the_recorded_fixture_body_answers_an_unknown_type(world: Any, management: Any) -> None:
    raw = event("default")

    world.call("default", raw)

    assert management.frames(raw["requestContext"]["connectionId"]) == [
        {"type": "error", "data": "unknown type 'subscribe'; expected join, publish or ping"}
    ]


def test_a_valid_frame_that_reaches_default_is_answered_with_an_error(
    world: Any, management: Any, dynamodb: Any, table: str
) -> None:
    connection_id = new_connection_id()

    world.send(connection_id, '{"type":"join","channelId":"lobby"}', route="$default")

    assert management.frames(connection_id) == [{"type": "error", "data": "this API has no route for join frames"}]
    assert rows(dynamodb, table) == []


# --- $disconnect --------------------------------------------------------------------


def test_disconnect_removes_every_row_of_the_connection_and_nothing_else(
    client: Any, dynamodb: Any, table: str, management: Any
) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    alice.join("kitchen")
    bob.join("kitchen")
    management.clear()

    assert alice.disconnect() == {"statusCode": 200}

    assert closed(dynamodb, table, alice.connection_id)  # its membership gone, a tombstone left
    assert len(rows_of(dynamodb, table, bob.connection_id)) == 2
    assert management.attempts == []


def test_disconnect_twice_is_harmless(client: Any, dynamodb: Any, table: str) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")

    assert alice.disconnect() == {"statusCode": 200}
    assert alice.disconnect() == {"statusCode": 200}

    assert closed(dynamodb, table, alice.connection_id)
    assert [row[spec.CONNECTION_ID] for row in open_rows(dynamodb, table)] == [bob.connection_id] * 2


def test_disconnect_of_a_connection_that_never_joined_is_harmless(
    world: Any, dynamodb: Any, table: str, management: Any
) -> None:
    raw = event("disconnect")
    assert world.call("disconnect", raw) == {"statusCode": 200}
    assert open_rows(dynamodb, table) == []
    assert closed(dynamodb, table, raw["requestContext"]["connectionId"])
    assert management.attempts == []


def test_after_disconnect_the_channel_no_longer_delivers_to_the_connection(client: Any, management: Any) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")
    bob.disconnect()
    management.clear()

    alice.send({"type": "publish", "data": "bye"})

    assert management.attempts == []


# --- what never leaks -----------------------------------------------------------------


def test_no_frame_sent_to_anyone_contains_a_connection_id(client: Any, management: Any) -> None:
    alice, bob, carol = client(), client(), client()
    alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    carol.send({"type": "join", "channelId": "$bad"})
    alice.send({"type": "publish", "data": {"hello": "world"}})
    bob.send({"type": "ping", "data": "p"})
    bob.send("not json")
    bob.send({"type": "unknown"})
    carol.send({"type": "publish"})
    management.gone.add(carol.connection_id)
    bob.send({"type": "publish", "data": [1, 2]})
    alice.join("kitchen")
    alice.send({"type": "publish", "data": "alone"})
    bob.disconnect()
    bob.send({"type": "publish", "data": "after leaving"})

    bodies = management.all_received()
    assert len(bodies) >= 14
    for connection_id in (alice.connection_id, bob.connection_id, carol.connection_id):
        assert not [body for body in bodies if connection_id.encode() in body]
        assert not [body for body in bodies if connection_id.rstrip("=").encode() in body]


def test_logs_of_a_publish_never_contain_the_published_data(
    client: Any, management: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-payload-9d41c7"
    alice, bob, carol, dave = client(), client(), client(), client()
    alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    dave.join("lobby")
    management.gone.add(carol.connection_id)
    management.faults[dave.connection_id] = (403, "ForbiddenException")

    # everything at INFO (boto's DEBUG logs carry request bodies by design), ours at DEBUG
    with caplog.at_level(logging.INFO), caplog.at_level(logging.DEBUG, logger="channel_server"):
        alice.send({"type": "publish", "data": {"note": secret}})

    assert bob.frames()[-1]["data"] == {"note": secret}
    assert caplog.records, "the publish logged nothing at all: this test would prove nothing"
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in repr(vars(record))


def test_a_pong_that_would_exceed_api_gateways_limit_is_answered_with_an_error(client: Any, management: Any) -> None:
    alice = client()
    frame = '{"type":"ping","data":[' + ",".join(["1e15"] * 25_000) + "]}"  # 125 KB in, 450 KB echoed

    result = alice.send(frame)

    (reply,) = alice.frames()
    assert reply["type"] == "error" and reply["data"].startswith("reply too large: pong would be ")
    assert management.attempts == []  # the error is the function's answer
    assert result == answered(reply)
