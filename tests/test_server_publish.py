"""The server publish function (``app.server_publish``): a backend's publish
through a Lambda function URL, end to end through the entry point with the
embedded DynamoDB (the component's table) and the fake management API.
docs/protocol.md §11 is the contract.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from channel_server.handlers import protocol, spec
from channel_server.handlers.store import Store
from channel_server.resource_types import ROLE_POLICY_ATTACHMENT
from support.events import url_event
from support.frames import SAMPLE_MESSAGE_ID, message

if TYPE_CHECKING:
    from channel_server import ChannelServerArgs

SERVER = protocol.SERVER_SENDER_ID


def publish(world: Any, body: Any, **options: Any) -> tuple[int, dict]:
    """What the endpoint answers: its status and JSON body."""
    answer = world.app.server_publish(url_event(body, **options), world.context)
    assert answer["headers"]["content-type"] == "application/json"
    return answer["statusCode"], json.loads(answer["body"])


class Member:
    """A client whose ``frames()`` are those it was sent since the last call."""

    def __init__(self, client: Any):
        self._client, self._read = client, 0

    def frames(self) -> list[Any]:
        frames = self._client.frames()
        new, self._read = frames[self._read:], len(frames)
        return new


@pytest.fixture
def lobby(client: Any) -> tuple[Member, Member, Member]:
    """alice and bob in lobby, carol in kitchen; their join replies read."""
    alice, bob, carol = client(), client(), client()
    alice.join("lobby")
    bob.join("lobby")
    carol.join("kitchen")
    members = (Member(alice), Member(bob), Member(carol))
    for member in members:
        member.frames()
    return members


def test_a_server_publish_reaches_every_member_from_the_server_and_no_one_else(world: Any, lobby: Any) -> None:
    alice, bob, carol = lobby

    status, outcome = publish(world, {"channelId": "lobby", "data": {"text": "order shipped"}})

    assert (status, outcome) == (200, {"delivered": 2, "failed": 0, "queued": 0})
    expected = message("lobby", SERVER, {"text": "order shipped"})
    assert alice.frames() == [expected] and bob.frames() == [expected]
    assert carol.frames() == []


def test_a_base64_body_is_read_as_the_text_it_encodes(world: Any, lobby: Any) -> None:
    alice, _, _ = lobby
    assert publish(world, {"channelId": "lobby", "data": 1}, base64_body=True)[0] == 200
    assert alice.frames() == [message("lobby", SERVER, 1)]


@pytest.mark.parametrize("body, reason", [
    (None, "empty body; send a JSON object with channelId and data"),
    ("{", "body is not valid JSON"),
    ("[1]", "body must be a JSON object"),
    ({"data": 1}, "channelId is required"),
    ({"channelId": "$state", "data": 1}, "channelId must not start with '$' (reserved)"),
    ({"channelId": "lobby"}, "publish needs a data field"),
    ({"channelId": "lobby", "data": 1, "idempotencyKey": "has space"},
     "idempotencyKey must be 1 to 128 letters, digits, '_', '.', ':' or '-'"),
    ({"channelId": "lobby", "data": "x" * protocol.API_GATEWAY_MAX_MESSAGE_BYTES},
     f"message too large: {protocol.API_GATEWAY_MAX_MESSAGE_BYTES + 69 + len(SAMPLE_MESSAGE_ID) + 15} bytes encoded, "
     "the limit is "
     f"{protocol.API_GATEWAY_MAX_MESSAGE_BYTES}"),
])
def test_a_request_that_cannot_be_published_gets_400_with_the_reason_and_sends_nothing(
        world: Any, lobby: Any, management: Any, body: Any, reason: str) -> None:
    before = len(management.attempts)
    assert publish(world, body) == (400, {"message": reason})
    assert len(management.attempts) == before


def test_any_method_but_post_gets_405(world: Any) -> None:
    answer = world.app.server_publish(url_event({"channelId": "lobby", "data": 1}, method="GET"), world.context)
    assert (answer["statusCode"], answer["headers"]["allow"], json.loads(answer["body"])) == (
        405, "POST", {"message": "use POST"})


# --- idempotency ----------------------------------------------------------------------------


def test_a_retry_with_the_same_key_publishes_once_and_gets_the_first_outcome(world: Any, lobby: Any) -> None:
    alice, bob, _ = lobby
    request = {"channelId": "lobby", "data": "once", "idempotencyKey": "order-42-shipped"}

    first = publish(world, request)
    again = publish(world, request)

    assert first == (200, {"delivered": 2, "failed": 0, "queued": 0})
    assert again == (200, {"delivered": 2, "failed": 0, "queued": 0, "replayed": True})
    assert alice.frames() == [message("lobby", SERVER, "once")] and len(bob.frames()) == 1


def test_a_key_used_for_another_publish_gets_422_and_sends_nothing(world: Any, lobby: Any) -> None:
    alice, _, _ = lobby
    publish(world, {"channelId": "lobby", "data": "first", "idempotencyKey": "k1"})
    alice.frames()

    assert publish(world, {"channelId": "lobby", "data": "second", "idempotencyKey": "k1"}) == (
        422, {"message": protocol.KEY_REUSED})
    assert alice.frames() == []


def claim(world: Any, key: str, data: Any, *, started_ago: float = 0) -> None:
    """Claim ``key`` as a publish of ``data`` to lobby would, ``started_ago`` seconds ago, with no outcome."""
    import time

    store = Store(world.dynamodb, world.table, spec.CHANNEL_INDEX, clock=lambda: time.time() - started_ago)
    assert store.claim_publish(key, protocol.publish_fingerprint("lobby", data)).mine


def test_a_key_whose_publish_is_running_gets_409_and_sends_nothing(world: Any, lobby: Any) -> None:
    alice, _, _ = lobby
    claim(world, "k2", "data")

    assert publish(world, {"channelId": "lobby", "data": "data", "idempotencyKey": "k2"}) == (
        409, {"message": protocol.KEY_IN_PROGRESS})
    assert alice.frames() == []


def test_a_key_whose_publish_stopped_without_an_outcome_is_never_sent_again(world: Any, lobby: Any) -> None:
    alice, _, _ = lobby
    claim(world, "k3", "data", started_ago=spec.SERVER_PUBLISH_TIMEOUT_SECONDS + 60)

    assert publish(world, {"channelId": "lobby", "data": "data", "idempotencyKey": "k3"}) == (
        409, {"message": protocol.KEY_OUTCOME_UNKNOWN})
    assert alice.frames() == []


def test_a_key_whose_window_has_passed_publishes_again(world: Any, lobby: Any) -> None:
    alice, _, _ = lobby
    claim(world, "k4", "data", started_ago=spec.IDEMPOTENCY_WINDOW_SECONDS + 1)

    assert publish(world, {"channelId": "lobby", "data": "data", "idempotencyKey": "k4"})[0] == 200
    assert alice.frames() == [message("lobby", SERVER, "data")]


def test_a_publish_that_fails_before_sending_frees_its_key(world: Any, lobby: Any, monkeypatch) -> None:
    alice, _, _ = lobby
    store = world.app.store
    members = store.members
    monkeypatch.setattr(store, "members", lambda channel: (_ for _ in ()).throw(RuntimeError("table unavailable")))
    request = {"channelId": "lobby", "data": "later", "idempotencyKey": "k5"}

    assert publish(world, request) == (500, {"message": "internal error; the request was not carried out"})
    monkeypatch.setattr(store, "members", members)
    assert publish(world, request) == (200, {"delivered": 2, "failed": 0, "queued": 0})
    assert alice.frames() == [message("lobby", SERVER, "later")]


def test_a_claim_whose_answer_was_lost_and_that_was_sent_again_is_still_the_callers(world: Any) -> None:
    # GIVEN a client that, like a retry after a lost answer, sends the claim's PutItem twice
    class SentTwice:
        def __init__(self, client: Any):
            self._client, self.exceptions = client, client.exceptions

        def put_item(self, **request: Any) -> Any:
            self._client.put_item(**request)  # went through; its answer is lost
            return self._client.put_item(**request)  # the retry fails its condition

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

    store = Store(SentTwice(world.dynamodb), world.table, spec.CHANNEL_INDEX)

    # WHEN it claims a key THEN the claim is its own
    assert store.claim_publish("k6", "f" * 64).mine


def test_a_publish_that_fails_while_sending_keeps_its_key_so_a_retry_sends_no_second_copy(
        world: Any, lobby: Any) -> None:
    alice, _, _ = lobby
    request = {"channelId": "lobby", "data": "maybe", "idempotencyKey": "k7"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(world.app.sender, "post_many", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("cut")))
        assert publish(world, request) == (500, {"message": "internal error; the request was not carried out"})

    assert publish(world, request) == (409, {"message": protocol.KEY_IN_PROGRESS})
    assert alice.frames() == []


# --- grant_publish (under Pulumi's mocks) ------------------------------------------------------


def test_granting_the_same_role_twice_attaches_the_policy_once() -> None:
    import pulumi_aws as aws

    from channel_server import ChannelServer
    from channel_server.mocks import deploy

    def program() -> None:
        server = ChannelServer("chat", {"server_publish": True})
        role = aws.iam.Role("backend", assume_role_policy="{}")
        assert server.grant_publish(role) is server.grant_publish(role)

    assert len(deploy(program).of_type(ROLE_POLICY_ATTACHMENT)) == 1


@pytest.mark.parametrize("args, role, error", [
    ({"server_publish": True}, "my-role-name",
     "TypeError: ChannelServer chat: grant_publish takes an aws.iam.Role, not str; for a role defined elsewhere, "
     "attach publish_policy_arn to it with aws.iam.RolePolicyAttachment"),
    ({}, None, "ChannelServerArgsError: ChannelServer chat: grant_publish needs server_publish=True "
               "(serverPublish in the stack's config)"),
])
def test_grant_publish_refuses_what_it_cannot_grant_saying_what_to_do(
    args: ChannelServerArgs, role: Any, error: str
) -> None:
    import pulumi_aws as aws

    from channel_server import ChannelServer
    from support.failing import deploy_failing

    def program() -> None:
        server = ChannelServer("chat", args)
        server.grant_publish(role if role is not None else aws.iam.Role("backend", assume_role_policy="{}"))

    refused = deploy_failing(program)
    assert f"{type(refused).__name__}: {refused}" == error
