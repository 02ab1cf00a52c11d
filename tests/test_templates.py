"""The HTTP backend's request templates (``channel_server.backend``), rendered
the way local mode renders them (``channel_server.local.velocity``: airspeed,
a real Velocity, with API Gateway's ``$context``, ``$input`` and ``$util``).

What is checked:

- ``escape_javascript`` writes exactly what API Gateway's
  ``$util.escapeJavaScript`` (commons-lang 2 over UTF-16 strings) writes:
  known answers, and a transcription of the Java loop over arbitrary text;
- every route's template, rendered for an event shaped like the recorded ones
  (``tests/events/``), is JSON, is the envelope ``backend.envelope_of``
  promises, and ``backend.lambda_event`` reads the same connection, route
  and frame back from it;
- the frame survives the template exactly, whatever it holds: quotes,
  backslashes, Velocity syntax, controls, line separators, astral
  characters, 128 KB of any of them (a list, and hypothesis over any text);
- ``$connect`` and ``$disconnect`` carry ``"body": null``;
- a template airspeed cannot parse or evaluate raises ``TemplateError``.

Hypothesis runs derandomized with a fixed number of examples: the file takes
a few seconds and every run tries the same inputs.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_server import backend
from channel_server.handlers import spec
from channel_server.local import velocity
from support.events import ENTRY_POINTS, event

ROUTE_KEYS = [route.key for route in spec.ROUTES]
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: 128 KB: API Gateway's limit on one message.
LARGE = 128 * 1024


def render_frame(body: str) -> tuple[dict, dict]:
    """A MESSAGE event carrying ``body`` (route picked from it as API Gateway
    would), and its route's template rendered and parsed."""
    raw = event("default", body=body)
    rendered = velocity.render(backend.request_template(raw["requestContext"]["routeKey"]), raw)
    return raw, json.loads(rendered)


def java_escape_javascript(text: str) -> str:
    """commons-lang 2's ``escapeJavaStyleString(str, escapeSingleQuote=true,
    escapeForwardSlash=true)``, transcribed: one step per UTF-16 code unit."""
    named = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    data = text.encode("utf-16-be", "surrogatepass")
    out = []
    for offset in range(0, len(data), 2):
        unit = int.from_bytes(data[offset : offset + 2], "big")
        if unit > 0x7F:
            out.append("\\u%04X" % unit)
        elif unit < 0x20:
            out.append(named.get(unit, "\\u%04X" % unit))
        elif chr(unit) in "'\"\\/":
            out.append("\\" + chr(unit))
        else:
            out.append(chr(unit))
    return "".join(out)


# --- $util.escapeJavaScript ------------------------------------------------------------


@pytest.mark.parametrize(
    "text, escaped",
    [
        ("", ""),
        ("plain text 123 ~!@#$%^&*()_+-=[]{}|;:,.<>?`", "plain text 123 ~!@#$%^&*()_+-=[]{}|;:,.<>?`"),
        ('"', '\\"'),
        ("'", "\\'"),
        ("\\", "\\\\"),
        ("/", "\\/"),
        ("</script>", "<\\/script>"),
        ("\b\t\n\f\r", "\\b\\t\\n\\f\\r"),
        ("\x00", "\\u0000"),
        ("\x01\x0b\x0e\x1b\x1f", "\\u0001\\u000B\\u000E\\u001B\\u001F"),
        ("\x7f", "\x7f"),  # DEL is not escaped
        ("\x80\xa0\xe9\xff", "\\u0080\\u00A0\\u00E9\\u00FF"),
        ("\u0100\u0fff\u1000\u20ac\ufeff\uffff", "\\u0100\\u0FFF\\u1000\\u20AC\\uFEFF\\uFFFF"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\U0001f600", "\\uD83D\\uDE00"),  # outside the BMP: a surrogate pair
        ("\U00010000\U0010ffff", "\\uD800\\uDC00\\uDBFF\\uDFFF"),
        ("\ud800", "\\uD800"),  # a lone surrogate, as Java would hold it
        ("\\'", "\\\\\\'"),
        ("\\\\'", "\\\\\\\\\\'"),
        ("it's \"x\"", "it\\'s \\\"x\\\""),
        ("é😀a", "\\u00E9\\uD83D\\uDE00a"),
    ],
)
def test_escape_javascript_known_answers(text: str, escaped: str) -> None:
    """Byte for byte what commons-lang writes: the backend sees these bytes,
    so a difference would be a difference between local mode and AWS."""
    assert velocity.escape_javascript(text) == escaped


@PROPERTY
@given(text=st.text(alphabet=st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))))
def test_escape_javascript_matches_the_java_loop(text: str) -> None:
    """Over any text (lone surrogates included), the fast escaping equals the
    Java algorithm written out one UTF-16 code unit at a time."""
    assert velocity.escape_javascript(text) == java_escape_javascript(text)


def test_escape_javascript_large_inputs() -> None:
    """128 KB of the characters that need the most work stay exact."""
    for piece in ["x", "'", "\\'", "😀", "é", "\x00", "\u2028"]:
        text = piece * (LARGE // len(piece.encode("utf-8")))
        assert velocity.escape_javascript(text) == java_escape_javascript(text)


# --- the engine reads the template as AWS does ----------------------------------------------


def test_string_literals_keep_their_backslashes() -> None:
    """The body expression relies on Velocity keeping ``"\\\\'"`` as three
    characters (AWS does); airspeed must too, or ``replaceAll`` would look for
    the wrong thing."""
    template = '#set($pattern = "\\\\\'")$pattern.length()|$pattern'
    assert velocity.render(template, event("publish")) == "3|\\\\'"


@pytest.mark.parametrize(
    "frame, expected",
    [("\\'", "'"), ("\\\\\\'", "\\\\'"), ("a\\'b\\'", "a'b'"), ("\\\\", "\\\\"), ("'", "'")],
)
def test_replace_all_is_the_java_regular_expression(frame: str, expected: str) -> None:
    """``.replaceAll("\\\\'","'")`` replaces each backslash-quote pair, left to
    right, as Java's ``String.replaceAll`` does."""
    template = '$input.body.replaceAll("\\\\\'","\'")'
    assert velocity.render(template, event("publish", body=frame)) == expected


# --- every route's envelope ---------------------------------------------------------------


def route_event(route_key: str) -> dict:
    """The recorded event of ``route_key``'s entry point."""
    raw = event(ENTRY_POINTS[route_key])
    assert raw["requestContext"]["routeKey"] == route_key
    return raw


@pytest.mark.parametrize("route_key", ROUTE_KEYS)
def test_every_route_renders_the_promised_envelope(route_key: str) -> None:
    """The rendered template is JSON, equals ``envelope_of`` (the envelope
    API Gateway posts), and reads back as the same connection, route and
    frame: the backend can run the Lambda handlers' code on it."""
    raw = route_event(route_key)
    rendered = velocity.render(backend.request_template(route_key), raw)
    envelope = json.loads(rendered)
    assert envelope == json.loads(backend.envelope_of(raw))
    assert isinstance(envelope["requestTimeEpoch"], int)
    assert envelope["identity"] == {"sourceIp": raw["requestContext"]["identity"]["sourceIp"]}

    back = backend.lambda_event(envelope)
    context = back["requestContext"]
    assert context["connectionId"] == raw["requestContext"]["connectionId"]
    assert context["routeKey"] == route_key
    assert context["eventType"] == raw["requestContext"]["eventType"]
    expected_body = None if route_key in backend.NO_BODY_ROUTES else raw["body"]
    assert back["body"] == expected_body


@pytest.mark.parametrize("route_key", backend.NO_BODY_ROUTES)
def test_connect_and_disconnect_have_a_null_body(route_key: str) -> None:
    """No frame on ``$connect`` / ``$disconnect``: the envelope says null,
    even if the event carried some body."""
    raw = route_event(route_key)
    for body in (None, "", "not a frame"):
        raw["body"] = body
        envelope = json.loads(velocity.render(backend.request_template(route_key), raw))
        assert "body" in envelope and envelope["body"] is None
        assert backend.lambda_event(envelope)["body"] is None


def test_an_empty_frame_is_an_empty_string() -> None:
    """``$input.body`` of a message without text is "", not null or the
    reference's own text."""
    raw = route_event("$default")
    raw["body"] = None
    envelope = json.loads(velocity.render(backend.request_template("$default"), raw))
    assert envelope["body"] == ""


# --- hostile frames ---------------------------------------------------------------------------

HOSTILE = [
    "",
    " ",
    "'",
    "\\'",
    "\\\\'",
    "\\\\\\'",
    "''\\'\\\\''",
    '"',
    '\\"',
    "\\",
    "\\\\",
    "\\u0041",
    "\\n",
    "/",
    "</script>",
    "$",
    "#",
    "##",
    "#*",
    "$!",
    "$util.escapeJavaScript('x')",
    "$util.escapeJavaScript($input.body)",
    "#set($a = 1)$a",
    "#if(true)yes#end",
    "#foreach($i in [1..3])$i#end",
    "#evaluate('$context')",
    "#include('x')",
    "#stop",
    "${context.connectionId}",
    "$context.connectionId",
    "$input.body",
    "\\$context.connectionId",
    '")+"',
    '","routeKey":"$connect',
    "\x00",
    "\x00\x01\x1f\x7f",
    "\b\t\n\f\r",
    "line\nbreak\r\n",
    "\u2028\u2029",
    "é€😀\U0010ffff",
    "\ufeff\ufffe\uffff",
    '{"type":"publish","data":"it\'s \\"quoted\\" \\\\ and /slashed/"}',
    '{"type":"join","channelId":"\'"}',
    "x" * LARGE,
    "'" * LARGE,
    "\\'" * (LARGE // 2),
    "😀" * (LARGE // 4),
    "$a#b\\'\"" * (LARGE // 6),
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_frames_arrive_exactly(body: str) -> None:
    """Whatever the frame holds, the envelope is JSON, its body is the frame
    as sent, and the rest of the envelope is untouched by it."""
    raw, envelope = render_frame(body)
    assert envelope["body"] == body
    assert envelope == json.loads(backend.envelope_of(raw))
    assert backend.lambda_event(envelope)["body"] == body


#: Pieces that mean something to Velocity, JSON, JavaScript or the body
#: expression's ``replaceAll``, mixed with arbitrary text.
FRAGMENTS = st.sampled_from(
    [
        "'", "\\'", "\\\\'", "\\", '"', "/", "$", "#", "${context.connectionId}", "#set($a = 1)",
        "$util.escapeJavaScript('x')", "\x00", "\u2028", "\u2029", "</script>", "\n", "\r", "😀", "é",
    ]
)
hostile_text = st.one_of(
    st.text(),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=30).map("".join),
)


@PROPERTY
@given(body=hostile_text)
def test_any_frame_arrives_exactly(body: str) -> None:
    """Hypothesis over any text and over mixes of meaningful pieces: the
    envelope parses and its body is the frame, character for character."""
    raw, envelope = render_frame(body)
    assert envelope["body"] == body
    assert envelope == json.loads(backend.envelope_of(raw))


def test_rendering_from_several_threads() -> None:
    """Local mode renders frames on several threads: each gets its own
    frame back (the compiled template is shared, the variables are not)."""
    template = backend.request_template("$default")
    bodies = [f"frame {number} '{'x' * number}' \\'" for number in range(200)]

    def one(body: str) -> Any:
        raw = event("default", body=body)
        return json.loads(velocity.render(template, raw))["body"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(one, bodies)) == bodies


def test_rendering_does_not_change_the_event() -> None:
    """``$context`` is a copy: a template that writes to it leaves the event
    as it was."""
    raw = route_event("publish")
    before = json.loads(json.dumps(raw))
    rendered = velocity.render('#set($ignored = $context.put("stage", "changed"))$context.stage', raw)
    assert rendered == "changed"
    assert raw == before


# --- the rest of $input and $util -------------------------------------------------------------


@pytest.mark.parametrize(
    "template, expected",
    [
        ("$input.json('$')", '{"type":"publish","data":{"text":"h\u00e9"}}'),
        ("$input.json('$.data')", '{"text":"h\u00e9"}'),
        ("$input.path('$.type')", "publish"),
        ("$input.path('$.data.text')", "h\u00e9"),
        ("$input.path(\"$['data']['text']\")", "h\u00e9"),
        ("$input.json('$.missing')", "null"),
        ("$input.params('anything')", ""),
        ("[$input.params().path]", "[{}]"),
        ("$util.urlEncode('a b~*/\u00e9')", "a+b%7E*%2F%C3%A9"),
        ("$util.urlDecode('a+b%2F%C3%A9')", "a b/\u00e9"),
        ("$util.base64Encode('h\u00e9')", "aMOp"),
        ("$util.base64Decode('aMOp')", "h\u00e9"),
        ("$util.parseJson('{\"a\":[1,2]}').a.size()", "2"),
        ("$util.escapeJavaScript(\"it's\")", "it\\'s"),
        ("$context.requestTimeEpoch|$context.connectedAt|$context.messageId", "1795628755502|1795628750412|Ut6bEeOLIAMCJ2Q="),
    ],
)
def test_input_and_util(template: str, expected: str) -> None:
    """The other variables API Gateway gives a template, as far as local mode
    emulates them."""
    raw = event("publish", body='{"type":"publish","data":{"text":"h\u00e9"}}')
    assert velocity.render(template, raw) == expected


def test_input_params_on_connect() -> None:
    """``$connect`` carries the handshake's headers: ``$input.params()``
    lists them under "header", ``$input.params(name)`` finds one."""
    raw = route_event("$connect")
    template = "$input.params('Host')|#foreach($name in $input.params().header.keySet())$name,#end"
    host, names = velocity.render(template, raw).split("|")
    assert host == raw["headers"]["Host"]
    assert names.rstrip(",").split(",") == list(raw["headers"])


# --- broken templates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "#if($a)never closed",
        "#end",
        "${context.connectionId",
        "$util.escapeJavaScript(",
        "#set($a = )",
        "#foreach($x in $y)",
        "$util.parseJson('{not json')",
        "$input.json('$..recursive')",
        "#include('elsewhere.vm')",
    ],
)
def test_broken_templates_raise_template_error(template: str) -> None:
    """A template that does not parse, or whose evaluation fails, raises
    velocity's own TemplateError (airspeed's error as its cause), not some
    engine's internal exception or a half-rendered text."""
    with pytest.raises(velocity.TemplateError) as raised:
        velocity.render(template, event("publish"))
    assert raised.value.__cause__ is not None
    assert issubclass(velocity.TemplateError, Exception)


def test_input_json_of_a_frame_that_is_not_json_raises_template_error() -> None:
    """API Gateway fails a request whose template reads a non-JSON body as
    JSON; local mode fails the render."""
    with pytest.raises(velocity.TemplateError, match="not JSON"):
        velocity.render("$input.json('$')", event("default", body="plain text"))
