"""Presence's IAM grants: with ``presence`` on, each function is granted
exactly what it was seen to call (the calls recorded as in test_security.py);
with it off, no function gets anything more than the seed's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from channel_server import ChannelServer
from channel_server.handlers import spec
from channel_server.mocks import Deployment, deploy
from support.events import new_connection_id
from support.lambda_world import lambda_world, product_management_client
from test_security import (LOG_GRANTS, ON_CONNECTIONS, ON_INDEX, ON_TABLE, CallRecorder, fanout_function,
                           granted_to, heartbeat_function, iam_needs, recording_dynamodb, route_function,
                           server_publish_function)

POSTS = ("execute-api:ManageConnections", ON_CONNECTIONS)
#: every post first takes its place in the account budget: an UpdateItem of the table
TAKES_PLACES = ("dynamodb:UpdateItem", ON_TABLE)
QUERY_TABLE = ("dynamodb:Query", ON_TABLE)


def program(presence: bool) -> Any:
    def run() -> None:
        ChannelServer("sec", {"heartbeat_interval_minutes": 5, "server_publish": True, "presence": presence})
    return run


@pytest.fixture(scope="module")
def with_presence() -> Deployment:
    return deploy(program(True))


@pytest.fixture(scope="module")
def without_presence() -> Deployment:
    return deploy(program(False))


def every_function(deployment: Deployment) -> dict[str, Any]:
    functions = {f["handler"].removeprefix(spec.HANDLER_MODULE + "."): f
                 for f in (route_function(deployment, route.key) for route in spec.ROUTES)}
    return {**functions, "fanout": fanout_function(deployment), "heartbeat": heartbeat_function(deployment),
            "server_publish": server_publish_function(deployment)}


@pytest.fixture(scope="module")
def observed(dynamodb: Any, table_definition: Any, embedded_dynamodb: Any) -> dict[str, set[tuple[str, str]]]:
    """What join, $disconnect, publish and $default were seen to call with presence on."""
    recorder = CallRecorder()
    env = {spec.ENV_PRESENCE_MAX_MEMBERS: "2", spec.ENV_POSTS_PER_SECOND: str(spec.DEFAULT_POSTS_PER_SECOND)}
    with lambda_world(dynamodb, table_definition, env=env,
                      app_dynamodb=recording_dynamodb(embedded_dynamodb.endpoint, recorder),
                      app_management=lambda endpoint: recorder.attach_management(
                          product_management_client(endpoint))) as world:
        watcher, mover, ghost, late, gamer = (new_connection_id() for _ in range(5))
        with recorder.entry("join"):
            world.send(gamer, {"type": "join", "channelId": "games", "presence": True})
            world.send(watcher, {"type": "join", "channelId": "lobby", "presence": True})
            world.send(mover, {"type": "join", "channelId": "lobby"})  # announced
            world.send(late, {"type": "join", "channelId": "lobby", "presence": True})  # the list is full
            world.send(mover, {"type": "join", "channelId": "games"})  # leaves lobby: announced
            world.send(ghost, {"type": "join", "channelId": "lobby"})
        with recorder.entry("default"):
            world.send(watcher, {"type": "members"})
            world.send(new_connection_id(), {"type": "members"})  # in no channel
        world.management.gone.add(ghost)
        with recorder.entry("publish"):
            world.send(watcher, {"type": "publish", "data": 1})  # finds the ghost gone: announced
        with recorder.entry("disconnect"):
            world.disconnect(late)  # not listed: not announced
            world.disconnect(mover)  # announced to the gamer
        types = [frame["type"] for frame in world.management.frames(watcher)]
        assert types == ["joinSuccess", "memberJoined", "memberLeft", "memberJoined", "members", "memberLeft",
                         "publishSuccess"]
        table, index = world.environ[spec.ENV_TABLE_NAME], world.environ[spec.ENV_INDEX_NAME]
    needs: dict[str, set[tuple[str, str]]] = {name: set() for name in ("join", "default", "publish", "disconnect")}
    for entry, service, operation, params in recorder.calls:
        assert entry is not None, f"{operation} made outside any entry point"
        needs[entry] |= iam_needs(service, operation, params, table, index, "")
    return needs


@pytest.mark.parametrize("entry", ["join", "default", "publish", "disconnect"])
def test_with_presence_each_route_is_granted_exactly_what_it_was_seen_to_call(
        entry: str, with_presence: Deployment, observed: dict[str, set[tuple[str, str]]]) -> None:
    granted = granted_to(with_presence, every_function(with_presence)[entry])
    publish_only = {("sqs:SendMessage", "fan-out queue"), ("dynamodb:Query", ON_INDEX)} if entry == "publish" else set()
    # publish's queue and index grants are the seed's (this world queues nothing)
    assert granted == observed[entry] | LOG_GRANTS | publish_only


def test_the_observed_presence_calls_are_the_ones_each_entry_point_needs(observed: dict) -> None:
    assert observed == {
        "join": {("dynamodb:GetItem", ON_TABLE), ("dynamodb:PutItem", ON_TABLE), ("dynamodb:DeleteItem", ON_TABLE),
                 QUERY_TABLE, POSTS, TAKES_PLACES},
        "default": {("dynamodb:GetItem", ON_TABLE), QUERY_TABLE},
        "publish": {("dynamodb:GetItem", ON_TABLE), ("dynamodb:Query", ON_INDEX), ("dynamodb:BatchWriteItem", ON_TABLE),
                    QUERY_TABLE, POSTS, TAKES_PLACES},
        "disconnect": {("dynamodb:PutItem", ON_TABLE), ("dynamodb:DeleteItem", ON_TABLE), QUERY_TABLE, POSTS,
                       TAKES_PLACES},
    }


def test_presence_adds_only_its_grants_and_only_when_on(with_presence: Deployment,
                                                         without_presence: Deployment) -> None:
    on, off = every_function(with_presence), every_function(without_presence)
    for name, function in on.items():
        added = granted_to(with_presence, function) - granted_to(without_presence, off[name])
        grant = spec.PRESENCE_GRANTS.get(name, spec.NO_PRESENCE_GRANT)
        expected = {(action, ON_TABLE) for action in grant.table_actions} | ({POSTS, TAKES_PLACES} if grant.posts
                                                                               else set())
        assert added == expected - granted_to(without_presence, off[name]), name
        assert not granted_to(without_presence, off[name]) - granted_to(with_presence, function), name


def test_the_presence_cap_reaches_every_function_only_when_on(with_presence: Deployment,
                                                              without_presence: Deployment) -> None:
    for function in every_function(with_presence).values():
        assert function["environment"]["variables"][spec.ENV_PRESENCE_MAX_MEMBERS] == "100"
    for function in every_function(without_presence).values():
        assert spec.ENV_PRESENCE_MAX_MEMBERS not in function["environment"]["variables"]
    assert json.dumps(sorted(spec.PRESENCE_GRANTS))
