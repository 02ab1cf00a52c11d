"""``python -m channel_server.client URL``: talk in a channel from a terminal.

Typed lines are published (as JSON strings) to the channel joined with
``--channel`` or ``/join``; messages from the other members print on stdout as
``<senderId>: <data>``. Everything else (joins, pongs, failures, reconnects)
prints on stderr, so stdout carries only messages. Commands:

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
import sys
import threading
from typing import Any, Optional

from ..extras import require

HELP = __doc__.split("Commands:\n", 1)[1].rstrip()


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


def _interval(value: str) -> Optional[float]:
    seconds = float(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be 0 (never ping) or a positive number of seconds")
    return seconds or None


def parser() -> argparse.ArgumentParser:
    from . import DEFAULT_PING_INTERVAL

    result = argparse.ArgumentParser(
        prog="python -m channel_server.client",
        description="Talk in a channel of a channel server from a terminal.",
        epilog="Commands while connected:\n" + HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("url", metavar="URL", help="the stack output url: wss://… (local mode: ws://127.0.0.1:8080/dev)")
    result.add_argument("--channel", "-c", metavar="C", help="join C once connected")
    result.add_argument("--header", "-H", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
                        help="a handshake header, e.g. what a $connect authorizer reads (repeatable)")
    result.add_argument("--ping-interval", type=_interval, default=DEFAULT_PING_INTERVAL, metavar="SECONDS",
                        help="ping after this many seconds without traffic; 0: never (default %(default)s)")
    return result


def _read_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue) -> None:
    """Standard input's lines onto ``lines``, then None at its end. A daemon
    thread: it blocks in readline, and must not keep the process alive."""

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()


async def run(args: argparse.Namespace) -> int:
    from . import (ChannelClient, ChannelClientError, ClientClosed, ClientEvent, ConnectFailed, JoinFailed,
                   PublishFailed)

    def on_event(event: ClientEvent) -> None:
        detail = event.detail
        if event.kind == "disconnected" and not closing:
            status(f"* connection closed ({detail.get('code')} {detail.get('reason') or ''}".rstrip() + ")")
        elif event.kind == "reconnecting":
            status(f"* reconnecting in {detail['delay']:.1f} s")
        elif event.kind == "rejoined":
            status(f"* rejoined {detail['channel_id']} as {detail['sender_id']}")
        elif event.kind == "ready":
            status("* reconnected")

    closing = False
    client = ChannelClient(args.url, headers=dict(args.header), ping_interval=args.ping_interval, on_event=on_event)
    try:
        await client.connect()
    except ConnectFailed as exc:
        status(f"! {exc}")
        return 1
    status(f"* connected to {args.url}; type to publish, /help for commands")

    lines: asyncio.Queue = asyncio.Queue()
    _read_lines(asyncio.get_running_loop(), lines)

    async def print_messages() -> None:
        while True:
            try:
                async for message in client:
                    channel = "" if message.channel_id == client.channel else f"[{message.channel_id}] "
                    print(f"{channel}{message.sender_id}: {show(message.data)}", flush=True)
                return
            except JoinFailed as exc:  # a rejoin after a reconnect was refused
                status(f"! could not rejoin: {exc.reason}; /join another channel")
            except ClientClosed as exc:
                status(f"! {exc.__cause__ or exc}")
                lines.put_nowait(None)
                return

    async def join(channel: str) -> None:
        joined = await client.join(channel)
        status(f"* joined {joined.channel_id} as {joined.sender_id}")

    async def command(line: str) -> bool:
        """Carry out one typed line; False to quit."""
        name, _, rest = line.partition(" ")
        if line.startswith("//") or not line.startswith("/"):
            await client.publish(line[1:] if line.startswith("//") else line)
        elif name == "/quit":
            return False
        elif name == "/help":
            status(HELP)
        elif name == "/join" and rest.strip():
            await join(rest.strip())
        elif name == "/json" and rest.strip():
            await client.publish(json.loads(rest))
        elif name == "/ping":
            started = asyncio.get_running_loop().time()
            data = await (client.ping(json.loads(rest)) if rest.strip() else client.ping())
            took = (asyncio.get_running_loop().time() - started) * 1000
            status(f"* pong in {took:.0f} ms" + ("" if data is None else f": {show(data)}"))
        else:
            status(f"! unknown command {line!r}; /help lists them")
        return True

    printer = asyncio.get_running_loop().create_task(print_messages())
    try:
        if args.channel:
            try:
                await join(args.channel)
            except JoinFailed as exc:
                status(f"! join failed: {exc.reason}")
        while (line := await lines.get()) is not None:
            if not line.strip():
                continue
            try:
                if not await command(line):
                    break
            except JoinFailed as exc:
                status(f"! join failed: {exc.reason}")
            except PublishFailed as exc:
                counts = f" (delivered {exc.delivered}, failed {exc.failed})" if exc.partial else ""
                status(f"! publish failed: {exc.reason}{counts}")
            except ClientClosed as exc:
                status(f"! {exc}")
                return 1
            except ChannelClientError as exc:
                status(f"! {type(exc).__name__}: {exc}")
            except ValueError as exc:  # /json or /ping with a value that is not JSON
                status(f"! not a JSON value: {exc}")
        return 1 if client.failure is not None else 0
    finally:
        closing = True
        await client.close()
        printer.cancel()
        await asyncio.gather(printer, return_exceptions=True)


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:  # the client was closed on the way out
        return 130


if __name__ == "__main__":
    require("client", "the client")
    sys.exit(main())
