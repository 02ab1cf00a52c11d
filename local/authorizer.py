"""API Gateway's Lambda REQUEST authorizer on ``$connect``, locally.

What API Gateway does with a WebSocket API's authorizer, in the order it does it,
on every handshake before ``$connect``'s integration runs:

1. Every identity source (``route.request.querystring.NAME``,
   ``route.request.header.NAME`` (any case), ``stageVariables.NAME``,
   ``context.NAME``) must be in the request, not null and not empty; otherwise
   the handshake is refused with 401 and the function is not called (API
   Gateway's API reference, ``Authorizer.identitySource``).
2. The function gets the REQUEST event WebSocket APIs send: ``type``,
   ``methodArn`` (``arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/$connect``),
   the handshake's headers and query string (single- and multi-value),
   ``stageVariables`` and a ``requestContext`` like ``$connect``'s (the
   developer guide's "Control access to WebSocket APIs with AWS Lambda REQUEST
   authorizers", whose example input this follows).
3. Its answer decides:

   - an error whose message is ``Unauthorized`` (``raise Exception("Unauthorized")``
     in Python, ``callback("Unauthorized")`` in Node.js) → **401**;
   - any other error, a timeout or a throttle → **500**;
   - an answer API Gateway cannot use → **500** (its ``AuthorizerConfigurationException``):
     not an object, no string ``principalId``, no ``policyDocument`` with
     statements, a statement without ``Effect`` Allow/Deny, an action or a
     resource, or a ``context`` that is not an object of strings, numbers and
     booleans;
   - a policy that does not allow ``execute-api:Invoke`` on the method ARN
     (an explicit ``Deny`` matches it, or no ``Allow`` does) → **403**;
   - else the connection is made. Its ``context``, each value stringified as
     API Gateway passes it to a Lambda proxy integration (``123`` → ``"123"``,
     ``true`` → ``"true"``), plus ``principalId``, is the connection's
     ``requestContext.authorizer`` in ``$connect``'s event and in every later
     event of the connection.

   (401 for "Unauthorized" and 500 for other errors: the developer guide's
   Lambda authorizer examples, "Return a 401 Unauthorized response" and
   "Return a 500 Invalid token response"; 403 on deny: its "Lambda authorizer
   auth workflow". Statement matching follows IAM: ``*`` and ``?`` wildcards,
   resources case-sensitive, actions not; ``NotAction``/``NotResource`` are
   honoured, ``Condition`` blocks are not evaluated.)

Local mode runs the function the program declares for the authorizer (its
archive and handler, in a process of its own, like every function), or the
file given with ``--authorizer PATH[:FUNCTION]``. Each refused handshake is one
line of local mode's log, naming the status and why (for an error: its type
and message); the traceback the function printed for it goes to the log at
DEBUG, not to stderr: raising is how an authorizer refuses.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from ..handlers.spec import CONNECT_ROUTE
from .functions import ERRORS_ARE_ANSWERS, FunctionError, InvocationError
from .placeholders import ACCOUNT, REGION
from .world import AuthorizerDef, FunctionDef

log = logging.getLogger("channel_server.local")

#: The function ARN the default ChannelServer's authorizer names when local
#: mode serves it with ``--authorizer`` (no program): a function of no
#: deployment, whose code is the file given.
PLACEHOLDER_FUNCTION_NAME = "local-authorizer"
PLACEHOLDER_FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{PLACEHOLDER_FUNCTION_NAME}"
#: The function's timeout when it comes from a file (a program's function has its own).
FILE_TIMEOUT_SECONDS = 10.0
DEFAULT_HANDLER = "handler"
#: The error message that makes API Gateway answer 401 instead of 500.
UNAUTHORIZED = "Unauthorized"
ACTION = "execute-api:Invoke"

Invoke = Callable[[dict, str], Awaitable[Any]]
"""``invoke(event, request_id)``: runs the authorizer's function."""


class MalformedAnswer(ValueError):
    """The function answered something API Gateway cannot use (a 500)."""


@dataclass(frozen=True)
class Decision:
    """What API Gateway does with the handshake: ``status`` 200 and the
    connection's ``context`` (``requestContext.authorizer``), or the refusal."""

    status: int
    body: str = ""
    context: Mapping[str, str] | None = None
    reason: str = ""
    """For the log: why, never a token or a context value."""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _refusal(status: int, reason: str) -> Decision:
    message = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Internal server error")
    return Decision(status, json.dumps({"message": message}), reason=reason)


# --- --authorizer PATH[:FUNCTION] ---------------------------------------------------------


def parse_spec(value: str) -> tuple[Path, str]:
    """``PATH[:FUNCTION]`` → the Python file and its handler function
    (``handler`` by default); ValueError saying what is wrong."""
    path_text, function = value, DEFAULT_HANDLER
    head, sep, tail = value.rpartition(":")
    if sep and head and tail.isidentifier():
        path_text, function = head, tail
    elif sep and head and not tail:
        raise ValueError(f"{value!r}: name the function after the colon (PATH:FUNCTION), or leave the colon out")
    path = Path(path_text).expanduser()
    if path.suffix != ".py":
        raise ValueError(f"{value!r}: give a Python file (PATH.py, or PATH.py:FUNCTION)")
    if not path.is_file():
        raise ValueError(f"{value!r}: no such file: {path}")
    if not path.stem.isidentifier():
        raise ValueError(f"{value!r}: {path.name} cannot be imported as a module; name it like a Python module")
    return path.resolve(), function


def function_from_file(path: Path, function: str, arn: str = PLACEHOLDER_FUNCTION_ARN) -> FunctionDef:
    """A Lambda function whose archive is the one file and whose handler is
    ``{module}.{function}``: what local mode runs for ``--authorizer``."""
    name = arn.split(":")[6] if arn.count(":") >= 6 else PLACEHOLDER_FUNCTION_NAME
    return FunctionDef(
        name=name,
        handler=f"{path.stem}.{function}",
        environment={},
        files={path.name: path.read_text(encoding="utf-8")},
        timeout_seconds=FILE_TIMEOUT_SECONDS,
        memory_mb=128,
        arn=arn,
        log_group=f"/aws/lambda/{name}",
    )


# --- the handshake ------------------------------------------------------------------------


def method_arn(region: str, account: str, api_id: str, stage: str) -> str:
    return f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{CONNECT_ROUTE}"


def missing_identity(authorizer: AuthorizerDef, event: Mapping[str, Any],
                     stage_variables: Mapping[str, str]) -> str | None:
    """The first identity source the handshake lacks (absent, null or empty), or None."""
    for source in authorizer.identity_sources:
        if _identity_value(source, event, stage_variables) in (None, ""):
            return source
    return None


def _identity_value(source: str, event: Mapping[str, Any], stage_variables: Mapping[str, str]) -> Any:
    for prefix, lookup in (
        ("route.request.querystring.", lambda name: (event.get("queryStringParameters") or {}).get(name)),
        ("route.request.header.", lambda name: _header(event.get("headers") or {}, name)),
        ("stageVariables.", lambda name: stage_variables.get(name)),
        ("context.", lambda name: _path(event.get("requestContext") or {}, name.split("."))),
    ):
        if source.startswith(prefix):
            return lookup(source[len(prefix):])
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _path(value: Any, parts: list[str]) -> Any:
    for part in parts:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None


def request_event(connect_event: Mapping[str, Any], arn: str, stage_variables: Mapping[str, str]) -> dict:
    """The event the authorizer's function gets: the ``$connect`` event's
    request (headers, query string, request context) as a REQUEST authorizer's input."""
    event: dict[str, Any] = {"type": "REQUEST", "methodArn": arn}
    for key in ("headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters"):
        if key in connect_event:
            event[key] = json.loads(json.dumps(connect_event[key]))
    event["stageVariables"] = dict(stage_variables)
    event["requestContext"] = json.loads(json.dumps(connect_event["requestContext"]))
    return event


async def authorize(authorizer: AuthorizerDef, connect_event: Mapping[str, Any], arn: str,
                    stage_variables: Mapping[str, str], invoke: Invoke) -> Decision:
    """API Gateway's decision on one handshake (see the module's docstring)."""
    missing = missing_identity(authorizer, connect_event, stage_variables)
    if missing is not None:
        return _refusal(401, f"no {missing} in the request")
    request_id = connect_event["requestContext"]["requestId"]
    # an error is the function's answer (its refusal), logged by the gateway
    # in one line: its traceback goes to the log at DEBUG, not to stderr
    answers = ERRORS_ARE_ANSWERS.set(True)
    try:
        answer = await invoke(request_event(connect_event, arn, stage_variables), request_id)
    except FunctionError as exc:
        if exc.error_message == UNAUTHORIZED:
            return _refusal(401, "the authorizer answered Unauthorized")
        return _refusal(500, f"the authorizer failed: {exc}")
    except InvocationError as exc:
        return _refusal(500, f"the authorizer failed: {exc}")
    finally:
        ERRORS_ARE_ANSWERS.reset(answers)
    try:
        principal, policy, context = _read_answer(answer)
        effect = evaluate(policy, arn)
    except MalformedAnswer as exc:
        return _refusal(500, f"the authorizer's answer is malformed: {exc}")
    if effect != "Allow":
        return _refusal(403, f"the authorizer's policy {'denies' if effect == 'Deny' else 'does not allow'} {arn}")
    return Decision(200, context={**context, "principalId": principal}, reason="allowed")


def _read_answer(answer: Any) -> tuple[str, Mapping[str, Any], dict[str, str]]:
    if not isinstance(answer, Mapping):
        raise MalformedAnswer(f"expected an object with principalId and policyDocument, got {type(answer).__name__} "
                              f"(to refuse with 401, raise Exception({UNAUTHORIZED!r}))")
    principal = answer.get("principalId")
    if not isinstance(principal, str) or not principal:
        raise MalformedAnswer("principalId must be a non-empty string")
    policy = answer.get("policyDocument")
    if not isinstance(policy, Mapping):
        raise MalformedAnswer("policyDocument must be an object")
    context = answer.get("context")
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise MalformedAnswer("context must be an object")
    stringified = {}
    for key, value in context.items():
        if isinstance(value, bool):
            stringified[str(key)] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            stringified[str(key)] = str(value)
        else:
            raise MalformedAnswer(f"context.{key} is {type(value).__name__}: its values must be strings, numbers "
                                  "or booleans")
    return principal, policy, stringified


def evaluate(policy: Mapping[str, Any], arn: str) -> str:
    """``"Allow"`` when a statement allows ``execute-api:Invoke`` on ``arn`` and
    none denies it; ``"Deny"`` when one denies it; else ``"None"`` (an implicit
    deny). MalformedAnswer for a policy API Gateway could not read."""
    statements = policy.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise MalformedAnswer("policyDocument.Statement must be a statement or a non-empty list of them")
    allowed = denied = False
    for statement in statements:
        if not isinstance(statement, Mapping):
            raise MalformedAnswer("each statement must be an object")
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise MalformedAnswer(f"a statement's Effect must be Allow or Deny, not {effect!r}")
        if not (_applies(statement, "Action", ACTION, case_sensitive=False)
                and _applies(statement, "Resource", arn, case_sensitive=True)):
            continue
        if effect == "Deny":
            denied = True
        else:
            allowed = True
    return "Deny" if denied else "Allow" if allowed else "None"


def _applies(statement: Mapping[str, Any], element: str, value: str, *, case_sensitive: bool) -> bool:
    """Whether the statement's ``element`` (or ``Not{element}``) covers ``value``."""
    negated = f"Not{element}"
    if (element in statement) == (negated in statement):
        raise MalformedAnswer(f"a statement needs exactly one of {element} and {negated}")
    patterns = statement.get(element, statement.get(negated))
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise MalformedAnswer(f"a statement's {element} must be a string or a non-empty list of strings")
    matched = any(_wildcard(pattern, case_sensitive).fullmatch(value) for pattern in patterns)
    return matched if element in statement else not matched


def _wildcard(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    """An IAM pattern: ``*`` any run of characters, ``?`` any one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)
