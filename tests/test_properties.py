"""Properties of the protocol core and of the Lambda entry points, over frames
nobody would write by hand (hypothesis): random JSON of every kind, text that is
not JSON, raw bytes, wrong types in every field of every frame type, huge and
absurdly nested data, empty and whitespace frames.

Two hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE``:

- ``ci`` (the default): a few hundred examples across the file, derandomized so
  every CI run tries the same ones, no deadline. A few seconds.
- ``thorough``: about 17,600 examples across the file (at least 10,000), a
  fresh random search on each run. Every example through the entry points
  starts from the same table (:func:`start_afresh`), so each costs the same
  however many ran before it, and the run takes about two and a half minutes
  (``tasks.py test`` gives one file to one worker; 1.5 minutes with
  ``-n 2 --dist load``), measured on two busy cores::

      HYPOTHESIS_PROFILE=thorough python3 tasks.py test tests/test_properties.py

The profile is applied to this module's tests through their own settings, not
loaded globally, so other modules' hypothesis settings are left alone.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

import pytest
import hypothesis
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from channel_server.handlers import protocol, spec
from channel_server.handlers.protocol import Join, Outgoing, Ping, Publish, Reply, Rules
from support.events import FRAME_ROUTES, MESSAGE_ROUTES, new_connection_id, route_for
from support.lambda_world import answered, lambda_world
from support.frames import ANY_MESSAGE_ID, SAMPLE_MESSAGE_ID, message

# --- profiles -------------------------------------------------------------------------

_BIG_DATA_IS_THE_POINT = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=_BIG_DATA_IS_THE_POINT,
)
settings.register_profile(
    "thorough", max_examples=600, deadline=None, print_blob=True, suppress_health_check=_BIG_DATA_IS_THE_POINT,
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Pure protocol properties take microseconds: they get this many times the
#: examples of the properties that go through the entry points and DynamoDB.
PURE = 4


def examples(weight: int = 1) -> settings:
    """The selected profile, with ``weight`` times its number of examples."""
    return settings(PROFILE, max_examples=PROFILE.max_examples * weight)


# --- the documented contract (docs/protocol.md), written out ----------------------------

RULES = Rules()
SENDER_ID = "q8V0cE8cX3dKz1uQy5m2Rw"
CHANNEL_ID_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")
SERVER_FRAME_TYPES = {"joinSuccess", "joinFailure", "publishSuccess", "publishFailure", "message", "pong", "error"}
#: What a sender can get back for its own frame (a "message" only ever goes to others).
REPLY_TYPES = SERVER_FRAME_TYPES - {"message"}
NOT_JSON = "frame is not valid JSON"
OUT_OF_RANGE = "frame has a number out of range"

#: §4.1: every reason a frame can earn before anything is stored or sent.
DECODE_REASONS = {
    "error": [
        re.escape("empty frame; send a JSON object with a type"),
        re.escape(NOT_JSON),
        re.escape(OUT_OF_RANGE),
        re.escape(f"frame nests deeper than {protocol.MAX_NESTING} levels"),
        re.escape("frame must be a JSON object"),
        re.escape("frame has no type"),
        re.escape("type must be a string"),
        r"unknown type .*; expected join, publish or ping",
    ],
    "joinFailure": [
        re.escape("channelId is required"),
        re.escape("channelId must be a string"),
        re.escape("channelId must not be empty"),
        re.escape("channelId must be at most 128 characters"),
        re.escape("channelId must not start with '$' (reserved)"),
        re.escape("channelId must match [A-Za-z0-9_.:-]+"),
    ],
    "publishFailure": [re.escape("publish needs a data field")],
}


def expected_channel_problem(channel_id: Any) -> str | None:
    """§7, checked in the order §4.1 lists."""
    if channel_id is None:
        return "channelId is required"
    if not isinstance(channel_id, str):
        return "channelId must be a string"
    if channel_id == "":
        return "channelId must not be empty"
    if len(channel_id) > 128:
        return "channelId must be at most 128 characters"
    if channel_id[0] == "$":
        return "channelId must not start with '$' (reserved)"
    if not set(channel_id) <= CHANNEL_ID_CHARACTERS:
        return "channelId must match [A-Za-z0-9_.:-]+"
    return None


def expected_command(frame: dict) -> Any:
    """What §3 and §4.1 say a JSON object frame becomes."""
    kind = frame.get("type")
    if kind is None:
        return Reply({"type": "error", "data": "frame has no type"})
    if not isinstance(kind, str):
        return Reply({"type": "error", "data": "type must be a string"})
    if kind == "join":
        problem = expected_channel_problem(frame.get("channelId"))
        return Reply({"type": "joinFailure", "data": problem}) if problem else Join(frame["channelId"])
    if kind == "publish":
        if "data" not in frame:
            return Reply({"type": "publishFailure", "data": "publish needs a data field"})
        return Publish(frame["data"])
    if kind == "ping":
        return Ping(frame.get("data"), "data" in frame)
    shown = kind if len(kind) <= 40 else kind[:40] + "…"
    return Reply({"type": "error", "data": f"unknown type {shown!r}; expected join, publish or ping"})


def documented_encoding(frame: dict) -> bytes:
    """§4: compact JSON, non-ASCII as UTF-8; a lone surrogate, which UTF-8
    cannot carry, as its \\u escape (and nothing else escaped)."""
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return b"".join(
        ("\\u%04x" % ord(char)).encode("ascii") if 0xD800 <= ord(char) <= 0xDFFF else char.encode("utf-8")
        for char in text
    )


def _refuse_constant(token: str) -> Any:
    raise AssertionError(f"{token} is not JSON, yet the server sent it")


def read_wire(wire: bytes) -> dict:
    """A frame as a client reads it: strict UTF-8, strict JSON (no NaN or
    Infinity tokens), an object with a documented type."""
    assert isinstance(wire, bytes)
    frame = json.loads(wire.decode("utf-8"), parse_constant=_refuse_constant)
    assert isinstance(frame, dict) and frame.get("type") in SERVER_FRAME_TYPES, frame
    return frame


def assert_round_trips(frame: dict) -> None:
    wire = protocol.encode(frame)
    assert read_wire(wire) == frame
    assert wire == documented_encoding(frame)


# --- strategies ---------------------------------------------------------------------------

MAX_DOUBLE_INT = int(sys.float_info.max)
#: Characters that break naive code: NUL and controls, bidi and zero-width marks,
#: line separators, BOM, non-characters, emoji (and a ZWJ sequence), lone
#: surrogates of both halves, JSON's escapes.
SPECIAL_CHARACTERS = (
    "\x00\x01\x1f\x7f\x85\u200b\u200d\u200e\u200f\u202a\u202e\u2066\u2028\u2029\ufeff\ufffd\uffff"
    "😀👩\u200d💻\U0010ffff\ud800\udbff\udc00\udfff\udc80\"\\/'"
)
characters = st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL_CHARACTERS))
texts = st.text(characters, max_size=24)
integers = st.one_of(
    st.integers(),
    st.integers(-MAX_DOUBLE_INT, MAX_DOUBLE_INT),
    st.sampled_from([0, -1, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, MAX_DOUBLE_INT, -MAX_DOUBLE_INT]),
)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts)
#: Any JSON value whose numbers a client can read back (within a double's range).
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
#: Values of a few bytes to several kilobytes: either side of a message limit.
big_values = st.one_of(
    st.builds(lambda piece, count: piece * count, st.text(characters, min_size=1, max_size=3), st.integers(0, 1500)),
    st.lists(st.builds(lambda piece, count: piece * count, texts, st.integers(0, 60)), max_size=30),
)

valid_channel_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True)
channel_ids = st.one_of(
    valid_channel_ids,
    st.sampled_from(["", "$x", "$connection#Jx3uYdT9IAMCJfA=", "a" * 128, "a" * 129, "lobby\n", "café",
                     "two words", "a/b", "x$", "\ud800", "lobby\x00"]),
    texts,
    json_values,
)
frame_types = st.one_of(
    st.sampled_from(MESSAGE_ROUTES),
    st.sampled_from(["JOIN", "Publish", "pong", "message", "error", "subscribe", "", "join ", "x" * 41, "é" * 45]),
    texts,
    json_values,
)
#: Fields the server ignores.
extra_fields = st.dictionaries(texts.filter(lambda key: key not in ("type", "channelId", "data")), json_values, max_size=2)
#: Valid join, publish and ping frames, with fields the server ignores.
valid_frames = st.one_of(
    st.builds(lambda channel_id, extra: {**extra, "type": "join", "channelId": channel_id}, valid_channel_ids, extra_fields),
    st.builds(lambda data, extra: {**extra, "type": "publish", "data": data}, json_values, extra_fields),
    st.builds(lambda extra: {**extra, "type": "ping"}, extra_fields),
    st.builds(lambda data, extra: {**extra, "type": "ping", "data": data}, json_values, extra_fields),
)
#: JSON objects shaped like client frames, with anything in any field.
wild_frames = st.builds(
    lambda extra, core: {**extra, **core},
    st.dictionaries(texts, json_values, max_size=3),
    st.fixed_dictionaries({}, optional={"type": frame_types, "channelId": channel_ids, "data": json_values}),
)
frames = st.one_of(valid_frames, wild_frames)


def _dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


DEEP = 100_000
SPECIAL_BODIES = [
    None, "", " ", "\n", "\t \r\n", "\u00a0", "\ufeff", "\x00", "\ufeff{}",
    "[" * DEEP, "{" * DEEP, "]" * DEEP, '{"a":' * DEEP, "[" * DEEP + "]" * DEEP,
    '{"type":"publish","data":' + "[" * DEEP + "]" * DEEP + "}",
    '{"type":"ping","data":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    "NaN", "-Infinity", '{"type":"publish","data":NaN}', '{"type":"publish","data":-Infinity}',
    '{"type":"publish","data":1e400}', '{"type":"ping","data":[-1e999]}', '{"type":"publish","data":1e-400}',
    "null", "true", "0", '"join"', "[]", "{}", '{"type":null}', '{"type":{}}',
    '{"type":"join","channelId":"lobby"}', '{"type":"ping","type":"join","channelId":"lobby"}',
    '{"type":"ping"}{"type":"ping"}', '{"type":"ping"} trailing', "{'type':'ping'}",
    '{"type":"join","channelId":"\\ud800"}', '{"type":"ping","data":"\\udfff\\ud800"}',
    '{"type":"publish","data":"\\u0000\\u200f\\ud83d\\ude00"}', "\udc80\udcff", '{"type":"\udc80"}',
]
whitespace = st.text(st.sampled_from(" \t\r\n"), max_size=4)
#: Any text frame at all.
bodies = st.one_of(
    st.sampled_from(SPECIAL_BODIES),
    st.builds(_dumps, frames, st.booleans()),
    st.builds(lambda before, body, after: before + body + after, whitespace, st.builds(_dumps, frames, st.booleans()), whitespace),
    st.builds(_dumps, json_values, st.booleans()),
    st.builds(lambda body, cut: body[:cut], st.builds(_dumps, frames, st.booleans()), st.integers(0, 40)),
    st.text(characters, max_size=40),
    st.text(" \t\r\n\u00a0\u2028\u3000\ufeff", max_size=8),
    st.builds(lambda raw, errors: raw.decode("utf-8", errors), st.binary(max_size=48),
              st.sampled_from(["surrogateescape", "replace"])),
)


# --- decode ---------------------------------------------------------------------------------


@examples(PURE)
@given(body=bodies)
def test_decode_answers_any_text_with_one_command_or_a_documented_reply_and_never_raises(body: str | None) -> None:
    command = protocol.decode(body, RULES)

    assert type(command) in (Join, Publish, Ping, Reply)
    if isinstance(command, Reply):
        assert set(command.frame) == {"type", "data"}
        reasons = DECODE_REASONS[command.frame["type"]]
        assert any(re.fullmatch(reason, command.frame["data"], re.DOTALL) for reason in reasons), command.frame
    if isinstance(command, Join):
        assert expected_channel_problem(command.channel_id) is None
    assert protocol.decode(body, RULES) == command


@examples(PURE)
@given(frame=frames, ascii_only=st.booleans())
def test_decode_follows_the_documented_rules_for_any_value_in_any_field(frame: dict, ascii_only: bool) -> None:
    body = json.dumps(frame, ensure_ascii=ascii_only)

    assert protocol.decode(body, RULES) == expected_command(frame)


out_of_range_floats = st.builds(
    lambda sign, literal: sign + literal,
    st.sampled_from(["", "-"]),
    st.one_of(
        st.builds("{}e{}".format, st.integers(1, 9), st.integers(309, 10**6)),
        st.builds("{}.{}e+{}".format, st.integers(2, 9), st.integers(0, 99), st.integers(308, 400)),
        st.integers(309, 2000).map(lambda zeros: "1" + "0" * zeros + ".5"),
    ),
)
out_of_range_integers = st.builds(
    lambda sign, lead, zeros: sign + lead + "0" * zeros,
    st.sampled_from(["", "-"]),
    st.sampled_from("123456789"),
    st.integers(309, 6000),
)
in_frames = st.sampled_from([
    '{{"type":"publish","data":{}}}', '{{"type":"ping","data":[1,{}]}}', '{{"type":"publish","data":{{"n":{}}}}}',
])


@examples(PURE)
@given(literal=out_of_range_floats, template=in_frames)
def test_a_number_beyond_a_double_with_a_fraction_or_exponent_is_refused_as_out_of_range(
    literal: str, template: str
) -> None:
    assert protocol.decode(template.format(literal), RULES) == Reply({"type": "error", "data": OUT_OF_RANGE})


@examples(PURE)
@given(literal=out_of_range_integers, template=in_frames)
def test_an_integer_beyond_a_double_is_refused_as_out_of_range_as_documented(literal: str, template: str) -> None:
    # docs/protocol.md §4.1: "a number too large for a double, such as 1e400:
    # valid JSON, but no client could read it back"
    assert protocol.decode(template.format(literal), RULES) == Reply({"type": "error", "data": OUT_OF_RANGE})


# --- what goes on the wire --------------------------------------------------------------------


@examples(PURE)
@given(body=bodies, delivered=st.integers(0, 10**6), failed=st.integers(1, 10**6), channel_id=valid_channel_ids)
def test_every_frame_the_server_can_send_is_utf8_json_that_reads_back_equal(
    body: str | None, delivered: int, failed: int, channel_id: str
) -> None:
    command = protocol.decode(body, RULES)
    sent = [protocol.publish_success(), protocol.publish_partial_failure(delivered, failed)]
    if isinstance(command, Reply):
        sent.append(command.frame)
    elif isinstance(command, Ping):
        sent.append(protocol.pong(command))
    elif isinstance(command, Join):
        sent.append(protocol.join_success(command.channel_id, protocol.new_sender_id()))
    else:
        assert isinstance(command, Publish)  # RULES has presence off: no members request
        outgoing = protocol.prepare_message(channel_id, SENDER_ID, command.data, RULES)
        if outgoing.failure is not None:
            sent.append(outgoing.failure)
        else:
            assert outgoing.payload is not None
            assert read_wire(outgoing.payload) == message(channel_id, SENDER_ID, command.data)

    for frame in sent:
        assert_round_trips(frame)


@examples(PURE)
@given(data=st.one_of(json_values, big_values), limit=st.integers(60, 4000), channel_id=valid_channel_ids)
def test_a_message_goes_out_exactly_when_its_encoding_fits_the_limit(data: Any, limit: int, channel_id: str) -> None:
    wire = documented_encoding(protocol.message(channel_id, SENDER_ID, data, SAMPLE_MESSAGE_ID))
    note(f"{len(wire)} bytes against a limit of {limit}")

    outgoing = protocol.prepare_message(channel_id, SENDER_ID, data, Rules(max_message_bytes=limit),
                                        message_id=SAMPLE_MESSAGE_ID)

    if len(wire) <= limit:
        assert outgoing == Outgoing(wire, None, SAMPLE_MESSAGE_ID)
    else:
        assert outgoing == Outgoing(
            None, {"type": "publishFailure", "data": f"message too large: {len(wire)} bytes encoded, the limit is {limit}"}
        )


# --- through the Lambda entry points ------------------------------------------------------------

SMALL_LIMIT = 600
CHANNEL = "props"


@pytest.fixture(scope="module")
def world(dynamodb: Any, table_definition: Any) -> Any:
    """Entry points with a 600-byte message limit, and two resident members of
    "props": ``speaker`` publishes, ``listener`` hears. Each example starts
    with :func:`start_afresh`."""
    with lambda_world(dynamodb, table_definition, env={spec.ENV_MAX_MESSAGE_BYTES: str(SMALL_LIMIT)}) as world:
        yield settled(world)


@pytest.fixture(scope="module")
def roomy_world(dynamodb: Any, table_definition: Any) -> Any:
    """The same with the default limit (API Gateway's 128 KiB)."""
    with lambda_world(dynamodb, table_definition) as world:
        yield settled(world)


def settled(world: Any) -> Any:
    """``world`` with its residents: ``speaker`` and ``listener`` joined to
    "props", and a connection that joined and left (its tombstone), so the rows
    every example must leave alone are of every kind. What the table then holds
    is the state each example starts from (:func:`start_afresh`)."""
    world.speaker, world.listener = new_connection_id(), new_connection_id()
    world.speaker_id = world.join(world.speaker, CHANNEL)
    world.listener_id = world.join(world.listener, CHANNEL)
    departed = new_connection_id()
    world.join(departed, CHANNEL)
    world.disconnect(departed)
    world.settled_items = _items(world)
    world.management.clear()
    return world


def start_afresh(world: Any) -> None:
    """Put the table back to the rows :func:`settled` left, exactly, and forget
    what was sent. Every example starts from that one state, however the ones
    before it ended (shrinking replays failing examples): none reads rows an
    earlier one left, so an example costs the same whether it is the first or
    the 10,000th. (When every example left a tombstone, each scan read all of
    them: a join example took 0.1 s at first and 1.1 s after 600, and the
    worker's memory grew with it.)"""
    wanted = {_item_key(item): item for item in world.settled_items}
    present = {_item_key(item): item for item in _items(world)}
    requests = [{"DeleteRequest": {"Key": {name: {"S": value} for name, value in key}}}
                for key in present.keys() - wanted.keys()] + [
        {"PutRequest": {"Item": item}} for key, item in wanted.items() if present.get(key) != item
    ]
    for start in range(0, len(requests), 25):  # BatchWriteItem's limit
        answer = world.dynamodb.batch_write_item(RequestItems={world.table: requests[start:start + 25]})
        assert not answer.get("UnprocessedItems"), answer["UnprocessedItems"]
    world.management.clear()


def _items(world: Any) -> list[dict]:
    """Every item of the world's table, as DynamoDB returns them."""
    items: list[dict] = []
    kwargs: dict[str, Any] = {"TableName": world.table, "ConsistentRead": True}
    while True:
        page = world.dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _item_key(item: dict) -> tuple:
    return tuple((name, item[name]["S"]) for name in (spec.CONNECTION_ID, spec.CHANNEL_ID))


def others_rows(rows: list[dict], connection_id: str) -> list[dict]:
    return [row for row in rows if row["connectionId"] != connection_id]


def joined_rows(connection_id: str, channel_id: str, sender_id: str, version: int, expires_at: int) -> list[dict]:
    """The two rows a connection joined to ``channel_id`` has (store.py's layout)."""
    return sorted(
        [
            {"connectionId": connection_id, "channelId": spec.STATE_ROW_PREFIX + connection_id,
             "currentChannel": channel_id, "senderId": sender_id, "version": version, "expiresAt": expires_at},
            {"connectionId": connection_id, "channelId": channel_id, "senderId": sender_id, "expiresAt": expires_at},
        ],
        key=lambda row: row["channelId"],
    )


frames_on_the_wire = st.one_of(
    bodies.map(lambda body: ("text", body)),
    st.binary(max_size=48).map(lambda raw: ("base64", raw)),
)


#: Mostly the route API Gateway would pick; sometimes another route, as for an
#: API that lacks the frame's route.
routes = st.sampled_from([None, None, None, None, *FRAME_ROUTES])


@examples(2)
@given(sent=frames_on_the_wire, chosen=routes, joined=st.booleans())
def test_every_frame_gets_one_reply_and_a_200_and_only_a_valid_join_changes_the_table(
    world: Any, sent: tuple[str, Any], chosen: str | None, joined: bool
) -> None:
    # GIVEN the residents only, and a new connection, joined to their channel or not
    start_afresh(world)
    connection_id = new_connection_id()
    sender_id = world.join(connection_id, CHANNEL) if joined else None
    world.management.clear()
    before = world.rows()
    encoding, payload = sent
    body = payload if encoding == "text" else None
    decoded_body = payload if encoding == "text" else _utf8_or_none(payload)
    route = chosen or (route_for(body) if encoding == "text" else "$default")
    note(f"through {route}, body {decoded_body!r:.200}")

    try:
        # WHEN it sends the frame (through the route API Gateway picks, or another)
        result = world.send(connection_id, body, route=route, base64_body=payload if encoding == "base64" else None)

        # THEN one reply, to the sender, with a documented type: the function's
        # answer (a 200 with the reply as its body), never a post
        assert [attempt for attempt in world.management.attempts if attempt[0] == connection_id] == []
        (wire,) = world.management.bodies(connection_id)
        assert result == answered(wire)
        reply_type = read_wire(wire)["type"]
        assert reply_type in REPLY_TYPES
        hypothesis.event(f"{route}, {'joined' if joined else 'not joined'}: {reply_type}")
        # anything else posted is this connection's message to the residents
        for recipient, other in world.management.posts:
            if recipient != connection_id:
                assert joined and recipient in (world.speaker, world.listener)
                message = read_wire(other)
                assert (message["type"], message["channelId"], message["senderId"]) == ("message", CHANNEL, sender_id)
        # only a valid join, on the join route, writes; and only this connection's rows
        after = world.rows()
        command = protocol.decode(decoded_body, world.app.rules)
        if route == "join" and isinstance(command, Join):
            assert others_rows(after, connection_id) == others_rows(before, connection_id)
            assert {row["channelId"] for row in after if row["connectionId"] == connection_id} == {
                spec.STATE_ROW_PREFIX + connection_id, command.channel_id,
            }
        else:
            assert after == before
    finally:
        world.disconnect(connection_id)


def _utf8_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


@examples()
@given(
    channel_id=valid_channel_ids,
    earlier=st.sampled_from(["none", "same channel", "other channel"]),
    extra=st.dictionaries(texts.filter(lambda key: key not in ("type", "channelId")), json_values, max_size=3),
    ascii_only=st.booleans(),
)
def test_a_valid_join_rewrites_exactly_that_connections_rows(
    world: Any, channel_id: str, earlier: str, extra: dict, ascii_only: bool
) -> None:
    start_afresh(world)
    connection_id = new_connection_id()
    untouched = world.rows()
    version = 0
    if earlier != "none":
        other = channel_id[:-1] + ("b" if channel_id[-1] == "a" else "a")
        world.join(connection_id, channel_id if earlier == "same channel" else other)
        version = 1
    world.management.clear()
    before = world.rows()
    started = int(time.time())

    result = world.send(connection_id, json.dumps({**extra, "type": "join", "channelId": channel_id}, ensure_ascii=ascii_only))

    finished = int(time.time())
    assert result == answered(world.management.bodies(connection_id)[-1])
    (reply,) = world.management.frames(connection_id)
    assert reply == {"type": "joinSuccess", "channelId": channel_id, "senderId": reply["senderId"]}
    after = world.rows()
    assert others_rows(after, connection_id) == others_rows(before, connection_id)
    mine = [row for row in after if row["connectionId"] == connection_id]
    expires_at = mine[0]["expiresAt"]
    assert started + spec.ROW_TTL_SECONDS <= expires_at <= finished + spec.ROW_TTL_SECONDS
    assert mine == joined_rows(connection_id, channel_id, reply["senderId"], version + 1, expires_at)

    world.disconnect(connection_id)
    assert [row for row in world.rows() if row["connectionId"] != connection_id] == untouched
    assert [row["channelId"] for row in world.rows() if row["connectionId"] == connection_id] == [
        spec.STATE_ROW_PREFIX + connection_id  # its tombstone
    ]


@examples()
@given(data=st.one_of(json_values, big_values), ascii_only=st.booleans())
def test_published_data_reaches_the_other_member_exactly_or_nobody_when_too_large(
    world: Any, data: Any, ascii_only: bool
) -> None:
    start_afresh(world)
    message = {"type": "message", "channelId": CHANNEL, "senderId": world.speaker_id, "messageId": SAMPLE_MESSAGE_ID,
               "data": data}
    size = len(documented_encoding(message))  # every message id is as long
    message["messageId"] = ANY_MESSAGE_ID
    note(f"message of {size} bytes, limit {SMALL_LIMIT}")

    result = world.send(world.speaker, json.dumps({"type": "publish", "data": data}, ensure_ascii=ascii_only))

    assert result == answered(world.management.bodies(world.speaker)[-1])
    if size <= SMALL_LIMIT:
        (received,) = world.management.bodies(world.listener)
        assert read_wire(received) == message
        assert json.loads(received)["data"] == data
        assert world.management.frames(world.speaker) == [{"type": "publishSuccess"}]
    else:
        assert world.management.attempts == []
        assert world.management.frames(world.speaker) == [
            {"type": "publishFailure", "data": f"message too large: {size} bytes encoded, the limit is {SMALL_LIMIT}"}
        ]


@examples()
@given(piece=st.sampled_from(["x", "é", "€", "😀", "\u2028", "\\", "\x00", "\ud800"]), offset=st.integers(-12, 12))
def test_a_publish_is_delivered_up_to_128_kib_and_refused_whole_beyond(roomy_world: Any, piece: str, offset: int) -> None:
    world = roomy_world
    limit = protocol.API_GATEWAY_MAX_MESSAGE_BYTES
    empty = {"type": "message", "channelId": CHANNEL, "senderId": world.speaker_id, "messageId": SAMPLE_MESSAGE_ID,
             "data": ""}
    per_piece = len(documented_encoding({**empty, "data": piece * 2})) - len(documented_encoding({**empty, "data": piece}))
    data = piece * ((limit - len(documented_encoding(empty))) // per_piece + offset)
    size = len(documented_encoding({**empty, "data": data}))
    start_afresh(world)

    world.send(world.speaker, json.dumps({"type": "publish", "data": data}))

    if size <= limit:
        (received,) = world.management.bodies(world.listener)
        assert json.loads(received)["data"] == data
        assert world.management.frames(world.speaker) == [{"type": "publishSuccess"}]
    else:
        assert world.management.attempts == []
        assert world.management.frames(world.speaker) == [
            {"type": "publishFailure", "data": f"message too large: {size} bytes encoded, the limit is {limit}"}
        ]


def nested(shape: str, depth: int) -> str:
    return "[" * depth + "]" * depth if shape == "list" else '{"a":' * depth + "0" + "}" * depth


#: The frame's own object is one level, so data may nest MAX_NESTING - 1 deep;
#: the deep cases reach far beyond Python's recursion limit too.
NESTED_TOO_DEEP = {"type": "error", "data": f"frame nests deeper than {protocol.MAX_NESTING} levels"}


@examples()
@given(
    depth=st.one_of(st.integers(1, protocol.MAX_NESTING - 1), st.integers(protocol.MAX_NESTING, 30_000)),
    kind=st.sampled_from(["publish", "ping"]),
    shape=st.sampled_from(["list", "object"]),
)
def test_nested_data_round_trips_and_nesting_beyond_the_recursion_limit_is_refused(
    roomy_world: Any, depth: int, kind: str, shape: str
) -> None:
    world = roomy_world
    data_text = nested(shape, depth)
    start_afresh(world)
    rows = world.rows()

    result = world.send(world.speaker, '{"type":"%s","data":%s}' % (kind, data_text))

    assert result == answered(world.management.bodies(world.speaker)[-1])
    (reply,) = world.management.frames(world.speaker)
    if depth < protocol.MAX_NESTING:
        data = json.loads(data_text)
        if kind == "ping":
            assert reply == {"type": "pong", "data": data}
        else:
            assert reply == {"type": "publishSuccess"}
            assert world.management.frames(world.listener) == [
                {"type": "message", "channelId": CHANNEL, "senderId": world.speaker_id, "messageId": ANY_MESSAGE_ID,
                 "data": data}
            ]
    else:
        assert reply == NESTED_TOO_DEEP
        assert world.management.attempts == []
    assert world.rows() == rows


def test_nesting_up_to_the_limit_round_trips_and_one_level_more_is_refused(roomy_world: Any) -> None:
    world = roomy_world
    for depth in (protocol.MAX_NESTING - 2, protocol.MAX_NESTING - 1, protocol.MAX_NESTING, protocol.MAX_NESTING + 1):
        for kind in ("ping", "publish"):
            world.management.clear()
            result = world.send(world.speaker, '{"type":"%s","data":%s}' % (kind, nested("list", depth)))
            replies = world.management.frames(world.speaker)
            if depth < protocol.MAX_NESTING:
                expected = (
                    [{"type": "pong", "data": json.loads(nested("list", depth))}]
                    if kind == "ping"
                    else [{"type": "publishSuccess"}]
                )
            else:
                expected = [NESTED_TOO_DEEP]
            assert (result, replies) == (answered(world.management.bodies(world.speaker)[-1]), expected), (kind, depth)
