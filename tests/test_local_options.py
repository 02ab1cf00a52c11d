"""Local mode's command line: every flag is checked once, with a message that
names the flag and its range, whether it comes from the command line or from
``LocalServer``'s constructor; the program and stack named are checked before
anything starts; the feature flags turn their feature on for the served
program through the config keys ``channel_server.from_config`` reads.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from channel_server.handlers import spec
from channel_server.handlers.spec import READ_TIMEOUT
from channel_server.local.cli import parse_args
from channel_server.local.server import LocalServer, running
from channel_server.local.program import ProgramError, load_world
from channel_server.mocks import Project, ProjectError

ROOT = Path(__file__).resolve().parents[1]

#: (flag, value, what the parser says after "argument FLAG: "). LocalServer's
#: constructor says the same after "FLAG VALUE: " for the numeric ones.
BAD_VALUES = [
    ("--port", "70000", "70000: must be from 0 to 65535 (0 picks a free port)"),
    ("--port", "-1", "-1: must be from 0 to 65535 (0 picks a free port)"),
    ("--port", "http", "'http' is not a port number"),
    ("--idle-timeout", "-5", "-5: must be above 0 and at most 600 seconds (API Gateway's idle timeout)"),
    ("--idle-timeout", "0", "0: must be above 0 and at most 600 seconds (API Gateway's idle timeout)"),
    ("--idle-timeout", "nan", "'nan' is not a number of seconds"),
    ("--max-lifetime", "0", "0: must be above 0 and at most 7200 seconds (API Gateway's connection lifetime)"),
    ("--max-lifetime", "7201", "7201: must be above 0 and at most 7200 seconds (API Gateway's connection lifetime)"),
    ("--function-concurrency", "0",
     "0: must be from 1 to 1000 invocations at once (Lambda's default account concurrency)"),
    ("--function-concurrency", "many", "'many' is not a whole number"),
    ("--inline-fanout-limit", "0", "0: must be from 1 to 50000 members"),
    ("--heartbeat-seconds", "0", "0: must be above 0 and at most 540 seconds"),
    ("--management-latency-ms", "1000",
     f"1000: must be from 0 to below 1000; the handlers wait at most {READ_TIMEOUT:g} s for the management API's "
     "answer, so longer round trips would time out and deliver nothing"),
    ("--management-latency-ms", "-1", "-1: must be from 0 to below 1000; the handlers wait at most "
     f"{READ_TIMEOUT:g} s for the management API's answer, so longer round trips would time out and deliver nothing"),
    ("--backend", "nonsense", "'nonsense': give an http:// or https:// URL with a host, or reference"),
    ("--backend", "ftp://x", "'ftp://x': give an http:// or https:// URL with a host, or reference"),
    ("--dynamodb-endpoint", "garbage", "'garbage': give an http:// or https:// URL with a host"),
    ("--config", "heartbeats", "'heartbeats': give KEY=VALUE, as `pulumi config set KEY VALUE` would set (for "
     "example heartbeatIntervalMinutes=1)"),
]
CONSTRUCTOR_ARGUMENT = {"--port": "port", "--idle-timeout": "idle_timeout", "--max-lifetime": "max_lifetime",
                        "--function-concurrency": "function_concurrency",
                        "--inline-fanout-limit": "inline_fanout_limit", "--heartbeat-seconds": "heartbeat_seconds",
                        "--management-latency-ms": "management_latency_ms"}


def parser_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("flag, value, reason", BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_flag_and_its_range(flag, value, reason, capsys):
    assert parser_error([flag, value], capsys) == f"python -m channel_server.local: error: argument {flag}: {reason}"


@pytest.mark.parametrize("flag, value, reason", [row for row in BAD_VALUES if row[0] in CONSTRUCTOR_ARGUMENT
                                                 and "is not" not in row[2]])
def test_the_constructor_refuses_the_same_values_with_the_same_words(flag, value, reason):
    argument: dict[str, Any] = {CONSTRUCTOR_ARGUMENT[flag]: float(value)}  # whichever the flag's is
    with pytest.raises(ValueError) as refused:
        LocalServer(**argument)
    assert str(refused.value) == f"{flag} {reason}"


def test_the_command_exits_2_on_a_bad_flag_before_starting_anything():
    result = subprocess.run([sys.executable, "-m", "channel_server.local", "--port", "70000"],
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip().endswith("argument --port: 70000: must be from 0 to 65535 (0 picks a free port)")


def test_a_program_that_does_not_exist_is_named_as_missing(capsys, tmp_path):
    missing = tmp_path / "nonexistent"
    assert parser_error(["--program", str(missing)], capsys) == (
        f"python -m channel_server.local: error: --program {missing}: no such file or folder")


def test_config_needs_a_program(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no Pulumi.yaml here
    assert parser_error(["--config", "stageName=qa"], capsys) == (
        "python -m channel_server.local: error: --stack, --component and --config need a Pulumi program: give "
        "--program PATH, or run from a folder with a Pulumi.yaml")


def test_a_missing_stack_lists_the_stacks_there_are_and_the_example_to_copy():
    with pytest.raises(ProjectError) as missing:
        Project.load(ROOT).config("prod", required=True)
    assert str(missing.value) == (
        f"stack prod has no config file: {ROOT / 'Pulumi.prod.yaml'} does not exist; the stacks here are dev; "
        "Pulumi.prod.yaml.example is an example to start from: cp Pulumi.prod.yaml.example Pulumi.prod.yaml")


def test_a_missing_stack_in_a_project_without_stack_files_says_so(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: chat\nruntime: python\n")
    (tmp_path / "__main__.py").write_text("")
    with pytest.raises(ProjectError) as missing:
        Project.load(tmp_path).config("staging", required=True)
    assert str(missing.value) == (f"stack staging has no config file: {tmp_path / 'Pulumi.staging.yaml'} does not "
                                  "exist; this project has no stack files")


# --- the feature flags turn their feature on for the served program ----------------------------


def repository_world(*turn_on: tuple[str, str, str], config: dict | None = None):
    """The world of this repository's program, stack dev, as local mode's child reads it."""
    return load_world(str(ROOT), "dev", None, False, None, None, config, list(turn_on))


def test_the_dev_stack_has_none_of_the_optional_features():
    world = repository_world()
    assert (world.schedules, world.http_routes, world.authorizer) == ((), {}, None)


def test_feature_flags_turn_their_features_on_through_the_config_keys_from_config_reads():
    server = LocalServer(program=ROOT, heartbeat_seconds=5, authorizer=str(ROOT / "examples" / "authorizer.py"))
    world = repository_world(*server._turn_on())
    assert [schedule.expression for schedule in world.schedules] == ["rate(1 minute)"]
    assert world.authorizer is not None and world.authorizer.function_arn.endswith(":function:local-authorizer")


def test_the_backend_flag_serves_the_program_from_an_http_backend():
    server = LocalServer(program=ROOT, backend="http://127.0.0.1:9/")
    world = repository_world(*server._turn_on())
    assert sorted(world.http_routes) == ["$connect", "$default", "$disconnect", "join", "ping", "publish"]
    assert world.routes == {}


def test_a_key_set_with_config_wins_over_what_a_flag_would_turn_on():
    world = repository_world(("--heartbeat-seconds", "heartbeatIntervalMinutes", "1"),
                             config={"heartbeatIntervalMinutes": "7", "stageName": "qa"})
    assert [schedule.expression for schedule in world.schedules] == ["rate(7 minutes)"]
    assert world.stage == "qa"


def test_a_program_that_does_not_read_the_config_key_is_refused_with_what_to_change(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: chat\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(textwrap.dedent("""\
        from channel_server import ChannelServer
        ChannelServer("chat")
    """))
    with pytest.raises(ProgramError) as refused:
        with running(port=0, program=tmp_path, heartbeat_seconds=5):
            pass
    assert str(refused.value) == (
        "--heartbeat-seconds: the program's ChannelServer has no heartbeat schedule, and the config key "
        "heartbeatIntervalMinutes does not turn it on (the program does not read it); turn it on in the program's "
        "ChannelServerArgs (heartbeat_interval_minutes), or set the config key the program reads for this run with "
        "--config KEY=VALUE")


def test_the_constructor_refuses_a_backend_that_is_not_a_url_in_the_parsers_words():
    with pytest.raises(ValueError) as refused:
        LocalServer(backend="nonsense")
    assert str(refused.value) == "--backend nonsense: give an http:// or https:// URL with a host, or reference"


def test_a_host_that_cannot_be_resolved_is_named():
    from channel_server.local.ports import bind

    with pytest.raises(OSError) as refused:
        bind("999.1.1.1", 0)
    assert str(refused.value).startswith("cannot listen on --host 999.1.1.1: ")


def test_an_authorizer_file_without_the_function_named_is_one_line(tmp_path):
    from channel_server.local.functions import InvocationError

    (tmp_path / "auth.py").write_text("def handler(event, context):\n    raise Exception('Unauthorized')\n")
    with pytest.raises(InvocationError) as refused:
        with running(port=0, authorizer=f"{tmp_path / 'auth.py'}:nofunc"):
            pass
    assert str(refused.value) == (
        "function local-authorizer failed to start: HandlerNotFound: module auth has no function nofunc")


def test_a_config_key_pulumi_yaml_does_not_declare_is_warned_about(caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="channel_server.local")
    repository_world(config={"maxMesageBytes": "100"})
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("--config maxMesageBytes: Pulumi.yaml declares no such key, so the program may not "
                              "read it (it declares accessLogs, ")


def consumer_program(folder: Path) -> str:
    """A program that builds its ChannelServer in code and reads no config."""
    (folder / "Pulumi.yaml").write_text("name: consumer\nruntime: python\n")
    (folder / "__main__.py").write_text(
        "import pulumi\nfrom channel_server import ChannelServer\n\n"
        "chat = ChannelServer('chat', {'stage_name': 'prod'})\npulumi.export('url', chat.url)\n")
    return str(folder)


def test_a_config_key_the_program_does_not_read_is_warned_about(tmp_path, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="channel_server.local")
    load_world(consumer_program(tmp_path), "dev", None, False, None, None, {"historySeconds": "600"}, [])
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "--config historySeconds: the program did not read it, so it changes nothing in this run"]


def test_the_region_is_read_by_the_provider_whatever_the_program_reads(tmp_path, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="channel_server.local")
    world = load_world(consumer_program(tmp_path), "dev", None, False, None, None, {"aws:region": "eu-west-1"}, [])
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []
    assert world.region == "eu-west-1"


def test_a_config_key_the_program_reads_is_not_warned_about(caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="channel_server.local")
    world = repository_world(config={"historySeconds": "600"})
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []
    assert world.routes["publish"].environment[spec.ENV_HISTORY_SECONDS] == "600"
