"""Lambda function URLs, locally: each of the world's (the server publish
endpoint) at ``http://HOST:PORT/@lambda-url/{function}/{path}``, beside the stage.

Any path below it is served, as on the URL's own domain in AWS. ``@`` is
never in a stage name, so it never shadows a stage. An ``AWS_IAM`` URL takes
SigV4-signed requests for ``lambda`` only, and loopback ones only, as the
management API does (:mod:`.access`); the request becomes a payload format
2.0 event, and the function's answer the HTTP response, as Lambda does.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from ..handlers.spec import DEFAULT_KEY
from .access import management_refusal
from .functions import InvocationError, Throttled
from .websocket_events import now_ms, request_time
from .world import FunctionUrlDef

log = logging.getLogger("channel_server.local")

InvokeUrl = Callable[[str, dict, str], Awaitable[Any]]
"""``invoke_url(function_name, event, request_id)``: runs a function URL's function."""

#: Where local mode serves each function URL: ``/@lambda-url/{function name}``
#: and any path below it (a function URL's own domain takes any path).
FUNCTION_URL_PREFIX = "/@lambda-url"
#: The methods a function URL passes to its function (the Lambda developer
#: guide's "Invoking Lambda function URLs", ``requestContext.http.method``).
FUNCTION_URL_METHODS = frozenset({"GET", "POST", "PUT", "HEAD", "OPTIONS", "PATCH", "DELETE"})
#: Lambda's limit on a synchronous invocation's request, which a function URL's request is.
FUNCTION_URL_MAX_REQUEST_BYTES = 6 * 1024 * 1024
#: Content types whose bodies a function URL passes as text; any other body
#: arrives base64-encoded with ``isBase64Encoded`` (the guide: "If the content
#: type of the request is binary, the body is base64-encoded"). A body without
#: a content type is passed as text when it is UTF-8.
_TEXT_CONTENT = re.compile(r"text/.*|application/(json|xml|javascript|x-www-form-urlencoded|[\w.+-]+\+(json|xml))",
                           re.IGNORECASE)


class FunctionUrls:
    """The world's function URLs, served under :data:`FUNCTION_URL_PREFIX`;
    ``invoke`` runs a URL's function. ``region`` and ``account`` are the
    world's: its URLs' domains and callers are in them."""

    def __init__(self, urls: tuple[FunctionUrlDef, ...], invoke: InvokeUrl, *, region: str, account: str,
                 from_anywhere: bool = False):
        #: Function name → its function URL.
        self._urls = {url.function.name: url for url in urls}
        self._invoke = invoke
        self._region, self._account = region, account
        #: Whether addresses other than loopback may call ``AWS_IAM`` URLs.
        self._from_anywhere = from_anywhere

    def routes(self) -> list[web.RouteDef]:
        # the function's name, then any path (none: the URL's root)
        return [web.route("*", FUNCTION_URL_PREFIX + "/{function:[^/]+}{path:(/.*)?}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One request to a function URL, answered as Lambda answers it: 403
        ``{"Message": "Forbidden"}`` when an ``AWS_IAM`` URL's request is not
        SigV4-signed for ``lambda`` (or comes from beyond loopback, see
        :func:`management_refusal`), else the function's answer; 502
        ``{"Message": "Internal Server Error"}`` when the function fails."""
        name = request.match_info["function"]
        url = self._urls.get(name)
        if url is None:
            served = ", ".join(f"{FUNCTION_URL_PREFIX}/{n}/" for n in sorted(self._urls))
            return _lambda_error(404, f"no function URL for a function named {name!r} here; local mode serves "
                                      f"{served}")
        if url.authorization_type == "AWS_IAM":
            refusal = management_refusal(request.remote, request.headers, self._from_anywhere,
                                         service="lambda", endpoint="a function URL")
            if refusal:
                log.info("function URL %s: 403 Forbidden: %s", name, refusal)
                return _lambda_error(403, "Forbidden")
        if request.method not in FUNCTION_URL_METHODS:
            return _lambda_error(405, f"function URLs take {', '.join(sorted(FUNCTION_URL_METHODS))}, "
                                      f"not {request.method}")
        try:
            body = await _read_limited(request, FUNCTION_URL_MAX_REQUEST_BYTES)
        except (ConnectionError, web.RequestPayloadError) as exc:
            log.warning("function URL %s: the request broke off before its body ended (%s); the function was "
                        "not invoked", name, type(exc).__name__)
            return web.Response(status=400)
        if body is None:
            return _lambda_error(413, f"the request is over Lambda's {FUNCTION_URL_MAX_REQUEST_BYTES} bytes")
        request_id = str(uuid.uuid4())
        event = self.event(request, url, body, request_id)
        started = time.monotonic()
        try:
            result = await self._invoke(name, event, request_id)
        except Throttled as exc:
            # Lambda's TooManyRequestsException ("Rate Exceeded.")
            log.warning("function URL %s %s: throttled: %s", name, request.method, exc)
            return _lambda_error(429, "Rate Exceeded.", request_id)
        except InvocationError as exc:
            log.warning("function URL %s %s: the function failed: %s", name, request.method, exc)
            return _lambda_error(502, "Internal Server Error", request_id)
        response = _function_url_response(result, request_id)
        if response is None:
            log.warning("function URL %s %s: the function's answer is not a response Lambda can send (statusCode, "
                        "headers, body, cookies or isBase64Encoded of the wrong type)", name, request.method)
            return _lambda_error(502, "Internal Server Error", request_id)
        log.info("function URL %s %s %s → %d in %.0f ms", name, request.method, event["rawPath"], response.status,
                 (time.monotonic() - started) * 1000)
        return response

    def event(self, request: web.Request, url: FunctionUrlDef, body: bytes, request_id: str) -> dict:
        """A function URL's event, payload format 2.0, as the Lambda developer
        guide's "Invoking Lambda function URLs" describes it ("Request payload
        format", https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html):
        ``version``, ``routeKey`` ``$default``, ``rawPath``, ``rawQueryString``,
        ``cookies``, ``headers`` (lower-cased, repeated ones joined with
        commas), ``queryStringParameters``, ``requestContext`` (``accountId``,
        ``apiId`` = the URL id, ``authorizer.iam`` for ``AWS_IAM``,
        ``domainName``, ``domainPrefix``, ``http``, ``requestId``, ``routeKey``,
        ``stage`` ``$default``, ``time``, ``timeEpoch``), ``body`` and
        ``isBase64Encoded``. The fields the guide says function URLs set to
        null or leave out (``pathParameters``, ``stageVariables``,
        ``authentication``) are left out."""
        now = now_ms()
        # the path below the function's prefix, as the client sent it (percent-encoded)
        path = request.rel_url.raw_path[len(f"{FUNCTION_URL_PREFIX}/{url.function.name}"):] or "/"
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            name = key.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
        source_ip = request.remote or "127.0.0.1"
        domain = f"{url.url_id}.lambda-url.{self._region}.on.aws"
        context: dict[str, Any] = {
            "accountId": self._account,
            "apiId": url.url_id,
            "domainName": domain,
            "domainPrefix": url.url_id,
            "http": {
                "method": request.method,
                "path": path,
                "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                "sourceIp": source_ip,
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": request_id,
            "routeKey": DEFAULT_KEY,
            "stage": DEFAULT_KEY,
            "time": request_time(now),
            "timeEpoch": now,
        }
        if url.authorization_type == "AWS_IAM":
            context["authorizer"] = {"iam": _iam_caller(request.headers.get("Authorization", ""), self._account)}
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": DEFAULT_KEY,
            "rawPath": path,
            "rawQueryString": request.query_string,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if request.query:
            # repeated parameters joined with commas, as payload format 2.0 does
            event["queryStringParameters"] = {k: ",".join(request.query.getall(k)) for k in request.query.keys()}
        if body:
            text = _body_text(body, request.headers.get("Content-Type"))
            if text is None:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
            else:
                event["body"] = text
        return event



def _body_text(body: bytes, content_type: str | None) -> str | None:
    """A request body as a function URL passes text, or None to pass it base64-encoded."""
    if content_type is not None and not _TEXT_CONTENT.fullmatch(content_type.split(";", 1)[0].strip()):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _iam_caller(authorization: str, account: str) -> dict:
    """``requestContext.authorizer.iam``: who signed. Local mode checks no
    secret, so it knows only the access key the request names; the other
    fields stand for an IAM user of that name in the function's account."""
    match = re.search(r"Credential=([^/\s,]+)/", authorization)
    access_key = match.group(1) if match else ""
    user_id = "AIDA" + "".join(c for c in access_key.upper() if c.isalnum())[:17].ljust(17, "X")
    return {
        "accessKey": access_key,
        "accountId": account,
        "callerId": user_id,
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": f"arn:aws:iam::{account}:user/{access_key}",
        "userId": user_id,
    }


def _function_url_response(result: Any, request_id: str) -> web.Response | None:
    """The HTTP response Lambda makes of a function URL's answer ("Response
    payload format" in the guide above): a dict with ``statusCode`` gives its
    status, ``headers``, ``body`` (base64-decoded when ``isBase64Encoded``) and
    a ``set-cookie`` header per entry of ``cookies``; any other JSON value
    is the body of a 200 ``application/json`` response. None when the answer
    has a ``statusCode`` but cannot be sent (Lambda answers 502)."""
    if not (isinstance(result, Mapping) and "statusCode" in result):
        return web.Response(status=200, body=json.dumps(result).encode(), content_type="application/json",
                            headers={"x-amzn-RequestId": request_id})
    status, headers, body = result["statusCode"], result.get("headers") or {}, result.get("body")
    cookies = result.get("cookies") or []
    if (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
            or not isinstance(headers, Mapping) or not isinstance(cookies, list)):
        return None
    if body is None:
        data = b""
    elif not isinstance(body, str):
        data = json.dumps(body).encode()
    elif result.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:
            return None
    else:
        data = body.encode("utf-8")
    response = web.Response(status=status, body=data)
    for name, value in headers.items():
        response.headers[str(name)] = str(value)
    for cookie in cookies:
        response.headers.add("Set-Cookie", str(cookie))
    response.headers.setdefault("x-amzn-RequestId", request_id)
    return response


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None when it is longer than ``limit`` (read past
    the app's own limit, which is sized for the management API's posts)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _lambda_error(status: int, message: str, request_id: str | None = None) -> web.Response:
    """Lambda's own answer on a function URL: ``{"Message": ...}``."""
    headers = {"x-amzn-RequestId": request_id} if request_id else None
    return web.json_response({"Message": message}, status=status, headers=headers)

