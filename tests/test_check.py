"""``python -m channel_server.check`` against local mode: every check passes with every option on,
a deliberately broken program fails with what came back, and bad usage exits 2.

Two local modes are shared by the tests: the one docs/check.md starts (an
authorizer, heartbeats every second, server publish), run as the page shows
it, and one serving a Pulumi program whose ping function raises. The check's
own waits are bounded by its ``--timeout``; the tests wait on its exit.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from typing import Iterator

import pytest

from channel_server import check as check_module
from channel_server.check import CHECKS, FAIL, PASS, SKIPPED, Result, build_parser, check, main
from channel_server.handlers import protocol
from channel_server.local.server import LocalServer, running
from support.doc_commands import PATIENCE, ROOT, Shell, free_port, run, with_ports
from test_doc_commands import the
from test_doc_features import local_mode
from test_docs import fenced_blocks, prose, read, section, tables

CHECK_PAGE = "docs/check.md"
LOCAL_COMMAND = r"python3 tasks\.py local --authorizer examples/authorizer\.py --heartbeat-seconds \d+ --server-publish"
CHECK_COMMAND = r"\.venv/bin/python -m channel_server\.check ws://127\.0\.0\.1:8080/dev --token \w+ .*"
PUBLISH_PLACEHOLDER = "<the Publish URL local mode prints>"
#: The check's per-check timeout in these tests: a bound for a broken build, never a measure of speed.
TIMEOUT = 20.0


@dataclass(frozen=True)
class Served:
    url: str
    publish_url: str
    ports: dict[str, int]


@pytest.fixture(scope="module")
def everything() -> Iterator[Served]:
    """Local mode as docs/check.md starts it: examples/authorizer.py, heartbeats, server publish."""
    ports = {"8080": free_port()}
    with local_mode(the(LOCAL_COMMAND), ports) as local:
        publish_url = local.wait_for(r"^  Publish URL: +(http://127\.0\.0\.1:\d+/@lambda-url/\S+/)$").group(1)
        yield Served(f"ws://127.0.0.1:{ports['8080']}/dev", publish_url, ports)


#: A consumer's program whose ping function is replaced by one that raises,
#: through a transform (docs/component.md): a bug a deploy would ship.
BROKEN_PROGRAM = '''
import pulumi
from channel_server import ChannelServer

BROKEN = "def ping(event, context):\\n    raise RuntimeError('this ping is broken on purpose')\\n"


def break_ping(args):
    if args.type_ == "aws:lambda/function:Function" and args.props.get("handler", "").endswith(".ping"):
        code = pulumi.AssetArchive({"broken.py": pulumi.StringAsset(BROKEN)})
        return pulumi.ResourceTransformResult(props={**args.props, "handler": "broken.ping", "code": code},
                                              opts=args.opts)
    return None


server = ChannelServer("chat", opts=pulumi.ResourceOptions(transforms=[break_ping]))
pulumi.export("url", server.url)
'''


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    project = tmp_path_factory.mktemp("broken")
    (project / "Pulumi.yaml").write_text("name: broken\nruntime: python\n")
    (project / "__main__.py").write_text(BROKEN_PROGRAM)
    with running(port=0, program=project) as server:
        yield server


def normalized(text: str) -> list[str]:
    """The check's output without what differs between runs: latencies, ports, AWS's ids in its
    error frames, a publish sent again; spacing collapsed."""
    lines = []
    for line in text.strip().splitlines():
        line = re.sub(r"\d+(\.\d+)? ms\b", "N ms", line)
        line = re.sub(r"\b\d+\.\d s after", "N s after", line)
        line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
        line = re.sub(r'"(connectionId|requestId)":"[^"]*"', r'"\1":"…"', line)
        line = re.sub(r" \(after \d+ publishes: the first reached nobody\)", "", line)
        lines.append(" ".join(line.split()))
    return lines


def page_block(language: str, index: int = 0) -> list[str]:
    return [lines for tag, lines in fenced_blocks(read(CHECK_PAGE)) if tag == language][index]


def statuses(results: tuple[Result, ...] | list[Result]) -> dict[str, str]:
    return {result.name: result.status for result in results}


# --- every option on ----------------------------------------------------------------------------------


def test_the_documented_run_passes_every_check_as_the_page_shows(everything: Served) -> None:
    # GIVEN the command docs/check.md runs against its local mode (the port and the publish URL filled in)
    command = with_ports(the(CHECK_COMMAND), everything.ports).replace(PUBLISH_PLACEHOLDER, everything.publish_url)
    # WHEN it runs
    done = run(command)
    # THEN every check passes, in order, and it exits 0 with nothing on stderr
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[1:-1]] == list(CHECKS)
    assert all(re.match(r"\S.*? +pass +\d+(\.\d)? ms  \S", line) for line in lines[1:-1]), done.stdout
    assert lines[-1] == f"{len(CHECKS)} checks: {len(CHECKS)} passed"
    # AND the page's sample output is this run's, but for latencies
    (sample,) = [lines for tag, lines in fenced_blocks(read(CHECK_PAGE))
                 if tag == "console" and lines and lines[0].startswith("$ .venv/bin/python -m channel_server.check")]
    assert normalized("\n".join(sample[1:])) == normalized(done.stdout)


def test_the_function_streams_each_result_and_finds_a_token_in_the_url(everything: Served) -> None:
    seen: list[Result] = []
    # WHEN a program runs the check with the token already in the URL, without the optional checks
    report = check(everything.url + "?token=alice", channel="alice.function", timeout=TIMEOUT, on_result=seen.append)
    # THEN each result came as it was made, in order
    assert seen == list(report.results) and [result.name for result in seen] == list(CHECKS)
    # AND the token counted as given (the authorizer's refusal was checked); what was not asked for is skipped
    assert statuses(report.results) == {**{name: PASS for name in CHECKS}, "server publish": SKIPPED,
                                         "heartbeat": SKIPPED}
    assert report.result("server publish").detail == "no --publish-endpoint given"
    assert report.result("heartbeat").detail == "no --heartbeat-seconds given"
    assert report.result("no token").detail == "the handshake without the token refused with HTTP 401"
    assert (report.ok, report.exit_status, report.channel) == (True, 0, "alice.function")
    # AND nothing it reports shows the token
    assert report.url.endswith("/dev?token=<token>")
    assert all(result.latency_ms is None or result.latency_ms > 0 for result in report.results)


def test_without_the_token_connect_fails_with_the_status_and_the_rest_is_not_run(everything: Served) -> None:
    report = check(everything.url, timeout=TIMEOUT)
    connect = report.result("connect")
    assert connect.status == FAIL
    assert connect.detail == ("expected a connection (the handshake accepted); got the handshake refused with "
                              "HTTP 401 (a $connect authorizer? give its token with --token)")
    assert report.result("join").detail == "not run: connect did not pass"
    assert report.result("publish").detail == "not run: join did not pass"
    assert report.result("no token").detail == "no token given: nothing for an authorizer to refuse"
    assert statuses(report.results) == {**{name: SKIPPED for name in CHECKS}, "connect": FAIL}
    assert report.exit_status == 1
    assert report.summary() == f"{len(CHECKS)} checks: 1 failed, {len(CHECKS) - 1} skipped"


def test_a_channel_the_token_may_not_join_fails_the_join_with_its_reason(everything: Served) -> None:
    report = check(everything.url, token="alice", channel="bob.inbox", timeout=TIMEOUT)
    join = report.result("join")
    assert join.status == FAIL
    assert join.detail.startswith('expected joinSuccess in bob.inbox; got {"type":"joinFailure","data":'
                                  f'"{protocol.CHANNEL_NOT_ALLOWED}"')
    assert join.detail.endswith("(give --channel a channel this deployment, and the token, allow)")
    # the checks that need no membership still ran, and passed
    assert statuses(report.results) == {**{name: PASS for name in CHECKS}, "join": FAIL, "publish": SKIPPED,
                                        "server publish": SKIPPED, "over the limit": SKIPPED, "heartbeat": SKIPPED}
    assert report.exit_status == 1


# --- a broken program ---------------------------------------------------------------------------------


def test_a_program_whose_ping_function_fails_fails_the_ping_check_with_api_gateways_frame(broken: LocalServer) -> None:
    # WHEN the command runs against local mode serving the broken program
    done = subprocess.run([sys.executable, "-m", "channel_server.check", broken.url, "--timeout", str(TIMEOUT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=PATIENCE)
    # THEN it exits 1, the ping line names what came instead of the pong, and the other checks pass
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = {line.split("  ")[0]: line for line in done.stdout.splitlines()[1:-1]}
    assert list(lines) == list(CHECKS)
    assert re.fullmatch(r"ping +FAIL +\d+(\.\d)? ms  expected a pong echoing the ping's data; got API Gateway's "
                        r'error frame \{"message":"Internal server error","connectionId":"[\w=-]+","requestId":"[\w=-]+"\}',
                        lines["ping"]), lines["ping"]
    assert {name: line.split()[len(name.split())] for name, line in lines.items()} == {
        **{name: PASS for name in CHECKS}, "ping": FAIL, "server publish": SKIPPED, "no token": SKIPPED,
        "heartbeat": SKIPPED}
    assert done.stdout.splitlines()[-1] == f"{len(CHECKS)} checks: 6 passed, 1 failed, 3 skipped"
    # AND the page's failing line is this one, but for latency and ids
    (sample,) = page_block("text")
    assert normalized(sample) == normalized(lines["ping"])


def test_heartbeats_expected_from_a_stack_without_them_fail_once_the_interval_and_timeout_pass(broken: LocalServer) -> None:
    report = check(broken.url, heartbeat_seconds=0.1, timeout=2)
    heartbeat = report.result("heartbeat")
    assert heartbeat.status == FAIL
    assert re.fullmatch(r"expected a heartbeat within 0\.1 s of connecting; got no heartbeat in the \d+\.\d s since "
                        r"connecting", heartbeat.detail), heartbeat.detail


# --- no server, bad usage ------------------------------------------------------------------------------


def test_a_url_nobody_listens_on_is_a_fail_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"ws://127.0.0.1:{free_port()}/dev"
    assert main([url, "--timeout", str(TIMEOUT), "--channel", "lobby"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"checking {url} in channel lobby"
    assert re.fullmatch(rf"connect +FAIL +\d+(\.\d)? ms  expected a connection \(the handshake accepted\); got could "
                        rf"not connect to {re.escape(url)}: .+", lines[1]), lines[1]
    assert lines[-1] == f"{len(CHECKS)} checks: 1 failed, {len(CHECKS) - 1} skipped"
    assert err == ""


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: URL"),
    (["http://127.0.0.1:8080/dev"], "argument URL: must be a ws:// or wss:// URL (the stack output url)"),
    (["ws://127.0.0.1:8080/dev", "--timeout", "0"], "argument --timeout: must be a positive number of seconds"),
    (["ws://127.0.0.1:8080/dev", "--heartbeat-seconds", "soon"],
     "argument --heartbeat-seconds: must be a positive number of seconds, not 'soon'"),
    (["ws://127.0.0.1:8080/dev", "--publish-endpoint", "ws://127.0.0.1:8080/"],
     "argument --publish-endpoint: must be an http:// or https:// URL"),
    (["ws://127.0.0.1:8080/dev", "--retries", "3"], "unrecognized arguments: --retries 3"),
])
def test_bad_usage_exits_2_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: python -m channel_server.check") and message in err, err


def test_the_function_refuses_what_the_command_line_refuses() -> None:
    with pytest.raises(ValueError, match="must be a ws:// or wss:// URL"):
        check("https://example.com/dev")
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        check("ws://127.0.0.1:8080/dev", timeout=-1)


@pytest.mark.parametrize(("argv", "extra", "needs"), [
    (["ws://127.0.0.1:8080/dev"], "client", "the check needs websockets"),
    (["ws://127.0.0.1:8080/dev", "--publish-endpoint", "http://127.0.0.1:8080/x/"], "publish",
     "--publish-endpoint needs botocore"),
])
def test_a_missing_extra_is_named_with_the_pip_command(argv: list[str], extra: str, needs: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the extra's library is not installed (as the package's metadata would say)
    names = {"client": ["websockets"], "publish": ["botocore"]}
    monkeypatch.setattr(check_module, "missing_requirements", lambda wanted: names[wanted] if wanted == extra else [])
    # THEN the command says which and how to install it, and runs no check
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{needs}: pip install ") and f"[{extra}]" in err, err


# --- the page -----------------------------------------------------------------------------------------


def test_the_options_table_lists_every_option_with_its_default() -> None:
    (table,) = tables(section(read(CHECK_PAGE), "### Options"))
    documented = {re.sub(r"`([^` ]+).*", r"\1", row[0]): row[1] for row in table}
    parser = build_parser()
    actions = {action.option_strings[0] if action.option_strings else str(action.metavar): action
               for action in parser._actions if action.dest != "help"}
    assert set(documented) == set(actions)
    for flag, action in actions.items():
        if action.required:
            assert documented[flag] == "required", flag
        elif action.default is None:
            assert documented[flag] in ("none", "a new `check-…`"), flag
        else:
            default = f"{action.default:g}" if isinstance(action.default, float) else str(action.default)
            assert documented[flag] == f"`{default}`", flag


def test_the_figures_the_page_states_are_the_codes() -> None:
    text = prose(read(CHECK_PAGE))
    assert "a `publish` whose `message` would be " f"{protocol.API_GATEWAY_MAX_MESSAGE_BYTES + 1} bytes" in text
    assert f"a {protocol.API_GATEWAY_MAX_MESSAGE_BYTES // 1024} KB message sent as " \
           f"{protocol.API_GATEWAY_MAX_FRAME_BYTES // 1024} KB frames" in text
    assert check_module.RESEND_SECONDS == 1.0 and "when its message has reached nobody after a second" in text
    assert re.fullmatch(r"check-[0-9a-f]{8}", check_module.default_channel())
    assert "(`check-` and 8 random hex digits" in text
    assert check_module.DEFAULT_TOKEN_PARAMETER == "token" and "as `?token=T`" in text
    # the checks table names every check, in the order they run
    (table,) = tables(section(read(CHECK_PAGE), "### The checks"))
    assert [row[0].strip("`") for row in table] == list(CHECKS)


def test_the_modules_docstring_lists_every_check_in_order() -> None:
    listed = re.findall(r"^- ``([a-z ]+)``", textwrap.dedent(check_module.__doc__ or ""), re.M)
    assert listed == list(CHECKS)


def test_ctrl_c_while_it_waits_for_a_heartbeat_stops_it_with_130_and_no_traceback(broken: LocalServer) -> None:
    # GIVEN the command waiting (up to ten minutes) for a heartbeat this stack never sends
    waiting = Shell(f"{sys.executable} -m channel_server.check {broken.url} --heartbeat-seconds 600 "
                    f"--timeout {TIMEOUT:g}")
    try:
        waiting.wait_for(r"^no token ")  # the line before the heartbeat's: it waits now
        # WHEN Ctrl-C comes
        status = waiting.interrupt()
        # THEN it says so and exits 130, with no traceback and no heartbeat line
        assert status == 130, waiting.output
        assert waiting.lines[-1] == "interrupted" and "Traceback" not in waiting.output
        assert not any(line.startswith("heartbeat") for line in waiting.lines)
    finally:
        waiting.kill()


#: How many tenths of a second the trickling endpoint answers for, at most.
TRICKLE_TICKS = 1200


def test_a_publish_endpoint_that_answers_a_byte_at_a_time_fails_within_its_timeout(everything: Served) -> None:
    # GIVEN an endpoint that accepts, then sends its answer one byte at a time, never finishing
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)

    def trickle() -> None:
        connections = []
        for _ in range(TRICKLE_TICKS):  # bounded: a check that waited for it all would end, late
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                connection, _ = listener.accept()
                connections.append(connection)
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.sendall(b"H")  # a byte more: never a whole status line, never a read timeout
        for connection in connections:
            connection.close()
        listener.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        # WHEN the check publishes through it
        report = check(everything.url, token="alice", channel="alice.trickle", timeout=2,
                       publish_endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}/")
        # THEN it ended while the endpoint was still answering: it did not wait for the publish's thread
        assert thread.is_alive()
        # AND the server publish fails on its timeout, and the check went on
        server_publish = report.result("server publish")
        assert server_publish.status == FAIL
        assert server_publish.detail.startswith("expected a member getting the message from $server within 2 s")
        assert report.result("refused join").status == PASS
    finally:
        stop.set()
        thread.join()
