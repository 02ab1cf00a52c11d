"""The channel rule of a $connect authorizer: a ``channelPattern`` in the
authorizer's context (``requestContext.authorizer`` of every later event)
limits the channels the connection may join to those it matches in full.

Through the join entry point, against the embedded DynamoDB: a refused join
replies ``joinFailure`` and writes nothing; a pattern that cannot be used
refuses every join (fail closed); without the key joins are as before.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from channel_server.handlers import protocol, spec
from channel_server.handlers.events import WebSocketEvent
from support.table import rows
from support.frames import ANY_MESSAGE_ID

NOT_ALLOWED = {"type": "joinFailure", "data": "this connection may not join this channel"}
#: What API Gateway passes for a REQUEST authorizer: its principalId, its
#: latency, and the keys of the context it returned, at the same level.
AUTHORIZED = {"principalId": "user-17", "integrationLatency": 41}
TEAM_7 = r"team-7(\.[a-z]+)?"
#: The error logged when the pattern cannot be used.
UNUSABLE = "join refused: the authorizer's channelPattern is unusable"


def join(world: Any, connection_id: str, channel_id: Any, authorizer: Any = None) -> dict:
    """Send a join whose event carries ``authorizer`` (none when None), as
    API Gateway sends it; the reply the connection got."""
    entry, raw = world.message_event(connection_id, {"type": "join", "channelId": channel_id})
    if authorizer is not None:
        raw["requestContext"]["authorizer"] = authorizer
    before = len(world.management.frames(connection_id))
    world.call(entry, raw)
    (reply,) = world.management.frames(connection_id)[before:]
    return reply


def limited(pattern: Any) -> dict:
    return {**AUTHORIZED, spec.CHANNEL_PATTERN_CONTEXT_KEY: pattern}


# --- allowed and refused -------------------------------------------------------------------


@pytest.mark.parametrize("channel_id", ["team-7", "team-7.chat"])
def test_a_channel_the_pattern_matches_can_be_joined(channel_id: str, world: Any, client: Any) -> None:
    alice = client()

    reply = join(world, alice.connection_id, channel_id, limited(TEAM_7))

    assert reply == {"type": "joinSuccess", "channelId": channel_id, "senderId": reply["senderId"]}
    assert [row["channelId"] for row in world.rows()] == [spec.STATE_ROW_PREFIX + alice.connection_id, channel_id]


def test_a_channel_the_pattern_does_not_match_is_refused_and_nothing_is_written(
    world: Any, client: Any, dynamodb: Any, table: str
) -> None:
    alice = client()

    assert join(world, alice.connection_id, "team-8", limited(TEAM_7)) == NOT_ALLOWED
    assert rows(dynamodb, table) == []


def test_a_refused_join_leaves_the_current_membership_as_it_was(
    world: Any, client: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN alice in team-7 with bob, as her authorizer allows
    alice, bob = client(), client()
    alice_sender = join(world, alice.connection_id, "team-7", limited(TEAM_7))["senderId"]
    bob.join("team-7")
    before = rows(dynamodb, table)

    # WHEN she tries a channel it does not allow
    assert join(world, alice.connection_id, "team-8", limited(TEAM_7)) == NOT_ALLOWED

    # THEN her rows are untouched and she still talks in team-7
    assert rows(dynamodb, table) == before
    alice.send({"type": "publish", "data": "still here"})
    assert bob.frames()[-1] == {"type": "message", "channelId": "team-7", "senderId": alice_sender, "messageId": ANY_MESSAGE_ID, "data": "still here"}


@pytest.mark.parametrize("channel_id", ["team-70", "team-7.chat2", "xteam-7", "team-7.", "team"])
def test_the_pattern_must_match_the_whole_channel_id(
    channel_id: str, world: Any, client: Any, dynamodb: Any, table: str
) -> None:
    # a prefix ("team-7" of "team-70"), a substring or a partial match is not a match
    assert join(world, client().connection_id, channel_id, limited(TEAM_7)) == NOT_ALLOWED
    assert rows(dynamodb, table) == []


def test_the_channel_id_rules_still_come_first(world: Any, client: Any, dynamodb: Any, table: str) -> None:
    # a pattern that allows anything does not lift the deployment's rules
    assert join(world, client().connection_id, "$reserved", limited(".*")) == {
        "type": "joinFailure", "data": "channelId must not start with '$' (reserved)"}
    assert join(world, client().connection_id, "has space", limited(".*")) == {
        "type": "joinFailure", "data": "channelId must match [A-Za-z0-9_.:-]+"}
    assert rows(dynamodb, table) == []


# --- without the key -----------------------------------------------------------------------


@pytest.mark.parametrize("authorizer", [None, {}, AUTHORIZED, {**AUTHORIZED, "channelpattern": "nothing"}],
                         ids=["no authorizer", "empty", "principal only", "another key"])
def test_without_the_key_joins_are_not_limited(authorizer: Any, world: Any, client: Any) -> None:
    alice = client()

    reply = join(world, alice.connection_id, "anywhere", authorizer)

    assert reply["type"] == "joinSuccess" and reply["channelId"] == "anywhere"
    assert len(world.rows()) == 2


# --- fail closed ---------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["(team", "[z-a]", "team-*)", r"\q", "(" * 10_000 + ")" * 10_000],
                         ids=["unclosed group", "bad range", "unopened group", "bad escape", "absurd nesting"])
def test_a_pattern_that_is_not_a_regular_expression_refuses_every_join(
    pattern: str, world: Any, client: Any, dynamodb: Any, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    alice = client()

    with caplog.at_level(logging.ERROR, logger="channel_server"):
        assert join(world, alice.connection_id, "team", limited(pattern)) == NOT_ALLOWED
        assert join(world, alice.connection_id, "lobby", limited(pattern)) == NOT_ALLOWED

    assert rows(dynamodb, table) == []
    assert [record.getMessage() for record in caplog.records] == [UNUSABLE] * 2  # one per join


@pytest.mark.parametrize("pattern", [None, 7, 1.5, True, ["team-7"], {"pattern": "team-7"}],
                         ids=["null", "int", "float", "bool", "list", "object"])
def test_a_pattern_that_is_not_a_string_refuses_every_join(
    pattern: Any, world: Any, client: Any, dynamodb: Any, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="channel_server"):
        assert join(world, client().connection_id, "team-7", limited(pattern)) == NOT_ALLOWED

    assert rows(dynamodb, table) == []
    (record,) = caplog.records
    assert record.getMessage() == UNUSABLE and vars(record)["problem"].startswith("channelPattern must be a string")


def test_an_unusable_pattern_is_logged_once_per_join_without_the_channel(
    world: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    alice = client()

    with caplog.at_level(logging.INFO, logger="channel_server"):
        join(world, alice.connection_id, "secret-channel-42", limited("(team"))

    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    (error,) = errors
    assert vars(error)["connectionId"] == alice.connection_id  # logging extras, unknown to LogRecord's type
    assert "regular expression" in vars(error)["problem"]
    logged = " ".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "secret-channel-42" not in logged


def test_a_refused_join_by_a_valid_pattern_is_not_an_error(
    world: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="channel_server"):
        join(world, client().connection_id, "secret-channel-42", limited(TEAM_7))

    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
    logged = " ".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "secret-channel-42" not in logged


# --- the pieces ----------------------------------------------------------------------------


def test_the_event_exposes_the_authorizer_or_an_empty_mapping() -> None:
    assert WebSocketEvent({"requestContext": {"authorizer": limited("a")}}).authorizer == limited("a")
    assert WebSocketEvent({"requestContext": {}}).authorizer == {}
    assert WebSocketEvent({}).authorizer == {}
    assert WebSocketEvent({"requestContext": {"authorizer": None}}).authorizer == {}
    assert WebSocketEvent({"requestContext": {"authorizer": "principal"}}).authorizer == {}


def test_patterns_are_compiled_once_in_a_bounded_cache() -> None:
    cache = protocol._compiled_channel_pattern
    assert cache.cache_info().maxsize == protocol.CHANNEL_PATTERN_CACHE_SIZE
    pattern = r"cache-test-[0-9]+"
    protocol.channel_allowed("cache-test-1", pattern)
    hits = cache.cache_info().hits

    assert protocol.channel_allowed("cache-test-2", pattern)
    assert not protocol.channel_allowed("cache-test-x", pattern)

    assert cache.cache_info().hits == hits + 2


def test_the_reason_is_the_documented_one() -> None:
    assert protocol.CHANNEL_NOT_ALLOWED == NOT_ALLOWED["data"]
