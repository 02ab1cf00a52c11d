"""Presence in local mode, end to end: real WebSocket clients, the component's
own world (``ChannelServer("chat", {"presence": True})`` as local mode reads
it), the same handlers. Every wait ends on a frame or a reply."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

from channel_server.handlers import spec
from channel_server.local import program as local_program
from channel_server.local.server import running

#: A bound for a broken build, never a measure of speed.
TIMEOUT = 20


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    world = local_program.from_component("dev", name="chat", args={"presence": True, "presence_max_members": 3})
    with running(port=0, world=world) as server:
        yield server


class Socket:
    def __init__(self, url: str):
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, open_timeout=TIMEOUT))

    def request(self, frame: dict) -> dict:
        """Send ``frame``; its reply (the frame with its requestId), and every frame before it in ``self.before``."""
        rid = f"r{id(frame)}"
        self.ws.send(json.dumps({**frame, "requestId": rid}))
        self.before = []
        while True:
            received = json.loads(self.ws.recv(timeout=TIMEOUT))
            if received.get("requestId") == rid:
                return received
            self.before.append(received)

    def close(self) -> None:
        self._stack.close()


def test_the_component_world_carries_the_presence_cap_to_every_function() -> None:
    world = local_program.from_component("dev", name="chat", args={"presence": True})
    assert {f.environment.get(spec.ENV_PRESENCE_MAX_MEMBERS) for f in world.routes.values()} == {"100"}


def test_watchers_see_joins_and_leaves_and_list_members_over_real_sockets(server: Any) -> None:
    watcher, other, late = Socket(server.url), Socket(server.url), Socket(server.url)
    try:
        mine = watcher.request({"type": "join", "channelId": "room", "presence": True})
        assert mine["presence"] is True
        theirs = other.request({"type": "join", "channelId": "room"})
        assert "presence" not in theirs
        joined = watcher.request({"type": "ping"})
        assert watcher.before == [{"type": "memberJoined", "channelId": "room", "senderId": theirs["senderId"]}]
        assert joined["type"] == "pong"

        listed = watcher.request({"type": "members"})
        assert listed["channelId"] == "room"
        assert sorted(m["senderId"] for m in listed["members"]) == sorted([mine["senderId"], theirs["senderId"]])

        other.close()  # $disconnect: announced
        while not watcher.request({"type": "ping"})["type"] == "pong" or not watcher.before:
            pass
        assert watcher.before == [{"type": "memberLeft", "channelId": "room", "senderId": theirs["senderId"]}]
        assert late.request({"type": "members", "cursor": 5})["data"] == "cursor must be the cursor of a members reply"
    finally:
        for socket in (watcher, other, late):
            socket.close()
