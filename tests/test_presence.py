"""Presence (docs/protocol.md §12): the frames and their decoding without I/O,
the presence rows in the embedded DynamoDB, and the entry points end to end
with the fake management API (what every connection was sent)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from channel_server.handlers import protocol, spec
from channel_server.handlers.store import PresenceEntry, Store, presence_key
from support.events import new_connection_id
from support.table import rows

ON = protocol.Rules(presence_max_members=3)
OFF = protocol.Rules()


# --- protocol ---------------------------------------------------------------------------


def test_a_join_asks_for_presence_with_presence_true() -> None:
    assert protocol.decode('{"type":"join","channelId":"a","presence":true}', ON) == protocol.Join("a", None, presence=True)
    assert protocol.decode('{"type":"join","channelId":"a","presence":false}', ON) == protocol.Join("a", None, presence=False)
    assert protocol.decode('{"type":"join","channelId":"a"}', ON) == protocol.Join("a", None, presence=False)


@pytest.mark.parametrize("value", ['"yes"', "1", "0", "null", "[]", "{}"])
def test_a_presence_that_is_not_a_boolean_is_refused_when_presence_is_on_and_ignored_when_off(value: str) -> None:
    frame = f'{{"type":"join","channelId":"a","presence":{value},"requestId":"r1"}}'
    assert protocol.decode(frame, ON) == protocol.Reply(
        {"type": "joinFailure", "data": "presence must be true or false"}, "r1")
    assert protocol.decode(frame, OFF) == protocol.Join("a", "r1")


def test_with_presence_off_a_join_never_watches_and_members_is_an_unknown_type() -> None:
    assert protocol.decode('{"type":"join","channelId":"a","presence":true}', OFF) == protocol.Join("a")
    assert protocol.decode('{"type":"members"}', OFF) == protocol.Reply(
        protocol.error("unknown type 'members'; expected join, publish or ping"))


@pytest.mark.parametrize("frame, command", [
    ('{"type":"members"}', protocol.Members()),
    ('{"type":"members","requestId":"q","cursor":"AbC-_9"}', protocol.Members("AbC-_9", "q")),
    ('{"type":"members","cursor":null,"extra":[1,2]}', protocol.Members()),
])
def test_a_members_request_is_decoded_with_its_cursor_and_unknown_fields_ignored(frame: str, command: Any) -> None:
    assert protocol.decode(frame, ON) == command


@pytest.mark.parametrize("cursor", ['""', '"a b"', '"' + "x" * 65 + '"', "7", "true", '["a"]', '{"a":1}',
                                    '"' + "x" * 100_000 + '"', '"é"'])
def test_a_bad_cursor_gets_an_error_and_nothing_else(cursor: str) -> None:
    assert protocol.decode(f'{{"type":"members","requestId":"q","cursor":{cursor}}}', ON) == protocol.Reply(
        {"type": "error", "data": "cursor must be the cursor of a members reply"}, "q")


def test_announcements_carry_the_channel_the_sender_id_and_the_principal_id_when_known() -> None:
    assert protocol.member_joined("lobby", protocol.Member("s1", "user-7")) == {
        "type": "memberJoined", "channelId": "lobby", "senderId": "s1", "principalId": "user-7"}
    assert protocol.member_left("lobby", protocol.Member("s1")) == {
        "type": "memberLeft", "channelId": "lobby", "senderId": "s1"}


@pytest.mark.parametrize("authorizer, shown", [
    ({"principalId": "user-7"}, "user-7"),
    ({"principalId": "x" * spec.MAX_PRINCIPAL_ID_LENGTH}, "x" * spec.MAX_PRINCIPAL_ID_LENGTH),
    ({"principalId": "x" * (spec.MAX_PRINCIPAL_ID_LENGTH + 1)}, None),
    ({"principalId": ""}, None),
    ({"principalId": 7}, None),
    ({}, None),
])
def test_only_a_short_string_principal_id_is_shown(authorizer: dict, shown: Any) -> None:
    assert protocol.shown_principal_id(authorizer) == shown


def test_members_are_paged_within_the_frame_limit_in_sender_id_order_with_a_cursor_while_more_follow() -> None:
    members = [protocol.Member(f"s{n:05d}", "p" * 100) for n in range(1000)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = protocol.members_page("lobby", members, cursor, "request-id-" + "x" * 53)
        encoded = protocol.encode({**page, "requestId": "request-id-" + "x" * 53})
        assert len(encoded) <= protocol.API_GATEWAY_MAX_FRAME_BYTES
        seen += [m["senderId"] for m in page["members"]]
        pages += 1
        if "cursor" not in page:
            break
        assert page["cursor"] == page["members"][-1]["senderId"]
        cursor = page["cursor"]
    assert seen == sorted(m.sender_id for m in members)
    assert pages == 5


def test_a_page_after_the_last_member_is_empty_and_has_no_cursor() -> None:
    assert protocol.members_page("c", [protocol.Member("a")], "a") == {"type": "members", "channelId": "c", "members": []}


# --- store ------------------------------------------------------------------------------


@pytest.fixture
def presence_store(dynamodb: Any, table: str) -> Store:
    return Store(dynamodb, table, spec.CHANNEL_INDEX, presence=True)


def test_a_join_lists_its_member_in_the_same_transaction_and_a_move_unlists_it(presence_store: Store, dynamodb: Any,
                                                                               table: str) -> None:
    me = new_connection_id()
    presence_store.join(me, "lobby", "s1", PresenceEntry("user-7", True))
    (row,) = presence_store.presence_rows("lobby")
    assert (row.connection_id, row.sender_id, row.principal_id, row.watching) == (me, "s1", "user-7", True)
    item = next(r for r in rows(dynamodb, table) if r["connectionId"] == spec.PRESENCE_ROW_PREFIX + "lobby")
    assert item["channelId"] == spec.MEMBER_ROW_PREFIX + me
    assert int(time.time()) < item["expiresAt"] <= int(time.time()) + spec.ROW_TTL_SECONDS

    presence_store.join(me, "games", "s2", None)  # the list of games is full

    assert presence_store.presence_rows("lobby") == [] and presence_store.presence_rows("games") == []
    assert presence_store.members("games") == [me]


def test_a_rejoin_that_is_not_listed_any_more_drops_its_old_row(presence_store: Store) -> None:
    me = new_connection_id()
    presence_store.join(me, "lobby", "s1", PresenceEntry(None, False))
    presence_store.join(me, "lobby", "s2", None)
    assert presence_store.presence_rows("lobby") == []


def test_removing_gone_members_and_dropping_presence_delete_their_rows(presence_store: Store) -> None:
    a, b = new_connection_id(), new_connection_id()
    presence_store.join(a, "lobby", "sa", PresenceEntry(None, True))
    presence_store.join(b, "lobby", "sb", PresenceEntry(None, False))

    presence_store.remove_gone([a], "lobby")
    dropped = presence_store.drop_presence(b, "lobby")

    assert dropped is not None and dropped.sender_id == "sb"
    assert presence_store.presence_rows("lobby") == []
    assert presence_store.drop_presence(b, "lobby") is None


def test_with_presence_off_the_store_writes_no_presence_rows(store_off: Store, dynamodb: Any, table: str) -> None:
    store_off.join(new_connection_id(), "lobby", "s1", PresenceEntry(None, True))
    assert not [r for r in rows(dynamodb, table) if r["connectionId"].startswith("$presence#")]


@pytest.fixture
def store_off(dynamodb: Any, table: str) -> Store:
    return Store(dynamodb, table, spec.CHANNEL_INDEX)


# --- the entry points ------------------------------------------------------------------


@pytest.fixture
def presence_world(install_app: Any, world: Any) -> Any:
    install_app(**{spec.ENV_PRESENCE_MAX_MEMBERS: "3"})
    return world


def send(world: Any, connection_id: str, frame: dict, principal_id: str | None = None) -> dict:
    """Send ``frame``; the reply (the route response)."""
    entry, raw = world.message_event(connection_id, frame)
    if principal_id is not None:
        raw["requestContext"]["authorizer"] = {"principalId": principal_id, "channelPattern": ".*"}
    before = len(world.management.frames(connection_id))
    world.call(entry, raw)
    return world.management.frames(connection_id)[before]


def later(world: Any, connection_id: str, since: int) -> list[dict]:
    return world.management.frames(connection_id)[since:]


def test_watchers_are_told_of_joins_and_leaves_and_nobody_else_sees_a_new_frame(presence_world: Any) -> None:
    w = presence_world
    watcher, plain, mover = (new_connection_id() for _ in range(3))
    reply = send(w, watcher, {"type": "join", "channelId": "lobby", "presence": True})
    assert reply == {"type": "joinSuccess", "channelId": "lobby", "senderId": reply["senderId"], "presence": True}
    plain_reply = send(w, plain, {"type": "join", "channelId": "lobby"})
    assert set(plain_reply) == {"type", "channelId", "senderId"}
    mover_id = send(w, mover, {"type": "join", "channelId": "lobby"}, principal_id="user-7")["senderId"]

    send(w, mover, {"type": "join", "channelId": "games"})
    w.disconnect(plain)

    assert later(w, watcher, 1) == [
        {"type": "memberJoined", "channelId": "lobby", "senderId": plain_reply["senderId"]},
        {"type": "memberJoined", "channelId": "lobby", "senderId": mover_id, "principalId": "user-7"},
        {"type": "memberLeft", "channelId": "lobby", "senderId": mover_id, "principalId": "user-7"},
        {"type": "memberLeft", "channelId": "lobby", "senderId": plain_reply["senderId"]},
    ]
    assert [f["type"] for f in w.management.frames(plain)] == ["joinSuccess"]
    assert [f["type"] for f in w.management.frames(mover)] == ["joinSuccess", "joinSuccess"]


def test_a_member_found_gone_by_a_publish_is_announced_as_left(presence_world: Any) -> None:
    w = presence_world
    watcher, publisher, ghost = (new_connection_id() for _ in range(3))
    watcher_id = send(w, watcher, {"type": "join", "channelId": "lobby", "presence": True})["senderId"]
    publisher_id = send(w, publisher, {"type": "join", "channelId": "lobby"})["senderId"]
    ghost_id = send(w, ghost, {"type": "join", "channelId": "lobby"})["senderId"]
    w.management.gone.add(ghost)

    assert send(w, publisher, {"type": "publish", "data": 1}) == {"type": "publishSuccess"}

    assert later(w, watcher, 3)[-1] == {"type": "memberLeft", "channelId": "lobby", "senderId": ghost_id}
    assert [m["senderId"] for m in send(w, watcher, {"type": "members"})["members"]] == sorted(
        [watcher_id, publisher_id])


def test_a_watcher_found_gone_by_an_announcement_is_removed_and_its_leave_announced(presence_world: Any) -> None:
    w = presence_world
    a, b, c = (new_connection_id() for _ in range(3))
    send(w, a, {"type": "join", "channelId": "lobby", "presence": True})
    b_id = send(w, b, {"type": "join", "channelId": "lobby", "presence": True})["senderId"]
    w.management.gone.add(b)

    c_id = send(w, c, {"type": "join", "channelId": "lobby"})["senderId"]

    assert later(w, a, 2) == [{"type": "memberJoined", "channelId": "lobby", "senderId": c_id},
                              {"type": "memberLeft", "channelId": "lobby", "senderId": b_id}]
    assert sorted(m["senderId"] for m in send(w, a, {"type": "members"})["members"]) == sorted(
        [c_id, w.management.frames(a)[0]["senderId"]])


def test_past_the_cap_a_join_succeeds_unlisted_unannounced_and_not_watching(presence_world: Any) -> None:
    w = presence_world
    first, *others, late = (new_connection_id() for _ in range(4))
    send(w, first, {"type": "join", "channelId": "lobby", "presence": True})
    for connection_id in others:
        send(w, connection_id, {"type": "join", "channelId": "lobby"})
    seen = len(w.management.frames(first))

    reply = send(w, late, {"type": "join", "channelId": "lobby", "presence": True})

    assert reply["presence"] is False and reply["type"] == "joinSuccess"
    assert later(w, first, seen) == []
    assert len(send(w, late, {"type": "members"})["members"]) == 3
    w.disconnect(late)
    assert later(w, first, seen) == []  # its leave is not announced either


def test_members_answers_the_senders_channel_or_an_error_when_it_is_in_none(presence_world: Any) -> None:
    w = presence_world
    alice = new_connection_id()
    assert send(w, alice, {"type": "members", "requestId": "m1"}) == {
        "type": "error", "data": "not in a channel; send a join first", "requestId": "m1"}
    alice_id = send(w, alice, {"type": "join", "channelId": "lobby"}, principal_id="user-1")["senderId"]
    assert send(w, alice, {"type": "members", "requestId": "m2", "cursor": "zzz"}) == {
        "type": "members", "channelId": "lobby", "members": [], "requestId": "m2"}
    assert send(w, alice, {"type": "members"}) == {
        "type": "members", "channelId": "lobby", "members": [{"senderId": alice_id, "principalId": "user-1"}]}


def test_a_bad_members_request_stores_nothing(presence_world: Any) -> None:
    w = presence_world
    before = w.rows()
    assert send(w, new_connection_id(), {"type": "members", "cursor": ["x"]})["type"] == "error"
    assert send(w, new_connection_id(), {"type": "join", "channelId": "a", "presence": "yes"})["type"] == "joinFailure"
    assert w.rows() == before


def test_without_presence_nothing_is_listed_or_announced(world: Any) -> None:
    w = world
    a, b = new_connection_id(), new_connection_id()
    reply = send(w, a, {"type": "join", "channelId": "lobby", "presence": True})
    send(w, b, {"type": "join", "channelId": "lobby"})
    w.disconnect(b)
    assert set(reply) == {"type", "channelId", "senderId"}
    assert w.management.frames(a) == [reply]
    assert send(w, a, {"type": "members"})["data"] == "unknown type 'members'; expected join, publish or ping"
    assert not [r for r in w.rows() if r["connectionId"].startswith(spec.PRESENCE_ROW_PREFIX)]
    assert json.dumps(presence_key("c", "k"))  # the key helper is plain data
