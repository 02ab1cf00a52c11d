"""The local page with presence on: a page that joins watches its channel,
shows the members listed and a line for each member joining and leaving."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from channel_server.local import program as local_program
from channel_server.local.server import running
from test_page import driver, page_url, pages  # noqa: F401  (fixtures, with this module's server)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    world = local_program.from_component("dev", name="chat", args={"presence": True})
    with running(port=0, world=world) as server:
        yield server


def test_a_watching_page_lists_members_and_shows_joins_and_leaves(pages):  # noqa: F811 (the fixture)
    alice, bob = pages(), pages()
    alice.connect()
    alice_id = alice.join("lobby")
    assert alice.wait_for("members") == "1 members listed"
    bob.connect()
    bob_id = bob.join("lobby")
    assert bob.wait_for("members") == "2 members listed"

    assert alice.wait_for("memberJoined") == f"{bob_id} joined"
    assert alice.wait(lambda: sorted(alice.text("members").split()) == sorted([alice_id, bob_id]), "both listed")

    bob.click("disconnect")
    assert alice.wait_for("memberLeft") == f"{bob_id} left"
    assert alice.wait(lambda: alice.text("members").split() == [alice_id], "only alice listed")

    # each members request carried a requestId of its own, and nothing was left unpaired
    sent = [json.loads(e["summary"]) for e in alice.log() if e["kind"] == "sent" and e["type"] == "members"]
    assert sent and all(frame["requestId"].startswith("p") for frame in sent)
    assert alice.entries("unpaired reply", kind="event") == []
