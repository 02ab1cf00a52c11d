"""A consumer project that installs the built wheel (not this checkout) and
uses every production option under mocks, in a process of its own."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from channel_server.resource_types import ALARM, API_GATEWAY_ACCOUNT, AUTHORIZER, DOMAIN_NAME, RECORD, SCHEDULE

ROOT = Path(__file__).resolve().parents[1]

CONSUMER = r'''
import json, sys
from pathlib import Path

import pulumi
import pulumi_aws as aws
import channel_server
from channel_server import ChannelServer
from channel_server.mocks import deploy
from channel_server.resource_types import FUNCTION

installed = Path(channel_server.__file__).resolve()
assert installed.is_relative_to(Path(sys.argv[1]).resolve()), f"not the wheel's copy: {installed}"

def program():
    topic = aws.sns.Topic("alarms")
    certificate = aws.acm.Certificate("cert", domain_name="chat.example.com", validation_method="DNS")
    chat = ChannelServer("chat", {
        "stage_name": "prod",
        "domain": {"name": "chat.example.com", "certificate_arn": certificate.arn, "hosted_zone_id": "Z0123ABC"},
        "authorizer": {"function_arn": "arn:aws:lambda:us-east-1:123456789012:function:auth"},
        "access_logs": True, "metrics": True, "alarm_topic_arn": topic.arn, "tracing": True,
        "retain_on_delete": True, "deletion_protection": True, "heartbeat_interval_minutes": 5,
        "tags": {"team": "realtime"},
    })
    chat.url.apply(lambda url: print(json.dumps({"url": url})))

deployment = deploy(program)
archive = deployment.of_type(FUNCTION)[0]["code"]
print(json.dumps({
    "types": sorted({r.type for r in deployment.resources}),
    "handler_files": sorted(archive.assets),
    "retained": [r.name for r in deployment.resources if r.retain_on_delete],
}))
'''


def test_a_consumer_of_the_wheel_gets_every_option(tmp_path: Path) -> None:
    # GIVEN the wheel pip builds from a copy of this checkout (an in-tree
    # build leaves build/ behind), installed on its own
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("channel_server-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)

    # WHEN a consumer program uses every production option under mocks,
    # importing channel_server from the wheel ahead of this checkout
    (tmp_path / "consumer.py").write_text(CONSUMER)
    done = subprocess.run([sys.executable, str(tmp_path / "consumer.py"), str(site)], cwd=tmp_path,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    # THEN it built them all, with the handlers zipped from the wheel's copy
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    url = next(line["url"] for line in lines if "url" in line)
    summary = next(line for line in lines if "types" in line)
    assert url == "wss://chat.example.com"
    assert {DOMAIN_NAME, RECORD, AUTHORIZER, API_GATEWAY_ACCOUNT, ALARM, SCHEDULE} <= set(summary["types"])
    assert "channel_server/handlers/app.py" in summary["handler_files"]
    assert summary["retained"] == ["chat-connections"]

    # AND the wheel carries the client, and local mode's page, which a consumer runs from it
    names = zipfile.ZipFile(wheel).namelist()
    assert {"channel_server/client/__init__.py", "channel_server/client/__main__.py",
            "channel_server/client/channel_client.py", "channel_server/client/resume.py",
            "channel_server/local/page/index.html", "channel_server/local/page/page.js",
            "channel_server/local/page/page.css"} <= set(names)
    usage = subprocess.run([sys.executable, "-m", "channel_server.client", "--help"], cwd=tmp_path,
                           env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: python -m channel_server.client"), usage.stderr
