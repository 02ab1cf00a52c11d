"""The protocol core with plain values: every frame a client can send, every
reply it can earn, and the bytes the server puts on the wire."""

from __future__ import annotations

import base64
import json
import time

import pytest

from channel_server.handlers import protocol
from channel_server.handlers.protocol import Join, Ping, Publish, Reply, Rules
from support.frames import SAMPLE_MESSAGE_ID

RULES = Rules()


def error(reason: str) -> Reply:
    return Reply({"type": "error", "data": reason})


def join_failure(reason: str) -> Reply:
    return Reply({"type": "joinFailure", "data": reason})


# --- decode: commands ------------------------------------------------------------


@pytest.mark.parametrize(
    "body, command",
    [
        ('{"type":"join","channelId":"lobby"}', Join("lobby")),
        ('{"type":"join","channelId":"room-1_a.b:c"}', Join("room-1_a.b:c")),
        ('{"channelId":"lobby","type":"join","extra":true}', Join("lobby")),
        (' \n{"type": "join", "channelId": "lobby"}\t', Join("lobby")),
        ('{"type":"publish","data":"hello"}', Publish("hello")),
        ('{"type":"publish","data":null}', Publish(None)),
        ('{"type":"publish","data":0}', Publish(0)),
        ('{"type":"publish","data":""}', Publish("")),
        ('{"type":"publish","data":{"a":[1,2.5,{"b":false}]}}', Publish({"a": [1, 2.5, {"b": False}]})),
        ('{"type":"publish","data":"h\u00e9llo \u2713 \U0001f600"}', Publish("héllo ✓ 😀")),
        ('{"type":"ping"}', Ping(None, False)),
        ('{"type":"ping","data":null}', Ping(None, True)),
        ('{"type":"ping","data":{"t":1}}', Ping({"t": 1}, True)),
    ],
)
def test_decode_turns_valid_frames_into_commands(body: str, command: object) -> None:
    assert protocol.decode(body, RULES) == command


# --- decode: failures ----------------------------------------------------------------

LONG_TYPE = "x" * 41


@pytest.mark.parametrize(
    "body, reply",
    [
        (None, error("empty frame; send a JSON object with a type")),
        ("", error("empty frame; send a JSON object with a type")),
        ("hello", error("frame is not valid JSON")),
        ('{"type":"join"', error("frame is not valid JSON")),
        ("{'type':'ping'}", error("frame is not valid JSON")),
        ("[1,2]", error("frame must be a JSON object")),
        ('"ping"', error("frame must be a JSON object")),
        ("null", error("frame must be a JSON object")),
        ("42", error("frame must be a JSON object")),
        ("{}", error("frame has no type")),
        ('{"type":null}', error("frame has no type")),
        ('{"data":"x"}', error("frame has no type")),
        ('{"type":5}', error("type must be a string")),
        ('{"type":true}', error("type must be a string")),
        ('{"type":["join"]}', error("type must be a string")),
        ('{"type":{"join":1}}', error("type must be a string")),
        ('{"type":"subscribe"}', error("unknown type 'subscribe'; expected join, publish or ping")),
        ('{"type":"JOIN","channelId":"lobby"}', error("unknown type 'JOIN'; expected join, publish or ping")),
        ('{"type":""}', error("unknown type ''; expected join, publish or ping")),
        (
            json.dumps({"type": LONG_TYPE}),
            error(f"unknown type {'x' * 40 + '…'!r}; expected join, publish or ping"),
        ),
        ('{"type":"publish"}', Reply({"type": "publishFailure", "data": "publish needs a data field"})),
        ('{"type":"join"}', join_failure("channelId is required")),
        ('{"type":"join","channelId":null}', join_failure("channelId is required")),
        ('{"type":"join","channelId":7}', join_failure("channelId must be a string")),
        ('{"type":"join","channelId":["lobby"]}', join_failure("channelId must be a string")),
        ('{"type":"join","channelId":""}', join_failure("channelId must not be empty")),
        ('{"type":"join","channelId":"$x"}', join_failure("channelId must not start with '$' (reserved)")),
        (
            '{"type":"join","channelId":"$connection#Jx3uYdT9IAMCJfA="}',
            join_failure("channelId must not start with '$' (reserved)"),
        ),
        ('{"type":"join","channelId":"two words"}', join_failure("channelId must match [A-Za-z0-9_.:-]+")),
        ('{"type":"join","channelId":"a/b"}', join_failure("channelId must match [A-Za-z0-9_.:-]+")),
        ('{"type":"join","channelId":"lobby\\n"}', join_failure("channelId must match [A-Za-z0-9_.:-]+")),
        ('{"type":"join","channelId":"caf\u00e9"}', join_failure("channelId must match [A-Za-z0-9_.:-]+")),
    ],
)
def test_decode_answers_bad_frames_with_the_exact_reply(body: str | None, reply: Reply) -> None:
    assert protocol.decode(body, RULES) == reply


def test_decode_answers_absurdly_nested_frames_instead_of_raising() -> None:
    body = '{"type":"publish","data":' + "[" * 100_000 + "]" * 100_000 + "}"

    assert protocol.decode(body, RULES) == error("frame nests deeper than 64 levels")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[{" * 1_000 + '"' + "[" * 100  # an escaped quote must not end the string early
    body = json.dumps({"type": "ping", "data": text})

    assert protocol.decode(body, RULES) == protocol.Ping(text, True)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_decode_refuses_non_json_number_tokens(token: str) -> None:
    body = '{"type":"publish","data":' + token + "}"

    assert protocol.decode(body, RULES) == error("frame is not valid JSON")


# --- channel ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel_id, problem",
    [
        ("a" * 128, None),
        ("a" * 129, "channelId must be at most 128 characters"),
        ("$" + "a" * 128, "channelId must be at most 128 characters"),
        ("a", None),
        ("A-z_0.9:", None),
        ("$x", "channelId must not start with '$' (reserved)"),
        ("x$", "channelId must match [A-Za-z0-9_.:-]+"),
    ],
)
def test_channel_ids_are_checked_by_length_prefix_and_pattern(channel_id: str, problem: str | None) -> None:
    assert RULES.channel_id_problem(channel_id) == problem


@pytest.mark.parametrize(
    "channel_id, problem",
    [
        ("room-7", None),
        ("room-1234", None),
        ("room-x", "channelId must match room-[0-9]+"),
        ("lobby", "channelId must match room-[0-9]+"),
        ("room-7-extra", "channelId must match room-[0-9]+"),
        ("xroom-7", "channelId must match room-[0-9]+"),
    ],
)
def test_a_custom_pattern_must_match_the_whole_channel_id(channel_id: str, problem: str | None) -> None:
    rules = Rules(channel_id_pattern="room-[0-9]+")

    assert rules.channel_id_problem(channel_id) == problem
    expected = Join(channel_id) if problem is None else join_failure(problem)
    assert protocol.decode(json.dumps({"type": "join", "channelId": channel_id}), rules) == expected


def test_a_custom_pattern_cannot_let_reserved_channel_ids_through() -> None:
    rules = Rules(channel_id_pattern=".*")

    assert rules.channel_id_problem("anything goes") is None
    assert rules.channel_id_problem("$connection#abc") == "channelId must not start with '$' (reserved)"


# --- replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, frame",
    [
        ('{"type":"ping"}', {"type": "pong"}),
        ('{"type":"ping","data":null}', {"type": "pong", "data": None}),
        ('{"type":"ping","data":17}', {"type": "pong", "data": 17}),
        ('{"type":"ping","data":{"nested":["x",1.5,true]}}', {"type": "pong", "data": {"nested": ["x", 1.5, True]}}),
    ],
)
def test_pong_echoes_ping_data_and_has_no_data_key_when_none_was_sent(body: str, frame: dict) -> None:
    ping = protocol.decode(body, RULES)

    assert isinstance(ping, Ping)
    assert protocol.pong(ping) == frame
    assert list(protocol.pong(ping)) == list(frame)


@pytest.mark.parametrize(
    "built, frame",
    [
        (protocol.join_success("lobby", "s1"), {"type": "joinSuccess", "channelId": "lobby", "senderId": "s1"}),
        (protocol.join_failure("why"), {"type": "joinFailure", "data": "why"}),
        (protocol.message("c", "s1", [1], "m1"),
         {"type": "message", "channelId": "c", "senderId": "s1", "messageId": "m1", "data": [1]}),
        (protocol.message("c", "s1", None, "m1"),
         {"type": "message", "channelId": "c", "senderId": "s1", "messageId": "m1", "data": None}),
        (protocol.publish_success(), {"type": "publishSuccess"}),
        (protocol.publish_failure("why"), {"type": "publishFailure", "data": "why"}),
        (
            protocol.publish_partial_failure(3, 2),
            {"type": "publishFailure", "data": "could not deliver to 2 of 5 members; the others received the message",
             "delivered": 3, "failed": 2},
        ),
        (protocol.error("why"), {"type": "error", "data": "why"}),
    ],
)
def test_reply_builders_make_exactly_the_documented_frames(built: dict, frame: dict) -> None:
    assert built == frame


def test_not_in_a_channel_reason_is_exact() -> None:
    assert protocol.NOT_IN_CHANNEL == "not in a channel; send a join first"


def test_encode_is_compact_utf8_json_in_frame_order() -> None:
    frame = protocol.message("c", "s1", {"text": "héllo ✓ 😀", "n": [1, 2.5, None, True]}, "m1")

    assert protocol.encode(frame) == (
        '{"type":"message","channelId":"c","senderId":"s1","messageId":"m1","data":{"text":"héllo ✓ 😀",'
        '"n":[1,2.5,null,true]}}'.encode("utf-8")
    )


# --- prepare_message -----------------------------------------------------------------------

SENDER = "q8V0cE8cX3dKz1uQy5m2Rw"
CHANNEL = "lobby"
EMPTY_MESSAGE_BYTES = len(protocol.encode(protocol.message(CHANNEL, SENDER, "", SAMPLE_MESSAGE_ID)))


@pytest.mark.parametrize("data", [float("nan"), float("inf"), float("-inf"), [1e400]])
def test_prepare_message_refuses_numbers_json_cannot_carry(data: object) -> None:
    assert protocol.prepare_message(CHANNEL, SENDER, data, RULES) == protocol.Outgoing(
        None, {"type": "publishFailure", "data": "data cannot be encoded as JSON"}
    )


def test_prepare_message_encodes_the_message_once() -> None:
    outgoing = protocol.prepare_message(CHANNEL, SENDER, {"a": "ü"}, RULES, message_id=SAMPLE_MESSAGE_ID)

    assert outgoing == protocol.Outgoing(
        protocol.encode(protocol.message(CHANNEL, SENDER, {"a": "ü"}, SAMPLE_MESSAGE_ID)), None, SAMPLE_MESSAGE_ID)


def test_each_publish_gets_a_time_ordered_message_id_of_its_own() -> None:
    first = protocol.prepare_message(CHANNEL, SENDER, 1, RULES).message_id
    second = protocol.prepare_message(CHANNEL, SENDER, 1, RULES).message_id

    assert first is not None and second is not None
    assert protocol.MESSAGE_ID.fullmatch(first) and protocol.MESSAGE_ID.fullmatch(second) and first != second
    assert protocol.new_message_id(1.0) < protocol.new_message_id(1.5) < protocol.new_message_id(2.0)
    assert protocol.new_message_id(1_733_600_000.123).startswith(f"{1_733_600_000_123:012x}-")


@pytest.mark.parametrize(
    "data",
    [
        "x" * 10,  # 10 bytes
        "é" * 5,  # 5 characters, 10 bytes
    ],
)
def test_prepare_message_accepts_a_message_exactly_at_the_limit(data: str) -> None:
    rules = Rules(max_message_bytes=EMPTY_MESSAGE_BYTES + 10)

    outgoing = protocol.prepare_message(CHANNEL, SENDER, data, rules)

    assert outgoing.failure is None
    assert outgoing.payload is not None and len(outgoing.payload) == rules.max_message_bytes


@pytest.mark.parametrize(
    "data",
    [
        "x" * 11,
        "é" * 5 + "x",  # 6 characters, 11 bytes: the limit counts bytes
    ],
)
def test_prepare_message_refuses_a_message_one_byte_over_the_limit(data: str) -> None:
    limit = EMPTY_MESSAGE_BYTES + 10

    outgoing = protocol.prepare_message(CHANNEL, SENDER, data, Rules(max_message_bytes=limit))

    assert outgoing == protocol.Outgoing(
        None,
        {"type": "publishFailure", "data": f"message too large: {limit + 1} bytes encoded, the limit is {limit}"},
    )


def test_the_default_limit_is_api_gateways_128_kib() -> None:
    assert Rules().max_message_bytes == 128 * 1024
    at_limit = "x" * (128 * 1024 - EMPTY_MESSAGE_BYTES)

    assert protocol.prepare_message(CHANNEL, SENDER, at_limit, Rules()).failure is None
    assert protocol.prepare_message(CHANNEL, SENDER, at_limit + "x", Rules()).failure == {
        "type": "publishFailure",
        "data": f"message too large: {128 * 1024 + 1} bytes encoded, the limit is {128 * 1024}",
    }


# --- recipients ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members, sender, expected",
    [
        (["a", "b", "c"], "b", ["a", "c"]),
        (["c", "a", "c", "b", "a"], "b", ["a", "c"]),
        (["b", "b"], "b", []),
        (["c", "a"], "z", ["a", "c"]),
        ([], "b", []),
    ],
)
def test_recipients_are_every_other_member_once(members: list[str], sender: str, expected: list[str]) -> None:
    assert protocol.recipients(members, sender) == expected


# --- sender ids ----------------------------------------------------------------------------


def test_sender_ids_carry_at_least_128_random_bits() -> None:
    sender_id = protocol.new_sender_id()

    assert len(sender_id) >= 22  # 128 bits in url-safe base64
    assert len(base64.urlsafe_b64decode(sender_id + "=" * (-len(sender_id) % 4))) >= 16


def test_sender_ids_are_distinct() -> None:
    ids = {protocol.new_sender_id() for _ in range(10_000)}

    assert len(ids) == 10_000


def test_decode_refuses_numbers_no_client_could_read_back() -> None:
    assert protocol.decode('{"type":"publish","data":1e400}', RULES) == error("frame has a number out of range")


def test_the_frame_types_the_core_knows_are_exactly_the_apis_message_routes() -> None:
    # one fact in two places (the protocol's types, the component's routes): keep them equal
    from support.events import MESSAGE_ROUTES

    assert set(MESSAGE_ROUTES) == {protocol.JOIN, protocol.PUBLISH, protocol.PING}


# --- the cost of a frame -----------------------------------------------------------------

#: Frames built to make a decoder do more than linear work, by size in characters:
#: what a client can send to burn a function's time.
ADVERSARIAL = {
    # every quote after the first starts a string that never closes
    "escaped-quotes": lambda n: "[" * 65 + '"' + '\\"' * (n // 2),
    "unclosed-string": lambda n: "[" * 65 + '"' + "x" * n,
    "many-strings": lambda n: '{"type":"ping","data":[' + '"a\\"",' * (n // 6) + "0]}",
    "long-string": lambda n: '{"type":"ping","data":"' + "x" * n + '"}',
    "deep-nesting": lambda n: "[" * n + "]" * n,
    "brackets-in-strings": lambda n: '{"type":"ping","data":"' + "[{" * (n // 2) + '"}',
    "huge-integer": lambda n: '{"type":"ping","data":' + "9" * n + "}",
    "many-numbers": lambda n: '{"type":"ping","data":[' + "1e300," * (n // 6) + "0]}",
}


def _decode_cost(body: str) -> float:
    """CPU seconds to decode ``body``: the least of a few runs, so a busy
    machine's interruptions do not count."""
    costs = []
    for _ in range(5):
        started = time.process_time()
        protocol.decode(body, RULES)
        costs.append(time.process_time() - started)
    return min(costs)


@pytest.mark.parametrize("build", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_decoding_costs_work_in_proportion_to_the_frames_size(build) -> None:
    # 8 times the size must cost about 8 times the work, not 64 times (quadratic):
    # measured in CPU time as a ratio of the same code on the same machine, with
    # slack for noise; below a millisecond nothing quadratic can hide at 128 KB
    small, large = build(16 * 1024), build(128 * 1024)
    small_cost, large_cost = _decode_cost(small), _decode_cost(large)

    assert large_cost < max(24 * small_cost, 0.001), (
        f"decoding {len(large)} characters cost {large_cost * 1000:.1f} ms, "
        f"{len(small)} cost {small_cost * 1000:.2f} ms: not linear"
    )


# --- replies that could not be delivered ----------------------------------------------------


def test_a_lone_surrogate_is_escaped_alone_and_the_rest_stays_utf8() -> None:
    frame = {"type": "pong", "data": "\ud800 héllo 😀"}

    wire = protocol.encode(frame)

    assert wire == '{"type":"pong","data":"\\ud800 héllo 😀"}'.encode()
    assert json.loads(wire) == frame


def test_a_reply_over_api_gateways_limit_becomes_an_error_that_says_so() -> None:
    # 26,000 numbers of 5 characters (130 KB of frame) re-encode as 18 characters each
    data = [1e15] * 26_000
    grown = len(protocol.encode({"type": "pong", "data": data}))

    wire = protocol.encode_reply(protocol.pong(protocol.Ping(data, True)))

    assert json.loads(wire) == protocol.error(
        f"reply too large: pong would be {grown} bytes encoded, the limit is {protocol.API_GATEWAY_MAX_MESSAGE_BYTES}"
    )
    small = protocol.pong(protocol.Ping([1e15] * 10, True))
    assert protocol.encode_reply(small) == protocol.encode(small)
