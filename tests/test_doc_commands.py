"""Every shell command the README and docs/ show is run here (or in
test_doc_features.py), as shown: a documented command that fails breaks the
suite. ``support.doc_commands`` says how commands are found and the only
substitutions made (free ports for the ports the docs name, placeholders,
``--collect-only`` for the suite's own commands, small sizes for benchmarks).

``RULES`` claims each documented command for the test that runs it, or says
why it cannot run on this machine (the Pulumi CLI, the network, wscat). A
command that no rule claims fails ``test_every_documented_command_is_run_by_a_test``,
so a new command in the docs needs its test; a rule that claims nothing fails
too, so a command the docs drop takes its rule with it.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from channel_server.check import CHECKS
from support.doc_commands import ROOT, Command, Shell, documented, free_port, run, with_ports
from test_docs import normalized, startup_transcript

#: Why some commands are not run here: they need what this machine cannot have.
NO_PULUMI_CLI = "not run: needs the Pulumi CLI and an AWS account (tests/test_program.py runs the program under mocks)"

#: Each documented command (a regex its whole text matches) → the test that
#: runs it ("module::test"), or why it is not run.
RULES: dict[str, str] = {
    r"python3 tasks\.py local( --port \d+)?":
        "test_doc_commands::test_local_mode_serves_the_documented_clients",
    r"\.venv/bin/python -m channel_server\.client ws://127\.0\.0\.1:8080/dev --channel lobby":
        "test_doc_commands::test_local_mode_serves_the_documented_clients",
    r"\.venv/bin/python -m websockets ws://127\.0\.0\.1:8080/dev":
        "test_doc_commands::test_local_mode_serves_the_documented_clients",
    r"(HYPOTHESIS_PROFILE=\w+ )?python3 tasks\.py test( .*)?":
        "test_doc_commands::test_the_test_commands_collect_the_suite_they_name",
    r"\.venv/bin/python bench/\w+\.py( .*)?":
        "test_doc_commands::test_each_benchmark_runs_as_documented_with_small_sizes",
    r"pip install \"?/path/to/channel-server(\[\w+\])?\"?":
        "test_doc_commands::test_installing_from_a_checkout_resolves",
    r"python -m channel_server\.local --program \S+ --stack \w+":
        "test_doc_features::test_a_consumer_program_is_served_with_its_stack",
    r"python3 tasks\.py local --heartbeat-seconds \d+ --idle-timeout \d+":
        "test_doc_features::test_the_heartbeat_command_sends_heartbeats_to_an_idle_client",
    r"python3 tasks\.py local --backend reference":
        "test_doc_features::test_the_reference_backend_command_serves_a_channel",
    r"python3 tasks\.py local --authorizer examples/authorizer\.py":
        "test_doc_features::test_the_authorizer_command_admits_a_token_to_its_own_channels",
    r"\.venv/bin/python -m channel_server\.client \"ws://127\.0\.0\.1:8080/dev\?token=\w+\" --channel [\w.]+":
        "test_doc_features::test_the_authorizer_command_admits_a_token_to_its_own_channels",
    r"python3 tasks\.py local --config historySeconds=\d+ --config presence=true":
        "test_doc_features::test_the_history_and_presence_command_resumes_a_join_and_announces_members",
    r"python3 tasks\.py local --inline-fanout-limit \d+":
        "test_doc_features::test_the_inline_fanout_command_hands_the_rest_to_the_queue",
    r"python3 tasks\.py local --backend http://127\.0\.0\.1:9000/ &":
        "test_doc_features::test_your_own_backend_recipe_serves_a_channel",
    r"\.venv/bin/python -m channel_server\.http_backend --port 9000 .*":
        "test_doc_features::test_your_own_backend_recipe_serves_a_channel",
    r"python3 tasks\.py local --server-publish":
        "test_doc_features::test_a_backend_publishes_with_the_documented_commands",
    r"\.venv/bin/python -m channel_server\.publish \"<the Publish URL local mode prints>\" .*":
        "test_doc_features::test_a_backend_publishes_with_the_documented_commands",
    r"curl --aws-sigv4 .*":
        "test_doc_features::test_a_backend_publishes_with_the_documented_commands",
    r"\.venv/bin/python -m channel_server\.plan( .*)?":
        "test_plan::test_each_documented_plan_prints_what_the_page_shows",
    r"\.venv/bin/python -m channel_server\.check ws://127\.0\.0\.1:8080/dev":
        "test_doc_commands::test_local_mode_serves_the_documented_clients",
    r"python3 tasks\.py local --authorizer examples/authorizer\.py --heartbeat-seconds \d+ --server-publish":
        "test_check::test_the_documented_run_passes_every_check_as_the_page_shows",
    r"\.venv/bin/python -m channel_server\.check ws://127\.0\.0\.1:8080/dev --token \w+ .*":
        "test_check::test_the_documented_run_passes_every_check_as_the_page_shows",
    r"\.venv/bin/python -m channel_server\.check \"\$\(pulumi stack output url\)\"( .*)?": NO_PULUMI_CLI,
    r"\.venv/bin/python -m channel_server\.api_models --stack dev":
        "test_api_models::test_the_command_passes_the_projects_stack_and_fails_a_broken_program",
    r"pulumi .*|A\$ .*|B\$ .*": NO_PULUMI_CLI,
    r"wscat .*": "not run: wscat is an npm tool, not installed here; the websockets command shows the same frames",
    r"pip install \"channel-server @ git\+https://<host>/.*\"": "not run: a git URL with placeholders, on a network",
}


def rule_for(command: Command) -> list[str]:
    return [pattern for pattern in RULES if re.fullmatch(pattern, command.text)]


def the(pattern: str) -> str:
    """The one command the docs show that ``pattern`` (one of ``RULES``) matches."""
    texts = {command.text for command in documented() if re.fullmatch(pattern, command.text)}
    assert len(texts) == 1, f"{pattern!r} matches {sorted(texts)}"
    return texts.pop()


# --- every command is claimed -------------------------------------------------------------------


def test_every_documented_command_is_run_by_a_test() -> None:
    unclaimed = [str(command) for command in documented() if not rule_for(command)]
    assert unclaimed == [], "documented commands that no test runs (add a rule to RULES):\n" + "\n".join(unclaimed)


def test_each_command_is_claimed_once() -> None:
    twice = [f"{command}: {rules}" for command in documented() if len(rules := rule_for(command)) > 1]
    assert twice == []


def test_every_rule_claims_a_documented_command() -> None:
    texts = [command.text for command in documented()]
    stale = [pattern for pattern in RULES if not any(re.fullmatch(pattern, text) for text in texts)]
    assert stale == []


def test_every_test_a_rule_names_exists() -> None:
    missing = []
    for how in RULES.values():
        if how.startswith("not run: "):
            continue
        module, test = how.split("::")
        if not hasattr(importlib.import_module(module), test):
            missing.append(how)
    assert missing == []


def test_the_quickstart_shows_the_two_commands() -> None:
    quickstart = [c.text for c in documented() if c.doc == "README.md"][:2]
    assert quickstart == ["python3 tasks.py local", "python3 tasks.py test"]


# --- local mode and its clients -------------------------------------------------------------------


def test_local_mode_serves_the_documented_clients() -> None:
    # GIVEN local mode started as the quickstart says, on a free port instead of the ones the docs name
    port = free_port()
    ports = {"8080": port, "9000": port}
    # (the quickstart's command names no port: it gets one, as `python3 tasks.py local --port 9000` shows)
    local = Shell(with_ports(the(r"python3 tasks\.py local") + " --port 8080", ports))
    try:
        local.wait_for(r"^Ctrl-C to stop\.$")
        assert f"WebSocket URL:  ws://127.0.0.1:{port}/dev" in local.output
        # what it printed is the start-up transcript the docs show
        printed = [normalized(line) for line in local.lines]
        for doc in ("README.md", "docs/local-mode.md"):
            assert [normalized(line) for line in startup_transcript(doc)] == printed, doc

        # WHEN terminal A and terminal B talk in lobby with the terminal client
        client = with_ports(the(r"\.venv/bin/python -m channel_server\.client ws://127\.0\.0\.1:8080/dev "
                                r"--channel lobby"), ports)
        a = Shell(client, stdin=True)
        a.wait_for(r"^\* joined lobby as ")
        b = Shell(client, stdin=True)
        b_id = b.wait_for(r"^\* joined lobby as (\S+)").group(1)
        b.type("hi from B\n")
        # THEN A prints B's line with B's senderId, and both leave cleanly at the end of their input
        a.wait_for(rf"^{re.escape(b_id)}: hi from B$")
        b.end_input()
        a.end_input()
        assert (a.finish(), b.finish()) == (0, 0)

        # AND the raw frames shown for the websockets client are what it gets
        raw = Shell(with_ports(the(r"\.venv/bin/python -m websockets ws://127\.0\.0\.1:8080/dev"), ports),
                    stdin=True)
        raw.wait_for(r"^Connected to ")
        raw.type('{"type":"join","channelId":"lobby"}\n')
        raw.wait_for(r'< \{"type":"joinSuccess","channelId":"lobby","senderId":"[\w-]{22}"\}')
        raw.type('{"type":"ping","data":42}\n')
        raw.wait_for(r'< \{"type":"pong","data":42\}')
        raw.end_input()
        assert raw.finish() == 0

        # AND the check passes against it, as the README shows it, one line per check
        checked = run(with_ports(the(r"\.venv/bin/python -m channel_server\.check ws://127\.0\.0\.1:8080/dev"),
                                 ports))
        assert (checked.returncode, checked.stderr) == (0, ""), checked.stdout + checked.stderr
        assert [line.split("  ")[0] for line in checked.stdout.splitlines()[1:-1]] == list(CHECKS), checked.stdout

        # AND Ctrl-C stops local mode cleanly, each client's $disconnect run (the check's too)
        assert local.interrupt() == 0
        connected = re.findall(r" connect (\S+)$", local.output, re.M)
        assert len(connected) == 3 + 3  # A, B, the raw client; the check's two and its raw connection
        assert sorted(re.findall(r" disconnect (\S+) \d+$", local.output, re.M)) == sorted(connected)
        assert local.lines[-1] == "stopped"
    finally:
        local.kill()


def test_the_test_commands_collect_the_suite_they_name() -> None:
    texts = sorted({c.text for c in documented() if re.fullmatch(r"(HYPOTHESIS_PROFILE=\w+ )?python3 tasks\.py "
                                                                 r"test( .*)?", c.text)})
    assert "python3 tasks.py test" in texts
    # the suite cannot run itself inside itself: each collects what it would run
    for text, done in run_all([f"{text} --collect-only -q -n 0 -p no:cacheprovider" for text in texts], texts):
        assert done.returncode == 0, f"`{text}`:\n{done.stdout}\n{done.stderr}"
        assert re.search(r"^tests/test_\w+\.py(::test_|: \d+$)", done.stdout, re.M), done.stdout


def run_all(commands: list[str], texts: list[str]) -> list[tuple[str, subprocess.CompletedProcess]]:
    """Each command run to its end, a few at once (most of each is waiting: on
    its local mode's start, on replies), paired with the text documented."""
    with ThreadPoolExecutor(max_workers=CONCURRENT_COMMANDS) as pool:
        return list(zip(texts, pool.map(run, commands), strict=True))


#: How many documented commands run at once: a few commands' waits overlap the
#: others' work on 2 cores.
CONCURRENT_COMMANDS = 3

#: The sizes each benchmark runs with here: the documented ones take minutes.
SMALL = {"fanout.py": "--members 3 --publishes 1", "post_cpu.py": "--posts 50", "cold_start.py": "--runs 1",
         "local_capacity.py": "--clients 4 --in-flight 2", "decode.py": "--sizes 16 --repeat 1",
         "metrics_import.py": "--runs 1", "server_publish.py": "--members 3 --publishes 1",
         "client_in_flight.py": "--publishes 3", "history_cost.py": "--members 3 --publishes 3 --missed 2",
         "presence_join_storm.py": "--members 3"}


def with_flags(command: str, replaced: str) -> str:
    """``command`` with each flag of ``replaced`` given its values there instead."""
    words = command.split()
    flags: dict[str, list[str]] = {}
    head = []
    for word in words:
        if word.startswith("--"):
            flags[word] = []
        elif flags:
            flags[list(flags)[-1]].append(word)
        else:
            head.append(word)
    flag = None
    for word in replaced.split():
        if word.startswith("--"):
            flag = word
            flags[flag] = []
        else:
            assert flag is not None, f"{replaced!r} gives a value before any flag"
            flags[flag].append(word)
    return " ".join([*head, *(w for flag, values in flags.items() for w in (flag, *values))])


def test_each_benchmark_runs_as_documented_with_small_sizes() -> None:
    texts = sorted({c.text for c in documented() if c.text.startswith(".venv/bin/python bench/")})
    assert texts, "the docs show no benchmark"
    for text, done in run_all([with_flags(text, SMALL[Path(text.split()[1]).name]) for text in texts], texts):
        assert done.returncode == 0, f"`{text}`:\n{done.stdout}\n{done.stderr}"
        assert done.stdout.strip(), f"`{text}` printed no figures"


def test_installing_from_a_checkout_resolves() -> None:
    texts = sorted({c.text for c in documented() if re.fullmatch(r"pip install \"?/path/to/channel-server"
                                                                 r"(\[\w+\])?\"?", c.text)})
    for text in texts:
        # the checkout is this one; pip resolves it without installing, its dependencies or the network
        command = text.replace("/path/to/channel-server", str(ROOT)).replace("pip install", f"{sys.executable} -m pip "
                               "install --dry-run --no-deps --no-build-isolation --no-index --report -", 1)
        done = run(command)
        assert done.returncode == 0, f"`{text}`:\n{done.stderr}"
        report, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{"):])
        assert [item["metadata"]["name"] for item in report["install"]] == ["channel-server"]
