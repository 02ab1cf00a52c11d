"""The metrics writer's import cost: handlers/metrics.py next to
aws-lambda-powertools' ``Metrics``, each in a fresh interpreter.

    python bench/metrics_import.py [--runs 7] [--python PATH]

Unpacks the archive the component builds (as cold_start.py does), then for
each probe runs ``--runs`` fresh interpreters that time the import
(perf_counter around it) and read the process's resident memory (VmRSS)
after it. Prints the medians next to the baselines measured the same way in
the same run: an interpreter that imports nothing (for memory) and
``import boto3`` (for time, as cold_start.py), and the zipped size of what
each would add to the archive.

Every probe runs in ``--python`` (default: this interpreter). Powertools is
no dependency of this project; to compare, install it in a throwaway venv
with the same Python and point ``--python`` at it::

    python3 -m venv /tmp/pt && /tmp/pt/bin/pip install aws-lambda-powertools boto3
    python bench/metrics_import.py --python /tmp/pt/bin/python

When powertools is not importable there, the bench says so and prints ours.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channel_server import archive  # noqa: E402

#: Run in a fresh interpreter: the archive's package set up as Lambda finds
#: it, then the import timed and the memory read. Argv: task dir, import code.
PROBE = r"""
import json, os, sys, time, types
task, code = sys.argv[1:3]
sys.path.insert(0, task)
package = types.ModuleType("channel_server")
package.__path__ = [os.path.join(task, "channel_server")]
sys.modules["channel_server"] = package
def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
preload, _, timed = code.rpartition(";")
exec(preload)
before = rss_kb()
started = time.perf_counter()
exec(timed.strip())
seconds = time.perf_counter() - started
after = rss_kb()
print(json.dumps({"seconds": seconds, "rss_kb": after, "grown_kb": after - before}))
"""

#: What each probe imports: what comes before the last ";" is loaded first,
#: neither timed nor counted in the growth of memory.
NOTHING = "pass"
OURS = "from channel_server.handlers import metrics"
#: What app.py has imported when it reaches metrics: the module's own cost
#: in the function.
APP_IMPORTS = "import logging, os, threading, time; from channel_server.handlers import protocol, spec, events, store"
OURS_IN_APP = f"{APP_IMPORTS}; from channel_server.handlers import metrics"
POWERTOOLS = "from aws_lambda_powertools import Metrics"
POWERTOOLS_IN_APP = f"{APP_IMPORTS}; {POWERTOOLS}"
BOTO3 = "import boto3"

#: Size of a package's files, zipped: what it would add to the function's archive.
PACKAGE_SIZE = r"""
import importlib.util, io, json, os, sys, zipfile
spec = importlib.util.find_spec(sys.argv[1])
root = os.path.dirname(spec.origin)
buffer, files = io.BytesIO(), 0
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py") or name.endswith(".typed"):
                zipped.write(os.path.join(folder, name), os.path.relpath(os.path.join(folder, name), root))
                files += 1
print(json.dumps({"zipped": len(buffer.getvalue()), "files": files}))
"""


def _run(python: str, code: str, *args: str) -> dict:
    out = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ.get("PATH", "")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _importable(python: str, module: str) -> str | None:
    """None when ``module`` imports in ``python``, else why not."""
    found = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    return None if found.returncode == 0 else (found.stderr.strip().splitlines() or ["failed"])[-1]


def _medians(python: str, task: Path, code: str, runs: int) -> tuple[float, float, float]:
    """Over ``runs`` fresh interpreters, the medians of: the import's time
    (ms), the RSS after it (MB) and how much the import grew it (MB)."""
    samples = [_run(python, PROBE, str(task), code) for _ in range(runs)]
    return (statistics.median(s["seconds"] for s in samples) * 1000,
            statistics.median(s["rss_kb"] for s in samples) / 1024,
            statistics.median(s["grown_kb"] for s in samples) / 1024)


def _zipped(files: dict[str, str]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, text in files.items():
            zipped.writestr(name, text)
    return len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--python", default=sys.executable, help="the interpreter every probe runs in")
    options = parser.parse_args()
    python, runs = options.python, options.runs

    files = archive.handler_sources()
    task = Path(tempfile.mkdtemp(prefix="metrics-import-"))
    try:
        for name, text in files.items():
            (task / name).parent.mkdir(parents=True, exist_ok=True)
            (task / name).write_text(text, encoding="utf-8")
        version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        print(f"{python} (Python {version}), median of {runs} fresh interpreters each")

        _, bare_mb, _ = _medians(python, task, NOTHING, runs)
        print(f"{'baseline: nothing imported':44s} {'':>9s} RSS {bare_mb:6.1f} MB")
        boto3_ms = None

        def line(label: str, milliseconds: float, megabytes: float, grown: float) -> str:
            ratio = f" = {milliseconds / boto3_ms:.3f}x import boto3" if boto3_ms else ""
            return f"{label:44s} {milliseconds:6.1f} ms RSS {megabytes:6.1f} MB (import +{grown:5.2f} MB){ratio}"

        boto3_missing = _importable(python, "boto3")
        if boto3_missing is None:
            boto3 = _medians(python, task, BOTO3, runs)
            print(line("baseline: import boto3", *boto3))
            boto3_ms = boto3[0]
        else:
            print(f"baseline: import boto3 not importable here ({boto3_missing})")

        print(line("handlers/metrics.py, fresh interpreter", *_medians(python, task, OURS, runs)))
        print(line("handlers/metrics.py, after app's imports", *_medians(python, task, OURS_IN_APP, runs)))
        ours = {name: text for name, text in files.items() if name.endswith("/metrics.py")}
        print(f"{'':44s} adds {_zipped(ours) / 1024:.1f} KB zipped to the archive "
              f"(archive: {_zipped(files) / 1024:.1f} KB)")

        missing = _importable(python, "aws_lambda_powertools")
        if missing is not None:
            print(f"aws_lambda_powertools Metrics: not importable in {python} ({missing}); "
                  f"see the docstring to compare")
            return
        print(line("powertools Metrics, fresh interpreter", *_medians(python, task, POWERTOOLS, runs)))
        print(line("powertools Metrics, after app's imports", *_medians(python, task, POWERTOOLS_IN_APP, runs)))
        size = _run(python, PACKAGE_SIZE, "aws_lambda_powertools")
        print(f"{'':44s} adds {size['zipped'] / 1024:.0f} KB zipped to the archive "
              f"({size['files']} files of the package alone, without jmespath and typing_extensions)")
    finally:
        shutil.rmtree(task, ignore_errors=True)


if __name__ == "__main__":
    main()
