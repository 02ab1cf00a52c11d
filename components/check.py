"""``python -m channel_server.check URL``: run the protocol against a deployed stack (or local
mode) and print one line per check, with its latency.

    .venv/bin/python -m channel_server.check "$(pulumi stack output url)"

The checks, in the order they run (docs/check.md says what each proves):

- ``connect``: the WebSocket handshake (with the token, when one is given);
- ``join``: a join of the check's channel gets ``joinSuccess``;
- ``ping``: a ``ping`` with data gets its ``pong``, the data echoed;
- ``publish``: a second connection joins the channel, and a publish from the
  first reaches it (``message`` with the publisher's senderId), the publisher
  getting ``publishSuccess``;
- ``server publish`` (``--publish-endpoint``): a SigV4-signed publish through
  the server publish endpoint (``channel_server.publish``) reaches a member,
  from the senderId ``$server``;
- ``unknown type``: a frame of a type no route has gets the ``$default``
  route's ``error``, exactly as ``handlers/protocol.py`` words it;
- ``over the limit``: a publish whose ``message`` would be one byte over API
  Gateway's 128 KB gets ``publishFailure`` (``message too large``);
- ``refused join``: a join of a reserved channel id (``$…``) gets ``joinFailure``;
- ``no token`` (a token given): the handshake without it is refused with 401
  or 403, as a ``$connect`` authorizer refuses it;
- ``heartbeat`` (``--heartbeat-seconds N``): a ``heartbeat`` frame comes within
  N seconds of connecting, plus the timeout.

A check that does not apply is printed as ``skipped`` with the reason (no
token: no authorizer to check), and so is one whose prerequisite failed.
Every wait is bounded by the per-check timeout, so the command never hangs;
whatever goes wrong (a refused handshake, a closed connection, API Gateway's
``Internal server error`` frame in place of a reply) is a ``FAIL`` line that
says what was expected and what came instead.

From a program: :func:`check` (or ``await`` :func:`run_checks`) returns a
:class:`Report`, whose ``exit_status`` is the command's: 0 when no check
failed, 1 when one did. The command exits 2 for bad usage, or when an extra it
needs is not installed: ``[client]`` (websockets) always, ``[publish]``
(botocore) for ``--publish-endpoint``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import math
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .args import DEFAULT_IDENTITY_SOURCES
from .client import (ChannelClient, ChannelClientError, ClientEvent, ConnectFailed, GatewayError, JoinFailed,
                     Message, PublishFailed, RequestFailed)
from .extras import install_command, missing_requirements
from .handlers import protocol

__all__ = ["CHECKS", "DEFAULT_TIMEOUT", "DEFAULT_TOKEN_PARAMETER", "Report", "Result", "check", "main", "run_checks"]

#: The checks, in the order they run and print.
CHECKS = ("connect", "join", "ping", "publish", "server publish", "unknown type", "over the limit", "refused join",
          "no token", "heartbeat")
PASS, FAIL, SKIPPED = "pass", "FAIL", "skipped"
#: Seconds each check may take (the heartbeat's: its interval plus this).
DEFAULT_TIMEOUT = 10.0
#: The query-string parameter the token goes in: the one of the component's
#: default identity source (``route.request.querystring.token``).
QUERY_STRING_SOURCE = "route.request.querystring."
DEFAULT_TOKEN_PARAMETER = DEFAULT_IDENTITY_SOURCES[0].removeprefix(QUERY_STRING_SOURCE)
#: A publish that reached nobody within this many seconds is sent again (with
#: a new nonce): the channel index a publish reads is eventually consistent
#: (docs/protocol.md §5), so on AWS a member that joined a moment ago may be
#: missed. A later copy of the first still counts.
RESEND_SECONDS = 1.0
#: A frame type no route has: the ``$default`` route answers it.
UNKNOWN_TYPE = "checkUnknownType"
#: A channel id every deployment refuses, whatever its pattern: ``$`` is reserved.
RESERVED_CHANNEL = "$check"
#: How much of a frame a line quotes.
MAX_QUOTE = 240


@dataclass(frozen=True)
class Result:
    """One check's outcome: ``status`` is ``pass``, ``FAIL`` or ``skipped``;
    ``latency_ms`` the time from its first frame to the last one it waited for
    (None when skipped); ``detail`` what came, what was expected and what came
    instead, or why it was skipped."""

    name: str
    status: str
    latency_ms: float | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        latency = "" if self.latency_ms is None else _milliseconds(self.latency_ms)
        return f"{self.name:<14}  {self.status:<7} {latency:>9}  {self.detail}".rstrip()


@dataclass(frozen=True)
class Report:
    """Every check's :class:`Result`, in the order they ran."""

    url: str
    channel: str
    results: tuple[Result, ...]

    @property
    def ok(self) -> bool:
        return not any(result.failed for result in self.results)

    @property
    def exit_status(self) -> int:
        """The command's: 0 when no check failed, 1 when one did."""
        return 0 if self.ok else 1

    def result(self, name: str) -> Result:
        (found,) = [result for result in self.results if result.name == name]
        return found

    def summary(self) -> str:
        counts = {status: sum(r.status == status for r in self.results) for status in (PASS, FAIL, SKIPPED)}
        said = ", ".join(f"{n} {word}" for n, word in ((counts[PASS], "passed"), (counts[FAIL], "failed"),
                                                        (counts[SKIPPED], "skipped")) if n)
        return f"{len(self.results)} checks: {said}"


def _milliseconds(value: float) -> str:
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


class _Failed(Exception):
    """A check got something other than what it expects: ``got`` says what."""

    def __init__(self, got: str):
        super().__init__(got)
        self.got = got


@dataclass(frozen=True)
class _Passed:
    seconds: float
    detail: str


def default_channel() -> str:
    """A channel of the check's own, so no member of a real channel hears it."""
    return f"check-{secrets.token_hex(4)}"


def check(url: str, **options: Any) -> Report:
    """Run every check against ``url`` (the stack output ``url``); the
    options are :func:`run_checks`'. Not from inside a running event loop:
    ``await run_checks(...)`` there."""
    return asyncio.run(run_checks(url, **options))


async def run_checks(url: str, *, token: str | None = None, token_parameter: str = DEFAULT_TOKEN_PARAMETER,
                     channel: str | None = None, publish_endpoint: str | None = None,
                     heartbeat_seconds: float | None = None, timeout: float = DEFAULT_TIMEOUT,
                     on_result: Callable[[Result], None] | None = None) -> Report:
    """Run every check against ``url``; ``on_result`` is called with each
    :class:`Result` as it comes (the command prints it).

    ``token``: what the ``$connect`` authorizer reads, sent as the query
    parameter ``token_parameter`` (the default identity source's); without
    one, a token already in ``url``'s query counts, and the ``no token``
    check is skipped when there is none.
    ``channel``: the channel to check in (default: a new ``check-…``; with an
    authorizer that limits channels, one the token may join).
    ``publish_endpoint``: the server publish endpoint (the ``publishUrl``
    output), to check it. ``heartbeat_seconds``: the interval heartbeats are
    expected at (``heartbeatIntervalMinutes`` × 60). ``timeout``: seconds each
    check may take.
    """
    problem = _problem(url, timeout, heartbeat_seconds, token_parameter)
    if problem:
        raise ValueError(problem)
    checker = _Checker(url, token=token, token_parameter=token_parameter, channel=channel or default_channel(),
                       publish_endpoint=publish_endpoint,
                       heartbeat_seconds=heartbeat_seconds, timeout=timeout, on_result=on_result)
    return await checker.run()


def _problem(url: str, timeout: float, heartbeat_seconds: float | None, token_parameter: str) -> str | None:
    if not _is_url(url, ("ws", "wss")):
        return f"the URL must be a ws:// or wss:// URL (the stack output url), not {url!r}"
    if not (math.isfinite(timeout) and timeout > 0):
        return f"the timeout must be a positive number of seconds, not {timeout!r}"
    if heartbeat_seconds is not None and not (math.isfinite(heartbeat_seconds) and heartbeat_seconds > 0):
        return f"the heartbeat interval must be a positive number of seconds, not {heartbeat_seconds!r}"
    if not token_parameter:
        return "the token's query-string parameter needs a name"
    return None


def _is_url(text: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and not any(c.isspace() for c in text)


def _with_query(url: str, name: str, value: str | None) -> str:
    """``url`` with the query parameter ``name`` set to ``value`` (None: removed)."""
    parts = urlsplit(url)
    query = [(key, item) for key, item in parse_qsl(parts.query, keep_blank_values=True) if key != name]
    if value is not None:
        query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _quote(frame: Any) -> str:
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "…"


def _in_daemon_thread(loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> "asyncio.Future[Any]":
    """``call()`` in a thread of its own that never holds the process: a check that
    times out stops waiting for it, and the command exits, however slowly an
    endpoint answers (the loop's default executor is joined at exit)."""
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, failure: BaseException | None) -> None:
        if not future.done():
            future.set_exception(failure) if failure is not None else future.set_result(outcome)

    def run() -> None:
        try:
            outcome, failure = call(), None
        except BaseException as error:  # handed to the awaiting check, whatever it is
            outcome, failure = None, error
        try:
            loop.call_soon_threadsafe(settle, outcome, failure)
        except RuntimeError:  # the run has ended (its loop closed): nobody waits for it any more
            pass

    threading.Thread(target=run, name="check-publish", daemon=True).start()
    return future


def _described(exc: BaseException) -> str:
    """What came instead of the reply, as a line says it."""
    if isinstance(exc, GatewayError):
        return f"API Gateway's error frame {_quote(exc.frame)}"
    if isinstance(exc, RequestFailed):
        return _quote(exc.frame)
    if isinstance(exc, ConnectFailed):
        return f"the handshake refused with HTTP {exc.status}" if exc.status is not None else str(exc)
    if isinstance(exc, ChannelClientError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Checker:
    """One run of the checks: the connections it opened and what it learnt."""

    def __init__(self, url: str, *, token: str | None, token_parameter: str, channel: str,
                 publish_endpoint: str | None, heartbeat_seconds: float | None, timeout: float,
                 on_result: Callable[[Result], None] | None):
        if token is None:
            token = dict(parse_qsl(urlsplit(url).query)).get(token_parameter)
        self.token = token
        self.token_parameter = token_parameter
        self.url = url if token is None else _with_query(url, token_parameter, token)
        #: the URL without the token, for the ``no token`` check
        self.bare_url = _with_query(url, token_parameter, None)
        self.channel = channel
        self.publish_endpoint = publish_endpoint
        self.heartbeat_seconds = heartbeat_seconds
        self.timeout = timeout
        self.on_result = on_result
        self.results: list[Result] = []
        self.clients: list[ChannelClient] = []
        self.first: ChannelClient | None = None  # the connection most checks use
        self.sender_id: str | None = None  # its senderId in the channel
        self.connected_at = 0.0
        self.heartbeat_at: float | None = None
        self.heartbeat = asyncio.Event()
        self.second: ChannelClient | None = None  # a member that receives the publishes
        self.second_problem: str | None = None
        self.so_far: str | None = None  # what the running check got so far, for a timeout's line

    async def run(self) -> Report:
        try:
            await self._check("connect", "a connection (the handshake accepted)", self._connect)
            await self._check("join", f"joinSuccess in {self.channel}", self._join, needs="connect")
            await self._check("ping", "a pong echoing the ping's data", self._ping, needs="connect")
            await self._check("publish", "the message on a second connection in the channel, and publishSuccess",
                              self._publish, needs="join")
            if self.publish_endpoint is None:
                self._skip("server publish", "no --publish-endpoint given")
            else:
                await self._check("server publish", "a member getting the message from $server",
                                  self._server_publish, needs="join")
            expected = self._unknown_type_reply()
            await self._check("unknown type", f"the error reply {_quote(expected)}",
                              lambda: self._unknown_type(expected), needs="connect")
            await self._check("over the limit", "publishFailure: message too large", self._over_the_limit,
                              needs="join")
            await self._check("refused join", f"joinFailure: {protocol.Rules().channel_id_problem(RESERVED_CHANNEL)}",
                              self._refused_join, needs="connect")
            if self.token is None:
                self._skip("no token", "no token given: nothing for an authorizer to refuse")
            else:
                await self._check("no token", "the handshake without the token refused with HTTP 401 or 403",
                                  self._no_token)
            if self.heartbeat_seconds is None:
                self._skip("heartbeat", "no --heartbeat-seconds given")
            else:
                await self._check("heartbeat", f"a heartbeat within {self.heartbeat_seconds:g} s of connecting",
                                  self._heartbeat, needs="connect", timeout=self.heartbeat_seconds + self.timeout)
        finally:
            await self._close()
        return Report(self._redacted(self.url), self.channel, tuple(self.results))

    # --- the runner -----------------------------------------------------------------------

    async def _check(self, name: str, expected: str, body: Callable[[], Awaitable[_Passed]], *,
                     needs: str | None = None, timeout: float | None = None) -> None:
        if needs is not None and not self._passed(needs):
            self._skip(name, f"not run: {needs} did not pass")
            return
        limit = self.timeout if timeout is None else timeout
        self.so_far = None
        start = time.perf_counter()
        try:
            passed = await asyncio.wait_for(body(), limit)
        except asyncio.TimeoutError:
            got = f"{self.so_far} and nothing more" if self.so_far else "nothing"
            self._record(Result(name, FAIL, (time.perf_counter() - start) * 1000,
                                f"expected {expected} within {limit:g} s; got {got}"))
        except _Failed as failure:
            self._record(Result(name, FAIL, (time.perf_counter() - start) * 1000,
                                f"expected {expected}; got {failure.got}"))
        except Exception as exc:  # whatever it is, a line that says so, not a traceback
            self._record(Result(name, FAIL, (time.perf_counter() - start) * 1000,
                                f"expected {expected}; got {_described(exc)}"))
        else:
            self._record(Result(name, PASS, passed.seconds * 1000, passed.detail))

    def _skip(self, name: str, why: str) -> None:
        self._record(Result(name, SKIPPED, None, why))

    def _record(self, result: Result) -> None:
        result = Result(result.name, result.status, result.latency_ms, self._redacted(result.detail))
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def _passed(self, name: str) -> bool:
        return any(result.name == name and result.status == PASS for result in self.results)

    def _redacted(self, text: str) -> str:
        """``text`` without the token (a secret) where the URL carries it: a
        failed handshake's error names the URL."""
        if not self.token:
            return text
        return text.replace(urlencode({self.token_parameter: self.token}), f"{self.token_parameter}=<token>")

    def _client(self, url: str | None = None, *, heartbeats: bool = False) -> ChannelClient:
        def seen(event: ClientEvent) -> None:
            if event.kind == "heartbeat" and self.heartbeat_at is None:
                self.heartbeat_at = time.perf_counter()
                self.heartbeat.set()

        client = ChannelClient(url or self.url, ping_interval=None,
                               reply_timeout=self.timeout, reconnect=False, open_timeout=self.timeout,
                               on_event=seen if heartbeats else None)
        self.clients.append(client)
        return client

    async def _close(self) -> None:
        for client in self.clients:
            try:
                await asyncio.wait_for(client.close(), self.timeout)
            except Exception:  # closing what is already broken: nothing left to report
                pass

    @property
    def _first(self) -> ChannelClient:
        assert self.first is not None  # every check that uses it needs connect
        return self.first

    # --- the checks -------------------------------------------------------------------------

    async def _connect(self) -> _Passed:
        client = self._client(heartbeats=True)
        start = time.perf_counter()
        try:
            await client.connect()
        except ConnectFailed as exc:
            hint = ""
            if exc.status in (401, 403) and self.token is None:
                hint = " (a $connect authorizer? give its token with --token)"
            raise _Failed(_described(exc) + hint) from None
        self.connected_at = time.perf_counter()
        self.first = client
        return _Passed(self.connected_at - start, "connected")

    async def _join(self) -> _Passed:
        start = time.perf_counter()
        try:
            joined = await self._first.join(self.channel)
        except JoinFailed as exc:
            hint = "" if exc.reason in (protocol.JOIN_BUSY, protocol.INTERNAL_ERROR) else \
                " (give --channel a channel this deployment, and the token, allow)"
            raise _Failed(_described(exc) + hint) from None
        seconds = time.perf_counter() - start
        if joined.channel_id != self.channel or not isinstance(joined.sender_id, str):
            raise _Failed(f"joinSuccess for {joined.channel_id!r} with senderId {joined.sender_id!r}")
        self.sender_id = joined.sender_id
        return _Passed(seconds, f"joinSuccess in {self.channel}")

    async def _ping(self) -> _Passed:
        data = {"check": "ping", "nonce": secrets.token_hex(4)}
        start = time.perf_counter()
        echoed = await self._first.ping(data)
        seconds = time.perf_counter() - start
        if echoed != data:
            raise _Failed(f"a pong with the data {_quote(echoed)}")
        return _Passed(seconds, "pong, the data echoed")

    async def _receiver(self) -> ChannelClient:
        """The second member, joined once for the publish checks."""
        if self.second is None and self.second_problem is None:
            client = self._client()
            try:
                await client.connect()
                await client.join(self.channel)
            except ChannelClientError as exc:
                self.second_problem = _described(exc)
            else:
                self.second = client
        if self.second is None:
            raise _Failed(f"no second connection to receive it: {self.second_problem}")
        return self.second

    async def _delivered(self, receiver: ChannelClient, sent: dict[str, float], within: float) -> Message | None:
        """The next message ``receiver`` gets whose data carries one of the
        nonces ``sent``, within ``within`` seconds; None when none came."""
        deadline = time.perf_counter() + within
        while (left := deadline - time.perf_counter()) > 0:
            try:
                message = await asyncio.wait_for(receiver.__anext__(), left)
            except asyncio.TimeoutError:
                return None
            if isinstance(message.data, dict) and message.data.get("nonce") in sent:
                return message
        return None

    async def _publish(self) -> _Passed:
        receiver = await self._receiver()
        sent: dict[str, float] = {}
        while True:  # until the receiver has one of them; the check's timeout bounds it
            nonce = secrets.token_hex(8)
            sent[nonce] = time.perf_counter()
            await self._first.publish({"check": "publish", "nonce": nonce})
            self.so_far = "publishSuccess"
            message = await self._delivered(receiver, sent, RESEND_SECONDS)
            if message is not None:
                break
        arrived = time.perf_counter()
        expected = protocol.message(self.channel, str(self.sender_id), message.data, str(message.message_id))
        got = protocol.message(message.channel_id, message.sender_id, message.data, str(message.message_id))
        if got != expected or not protocol.MESSAGE_ID.fullmatch(str(message.message_id)):
            raise _Failed(f"the message {_quote(got)}")
        seconds = arrived - sent[message.data["nonce"]]
        again = f" (after {len(sent)} publishes: the first reached nobody)" if len(sent) > 1 else ""
        return _Passed(seconds, f"a second connection got the message, the publisher publishSuccess{again}")

    async def _server_publish(self) -> _Passed:
        from .publish import Publisher, PublishError

        assert self.publish_endpoint is not None
        receiver = await self._receiver()
        loop = asyncio.get_running_loop()
        try:
            publisher = Publisher(self.publish_endpoint, timeout=self.timeout)
        except PublishError as exc:
            raise _Failed(f"a publisher that cannot sign: {exc}") from None
        try:
            sent: dict[str, float] = {}
            outcomes: list[Any] = []
            while True:
                nonce = secrets.token_hex(8)
                sent[nonce] = time.perf_counter()
                try:
                    outcome = await _in_daemon_thread(loop, lambda: publisher.publish(
                        self.channel, {"check": "server publish", "nonce": nonce}))
                except PublishError as exc:
                    raise _Failed(f"{type(exc).__name__}: {exc}") from None
                outcomes.append(outcome)
                self.so_far = f"the endpoint's answer delivered={outcome.delivered}, failed={outcome.failed}"
                message = await self._delivered(receiver, sent, RESEND_SECONDS)
                if message is not None:
                    break
        finally:
            publisher.close()
        arrived = time.perf_counter()
        if message.sender_id != protocol.SERVER_SENDER_ID or message.channel_id != self.channel:
            raise _Failed(f"a message from senderId {message.sender_id!r} in {message.channel_id!r}")
        last = outcomes[-1]
        return _Passed(arrived - sent[message.data["nonce"]],
                       f"a member got the message from {protocol.SERVER_SENDER_ID}; the endpoint answered "
                       f"delivered={last.delivered}, failed={last.failed}")

    def _unknown_type_reply(self) -> dict[str, Any]:
        """The ``$default`` route's reply to the frame the check sends, as the protocol module builds it."""
        command = protocol.decode(self._unknown_type_frame(), protocol.Rules())
        assert isinstance(command, protocol.Reply)
        return protocol.answering(command, command.frame)

    @staticmethod
    def _unknown_type_frame() -> str:
        return json.dumps({"type": UNKNOWN_TYPE, "requestId": "check-unknown-type"})

    async def _unknown_type(self, expected: dict[str, Any]) -> _Passed:
        # the client sends only the frames it knows: a raw connection sends this one
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        try:
            ws = await connect(self.url, open_timeout=self.timeout, close_timeout=self.timeout, ping_interval=None,
                               max_size=None)
        except InvalidStatus as exc:
            raise _Failed(f"the handshake refused with HTTP {exc.response.status_code}") from None
        try:
            start = time.perf_counter()
            await ws.send(self._unknown_type_frame())
            while True:
                raw = await ws.recv()
                try:
                    frame = json.loads(raw)
                except ValueError:
                    raise _Failed(f"a frame that is not JSON: {str(raw)[:MAX_QUOTE]!r}") from None
                if isinstance(frame, dict) and frame.get("type") in ("heartbeat", "message"):
                    continue  # not a reply
                break
            seconds = time.perf_counter() - start
        finally:
            await ws.close()
        if isinstance(frame, dict) and "type" not in frame and "message" in frame:
            raise _Failed(f"API Gateway's error frame {_quote(frame)}")
        if frame != expected:
            raise _Failed(_quote(frame))
        return _Passed(seconds, _quote(frame))

    async def _over_the_limit(self) -> _Passed:
        # data that makes the message frame one byte over what any deployment allows,
        # while the publish frame carrying it stays within API Gateway's 128 KB
        sender_id, target = str(self.sender_id), protocol.API_GATEWAY_MAX_MESSAGE_BYTES + 1
        around = len(protocol.encode(protocol.message(self.channel, sender_id, "", protocol.new_message_id())))
        data = "x" * (target - around)
        start = time.perf_counter()
        try:
            await self._first.publish(data)
        except PublishFailed as exc:
            seconds = time.perf_counter() - start
            limit = exc.reason.rpartition(" ")[2]
            refusal = None
            if limit.isdigit() and 0 < int(limit) < target:
                rules = protocol.Rules(max_message_bytes=int(limit))
                refusal = protocol.prepare_message(self.channel, sender_id, data, rules).failure
            if refusal is None or exc.frame.get("data") != refusal["data"] or exc.frame.get("type") != refusal["type"]:
                raise _Failed(_quote(exc.frame)) from None
            return _Passed(seconds, f"publishFailure: {exc.reason}")
        raise _Failed(f"publishSuccess: a message of {target} bytes was sent")

    async def _refused_join(self) -> _Passed:
        reason = protocol.Rules().channel_id_problem(RESERVED_CHANNEL)
        start = time.perf_counter()
        try:
            await self._first.join(RESERVED_CHANNEL)
        except JoinFailed as exc:
            if exc.reason != reason:
                raise _Failed(_quote(exc.frame)) from None
            return _Passed(time.perf_counter() - start, f"joinFailure: {exc.reason}")
        raise _Failed(f"joinSuccess in {RESERVED_CHANNEL}")

    async def _no_token(self) -> _Passed:
        client = self._client(self.bare_url)
        start = time.perf_counter()
        try:
            await client.connect()
        except ConnectFailed as exc:
            if exc.status not in (401, 403):
                raise _Failed(_described(exc)) from None
            return _Passed(time.perf_counter() - start, f"the handshake without the token refused with HTTP "
                           f"{exc.status}")
        raise _Failed("a connection: the handshake was accepted without the token")

    async def _heartbeat(self) -> _Passed:
        assert self.heartbeat_seconds is not None
        # the first heartbeat may have come already, during the other checks
        deadline = self.connected_at + self.heartbeat_seconds + self.timeout
        try:
            await asyncio.wait_for(self.heartbeat.wait(), max(0.0, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            waited = time.perf_counter() - self.connected_at
            raise _Failed(f"no heartbeat in the {waited:.1f} s since connecting") from None
        assert self.heartbeat_at is not None
        seconds = self.heartbeat_at - self.connected_at
        return _Passed(seconds, f"the first heartbeat came {seconds:.1f} s after connecting")


# --- the command line ---------------------------------------------------------------------------


EXIT_STATUS = """\
Exit status: 0 when every check passed (or was skipped), 1 when one failed,
2 for bad usage or when an extra the options need is not installed, 130 when
interrupted (Ctrl-C)."""


def _ws_url(text: str) -> str:
    if not _is_url(text, ("ws", "wss")):
        raise argparse.ArgumentTypeError(f"must be a ws:// or wss:// URL (the stack output url), not {text!r}")
    return text


def _http_url(text: str) -> str:
    if not _is_url(text, ("http", "https")):
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL (the stack output publishUrl), "
                                         f"not {text!r}")
    return text


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m channel_server.check``."""
    parser = argparse.ArgumentParser(
        prog="python -m channel_server.check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the channel server's protocol against a deployed stack (or local mode) and print\n"
        "one line per check: its name, pass, FAIL or skipped, its latency, and what came.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("url", metavar="URL", type=_ws_url,
                        help="the stack output url (wss://…), or local mode's (ws://127.0.0.1:8080/dev)")
    parser.add_argument("--token", metavar="T",
                        help="the token the $connect authorizer reads; also checks that a handshake without "
                        "it is refused")
    parser.add_argument("--token-parameter", metavar="NAME", default=DEFAULT_TOKEN_PARAMETER,
                        help="the query-string parameter the token goes in (default %(default)s, the "
                        "component's default identity source)")
    parser.add_argument("--channel", metavar="C",
                        help="the channel to check in (default: a new check-…); with an authorizer that limits "
                        "channels, one the token may join")
    parser.add_argument("--publish-endpoint", metavar="URL", type=_http_url,
                        help="the server publish endpoint (the stack output publishUrl): publish through it, "
                        "signed with your AWS credentials, and see a member get it")
    parser.add_argument("--heartbeat-seconds", metavar="N", type=_seconds,
                        help="expect a heartbeat within N seconds of connecting (heartbeatIntervalMinutes × 60)")
    parser.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=DEFAULT_TIMEOUT,
                        help="how long each check may take (default %(default)g; the heartbeat's: N plus this)")
    return parser


#: What each extra is needed for, and the module that stands for it.
_EXTRAS = {"client": ("the check", "websockets"), "publish": ("--publish-endpoint", "botocore")}


def missing_extra(publish: bool) -> str | None:
    """The line that names the extra to install, when one the options need is missing."""
    for extra in ("client", "publish") if publish else ("client",):
        what, module = _EXTRAS[extra]
        missing = missing_requirements(extra) or ([] if importlib.util.find_spec(module) else [module])
        if missing:
            return f"{what} needs {', '.join(missing)}: {install_command(extra)}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exit_:  # a usage error (2), or --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    missing = missing_extra(options.publish_endpoint is not None)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    channel = options.channel or default_channel()
    print(f"checking {_with_query(options.url, options.token_parameter, None)} in channel {channel}", flush=True)
    # the client's own log lines would repeat what the check's lines say
    client_log = logging.getLogger("channel_server.client")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        report = asyncio.run(run_checks(
            options.url, token=options.token, token_parameter=options.token_parameter, channel=channel,
            publish_endpoint=options.publish_endpoint,
            heartbeat_seconds=options.heartbeat_seconds, timeout=options.timeout,
            on_result=lambda result: print(result.line(), flush=True)))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        client_log.setLevel(level)
    print(report.summary(), flush=True)
    return report.exit_status


if __name__ == "__main__":
    sys.exit(main())
