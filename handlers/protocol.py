"""The wire protocol, without I/O (docs/protocol.md is the contract).

Frames from clients are decoded into commands (:class:`Join`, :class:`Publish`,
:class:`Ping`) or into an immediate reply (an error or a joinFailure). Replies
and outgoing messages are built here and nowhere else, so the exact bytes a
client sees are defined in one module that is tested with plain values.

Nothing here imports boto3 or touches the network; the Lambda entry points
(``app``) and local mode drive it.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from functools import lru_cache
from itertools import accumulate
from dataclasses import dataclass
from typing import Any, Union

from . import spec

#: API Gateway's limit on one WebSocket message, in either direction.
API_GATEWAY_MAX_MESSAGE_BYTES = 128 * 1024
#: API Gateway's limit on one WebSocket frame: a longer client message must be
#: sent as several frames (a fragmented message).
API_GATEWAY_MAX_FRAME_BYTES = 32 * 1024
#: API Gateway closes a connection that has seen no message in either
#: direction for this long.
API_GATEWAY_IDLE_TIMEOUT_SECONDS = 10 * 60
MAX_CHANNEL_ID_LENGTH = 128
#: Deepest nesting of arrays and objects a frame may have (the frame's own
#: object counts as one level). Deeper frames are refused before parsing, so
#: neither decoding nor encoding a reply can run out of stack.
MAX_NESTING = 64
DEFAULT_CHANNEL_ID_PATTERN = r"[A-Za-z0-9_.:-]+"

# Client frame types that have a route of their own (their route keys).
JOIN, PUBLISH, PING = spec.JOIN, spec.PUBLISH, spec.PING


@dataclass(frozen=True)
class Rules:
    """Deployment-specific limits: which channel ids are allowed, how big an
    outgoing message may be."""

    channel_id_pattern: str = DEFAULT_CHANNEL_ID_PATTERN
    max_message_bytes: int = API_GATEWAY_MAX_MESSAGE_BYTES
    #: presence (§12 of docs/protocol.md): members listed per channel; 0 is off
    presence_max_members: int = 0

    def __post_init__(self) -> None:
        # Compile once; a bad pattern is caught by the component at deploy time,
        # this is the last line of defence.
        object.__setattr__(self, "_pattern", re.compile(self.channel_id_pattern))

    def channel_id_problem(self, channel_id: Any) -> str | None:
        """Why ``channel_id`` is not usable, or None when it is."""
        if channel_id is None:
            return "channelId is required"
        if not isinstance(channel_id, str):
            return "channelId must be a string"
        if not channel_id:
            return "channelId must not be empty"
        if len(channel_id) > MAX_CHANNEL_ID_LENGTH:
            return f"channelId must be at most {MAX_CHANNEL_ID_LENGTH} characters"
        if channel_id.startswith(spec.STATE_ROW_PREFIX[0]):
            return f"channelId must not start with {spec.STATE_ROW_PREFIX[0]!r} (reserved)"
        if not self._pattern.fullmatch(channel_id):  # type: ignore[attr-defined]
            return f"channelId must match {self.channel_id_pattern}"
        return None


# --- commands -------------------------------------------------------------------


#: What a client's ``requestId`` may be: its reply carries it back (§3 of
#: docs/protocol.md), so a client can keep several requests in flight.
REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
BAD_REQUEST_ID = "requestId must be 1 to 64 letters, digits, '_', '.', ':' or '-'"


@dataclass(frozen=True)
class Join:
    channel_id: str
    request_id: str | None = None
    since: str | None = None
    """Resume after this message id (history): the messages kept since are sent first."""
    presence: bool = False  # asked to watch the channel's members (presence on)


@dataclass(frozen=True)
class Publish:
    data: Any
    request_id: str | None = None


@dataclass(frozen=True)
class Ping:
    data: Any
    has_data: bool
    request_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """Answer the sender with ``frame`` and do nothing else."""

    frame: dict[str, Any]
    request_id: str | None = None


Command = Union[Join, Publish, Ping, Reply, "Members"]  # Members: a presence request, defined below


def decode(body: str | None, rules: Rules) -> Command:
    """Turn a client's text frame into a command, or into the reply it earns.

    Never raises: every input maps to exactly one command or reply.
    """
    if body is None or body == "":
        return Reply(error("empty frame; send a JSON object with a type"))
    message, problem = _json_object(body, "frame")
    if problem is not None:
        return Reply(error(problem))
    rid = message.get("requestId")
    if rid is not None and not (isinstance(rid, str) and REQUEST_ID.fullmatch(rid)):
        return Reply(error(BAD_REQUEST_ID))  # no id to answer with: nothing else is done
    kind = message.get("type")
    if kind is None:
        return Reply(error("frame has no type"), rid)
    if kind == JOIN:
        problem = rules.channel_id_problem(message.get("channelId"))
        if problem:
            return Reply(join_failure(problem), rid)
        since = message.get("since")
        if since is not None and not (isinstance(since, str) and MESSAGE_ID.fullmatch(since)):
            return Reply(join_failure(BAD_SINCE), rid)
        if rules.presence_max_members and not isinstance(message.get("presence", False), bool):  # presence
            return Reply(join_failure(BAD_PRESENCE), rid)
        return Join(message["channelId"], rid, since,
                    presence=bool(rules.presence_max_members) and message.get("presence") is True)
    if kind == PUBLISH:
        if "data" not in message:
            return Reply(publish_failure("publish needs a data field"), rid)
        return Publish(message["data"], rid)
    if kind == PING:
        return Ping(message.get("data"), "data" in message, rid)
    if kind == MEMBERS and rules.presence_max_members:  # presence: answered by $default (§12)
        return decode_members(message, rid)
    if not isinstance(kind, str):
        return Reply(error("type must be a string"), rid)
    return Reply(error(f"unknown type {_shorten(kind)!r}; expected {JOIN}, {PUBLISH} or {PING}"), rid)


def answering(command: Any, frame: dict[str, Any]) -> dict[str, Any]:
    """``frame`` as the reply to ``command``: with the command's requestId, when it had one."""
    request_id = getattr(command, "request_id", None)
    return {**frame, "requestId": request_id} if request_id is not None else frame


def _json_object(text: str, what: str) -> tuple[dict[str, Any], str | None]:
    """``text`` read as a JSON object, or why it is not one (``what``: the
    frame, the body): too deep, a number out of a double's range, NaN or
    Infinity, not JSON, or not an object."""
    if _nests_deeper_than(text, MAX_NESTING):
        return {}, f"{what} nests deeper than {MAX_NESTING} levels"
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite_float, parse_int=_double_int)
    except _OutOfRange:
        return {}, f"{what} has a number out of range"
    except (ValueError, RecursionError):
        return {}, f"{what} is not valid JSON"
    if not isinstance(value, dict):
        return {}, f"{what} must be a JSON object"
    return value, None


class _OutOfRange(ValueError):
    pass


def _not_json(token: str) -> Any:
    # Python's json accepts NaN, Infinity and -Infinity; JSON does not
    raise ValueError(f"{token} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: valid JSON, but no client could read it back
        raise _OutOfRange(text)
    return value


#: More digits than any integer a double can hold (about 1.8e308).
_MAX_INT_DIGITS = 309


def _double_int(text: str) -> int:
    """An integer literal, refused when a double (what most clients read JSON
    numbers as) could not hold it. The length check comes first, so a huge
    literal costs nothing to refuse."""
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _OutOfRange(text)
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise _OutOfRange(text) from None
    return value


#: A JSON string, or what is left of an unclosed one. The closing quote is
#: optional, so a match that has started can never fail: an unclosed string is
#: one match to the end, not a failed match (and a rescan) from every quote
#: after it, and nothing is ever backtracked. Linear time on any input; with a
#: required closing quote, a frame of escaped quotes was quadratic.
_STRING = re.compile(r'"(?:[^"\\]+|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nests_deeper_than(body: str, limit: int) -> bool:
    """Whether arrays/objects in ``body`` nest deeper than ``limit``, without
    recursion and in time linear in its length (strings are skipped, so
    brackets inside them do not count)."""
    if body.count("[") + body.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", body))
    # the running depth after each bracket, every step in C
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# --- frames the server sends -------------------------------------------------------


def new_sender_id() -> str:
    """A fresh, unguessable id for one membership: 128 random bits."""
    return secrets.token_urlsafe(16)


def join_success(channel_id: str, sender_id: str, **history: Any) -> dict[str, Any]:
    """``history``: with history on, ``position``, and for a join that
    resumed, ``replayed`` and ``resumed`` (docs/protocol.md §4.3)."""
    return {"type": "joinSuccess", "channelId": channel_id, "senderId": sender_id, **history}


def join_failure(reason: str) -> dict[str, Any]:
    return {"type": "joinFailure", "data": reason}


#: A message id: 12 hex digits of the publish's time in epoch milliseconds,
#: then 16 random hex digits (docs/protocol.md §6.1).
MESSAGE_ID = re.compile(r"[0-9a-f]{12}-[0-9a-f]{16}")


def new_message_id(now: float | None = None) -> str:
    """A fresh message id, time-ordered: ids of one channel sort as their
    publishes were stamped, to the millisecond of the publishing function's
    clock; within one millisecond, by their random part. Costs no request:
    no counter is kept anywhere."""
    milliseconds = time.time_ns() // 1_000_000 if now is None else round(now * 1000)
    return f"{milliseconds:012x}-{secrets.token_hex(8)}"


BAD_SINCE = "since must be a messageId (12 hex digits, '-', 16 hex digits)"


def position(now: float | None = None) -> str:
    """A join's place in its channel's history: an id below every message
    stamped from ``now`` on (the random part all zeros). A client that
    resumes from it is sent what was published after its join."""
    milliseconds = time.time_ns() // 1_000_000 if now is None else round(now * 1000)
    return f"{milliseconds:012x}-{0:016x}"


def message_time(message_id: str) -> float:
    """When the message ``message_id`` was stamped, in epoch seconds."""
    return int(message_id[:12], 16) / 1000


def message(channel_id: str, sender_id: str, data: Any, message_id: str) -> dict[str, Any]:
    return {"type": "message", "channelId": channel_id, "senderId": sender_id, "messageId": message_id, "data": data}


def publish_success(queued: int = 0) -> dict[str, Any]:
    """``queued``: members handed to the fan-out queue, for whom the message
    is accepted for delivery rather than delivered."""
    return {"type": "publishSuccess", "queued": queued} if queued else {"type": "publishSuccess"}


def publish_failure(reason: str) -> dict[str, Any]:
    return {"type": "publishFailure", "data": reason}


def publish_partial_failure(delivered: int, failed: int, queued: int = 0) -> dict[str, Any]:
    """Some members could not be reached even after retries; the others got the
    message, or (``queued``) will get it from the fan-out queue. A client that
    publishes again sends them a second copy."""
    total = delivered + failed + queued
    others = "the others received the message" if not queued else \
        f"{delivered} received the message and {queued} will receive it from the fan-out queue"
    frame = {
        "type": "publishFailure",
        "data": f"could not deliver to {failed} of {total} members; {others}",
        "delivered": delivered,
        "failed": failed,
    }
    return {**frame, "queued": queued} if queued else frame


def pong(ping: Ping) -> dict[str, Any]:
    return {"type": "pong", "data": ping.data} if ping.has_data else {"type": "pong"}


def error(reason: str) -> dict[str, Any]:
    return {"type": "error", "data": reason}


def heartbeat() -> dict[str, Any]:
    """The server's heartbeat (``heartbeatIntervalMinutes``): traffic that
    keeps an idle connection open. Clients ignore it."""
    return {"type": "heartbeat"}


NOT_IN_CHANNEL = "not in a channel; send a join first"
#: A join whose transaction kept being cancelled (racing joins, throttling):
#: a later attempt may succeed.
JOIN_BUSY = "could not join right now; try again"
#: What the sender sees when something broke on our side.
INTERNAL_ERROR = "internal error; the request was not carried out"
#: A join of a channel the connection's authorizer context does not allow
#: (see :func:`channel_allowed`).
CHANNEL_NOT_ALLOWED = "this connection may not join this channel"


# --- the authorizer's channel rule ------------------------------------------------

#: Distinct authorizer patterns kept compiled. An authorizer hands out a few
#: patterns to many connections, so a small cache serves nearly every join.
CHANNEL_PATTERN_CACHE_SIZE = 64


class InvalidChannelPattern(ValueError):
    """An authorizer's channelPattern that cannot be used: not a string, or
    not a regular expression. The message says which (with ``re``'s reason),
    and never holds the channel id being joined."""


def channel_allowed(channel_id: str, pattern: Any) -> bool:
    """Whether ``pattern``, the ``channelPattern`` the connection's
    authorizer returned (``spec.CHANNEL_PATTERN_CONTEXT_KEY``), matches
    ``channel_id`` in full: a prefix match would let ``team-1`` join
    ``team-10``. Raises :class:`InvalidChannelPattern` when the pattern
    cannot be used, so the caller refuses the join: a limit that cannot be
    read must not become no limit."""
    if not isinstance(pattern, str):
        raise InvalidChannelPattern(f"channelPattern must be a string, not {type(pattern).__name__}")
    try:
        compiled = _compiled_channel_pattern(pattern)
    except Exception as exc:  # re.error, or RecursionError for absurd nesting: refused all the same
        raise InvalidChannelPattern(f"channelPattern is not a valid regular expression: {exc}") from None
    return compiled.fullmatch(channel_id) is not None


@lru_cache(maxsize=CHANNEL_PATTERN_CACHE_SIZE)
def _compiled_channel_pattern(pattern: str) -> re.Pattern[str]:
    """Compiled once per distinct pattern, not once per join (a failed
    compile is not cached: it raises every time, and every join is refused)."""
    return re.compile(pattern)


def encode(frame: dict[str, Any]) -> bytes:
    """The bytes of one outgoing frame: compact UTF-8 JSON.

    Raises ValueError for values JSON cannot carry (NaN, infinities). A string
    with a lone surrogate (which a client can send as ``"\ud800"``) cannot be
    UTF-8: each lone surrogate goes out as its ``\\uXXXX`` escape, and only
    it, so the client gets back exactly what it sent and the rest of the frame
    stays as compact as UTF-8 makes it.
    """
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # a surrogate can only stand inside a JSON string, where its escape means the same
        return _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text).encode("utf-8")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_reply(frame: dict[str, Any]) -> bytes:
    """The bytes of a reply to the sender: :func:`encode`, or, when the reply
    would be larger than API Gateway delivers (a pong echoing data that grew in
    re-encoding, such as ``1e15`` → ``1000000000000000.0``), an ``error`` that
    says so: a frame always gets an answer it can receive."""
    payload = encode(frame)
    if len(payload) > API_GATEWAY_MAX_MESSAGE_BYTES:
        too_large = error(f"reply too large: {frame.get('type')} would be {len(payload)} bytes encoded, "
                          f"the limit is {API_GATEWAY_MAX_MESSAGE_BYTES}")
        return encode({**too_large, "requestId": frame["requestId"]} if "requestId" in frame else too_large)
    return payload


@dataclass(frozen=True)
class Outgoing:
    """A publish, decided: the encoded message for every recipient (with its
    ``message_id``), or the failure to send back instead."""

    payload: bytes | None
    failure: dict[str, Any] | None
    message_id: str | None = None


def prepare_message(channel_id: str, sender_id: str, data: Any, rules: Rules,
                    message_id: str | None = None) -> Outgoing:
    """Encode the message once for every recipient, with a new message id
    (or ``message_id``), or refuse it whole when it would exceed the message
    size limit (nothing is half-sent)."""
    message_id = message_id or new_message_id()
    try:
        payload = encode(message(channel_id, sender_id, data, message_id))
    except (ValueError, RecursionError):
        return Outgoing(None, publish_failure("data cannot be encoded as JSON"))
    if len(payload) > rules.max_message_bytes:
        return Outgoing(
            None,
            publish_failure(
                f"message too large: {len(payload)} bytes encoded, the limit is {rules.max_message_bytes}"
            ),
        )
    return Outgoing(payload, None, message_id)


# --- server publish: a backend's publish through the IAM-signed endpoint ----------------

#: The ``senderId`` of a message a backend published (not a member): a
#: member's senderId is base64url, which has no ``$``, so none can be this.
SERVER_SENDER_ID = "$server"
#: What an idempotency key may be.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


@dataclass(frozen=True)
class ServerPublish:
    """A backend's publish: ``data`` to every member of ``channel_id``, once
    per ``idempotency_key`` within the window (when it has one)."""

    channel_id: str
    data: Any
    idempotency_key: str | None


@dataclass(frozen=True)
class Refusal:
    """The HTTP status and reason a server publish is refused with; nothing is sent."""

    status: int
    reason: str


#: A publish with this key is still running: its outcome is not known yet.
KEY_IN_PROGRESS = "a publish with this idempotency key is in progress; retry later"
#: The key's first publish ended without recording an outcome (its function
#: stopped mid-way): some members may have the message, so it is not sent again.
KEY_OUTCOME_UNKNOWN = ("the publish with this idempotency key did not finish and its outcome is unknown; it is "
                       "not sent again with this key")
KEY_REUSED = "this idempotency key was used for a different publish"


def decode_server_publish(body: str | None, rules: Rules) -> ServerPublish | Refusal:
    """A server publish request's body (``{"channelId", "data",
    "idempotencyKey"?}``) as a :class:`ServerPublish`, or the 400
    :class:`Refusal` it earns, for the same reasons a member's publish would.
    Never raises."""
    if body is None or body == "":
        return Refusal(400, "empty body; send a JSON object with channelId and data")
    request, problem = _json_object(body, "body")
    if problem is not None:
        return Refusal(400, problem)
    problem = rules.channel_id_problem(request.get("channelId"))
    if problem:
        return Refusal(400, problem)
    if "data" not in request:
        return Refusal(400, "publish needs a data field")
    key = request.get("idempotencyKey")
    if key is not None and not (isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key)):
        return Refusal(400, "idempotencyKey must be 1 to 128 letters, digits, '_', '.', ':' or '-'")
    return ServerPublish(request["channelId"], request["data"], key)


def publish_fingerprint(channel_id: str, data: Any) -> str:
    """What an idempotency key stands for: a hash of the channel and the data
    (not of the message, whose id is new on every request)."""
    import hashlib

    return hashlib.sha256(encode({"channelId": channel_id, "data": data})).hexdigest()


def publish_outcome(delivered: int, failed: int, queued: int) -> dict[str, Any]:
    """What a server publish answers: members posted to, members that could
    not be reached after retries, members handed to the fan-out queue."""
    return {"delivered": delivered, "failed": failed, "queued": queued}


def recipients(members: list[str], sender_connection_id: str) -> list[str]:
    """Everyone in the channel but the sender, each once, in a stable order."""
    return sorted(set(members) - {sender_connection_id})


# --- presence (docs/protocol.md §12): who is in a channel ----------------------------------

#: The request for a channel's members. It has no route of its own: route
#: selection sends it to $default, whose function answers it.
MEMBERS = "members"
BAD_PRESENCE = "presence must be true or false"
#: What a members reply's cursor is: the senderId of the last member it
#: listed (members are listed in senderId order), so the next page starts
#: after it whoever joined or left meanwhile. Opaque to clients.
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,64}")
BAD_CURSOR = "cursor must be the cursor of a members reply"
#: What a members request gets while the sender is in no channel.
MEMBERS_NOT_IN_CHANNEL = NOT_IN_CHANNEL


@dataclass(frozen=True)
class Members:
    """A request for the sender's channel's members, after ``cursor``."""

    cursor: str | None = None
    request_id: str | None = None


def decode_members(message: dict[str, Any], rid: str | None) -> Members | Reply:
    """A members request (``{"type":"members","cursor"?}``), or the error it
    earns. Other fields are ignored, as in every client frame; a cursor is
    checked by its length before the pattern, so any input costs little."""
    cursor = message.get("cursor")
    if cursor is not None and not (isinstance(cursor, str) and len(cursor) <= 64 and CURSOR.fullmatch(cursor)):
        return Reply(error(BAD_CURSOR), rid)
    return Members(cursor, rid)


@dataclass(frozen=True)
class Member:
    """One listed member of a channel, as other members see it."""

    sender_id: str
    principal_id: str | None = None

    def shown(self) -> dict[str, Any]:
        return {"senderId": self.sender_id, **({"principalId": self.principal_id} if self.principal_id else {})}


def shown_principal_id(authorizer: Any) -> str | None:
    """The principalId of a connection's $connect authorizer (its
    ``requestContext.authorizer``), as members see it: a string of 1 to
    ``spec.MAX_PRINCIPAL_ID_LENGTH`` characters; anything else is not shown."""
    value = authorizer.get(spec.PRINCIPAL_ID_CONTEXT_KEY) if hasattr(authorizer, "get") else None
    if isinstance(value, str) and 0 < len(value) <= spec.MAX_PRINCIPAL_ID_LENGTH:
        return value
    return None


def member_joined(channel_id: str, member: Member) -> dict[str, Any]:
    return {"type": "memberJoined", "channelId": channel_id, **member.shown()}


def member_left(channel_id: str, member: Member) -> dict[str, Any]:
    return {"type": "memberLeft", "channelId": channel_id, **member.shown()}


def members_page(channel_id: str, members: list[Member], after: str | None, request_id: str | None = None,
                 limit: int = API_GATEWAY_MAX_FRAME_BYTES) -> dict[str, Any]:
    """One page of a members reply: the members (sorted here by senderId)
    after the cursor ``after``, as many as fit in ``limit`` bytes encoded
    with the reply's requestId and a cursor; the cursor is there when more
    follow. Linear in the members given."""
    frame: dict[str, Any] = {"type": "members", "channelId": channel_id, "members": []}
    # the frame's size with the longest cursor and the requestId, and two bytes to spare for '[]'
    budget = limit - len(encode({**frame, "cursor": "x" * 64, **({"requestId": request_id} if request_id else {})}))
    ordered = sorted((m for m in members if after is None or m.sender_id > after), key=lambda m: m.sender_id)
    listed: list[dict[str, Any]] = []
    for member in ordered:
        shown = member.shown()
        cost = len(encode(shown)) + (1 if listed else 0)
        if cost > budget:
            break
        budget -= cost
        listed.append(shown)
    frame["members"] = listed
    if len(listed) < len(ordered) and listed:
        frame["cursor"] = listed[-1]["senderId"]
    return frame
