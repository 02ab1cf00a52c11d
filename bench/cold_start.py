"""Cold start: importing each handler from the archive plus its first invocation,
next to ``import boto3``, each in a fresh interpreter.

    python bench/cold_start.py [--runs 7]

Unpacks the archive the component builds (exactly what Lambda unpacks under
/var/task), starts an embedded DynamoDB with the component's table for the
functions that need one, then for each entry point runs ``--runs`` fresh
interpreters that import ``channel_server.handlers.app`` from the archive and
invoke the entry point once with an event of API Gateway's shape. Prints the
median time of each next to the median of ``import boto3`` measured the same
way in the same run, the ratio, whether boto3 was imported, and the archive's
zipped size.
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
from channel_server.handlers import spec  # noqa: E402

EVENTS = Path(__file__).resolve().parents[1] / "tests" / "events"

#: Run in a fresh interpreter: time the import and the first invocation, say
#: whether boto3 got imported. Argv: task dir, entry point, event file.
PROBE = r"""
import json, sys, time, types, os
started = time.perf_counter()
task, entry, event_file = sys.argv[1:4]
sys.path.insert(0, task)
package = types.ModuleType("channel_server")
package.__path__ = [os.path.join(task, "channel_server")]
sys.modules["channel_server"] = package
from channel_server.handlers import app
imported = time.perf_counter()
result = getattr(app, entry)(json.load(open(event_file)), None)
done = time.perf_counter()
print(json.dumps({"import": imported - started, "total": done - started,
                  "boto3": "boto3" in sys.modules, "asyncio": "asyncio" in sys.modules,
                  "reply": (result or {}).get("body")}))
"""
BOTO3 = r"""
import json, time
started = time.perf_counter()
import boto3
print(json.dumps({"total": time.perf_counter() - started}))
"""


def _run(code: str, *args: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _zipped_size(files: dict[str, str]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive_zip:
        for name, text in files.items():
            archive_zip.writestr(name, text)
    return len(buffer.getvalue())


def _event(kind: str, body: str | None, connection_id: str) -> dict:
    raw = json.loads((EVENTS / f"{kind}.json").read_text())
    raw["requestContext"]["connectionId"] = connection_id
    if body is not None:
        raw["body"] = body
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()

    from channel_server.local import program as local_program
    from channel_server.local.dynamodb import EmbeddedDynamoDB, create_table

    files = archive.handler_sources()
    scratch = Path(tempfile.mkdtemp(prefix="cold-start-"))
    dynamodb = EmbeddedDynamoDB("127.0.0.1").start()
    try:
        for name, text in files.items():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            (scratch / name).write_text(text, encoding="utf-8")
        world = local_program.from_component("dev")
        import boto3

        client = boto3.client("dynamodb", endpoint_url=dynamodb.endpoint, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        create_table(client, world.table_name, world.table)
        env = {
            "PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local", "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint,
            **world.routes["publish"].environment,
        }
        events = {
            "connect": _event("connect", None, "ColdStartConnA="),
            "ping": _event("ping", '{"type":"ping","data":1}', "ColdStartConnA="),
            "default": _event("default", "hello", "ColdStartConnA="),
            "join": _event("join", '{"type":"join","channelId":"cold"}', "ColdStartConnA="),
            "publish": _event("publish", '{"type":"publish","data":1}', "ColdStartConnA="),
            "disconnect": _event("disconnect", None, "ColdStartConnA="),
        }
        baseline = statistics.median(_run(BOTO3, env=env)["total"] for _ in range(options.runs))
        print(f"import boto3: {baseline * 1000:.0f} ms (median of {options.runs})")
        for route in spec.ROUTES:
            event_file = scratch / f"{route.function}.json"
            event_file.write_text(json.dumps(events[route.function]))
            runs = [_run(PROBE, str(scratch), route.function, str(event_file), env=env) for _ in range(options.runs)]
            total = statistics.median(r["total"] for r in runs)
            loads = "boto3" if runs[0]["boto3"] else "no boto3"
            print(f"{route.function:10s} import + first invocation {total * 1000:5.0f} ms = {total / baseline:4.2f}x "
                  f"import boto3 ({loads}; import alone {statistics.median(r['import'] for r in runs) * 1000:.0f} ms)")
        sources = {name: path.read_text(encoding="utf-8") for name, path in archive.handler_files().items()}
        print(f"archive: {len(files)} files, {_zipped_size(files) / 1024:.1f} KB zipped "
              f"(the sources with their docstrings and comments: {_zipped_size(sources) / 1024:.1f} KB)")
    finally:
        dynamodb.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
