"""The optional features, each tried with the one command the README shows for
it, from this repository's folder, as a newcomer would: the command as shown
(on a free port), then real WebSocket clients. ``test_doc_commands.RULES``
claims each of these commands for the test here that runs it.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from channel_server.check import check
from support.doc_commands import PATIENCE, Shell, free_port, with_ports
from support.frames import ANY_MESSAGE_ID


def the(pattern: str) -> str:
    from test_doc_commands import the as documented_command

    return documented_command(pattern)


@contextmanager
def local_mode(command: str, ports: dict[str, int]) -> Iterator[Shell]:
    """``command`` (a documented local-mode command) running with ``ports``
    for the ones it names, or on ``ports["8080"]`` when it names none; stopped
    with Ctrl-C at the end, which must stop it cleanly."""
    command = with_ports(command if "--port" in command else f"{command} --port 8080", ports)
    local = Shell(command)
    try:
        local.wait_for(r"^Ctrl-C to stop\.$")
        yield local
        assert local.interrupt() == 0, local.output
        assert local.lines[-1] == "stopped"
        assert "Traceback" not in local.output, local.output
    finally:
        local.kill()


def url(ports: dict[str, int], query: str = "") -> str:
    return f"ws://127.0.0.1:{ports['8080']}/dev{query}"


def request(ws: ClientConnection, frame: dict) -> dict:
    ws.send(json.dumps(frame))
    return json.loads(ws.recv(timeout=PATIENCE))


def members(ports: dict[str, int], stack: ExitStack, channel: str, count: int) -> list[ClientConnection]:
    joined = []
    for _ in range(count):
        ws = stack.enter_context(connect(url(ports)))
        assert request(ws, {"type": "join", "channelId": channel})["type"] == "joinSuccess"
        joined.append(ws)
    return joined


def test_the_heartbeat_command_sends_heartbeats_to_an_idle_client() -> None:
    ports = {"8080": free_port()}
    command = the(r"python3 tasks\.py local --heartbeat-seconds \d+ --idle-timeout \d+")
    every = re.findall(r"--heartbeat-seconds (\d+)", command)[0]
    with local_mode(command, ports) as local:
        assert re.search(rf"^  Heartbeats: +every {every} s \(rate\(1 minute\) declared\)$", local.output, re.M)
        with connect(url(ports)) as idle:
            # an idle connection is sent heartbeats; the client never speaks
            assert json.loads(idle.recv(timeout=PATIENCE)) == {"type": "heartbeat"}


def test_the_history_and_presence_command_resumes_a_join_and_announces_members() -> None:
    ports = {"8080": free_port()}
    with local_mode(the(r"python3 tasks\.py local --config historySeconds=\d+ --config presence=true"), ports):
        with ExitStack() as stack:
            watcher = stack.enter_context(connect(url(ports)))
            joined = request(watcher, {"type": "join", "channelId": "lobby", "presence": True})
            assert joined["presence"] is True
            (alice,) = members(ports, stack, "lobby", 1)
            assert json.loads(watcher.recv(timeout=PATIENCE))["type"] == "memberJoined"
            assert request(alice, {"type": "publish", "data": "while you were away"})["type"] == "publishSuccess"
            # a later connection resumes from the watcher's join: the message comes first
            later = stack.enter_context(connect(url(ports)))
            later.send(json.dumps({"type": "join", "channelId": "lobby", "since": joined["position"]}))
            missed = json.loads(later.recv(timeout=PATIENCE))
            assert (missed["type"], missed["data"]) == ("message", "while you were away")
            reply = json.loads(later.recv(timeout=PATIENCE))
            assert (reply["type"], reply["replayed"], reply["resumed"]) == ("joinSuccess", 1, True)


def test_the_reference_backend_command_serves_a_channel() -> None:
    ports = {"8080": free_port()}
    with local_mode(the(r"python3 tasks\.py local --backend reference"), ports) as local:
        banner = local.output
        assert re.search(r"^  HTTP backend: +http://127\.0\.0\.1:\d+/ \(the reference backend, "
                         r"python -m channel_server\.http_backend\)$", banner, re.M), banner
        # no function and no fan-out queue is built for an HTTP backend, and the banner says none
        assert "starting 0 functions" not in banner and "SQS:" not in banner, banner
        with ExitStack() as stack:
            alice, bob = members(ports, stack, "lobby", 2)
            assert request(alice, {"type": "publish", "data": "hi"}) == {"type": "publishSuccess"}
            message = json.loads(bob.recv(timeout=PATIENCE))
            assert (message["type"], message["channelId"], message["data"]) == ("message", "lobby", "hi")
        # AND the deployed-stack check passes against it: the backend words its replies as the handlers do
        # (docs/check.md)
        report = check(f"ws://127.0.0.1:{ports['8080']}/dev", timeout=PATIENCE)
        assert report.exit_status == 0 and report.result("refused join").status == "pass", report.summary()


def test_the_authorizer_command_admits_a_token_to_its_own_channels() -> None:
    ports = {"8080": free_port()}
    with local_mode(the(r"python3 tasks\.py local --authorizer examples/authorizer\.py"), ports) as local:
        assert re.search(r"^  Authorizer: +\S+examples/authorizer\.py:handler on \$connect "
                         r"\(identity: route\.request\.querystring\.token\)$", local.output, re.M), local.output
        # the documented client, with its token, joins its own channel, and no one else's
        client = Shell(with_ports(the(r"\.venv/bin/python -m channel_server\.client "
                                      r"\"ws://127\.0\.0\.1:8080/dev\?token=\w+\" --channel [\w.]+"), ports),
                       stdin=True)
        client.wait_for(r"^\* joined alice\.inbox as ")
        client.type("/join bob.inbox\n")
        client.wait_for(r"^! join failed: this connection may not join this channel$")
        client.end_input()
        assert client.finish() == 0
        # a handshake without a token, or with one the sample refuses, gets 401
        for query in ("", "?token=Not%20a%20name"):
            with pytest.raises(InvalidStatus) as refused:
                connect(url(ports, query))
            assert refused.value.response.status_code == 401
        local.wait_for(r"rejected 401 by the authorizer")


def test_the_inline_fanout_command_hands_the_rest_to_the_queue() -> None:
    ports = {"8080": free_port()}
    with local_mode(the(r"python3 tasks\.py local --inline-fanout-limit \d+"), ports) as local:
        assert re.search(r"^  Fan-out: +a publish posts to 2 members itself and queues the rest "
                         r"\(--inline-fanout-limit\)$", local.output, re.M), local.output
        with ExitStack() as stack:
            publisher, *others = members(ports, stack, "big", 4)
            # two of the three others are posted to by the publish, the third through the fan-out queue
            assert request(publisher, {"type": "publish", "data": 1}) == {"type": "publishSuccess", "queued": 1}
            for member in others:
                assert json.loads(member.recv(timeout=PATIENCE))["data"] == 1


def test_your_own_backend_recipe_serves_a_channel() -> None:
    ports = {"8080": free_port(), "9000": free_port()}
    start_local, start_backend = (the(r"python3 tasks\.py local --backend http://127\.0\.0\.1:9000/ &"),
                                  the(r"\.venv/bin/python -m channel_server\.http_backend --port 9000 .*"))
    with local_mode(start_local.removesuffix("&").strip(), ports) as local:
        table = local.wait_for(r"^  DynamoDB: +(\S+) \(table (\S+)\)$")
        backend = Shell(with_ports(start_backend.replace("<the table local mode prints>", table.group(2))
                                   .replace("<its DynamoDB>", table.group(1)), ports))
        try:
            backend.wait_for(rf"^channel-server HTTP backend on http://127\.0\.0\.1:{ports['9000']}/$")
            with ExitStack() as stack:
                alice, bob = members(ports, stack, "lobby", 2)
                assert request(alice, {"type": "publish", "data": "hi"}) == {"type": "publishSuccess"}
                assert json.loads(bob.recv(timeout=PATIENCE))["data"] == "hi"
        finally:
            assert backend.interrupt() == 0, backend.output


def test_a_consumer_program_is_served_with_its_stack(tmp_path: Path) -> None:
    # GIVEN a consumer's project (where the docs say ~/src/chat-infra) with a staging stack
    project = tmp_path / "chat-infra"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: chat-infra\nruntime: python\n")
    (project / "Pulumi.staging.yaml").write_text("config:\n  chat-infra:stage: staging\n")
    (project / "__main__.py").write_text(textwrap.dedent("""\
        import pulumi
        from channel_server import ChannelServer

        chat = ChannelServer("chat", {"stage_name": pulumi.Config().require("stage")})
        pulumi.export("url", chat.url)
    """))
    command = the(r"python -m channel_server\.local --program \S+ --stack \w+")
    # `python` is the consumer's environment's, where channel-server[local] is installed: this one's
    command = command.replace("~/src/chat-infra", str(project)).replace("python ", f"{sys.executable} ", 1)
    with local_mode(command, {"8080": free_port()}) as local:
        assert re.search(r"^channel-server local mode, stage staging$", local.output, re.M), local.output


def test_a_backend_publishes_with_the_documented_commands() -> None:
    from support.doc_commands import run

    ports = {"8080": free_port()}
    with local_mode(the(r"python3 tasks\.py local --server-publish"), ports) as local:
        publish_url = local.wait_for(r"^  Publish URL: +(http://127\.0\.0\.1:\d+/@lambda-url/\S+/)$").group(1)
        with ExitStack() as stack:
            (member,) = members(ports, stack, "lobby", 1)
            # the command line, as shown
            cli = run(the(r"\.venv/bin/python -m channel_server\.publish \"<the Publish URL local mode prints>\" .*")
                      .replace("<the Publish URL local mode prints>", publish_url))
            assert (cli.returncode, cli.stderr) == (0, ""), cli.stderr
            assert json.loads(cli.stdout) == {"delivered": 1, "failed": 0, "queued": 0, "replayed": False}
            assert json.loads(member.recv(timeout=PATIENCE)) == {
                "type": "message", "channelId": "lobby", "senderId": "$server", "messageId": ANY_MESSAGE_ID, "data": {"text": "order shipped"}}
            # curl, as shown
            curl = run(the(r"curl --aws-sigv4 .*").replace("<the Publish URL local mode prints>", publish_url))
            assert curl.returncode == 0, curl.stderr
            assert json.loads(curl.stdout) == {"delivered": 1, "failed": 0, "queued": 0}
            assert json.loads(member.recv(timeout=PATIENCE))["data"] == "hi"
