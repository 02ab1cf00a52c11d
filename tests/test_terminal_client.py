"""``python -m channel_server.client`` as a user runs it: a real subprocess,
lines on its stdin, its stdout and stderr read line by line, against local
mode (stopped and started again where a test needs the server gone) or
against test_client's scripted server where a test needs a close at an exact
frame or a refused handshake.

Each test waits for the lines the client prints, never for a time; the
client's reconnect backoff (0.5 s doubling) is the only wait, and ``TIMEOUT``
bounds every test only as a failure bound."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from typing import Any, Iterator

import pytest
from websockets.asyncio.server import ServerConnection

from channel_server.client.__main__ import main
from support.local_mode import served_world
from support.processes import threads_taking
from test_client import Scripted, next_frame, run, serve_protocol, terminal_client

RECONNECTING = r"\* reconnecting in \d+\.\d s \(attempt (\d+)\): "


class Terminal:
    """A running terminal client: what it printed on stderr so far, and lines to type."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.stderr: list[str] = []

    @classmethod
    async def start(cls, url: str, *args: str) -> "Terminal":
        return cls(await terminal_client(url, *args))

    def type(self, *lines: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(f"{line}\n" for line in lines).encode())

    async def until(self, pattern: str) -> list[str]:
        """stderr's lines up to the first that matches ``pattern`` (a regex,
        from the line's start), that one included."""
        assert self.process.stderr is not None
        read = []
        while True:
            line = (await self.process.stderr.readline()).decode()
            assert line, f"stderr ended before a line matching {pattern!r}:\n" + "".join(self.stderr)
            self.stderr.append(line)
            read.append(line.rstrip("\n"))
            if re.match(pattern, read[-1]):
                return read

    async def exit_status(self, end_input: bool = True) -> int:
        """Its exit status (after the end of its input, unless ``end_input`` is
        false); the rest of stderr is read on the way."""
        assert self.process.stdin is not None and self.process.stderr is not None
        if end_input:
            self.process.stdin.close()
        rest = await self.process.stderr.read()
        self.stderr.extend(rest.decode().splitlines(keepends=True))
        return await self.process.wait()

    @property
    def printed(self) -> str:
        return "".join(self.stderr)

    async def stop(self) -> None:
        """Kill it if it still runs (a failed test), and reap it."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def terminal(url: str, *args: str) -> Terminal:
    return await Terminal.start(url, *args)



def without_request_ids(frames: list[dict]) -> list[dict]:
    """The frames as sent, less the ``requestId`` the client gives every request
    (this test server echoes none, so the client pairs its replies by order)."""
    return [{key: value for key, value in frame.items() if key != "requestId"} for frame in frames]

def closing_on_the_first_join() -> Any:
    async def script(ws: ServerConnection, state: dict) -> None:
        await next_frame(ws, state)  # the join: no reply, the server closes (a restart, a lifetime)
        await ws.close(1001, "Going away")

    return script


# --- the connection closes before the reply to the first join (issue: a traceback, exit 1) ---


def test_a_close_before_the_reply_to_the_first_join_reconnects_and_joins_again() -> None:
    async def scenario() -> None:
        server = Scripted(closing_on_the_first_join(), serve_protocol)
        async with server.running():
            cli = await terminal(server.url, "--channel", "lobby")
            try:
                seen = await cli.until(r"\* joined lobby as ")
                # THEN the close is reported like any other, the join is made again
                # on the next connection, and nothing else (no traceback) is printed
                assert seen[0] == f"* connected to {server.url}; type to publish, /help for commands"
                assert "* connection closed (1001 Going away)" in seen
                assert "* the connection closed before the reply to /join lobby: " \
                       "joining again after reconnecting" in seen
                assert any(re.fullmatch(RECONNECTING + r"the connection closed \(1001 Going away\)", line)
                           for line in seen)
                assert "* reconnected" in seen and not any(line.startswith("!") for line in seen)
                # AND what is typed next goes to the channel on the new connection
                cli.type("hello")
                assert await cli.exit_status() == 0  # end of input: exit 0
            finally:
                await cli.stop()
            assert [without_request_ids(frames) for frames in server.received] == [
                                       [{"type": "join", "channelId": "lobby"}],
                                       [{"type": "join", "channelId": "lobby"}, {"type": "publish", "data": "hello"}]]
            assert "Traceback" not in cli.printed

    run(scenario())


@pytest.fixture(scope="module")
def world() -> Any:
    return served_world()


def test_connections_closed_before_any_reply_keep_it_reconnecting_until_ctrl_c(world: Any) -> None:
    from channel_server.local.server import running

    async def scenario(url: str) -> None:
        cli = await terminal(url, "--channel", "short-lived")
        try:
            # every connection ends before a join is answered (or soon after):
            # the client reconnects again and again, whatever was in flight
            for _ in range(3):
                await cli.until(RECONNECTING)
            # only the main thread takes a Ctrl-C: one the stdin thread took
            # waited, unhandled, until the event loop next woke (once, 30 s)
            assert threads_taking(cli.process.pid, signal.SIGINT) == [cli.process.pid]
            assert threads_taking(cli.process.pid, signal.SIGTERM) == [cli.process.pid]
            cli.process.send_signal(signal.SIGINT)  # Ctrl-C
            assert await cli.exit_status(end_input=False) == 130
        finally:
            await cli.stop()
        assert "Traceback" not in cli.printed and "KeyboardInterrupt" not in cli.printed
        assert not re.search(r"^!", cli.printed, re.M), cli.printed

    # a lifetime shorter than a join through local mode's Lambda function
    with running(port=0, world=world, max_lifetime=0.05) as server:
        run(scenario(server.url))


# --- commands without their value -------------------------------------------------------


@pytest.fixture(scope="module")
def local_url(world: Any) -> Iterator[str]:
    from channel_server.local.server import running

    with running(port=0, world=world) as server:
        yield server.url


def test_commands_without_their_value_or_with_a_wrong_one_say_how_to_use_them(local_url: str) -> None:
    json_usage = '/json VALUE, a JSON value such as {"x": 1}, [1, 2] or "text"'
    ping_usage = "/ping [VALUE], VALUE an optional JSON value to echo"

    async def scenario() -> None:
        cli = await terminal(local_url)
        try:
            cli.type("/join", "/join   ", "/json", "/json {bad", "/json NaN", "/ping nope", "/ping", "/quit")
            assert await cli.exit_status(end_input=False) == 0
        finally:
            await cli.stop()
        said = [line.rstrip("\n") for line in cli.stderr if line.startswith(("!", "* pong"))]
        assert said[:-1] == [
            "! usage: /join CHANNEL",
            "! usage: /join CHANNEL",
            f"! usage: {json_usage}",
            "! /json: not a JSON value (Expecting property name enclosed in double quotes: "
            f"line 1 column 2 (char 1)); usage: {json_usage}",
            f"! /json: not a JSON value (NaN is not JSON); usage: {json_usage}",
            f"! /ping: not a JSON value (Expecting value: line 1 column 1 (char 0)); usage: {ping_usage}",
        ]
        assert re.fullmatch(r"\* pong in \d+ ms", said[-1])  # /ping needs no value

    run(scenario())


# --- while disconnected -----------------------------------------------------------------


def test_lines_typed_while_the_server_is_down_are_queued_and_sent_after_it_restarts(world: Any) -> None:
    from channel_server.local.server import running

    async def scenario() -> None:
        first = running(port=0, world=world)
        url = first.__enter__().url
        port = int(url.split(":")[2].split("/")[0])
        try:
            cli = await terminal(url, "--channel", "q")
            await cli.until(r"\* joined q as ")
        except BaseException:
            first.__exit__(None, None, None)
            raise
        try:
            # WHEN the server stops (its connections close with 1001 Going away;
            # it answers handshakes with 503 until its port is closed)
            await asyncio.get_running_loop().run_in_executor(None, first.__exit__, None, None, None)
            seen = await cli.until(RECONNECTING + r"attempt \d+ failed: could not connect to ")
            # THEN each reconnect line says why: the close, then the failed attempt's network error
            assert seen[0] == "* connection closed (1001 Going away)"
            assert re.fullmatch(RECONNECTING + r"the connection closed \(1001 Going away\)", seen[1])
            assert re.fullmatch(RECONNECTING + r"attempt \d+ failed: " + re.escape(
                f"could not connect to {url}: [Errno 111] Connect call failed ('127.0.0.1', {port})"), seen[-1])
            # AND typed lines are queued, saying so
            cli.type("typed while down", "/ping 7")
            assert (await cli.until(r"\* not connected"))[-1] == \
                "* not connected: queued, will publish after reconnecting"
            assert (await cli.until(r"\* not connected"))[-1] == "* not connected: queued, will ping after reconnecting"
            # WHEN the server is back on the same port: the client rejoins, then
            # sends what was queued, in order, and both are answered
            with running(port=port, world=world):
                seen = await cli.until(r"\* pong in ")
                assert re.fullmatch(r"\* pong in \d+ ms: 7", seen[-1])
                assert any(line.startswith("* rejoined q as ") for line in seen)
                assert not any(line.startswith("!") for line in seen), seen  # the publish succeeded
                assert await cli.exit_status() == 0
        finally:
            await cli.stop()
        assert "Traceback" not in cli.printed

    run(scenario())


def refusing_after_the_join(server: Scripted, status: int) -> Any:
    async def script(ws: ServerConnection, state: dict) -> None:
        frame = await next_frame(ws, state)
        await ws.send(json.dumps({"type": "joinSuccess", "channelId": frame["channelId"], "senderId": "first"}))
        server.refuse = status  # the next handshakes are refused, until the test lets them through
        await ws.close(1001, "Going away")

    return script


def test_a_line_typed_while_the_queue_is_full_is_not_sent_and_the_queued_ones_are() -> None:
    async def scenario() -> None:
        server = Scripted()
        server.scripts = [refusing_after_the_join(server, 503)]
        async with server.running():
            cli = await terminal(server.url, "--channel", "q")
            try:
                await cli.until(r"\* joined q as first")
                seen = await cli.until(RECONNECTING.replace(r"(\d+)", "2"))
                # the reconnect line names the handshake's status
                assert re.fullmatch(RECONNECTING + "attempt 1 failed: the server refused the connection: HTTP 503",
                                    seen[-1])
                # WHEN 101 lines are typed while disconnected: 100 wait (the
                # client's max_queue), the last is not sent
                cli.type(*(str(n) for n in range(101)))
                seen = await cli.until(r"!")
                assert seen[-1] == "! not sent: not connected, and 100 lines already wait to be sent"
                assert [line for line in seen if line.startswith("* not connected")] == \
                    ["* not connected: queued, will publish after reconnecting"] * 100
                # THEN once handshakes succeed again the 100 go out in order, after the rejoin
                server.refuse = None
                assert await cli.exit_status() == 0
            finally:
                await cli.stop()
            assert without_request_ids(server.received[-1]) == [{"type": "join", "channelId": "q"},
                                           *({"type": "publish", "data": str(n)} for n in range(100))]
            assert "Traceback" not in cli.printed

    run(scenario())


# --- giving up ------------------------------------------------------------------------------


def test_after_max_reconnect_attempts_it_gives_up_in_one_line_and_exits_1(world: Any) -> None:
    from channel_server.local.server import running

    async def scenario() -> None:
        first = running(port=0, world=world)
        url = first.__enter__().url
        port = int(url.split(":")[2].split("/")[0])
        try:
            cli = await terminal(url, "--max-reconnect-attempts", "2")
            await cli.until(r"\* connected to ")
        finally:
            await asyncio.get_running_loop().run_in_executor(None, first.__exit__, None, None, None)
        try:
            # its input stays open: it exits by itself
            assert await cli.exit_status(end_input=False) == 1
        finally:
            await cli.stop()
        # an attempt fails on the closed port, or with 503 if it came while local mode was stopping
        failed = "({}|{})".format(
            re.escape(f"could not connect to {url}: [Errno 111] Connect call failed ('127.0.0.1', {port})"),
            re.escape("the server refused the connection: HTTP 503"))
        lines = cli.printed.splitlines()
        assert lines[1] == "* connection closed (1001 Going away)"
        assert re.fullmatch(RECONNECTING + r"the connection closed \(1001 Going away\)", lines[2])
        assert re.fullmatch(RECONNECTING + f"attempt 1 failed: {failed}", lines[3])
        assert len(lines) == 5 and re.fullmatch(
            re.escape("! gave up reconnecting after 2 failed attempts in a row (--max-reconnect-attempts 2); "
                      "the last: ") + failed, lines[4]), lines

    run(scenario())


def test_a_refused_handshake_gives_up_at_once_in_one_line_and_exits_1() -> None:
    async def scenario() -> None:
        server = Scripted()
        server.scripts = [refusing_after_the_join(server, 403)]  # e.g. the authorizer no longer accepts the token
        async with server.running():
            cli = await terminal(server.url, "--channel", "q")
            try:
                assert await cli.exit_status(end_input=False) == 1
            finally:
                await cli.stop()
        lines = cli.printed.splitlines()
        assert lines[1:3] == ["* joined q as first", "* connection closed (1001 Going away)"]
        assert re.fullmatch(RECONNECTING + r"the connection closed \(1001 Going away\)", lines[3])
        assert lines[4:] == ["! gave up reconnecting: the server refused the connection: HTTP 403; "
                             "a refused handshake is not tried again"]

    run(scenario())


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("args, error", [
    (["--max-reconnect-attempts", "0"], "argument --max-reconnect-attempts: must be a whole number of at least 1 "
                                        "(leave it out to reconnect forever), not '0'"),
    (["--max-reconnect-attempts", "-2"], "argument --max-reconnect-attempts: must be a whole number of at least 1 "
                                         "(leave it out to reconnect forever), not '-2'"),
    (["--max-reconnect-attempts", "1.5"], "argument --max-reconnect-attempts: must be a whole number of at least 1 "
                                          "(leave it out to reconnect forever), not '1.5'"),
    (["--ping-interval", "soon"], "argument --ping-interval: must be 0 (never ping) or a positive number of "
                                  "seconds, not 'soon'"),
    (["--ping-interval", "nan"], "argument --ping-interval: must be 0 (never ping) or a positive number of "
                                 "seconds, not 'nan'"),
    (["--ping-interval", "-1"], "argument --ping-interval: must be 0 (never ping) or a positive number of "
                                "seconds, not '-1'"),
])
def test_wrong_arguments_are_refused_naming_the_flag_and_its_range(
        args: list[str], error: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ws://127.0.0.1:1/dev", *args])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m channel_server.client: error: {error}"


@pytest.mark.parametrize("url, error", [
    ("http://127.0.0.1:8080/dev", "must be a ws:// or wss:// URL (the stack output url), not "
                                  "'http://127.0.0.1:8080/dev'"),
    ("ws:///dev", "must be a ws:// or wss:// URL (the stack output url), not 'ws:///dev'"),
    ("ws://[::1/dev", "not a URL: 'ws://[::1/dev' (Invalid IPv6 URL)"),
    ("ws://127.0.0.1:99999/dev", "not a URL: 'ws://127.0.0.1:99999/dev' (Port out of range 0-65535)"),
])
def test_a_url_that_is_not_a_websocket_url_is_refused_without_a_traceback(
        url: str, error: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main([url])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m channel_server.client: error: argument URL: {error}"


def test_the_help_lists_the_commands_and_the_exit_statuses(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    printed = capsys.readouterr().out
    assert "--max-reconnect-attempts N" in printed and "/join CHANNEL" in printed
    assert "Exit status: 0 after end of input or /quit; 1 when the first connection fails" in printed
