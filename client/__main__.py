"""``python -m channel_server.client URL``: talk in a channel from a terminal.

Typed lines are published (as JSON strings) to the channel joined with
``--channel`` or ``/join``; messages from the other members print on stdout as
``<senderId>: <data>``. Everything else (joins, pongs, failures, reconnects)
prints on stderr, so stdout carries only messages.

While disconnected, typed lines wait (the client's ``max_queue``, 100, at most;
each says so on stderr) and go out in order after the reconnect. A join whose
connection closed before its reply is made again on the next connection: a
membership ends with the connection it was made on. Commands:

    /join CHANNEL   join CHANNEL (leaving the current one)
    /json VALUE     publish a JSON value instead of text: /json {"x": 1}
    /ping [VALUE]   ping the server, with an optional JSON value to echo
    /quit           close the connection and exit (as do end of input and Ctrl-C)
    //text          publish text that starts with a slash
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import urlsplit

from ..extras import require

HELP = __doc__.split("Commands:\n", 1)[1].rstrip()
#: What a command that takes a value says when it is typed without one (or with a wrong one).
USAGE = {
    "/join": "/join CHANNEL",
    "/json": '/json VALUE, a JSON value such as {"x": 1}, [1, 2] or "text"',
    "/ping": "/ping [VALUE], VALUE an optional JSON value to echo",
}
EXIT_STATUS = """\
Exit status: 0 after end of input or /quit; 1 when the first connection fails
or the client gives up reconnecting (a handshake refused with a 4xx status
other than 429, or --max-reconnect-attempts failed attempts in a row); 2 for
wrong arguments; 130 after Ctrl-C."""


def show(data: Any) -> str:
    """A message's data as one line: text as it is, any other value as JSON."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return text.replace("\r", "\\r").replace("\n", "\\n")


def status(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _header(value: str) -> tuple[str, str]:
    name, colon, content = value.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', not {value!r}")
    return name.strip(), content.strip()


def _url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {value!r} ({exc})") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"must be a ws:// or wss:// URL (the stack output url), not {value!r}")
    return value


def _interval(value: str) -> Optional[float]:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"must be 0 (never ping) or a positive number of seconds, not {value!r}")
    return seconds or None


def _attempts(value: str) -> int:
    try:
        attempts = int(value)
    except ValueError:
        attempts = 0
    if attempts < 1:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least 1 (leave it out to reconnect forever), not {value!r}")
    return attempts


def parser() -> argparse.ArgumentParser:
    from . import DEFAULT_PING_INTERVAL

    result = argparse.ArgumentParser(
        prog="python -m channel_server.client",
        description="Talk in a channel of a channel server from a terminal.",
        epilog="Commands while connected:\n" + HELP + "\n\n" + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("url", metavar="URL", type=_url,
                        help="the stack output url: wss://… (local mode: ws://127.0.0.1:8080/dev)")
    result.add_argument("--channel", "-c", metavar="C", help="join C once connected")
    result.add_argument("--header", "-H", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
                        help="a handshake header, e.g. what a $connect authorizer reads (repeatable)")
    result.add_argument("--ping-interval", type=_interval, default=DEFAULT_PING_INTERVAL, metavar="SECONDS",
                        help="ping after this many seconds without traffic; 0: never (default %(default)s)")
    result.add_argument("--max-reconnect-attempts", type=_attempts, metavar="N",
                        help="give up after N failed reconnect attempts in a row, and exit with status 1 "
                             "(default: never give up)")
    return result


class _LogLines(logging.Handler):
    """The client library's warnings as ``!`` lines, one line each (no
    traceback), leaving out what this terminal client says itself: the
    library's line on giving up, and on a rejoin refused for good."""

    SAID_HERE = frozenset({"_give_up", "_rejoin"})

    def emit(self, record: logging.LogRecord) -> None:
        if record.funcName in self.SAID_HERE:
            return
        error = record.exc_info[1] if record.exc_info else None
        status(f"! {record.getMessage()}" + (f": {type(error).__name__}: {error}" if error is not None else ""))


def _read_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[Optional[str]]) -> None:
    """Standard input's lines onto ``lines``, then None at its end. A daemon
    thread: it blocks in readline, and must not keep the process alive.

    It blocks SIGINT and SIGTERM, so the kernel hands a Ctrl-C to the main
    thread: one delivered here would wait, unhandled, until the event loop
    next woke (a reconnect's backoff can be 30 s)."""

    def pump() -> None:
        if hasattr(signal, "pthread_sigmask"):  # not on Windows, where signals go to the main thread
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()


@dataclass(frozen=True)
class Request:
    """A typed line that goes to the server: ``send`` sends it and says how it went."""

    verb: str  # what it does, for "will VERB after reconnecting"
    send: Callable[[], Awaitable[None]]


def _not_a_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def run(args: argparse.Namespace) -> int:
    from . import (ChannelClient, ChannelClientError, ClientClosed, ClientEvent, ConnectFailed, ConnectionLost,
                   JoinFailed, PublishFailed)
    from .channel_client import _refused_for_good

    def on_event(event: ClientEvent) -> None:
        detail = event.detail
        if event.kind == "disconnected" and not closing:
            status(f"* connection closed ({detail.get('code')} {detail.get('reason') or ''}".rstrip() + ")")
        elif event.kind == "reconnecting":
            attempt = detail["attempt"]
            why = detail["reason"] if attempt == 1 else f"attempt {attempt - 1} failed: {detail['reason']}"
            status(f"* reconnecting in {detail['delay']:.1f} s (attempt {attempt}): {why}")
        elif event.kind == "rejoined":
            status(f"* rejoined {detail['channel_id']} as {detail['sender_id']}")
        elif event.kind == "ready":
            status("* reconnected")
        changed.set()

    closing = told_gave_up = False
    changed = asyncio.Event()  # set on every event of the client
    client = ChannelClient(args.url, headers=dict(args.header), ping_interval=args.ping_interval,
                           max_reconnect_attempts=args.max_reconnect_attempts, on_event=on_event)
    try:
        await client.connect()
    except ConnectFailed as exc:
        status(f"! {exc}")
        return 1
    status(f"* connected to {args.url}; type to publish, /help for commands")

    def gave_up() -> None:
        """Say why the client gave up reconnecting, once (the message printer,
        the sender and the end of the run all learn it)."""
        nonlocal told_gave_up
        failure = client.failure
        if failure is None or told_gave_up:
            return
        told_gave_up = True
        attempts = args.max_reconnect_attempts
        if _refused_for_good(failure):
            status(f"! gave up reconnecting: {failure}; a refused handshake is not tried again")
        elif attempts is not None:
            status(f"! gave up reconnecting after {attempts} failed attempt{'s' * (attempts != 1)} in a row "
                   f"(--max-reconnect-attempts {attempts}); the last: {failure}")
        else:
            status(f"! gave up reconnecting: {failure}")

    lines: asyncio.Queue[Optional[str]] = asyncio.Queue()
    _read_lines(asyncio.get_running_loop(), lines)
    # typed requests go out one at a time, in the order typed, from one task:
    # reading goes on meanwhile, so that a line typed while disconnected is
    # answered at once (queued, or not sent)
    requests: asyncio.Queue[Optional[Request]] = asyncio.Queue()
    sending = False  # whether that task holds a request that was not answered yet

    async def print_messages() -> None:
        while True:
            try:
                async for message in client:
                    channel = "" if message.channel_id == client.channel else f"[{message.channel_id}] "
                    print(f"{channel}{message.sender_id}: {show(message.data)}", flush=True)
                return
            except JoinFailed as exc:  # a rejoin after a reconnect was refused
                status(f"! could not rejoin: {exc.reason}; /join another channel")
            except ClientClosed:
                gave_up()
                lines.put_nowait(None)
                return

    async def join(channel: str) -> None:
        while True:
            connection = client.connections
            try:
                joined = await client.join(channel)
            except ConnectionLost:
                # a membership belongs to its connection: the closed one took
                # any effect of this join with it, so joining again is safe
                status(f"* the connection closed before the reply to /join {channel}: "
                       "joining again after reconnecting")
                while client.connections == connection and client.failure is None:
                    changed.clear()
                    await changed.wait()
                continue
            status(f"* joined {joined.channel_id} as {joined.sender_id}")
            return

    async def publish(data: Any) -> None:
        await client.publish(data)

    async def ping(*data: Any) -> None:
        started = asyncio.get_running_loop().time()
        echoed = await client.ping(*data)
        took = (asyncio.get_running_loop().time() - started) * 1000
        status(f"* pong in {took:.0f} ms" + ("" if echoed is None else f": {show(echoed)}"))

    def json_value(name: str, text: str) -> tuple[bool, Any]:
        try:
            return True, json.loads(text, parse_constant=_not_a_constant)
        except ValueError as exc:
            status(f"! {name}: not a JSON value ({exc}); usage: {USAGE[name]}")
            return False, None

    def request_of(line: str) -> Optional[Request]:
        """What a typed line asks of the server; None for a command done here,
        or refused (after saying why)."""
        name, _, rest = line.partition(" ")
        value = rest.strip()
        if line.startswith("//") or not line.startswith("/"):
            text = line[1:] if line.startswith("//") else line
            return Request("publish", lambda: publish(text))
        if name == "/help":
            status(HELP)
        elif name in USAGE and name != "/ping" and not value:
            status(f"! usage: {USAGE[name]}")
        elif name == "/join":
            return Request(f"join {value}", lambda: join(value))
        elif name == "/json":
            ok, data = json_value(name, value)
            if ok:
                return Request("publish", lambda: publish(data))
        elif name == "/ping":
            ok, data = json_value(name, value) if value else (True, None)
            if ok:
                return Request("ping", lambda: ping(data) if value else ping())
        else:
            status(f"! unknown command {line!r}; /help lists them")
        return None

    async def send_requests() -> None:
        nonlocal sending
        while (request := await requests.get()) is not None:
            sending = True
            try:
                await request.send()
            except JoinFailed as exc:
                status(f"! join failed: {exc.reason}")
            except PublishFailed as exc:
                counts = f" (delivered {exc.delivered}, failed {exc.failed})" if exc.partial else ""
                status(f"! publish failed: {exc.reason}{counts}")
            except ClientClosed:
                gave_up()  # and each request still waiting ends the same way, at once
            except ChannelClientError as exc:
                status(f"! {type(exc).__name__}: {exc}")
            finally:
                sending = False

    printer = asyncio.get_running_loop().create_task(print_messages())
    sender = asyncio.get_running_loop().create_task(send_requests())
    try:
        if args.channel:
            requests.put_nowait(Request(f"join {args.channel}", lambda: join(args.channel)))
        while (line := await lines.get()) is not None and client.failure is None:
            if not line.strip():
                continue
            if line.partition(" ")[0] == "/quit":
                break
            request = request_of(line)
            if request is None:
                continue
            if not client.connected:
                waiting = requests.qsize() + sending
                if waiting >= client.max_queue:
                    status(f"! not sent: not connected, and {waiting} lines already wait to be sent")
                    continue
                status(f"* not connected: queued, will {request.verb} after reconnecting")
            requests.put_nowait(request)
        requests.put_nowait(None)
        await sender  # what was typed goes out (or fails) before the connection closes
        gave_up()
        return 1 if client.failure is not None else 0
    finally:
        closing = True
        await client.close()
        for task in (printer, sender):
            task.cancel()
        await asyncio.gather(printer, sender, return_exceptions=True)


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    library_log = logging.getLogger("channel_server.client")
    library_log.addHandler(_LogLines(logging.WARNING))
    library_log.propagate = False  # instead of logging's last resort: bare lines, tracebacks
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:  # the client was closed on the way out
        return 130


if __name__ == "__main__":
    require("client", "the client")
    sys.exit(main())
