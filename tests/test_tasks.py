"""tasks.py's setup: when it installs, what it installs, and what it says.

tasks.py is loaded from its path; its virtualenv creation and pip are replaced by
recorders, and each test works on a pyproject.toml in a tmp dir (extras shaped like
the repository's), so no network, no pip and no real virtualenv are involved.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_tasks():
    spec = importlib.util.spec_from_file_location("tasks_under_test", REPO / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tasks = load_tasks()


class Recorder:
    """Stands in for venv creation and pip; remembers what was asked."""

    def __init__(self) -> None:
        self.created: list[Path] = []
        self.installs: list[str] = []

    def create_venv(self, venv_dir: Path) -> None:
        self.created.append(venv_dir)
        python = tasks.venv_python(venv_dir)
        python.parent.mkdir(parents=True, exist_ok=True)
        python.write_text("")

    def pip_install(self, python: Path, root: Path, spec: str) -> None:
        assert python == tasks.venv_python(root / ".venv")
        self.installs.append(spec)

    def take(self) -> list[str]:
        installs, self.installs = self.installs, []
        return installs


PYPROJECT = """\
[project]
name = "Channel_Server"  # spelled differently from the self-references: names are normalized
version = "0.1.0"

[project.optional-dependencies]
local = ["boto3>=1.35,<2"]
test = ["channel-server[local]", "pytest>=8,<10"]
docs = ["channel-server[local] ; python_version < '3'", "mkdocs"]  # conditional: includes nothing
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return tmp_path


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(tasks, "create_venv", recorder.create_venv)
    monkeypatch.setattr(tasks, "pip_install", recorder.pip_install)
    return recorder


def test_the_repos_test_extra_includes_local_by_its_pyproject() -> None:
    includes = tasks.extra_includes(tomllib.loads((REPO / "pyproject.toml").read_text()))
    assert tasks.closure({"test"}, includes) >= {"local", "test"}
    assert "test" not in tasks.closure({"local"}, includes)
    assert tasks.fewest({"local", "test"}, includes) == ["test"]


def test_includes_are_derived_from_self_requirements() -> None:
    includes = tasks.extra_includes(tomllib.loads(PYPROJECT))
    assert includes == {"local": set(), "test": {"local"}, "docs": set()}
    cyclic = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert tasks.closure({"a"}, cyclic) == {"a", "b"}
    assert tasks.fewest({"a", "b", "c"}, cyclic) == ["b", "c"]


def test_first_setup_creates_the_venv_and_installs(root: Path, recorder: Recorder) -> None:
    tasks.setup("test", root)
    assert recorder.created == [root / ".venv"]
    assert recorder.take() == [".[test]"]
    stamp = json.loads((root / ".venv" / tasks.STAMP_NAME).read_text())
    assert stamp["extras"] == ["local", "test"]


def test_an_extra_included_in_the_installed_one_installs_nothing(root: Path, recorder: Recorder) -> None:
    tasks.setup("test", root)
    recorder.take()
    tasks.setup("local", root)
    tasks.setup("test", root)
    tasks.setup("local", root)
    assert recorder.take() == []
    assert recorder.created == [root / ".venv"]


def test_a_changed_pyproject_reinstalls_once(root: Path, recorder: Recorder) -> None:
    tasks.setup("test", root)
    recorder.take()
    (root / "pyproject.toml").write_text(PYPROJECT.replace('"pytest>=8,<10"', '"pytest>=8.1,<10"'))
    tasks.setup("local", root)
    assert recorder.take() == [".[test]"]  # keeps what was installed
    tasks.setup("test", root)
    tasks.setup("local", root)
    assert recorder.take() == []


def test_a_new_extra_installs_the_union_then_switching_installs_nothing(root: Path, recorder: Recorder) -> None:
    tasks.setup("local", root)
    assert recorder.take() == [".[local]"]
    tasks.setup("test", root)
    assert recorder.take() == [".[test]"]
    for job in ("local", "test", "local", "test"):
        tasks.setup(job, root)
    assert recorder.take() == []


def test_extras_that_are_not_included_are_installed_together(root: Path, recorder: Recorder) -> None:
    tasks.setup("docs", root)
    tasks.setup("local", root)
    assert recorder.take() == [".[docs]", ".[docs,local]"]
    tasks.setup("test", root)
    assert recorder.take() == [".[docs,test]"]
    for job in ("docs", "local", "test"):
        tasks.setup(job, root)
    assert recorder.take() == []


def test_a_failed_install_is_tried_again(root: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks.setup("local", root)
    recorder.take()

    def failing(python: Path, root: Path, spec: str) -> None:
        raise tasks.subprocess.CalledProcessError(1, ["pip"])

    monkeypatch.setattr(tasks, "pip_install", failing)
    with pytest.raises(tasks.subprocess.CalledProcessError):
        tasks.setup("test", root)
    monkeypatch.setattr(tasks, "pip_install", recorder.pip_install)
    tasks.setup("local", root)
    assert recorder.take() == []  # still installed
    tasks.setup("test", root)
    assert recorder.take() == [".[test]"]


def test_an_unreadable_stamp_reinstalls(
    root: Path, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.setup("test", root)
    recorder.take()
    (root / ".venv" / tasks.STAMP_NAME).write_text("not json")
    capsys.readouterr()
    tasks.setup("test", root)
    assert recorder.take() == [".[test]"]
    assert capsys.readouterr().out.splitlines() == [
        "installing channel-server[test] into .venv/"
        " (nothing recorded as installed in .venv/ yet; this can take a minute or two)",
    ]
    assert recorder.created == [root / ".venv"]


def test_setup_says_what_it_does_and_nothing_when_nothing_to_do(
    root: Path, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.setup("local", root)
    assert capsys.readouterr().out.splitlines() == [
        "creating the virtualenv .venv/",
        "installing channel-server[local] into .venv/ (the first install takes a minute or two)",
    ]
    tasks.setup("test", root)
    assert capsys.readouterr().out.splitlines() == [
        "installing channel-server[test] into .venv/ (adding [test] to [local])",
    ]
    (root / "pyproject.toml").write_text(PYPROJECT + "\n")
    tasks.setup("local", root)
    assert capsys.readouterr().out.splitlines() == [
        "installing channel-server[test] into .venv/ (pyproject.toml changed)",
    ]
    tasks.setup("local", root)
    tasks.setup("test", root)
    assert capsys.readouterr().out == ""


def test_pip_shows_its_progress(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    commands: list[list[str]] = []
    monkeypatch.setattr(tasks.subprocess, "run", lambda command, **kwargs: commands.append(command))
    for tty in (True, False):
        monkeypatch.setattr(tasks.sys.stdout, "isatty", lambda: tty)
        tasks.pip_install(tmp_path / "python", tmp_path, ".[test]")
    on_a_terminal, piped = commands
    for command in commands:
        assert "--quiet" not in command and "-q" not in command
        assert "--disable-pip-version-check" in command
        assert command[-2:] == ["-e", ".[test]"]
    assert "--progress-bar" not in on_a_terminal
    assert piped[piped.index("--progress-bar") + 1] == "off"


def test_a_changed_pyproject_keeps_only_the_extras_it_still_declares(root: Path, recorder: Recorder) -> None:
    tasks.setup("docs", root)
    tasks.setup("local", root)
    recorder.take()
    (root / "pyproject.toml").write_text(PYPROJECT.replace("docs = ", "documentation = "))
    tasks.setup("local", root)
    assert recorder.take() == [".[local]"]


@pytest.mark.skipif(tasks.os.name != "posix", reason="execv only on POSIX")
def test_main_sets_up_then_becomes_the_job_with_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    class Became(Exception):
        """Raised by the fake execv: the real one never returns."""

    def execv(path: str, args: list[str]) -> None:
        calls.append(("execv", path, args))
        raise Became

    def run(*args, **kwargs) -> None:
        raise AssertionError("main ran the job as a child instead of becoming it")

    monkeypatch.setattr(tasks, "setup", lambda extra: calls.append(("setup", extra)))
    monkeypatch.setattr(tasks.os, "chdir", lambda path: calls.append(("chdir", path)))
    monkeypatch.setattr(tasks.os, "execv", execv)
    monkeypatch.setattr(tasks.subprocess, "run", run)
    with pytest.raises(Became):
        tasks.main(["local", "--port", "9000"])
    python = str(tasks.PYTHON)
    assert calls == [
        ("setup", "local"),
        ("chdir", tasks.ROOT),
        ("execv", python, [python, "-m", "channel_server.local", "--port", "9000"]),
    ]


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["help"]])
def test_help_prints_the_jobs_on_stdout_and_exits_0(argv: list[str]) -> None:
    done = subprocess.run(["python3", str(REPO / "tasks.py"), *argv], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("Set up and run channel-server's jobs with nothing but python3.")
    assert "python3 tasks.py local [local-mode flags]" in done.stdout


def test_a_mistyped_job_is_named_with_the_nearest_one_and_exits_2() -> None:
    done = subprocess.run(["python3", str(REPO / "tasks.py"), "lcoal"], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (2, "")
    first, *_ = done.stderr.splitlines()
    assert first == "tasks.py: unknown job 'lcoal' (did you mean 'local'?); the jobs are local, test"


def test_no_job_prints_the_jobs_and_exits_2() -> None:
    done = subprocess.run(["python3", str(REPO / "tasks.py")], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("Set up and run channel-server's jobs with nothing but python3.")


# --- the browser the page's test drives -------------------------------------------------


@pytest.fixture
def no_browser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """chromium is missing, chromedriver present, we are root with apt-get;
    the commands run are recorded, and succeed (installing nothing)."""
    (tmp_path / "chromedriver").touch()
    monkeypatch.setattr(tasks, "BROWSER", (tmp_path / "chromium", tmp_path / "chromedriver"))
    commands: list[list[str]] = []

    def succeeding(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(tasks.subprocess, "run", succeeding)
    monkeypatch.setattr(tasks.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(tasks.os, "geteuid", lambda: 0)
    return commands


def test_as_root_with_apt_get_a_missing_browser_is_installed_saying_why(
        no_browser: list[list[str]], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tasks.ensure_browser()
    assert no_browser == [tasks.BROWSER_INSTALL]
    out = capsys.readouterr().out
    assert out.startswith("installing chromium and chromium-driver with apt-get")
    assert f"{tmp_path / 'chromium'} missing" in out and "chromedriver missing" not in out


def test_a_failed_install_updates_the_package_lists_and_tries_once_more(
        no_browser: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    codes = iter([100, 0, 100])  # both installs fail

    def answering(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        no_browser.append(command)
        return subprocess.CompletedProcess(command, next(codes))

    monkeypatch.setattr(tasks.subprocess, "run", answering)
    tasks.ensure_browser()
    assert no_browser == [tasks.BROWSER_INSTALL, ["apt-get", "update"], tasks.BROWSER_INSTALL]
    assert "will be skipped" in capsys.readouterr().out.splitlines()[-1]


def test_without_root_nothing_is_installed_and_one_line_says_the_test_is_skipped(
        no_browser: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tasks.os, "geteuid", lambda: 1000)
    tasks.ensure_browser()
    assert no_browser == []
    (line,) = capsys.readouterr().out.splitlines()
    assert "will be skipped" in line and "apt-get install chromium chromium-driver" in line


def test_an_installed_browser_needs_nothing(
        no_browser: list[list[str]], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "chromium").touch()
    tasks.ensure_browser()
    assert no_browser == [] and capsys.readouterr().out == ""
