"""API Gateway's request templates, rendered locally (``channel_server.backend``).

With an HTTP backend, API Gateway renders the route's integration request
template (Apache Velocity) for every event and POSTs the result. The template
sees three variables, which this module supplies from a Lambda-proxy-shaped
event (the shape local mode already builds, ``tests/events/*.json``):

- ``$context``: the event's ``requestContext`` (``connectionId``,
  ``eventType``, ``routeKey``, ``domainName``, ``stage``, ``requestId``,
  ``requestTimeEpoch`` as a number, ``connectedAt``, ``messageId``,
  ``identity.sourceIp`` ...), a copy, so a template cannot change the event;
- ``$input``: ``$input.body`` is the frame as text ("" when there is none);
  ``$input.json(path)`` / ``$input.path(path)`` evaluate a small JSONPath
  subset (``$``, ``.name``, ``['name']``, ``[n]``) over the body parsed as
  JSON, as JSON text / as a value; ``$input.params()`` is
  ``{"path": {}, "querystring": {...}, "header": {...}}`` from the event's
  ``queryStringParameters`` and ``headers``, ``$input.params(name)`` the first
  of those with that name, or "";
- ``$util``: ``escapeJavaScript``, ``parseJson``, ``urlEncode``,
  ``urlDecode``, ``base64Encode``, ``base64Decode``.

(``$stageVariables`` is the event's ``stageVariables``, or an empty map.)

The engine is airspeed (``airspeed-ext``), a Python Velocity that follows
AWS's quirks: string literals keep their backslashes (``"\\\\'"`` is three
characters, so ``.replaceAll("\\\\'","'")`` is Java's regular expression
"a backslash, then a quote"), and a null renders as nothing.

``$util.escapeJavaScript`` is :func:`escape_javascript`, an exact copy of what
API Gateway runs (commons-lang 2 ``StringEscapeUtils.escapeJavaScript`` over
Java's UTF-16 strings).

Known differences from API Gateway:

- ``$input.json`` / ``$input.path`` on a body that is not JSON fail the
  render (API Gateway fails the request too, with its own message); an empty
  body reads as ``{}``. Only the JSONPath subset above is understood; any
  other path fails the render.
- A map or list rendered directly prints as Python does (``{'a': 1}``), not
  as Java's ``toString`` (``{a=1}``); ``$input.json`` is unaffected. Maps,
  lists and strings have only the Java methods airspeed adds (a map has
  ``get``, ``put``, ``keySet`` but no ``size()``; ``replaceAll`` and
  ``matches`` take Python's ``re`` syntax, the same as Java's for plain
  patterns like the ones here).
- ``$util.urlDecode`` leaves a malformed ``%`` escape as it is where Java
  fails; ``$util.base64Decode`` replaces bytes that are not UTF-8 with U+FFFD,
  as Java's ``new String(bytes, UTF_8)`` does, and ignores bad padding less
  strictly.
- API Gateway's limits on template size and output, and its
  ``#foreach`` iteration cap, are not enforced.
- Templates are trusted code (they are the component's own): like any
  airspeed template, one could reach Python attributes of the values it sees.
  The frame is always a value, never template text: ``$`` and ``#`` in it
  are not evaluated.

Compiled templates are cached by their text (:func:`render` runs for every
frame); that cache is this module's only state, and rendering is safe from
several threads at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import lru_cache
from typing import Any, Mapping
from urllib.parse import quote_plus, unquote_plus

import airspeed

__all__ = ["TemplateError", "escape_javascript", "render"]

#: How many distinct template texts stay compiled (the component has one per
#: route; the bound only keeps a misuse from growing without limit).
TEMPLATE_CACHE_SIZE = 64


class TemplateError(Exception):
    """A request template that airspeed cannot parse, or whose evaluation
    failed (the message says where; the cause is airspeed's error)."""


# --- $util.escapeJavaScript ---------------------------------------------------------

#: The ASCII characters commons-lang escapes: by name, else as ``\\u00XX``.
_ASCII_ESCAPES = {chr(code): f"\\u{code:04X}" for code in range(0x20)} | {
    '"': '\\"',
    "'": "\\'",
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
#: What is not written as it is: a run of characters above 0x7F (DEL itself
#: is left alone), or one of the ASCII characters above.
_NEEDS_ESCAPE = re.compile("[\x80-\U0010ffff]+|[\x00-\x1f\"'/\\\\]")


def _escape(match: re.Match[str]) -> str:
    text = match.group()
    if len(text) == 1 and text < "\x80":
        return _ASCII_ESCAPES[text]
    # One escape per UTF-16 code unit (a character outside the BMP is a
    # surrogate pair, as in Java), written in C: the run's UTF-16 bytes as
    # uppercase hex, split every two bytes.
    units = text.encode("utf-16-be", "surrogatepass").hex(":", 2).upper()
    return "\\u" + units.replace(":", "\\u")


def escape_javascript(text: str) -> str:
    """``$util.escapeJavaScript``: ``"``, ``'``, ``\\`` and ``/`` get a
    backslash; ``\\b \\t \\n \\f \\r`` are written by name, other characters
    below 0x20 and every character above 0x7F as ``\\uXXXX`` (uppercase hex,
    one escape per UTF-16 code unit, so a character outside the BMP becomes a
    surrogate pair); everything else, DEL included, is kept."""
    return _NEEDS_ESCAPE.sub(_escape, text)


# --- the variables a template sees ---------------------------------------------------------


def _text(value: Any) -> str:
    """A value as Velocity would pass it to a method taking a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Util:
    """``$util``: API Gateway's functions. Stateless; one instance serves all."""

    __slots__ = ()

    @staticmethod
    def escapeJavaScript(value: Any) -> str | None:  # noqa: N802 (Velocity's names)
        return None if value is None else escape_javascript(_text(value))

    @staticmethod
    def parseJson(value: Any) -> Any:  # noqa: N802
        return json.loads(_text(value))

    @staticmethod
    def urlEncode(value: Any) -> str:  # noqa: N802
        # Java's URLEncoder (UTF-8): space as "+", only A-Z a-z 0-9 . - * _ kept.
        return quote_plus(_text(value), safe="*").replace("~", "%7E")

    @staticmethod
    def urlDecode(value: Any) -> str:  # noqa: N802
        return unquote_plus(_text(value))

    @staticmethod
    def base64Encode(value: Any) -> str:  # noqa: N802
        return base64.b64encode(_text(value).encode("utf-8")).decode("ascii")

    @staticmethod
    def base64Decode(value: Any) -> str:  # noqa: N802
        try:
            data = base64.b64decode(_text(value))
        except binascii.Error as error:
            raise ValueError(f"not base64: {error}") from None
        return data.decode("utf-8", errors="replace")


_UTIL = _Util()

#: One step of the JSONPath subset: ``.name``, ``['name']``, ``["name"]``, ``[n]``.
_PATH_STEP = re.compile(r"""\.([A-Za-z_$][\w$-]*)|\[\s*(?:'([^']*)'|"([^"]*)"|(-?\d+))\s*\]""")


def _select(document: Any, path: str) -> Any:
    """``document`` at JSONPath ``path`` (the subset above); None when absent."""
    path = path.strip()
    if not path.startswith("$"):
        raise ValueError(f"unsupported JSONPath {path!r}: it must start with $")
    position, value = 1, document
    while position < len(path):
        step = _PATH_STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        position = step.end()
        name, single, double, index = step.groups()
        if index is not None:
            value = value[int(index)] if isinstance(value, list) and -len(value) <= int(index) < len(value) else None
        else:
            key = next(part for part in (name, single, double) if part is not None)
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


class _Input:
    """``$input`` for one event."""

    __slots__ = ("body", "_event", "_document")

    def __init__(self, event: Mapping[str, Any]) -> None:
        body = event.get("body")
        self.body: str = "" if body is None else _text(body)
        self._event = event
        self._document: Any = _Input  # parsed on first use; the class stands for "not yet"

    def _parsed(self) -> Any:
        if self._document is _Input:
            if not self.body.strip():
                self._document = {}
            else:
                try:
                    self._document = json.loads(self.body)
                except ValueError as error:
                    raise ValueError(f"$input: the body is not JSON ({error})") from None
        return self._document

    def path(self, path: str) -> Any:
        return _select(self._parsed(), _text(path))

    def json(self, path: str) -> str:
        return json.dumps(self.path(path), separators=(",", ":"), ensure_ascii=False)

    def params(self, name: Any = None) -> Any:
        groups = {
            "path": {},
            "querystring": dict(self._event.get("queryStringParameters") or {}),
            "header": dict(self._event.get("headers") or {}),
        }
        if name is None:
            return groups
        key = _text(name)
        for group in groups.values():
            if key in group:
                return group[key]
        return ""


def _copy(value: Any) -> Any:
    """A copy of JSON-shaped data (dicts and lists copied, leaves shared)."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


# --- rendering ----------------------------------------------------------------------------


@lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _compile(template: str) -> airspeed.Template:
    compiled = airspeed.Template(template, filename="<request template>")
    try:
        compiled.ensure_compiled()
    except Exception as error:  # airspeed's syntax errors, and its recursion on deep nesting
        raise TemplateError(f"cannot parse the request template: {error}") from error
    return compiled


def render(template: str, event: Mapping[str, Any]) -> str:
    """``template`` rendered as API Gateway renders it for the Lambda-proxy
    shaped ``event``: ``$context`` is ``event["requestContext"]``, ``$input.body``
    is ``event.get("body")`` ("" when None). Raises :class:`TemplateError`
    when the template does not parse or its evaluation fails."""
    compiled = _compile(template)
    namespace = {
        "context": _copy(event.get("requestContext") or {}),
        "input": _Input(event),
        "util": _UTIL,
        "stageVariables": _copy(event.get("stageVariables") or {}),
    }
    try:
        return compiled.merge(namespace)
    except Exception as error:  # airspeed wraps what a method raised in TemplateExecutionError
        raise TemplateError(f"cannot render the request template: {error}") from error
