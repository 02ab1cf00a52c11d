"""Faults of the services the handlers depend on, and of the handlers themselves
(docs/failure-semantics.md): what the sender is told, what the table keeps,
what the other members receive.

The management API is the fake one (``support.management``); the DynamoDB
faults come from ``support.faulty_dynamodb`` in front of moto. In the retry
tests the app builds its own clients from its environment, as it does in
Lambda, so the retry configuration under test is the product's own; only the
backoff delay is made instant (``no_retry_delay``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from channel_server.handlers import awsjson
from channel_server.handlers import app as app_module
from channel_server.handlers import protocol, spec
from channel_server.handlers.sender import MAX_ATTEMPTS, Sender
from channel_server.handlers.store import Store
from support.events import new_connection_id
from support.lambda_world import OK, answered
from support.table import closed, rows, rows_of
from support.frames import ANY_MESSAGE_ID

INTERNAL_ERROR = "internal error; the request was not carried out"


def message(channel_id: str, sender_id: str, data: Any) -> dict:
    return {"type": "message", "channelId": channel_id, "senderId": sender_id, "messageId": ANY_MESSAGE_ID, "data": data}


def partial_failure(delivered: int, failed: int) -> dict:
    return {
        "type": "publishFailure",
        "data": f"could not deliver to {failed} of {delivered + failed} members; the others received the message",
        "delivered": delivered,
        "failed": failed,
    }


def failures_logged(caplog: pytest.LogCaptureFixture, connection_id: str, route_key: str) -> list[logging.LogRecord]:
    """ERROR records of the channel server about this connection and route."""
    return [
        record for record in caplog.records
        if record.name == "channel_server" and record.levelno >= logging.ERROR
        and getattr(record, "connectionId", None) == connection_id and getattr(record, "routeKey", None) == route_key
    ]


# =====================================================================================
# Management API faults
# =====================================================================================


def test_members_that_answer_410_during_a_publish_lose_their_rows_and_every_live_member_receives_it(
    client: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN five members of "lobby"; bob's and dave's connections are gone (410)
    alice, bob, carol, dave, erin = (client() for _ in range(5))
    sender_id = alice.join("lobby")
    for member in (bob, carol, dave, erin):
        member.join("lobby")
    management.gone.update({bob.connection_id, dave.connection_id})
    management.clear()

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "hi"})

    # THEN each gone member was tried once (a 410 is never retried) and is closed,
    assert management.statuses(bob.connection_id) == [410]
    assert management.statuses(dave.connection_id) == [410]
    assert closed(dynamodb, table, bob.connection_id)
    assert closed(dynamodb, table, dave.connection_id)
    # every live member received the message once and kept its rows,
    for member in (carol, erin):
        assert member.frames() == [message("lobby", sender_id, "hi")]
        assert len(rows_of(dynamodb, table, member.connection_id)) == 2
    # and alice is told it worked: a gone member is not a failure
    assert alice.frames() == [{"type": "publishSuccess"}]


def test_a_member_throttled_once_receives_the_message_on_the_second_attempt(
    no_retry_delay: None, client: Any, management: Any
) -> None:
    # GIVEN the management API throttles the first post to bob (429 LimitExceededException)
    alice, bob, carol = client(), client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    management.clear()
    management.fail(bob.connection_id, 429, "LimitExceededException", times=1)

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "hi"})

    # THEN the sender retried bob once, bob received the message once, alice succeeded
    assert management.statuses(bob.connection_id) == [429, 200]
    assert bob.frames() == [message("lobby", sender_id, "hi")]
    assert carol.frames() == [message("lobby", sender_id, "hi")]
    assert management.statuses(carol.connection_id) == [200]
    assert alice.frames() == [{"type": "publishSuccess"}]


@pytest.mark.parametrize(
    "status, error_type",
    [(500, "InternalServerErrorException"), (503, "ServiceUnavailableException"), (502, None), (429, "LimitExceededException")],
    ids=["500", "503", "502-untyped", "429"],
)
def test_members_that_keep_failing_are_reported_with_counts_and_the_others_still_receive_it(
    status: int, error_type: str | None, no_retry_delay: None, client: Any, management: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN two of four recipients answer every post with a retryable error
    alice, bob, carol, dave, erin = (client() for _ in range(5))
    sender_id = alice.join("lobby")
    for member in (bob, carol, dave, erin):
        member.join("lobby")
    before = rows(dynamodb, table)
    management.clear()
    management.fail(bob.connection_id, status, error_type)
    management.fail(dave.connection_id, status, error_type)

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "hi"})

    # THEN the failing members were retried and never got it, the others did,
    for failing in (bob, dave):
        assert failing.frames() == []
        assert set(management.statuses(failing.connection_id)) == {status}
        assert len(management.statuses(failing.connection_id)) > 1
    for member in (carol, erin):
        assert member.frames() == [message("lobby", sender_id, "hi")]
    # alice is told exactly how it went, and nobody's rows changed (not known to be gone)
    assert alice.frames() == [partial_failure(delivered=2, failed=2)]
    assert rows(dynamodb, table) == before


@pytest.mark.parametrize(
    "status, error_type",
    [(500, "InternalServerErrorException"), (503, "ServiceUnavailableException"), (429, "LimitExceededException")],
    ids=["500", "503", "429"],
)
def test_a_post_that_keeps_failing_is_tried_exactly_max_attempts_times(
    status: int, error_type: str, no_retry_delay: None, client: Any, management: Any
) -> None:
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")
    management.clear()
    management.fail(bob.connection_id, status, error_type)

    alice.send({"type": "publish", "data": "hi"})

    assert alice.frames() == [partial_failure(delivered=0, failed=1)]
    assert management.statuses(bob.connection_id) == [status] * MAX_ATTEMPTS


def test_a_post_that_was_sent_but_not_answered_in_time_is_not_sent_again(client: Any, management: Any) -> None:
    """A read timeout means the post may have landed: botocore would retry it
    and deliver the same frame up to 3 times. The publisher is told the member
    was not confirmed."""
    # GIVEN bob's management endpoint takes posts but answers only after the sender gave up
    alice, bob, carol = client(), client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    management.clear()
    management.late.add(bob.connection_id)

    # WHEN alice publishes
    alice.send({"type": "publish", "data": "hi"})

    # THEN bob got the message exactly once, carol too, and alice hears of one failure
    assert management.statuses(bob.connection_id) == [200]
    assert bob.frames() == [message("lobby", sender_id, "hi")]
    assert carol.frames() == [message("lobby", sender_id, "hi")]
    assert alice.frames() == [partial_failure(delivered=1, failed=1)]


def _counting_posts(api: Any) -> list[str]:
    """The connection ids of every attempt ``api`` (a ManagementApi) makes, in order."""
    attempts: list[str] = []
    attempt = api.attempt

    async def counted(connection_id: str, payload: bytes) -> Any:
        attempts.append(connection_id)
        return await attempt(connection_id, payload)

    api.attempt = counted
    return attempts


def test_a_post_that_cannot_connect_is_tried_max_attempts_times(no_retry_delay: None) -> None:
    """Nothing was sent, so trying again is safe."""
    import socket

    from channel_server.handlers.sender import CONNECT_FAILED, DeliveryFailed, management_client

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    client_ = management_client(f"http://127.0.0.1:{port}/dev")
    attempts = _counting_posts(client_)
    connection_id = new_connection_id()

    with pytest.raises(DeliveryFailed) as failed:
        Sender(client_).post(connection_id, b"{}")

    assert failed.value.code == CONNECT_FAILED
    assert len(attempts) == MAX_ATTEMPTS


def test_connections_are_kept_across_fan_outs_and_a_closed_one_is_not_used(management: Any) -> None:
    from channel_server.handlers.sender import management_client

    sender = Sender(management_client(management.endpoint), posts_in_flight=4)
    ids = [new_connection_id() for _ in range(12)]

    # the second fan-out (a later invocation) reuses the first one's connections
    assert sender.post_many(ids, b"{}").delivered == 12
    opened = set(management.client_ports)
    assert sender.post_many(ids, b"{}").delivered == 12
    assert set(management.client_ports) == opened and len(opened) <= 4

    # connections the server closed while idle are seen closed, not posted on
    management.close_idle_connections()
    management.clear()
    sender.post(ids[0], b"{}")  # the first step of a run: before the loop could see any close
    deliveries = sender.post_many(ids, b"{}")
    assert (deliveries.delivered, deliveries.failed) == (12, [])
    assert not set(management.client_ports) & opened


def test_no_retry_starts_after_the_deadline(management: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from channel_server.handlers import aws
    from channel_server.handlers import sender as sender_module

    monkeypatch.setattr(aws, "backoff_delay", lambda attempt: 60.0)  # past the deadline below
    connection_id = new_connection_id()
    management.fail(connection_id, 429, "LimitExceededException")

    with pytest.raises(sender_module.DeliveryFailed) as failed:
        Sender(sender_module.management_client(management.endpoint)).post(
            connection_id, b"{}", deadline=time.monotonic() + 30
        )

    assert failed.value.code == "LimitExceededException"
    assert management.statuses(connection_id) == [429]


def test_a_post_that_is_not_retryable_is_tried_once(no_retry_delay: None, client: Any, management: Any) -> None:
    """403 is not throttling and not a server error: retrying it cannot help."""
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")
    management.clear()
    management.fail(bob.connection_id, 403, "ForbiddenException")

    alice.send({"type": "publish", "data": "hi"})

    assert management.statuses(bob.connection_id) == [403]
    assert alice.frames() == [partial_failure(delivered=0, failed=1)]


# =====================================================================================
# DynamoDB faults (the app builds its own DynamoDB client from the environment)
# =====================================================================================


@pytest.fixture
def faulty_app(app: Any, dynamodb_faults: Any, no_retry_delay: None, install_app: Any) -> Any:
    """The Lambda module with an app that builds both boto3 clients itself: its
    DynamoDB client reaches the table through ``dynamodb_faults``. It replaces
    conftest's ``app``, so it is installed after that one."""
    return install_app(dynamodb=None)


@pytest.fixture
def faulty_client(faulty_app: Any, world: Any) -> Any:
    """``faulty_client()`` makes a new connection on the app of ``faulty_app``."""
    return world.client


FAULT_KINDS = ["throttle", "fail"]  # 400 ProvisionedThroughputExceeded, 500 InternalServerError


def inject(faults: Any, kind: str, operation: str, times: int | None = None) -> None:
    getattr(faults, kind)(operation, times=times)


def test_the_app_reaches_dynamodb_through_the_faulty_endpoint(
    faulty_client: Any, dynamodb_faults: Any
) -> None:
    """Guards the tests below: were the app's client to reach another endpoint,
    their faults would never fire and they would prove nothing."""
    faulty_client().join("lobby")

    assert dynamodb_faults.requests["TransactWriteItems"] == 1
    assert dynamodb_faults.requests["GetItem"] == 1


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_join_whose_transaction_fails_twice_is_retried_and_stores_exactly_one_membership(
    kind: str, faulty_client: Any, dynamodb_faults: Any, dynamodb: Any, table: str
) -> None:
    alice = faulty_client()
    inject(dynamodb_faults, kind, "TransactWriteItems", times=2)

    alice.send({"type": "join", "channelId": "lobby"})

    (reply,) = alice.frames()
    assert reply == {"type": "joinSuccess", "channelId": "lobby", "senderId": reply["senderId"]}
    assert dynamodb_faults.requests["TransactWriteItems"] == 3
    assert [(row["channelId"], row["senderId"]) for row in rows(dynamodb, table)] == [
        ("$connection#" + alice.connection_id, reply["senderId"]),
        ("lobby", reply["senderId"]),
    ]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_join_whose_transaction_keeps_failing_replies_join_failure_and_keeps_the_previous_channel(
    kind: str, faulty_client: Any, dynamodb_faults: Any, dynamodb: Any, table: str
) -> None:
    # GIVEN alice and bob in "lobby", carol in "kitchen"
    alice, bob, carol = faulty_client(), faulty_client(), faulty_client()
    alice_id = alice.join("lobby")
    bob.join("lobby")
    carol.join("kitchen")
    before = rows(dynamodb, table)
    inject(dynamodb_faults, kind, "TransactWriteItems")

    # WHEN alice tries to move to "kitchen" while DynamoDB refuses every transaction
    alice.send({"type": "join", "channelId": "kitchen"})

    # THEN she is told it failed, and the table is exactly as it was
    assert alice.frames()[-1] == {"type": "joinFailure", "data": INTERNAL_ERROR}
    assert rows(dynamodb, table) == before
    # and she is still in "lobby", with the same senderId
    dynamodb_faults.clear()
    alice.send({"type": "publish", "data": "still here"})
    assert bob.frames()[-1] == message("lobby", alice_id, "still here")
    assert [frame["type"] for frame in carol.frames()] == ["joinSuccess"]  # nothing reached "kitchen"


def test_a_failing_dynamodb_call_is_tried_at_most_five_times(
    faulty_client: Any, dynamodb_faults: Any
) -> None:
    alice = faulty_client()
    dynamodb_faults.fail("TransactWriteItems")

    alice.send({"type": "join", "channelId": "lobby"})

    assert alice.frames() == [{"type": "joinFailure", "data": INTERNAL_ERROR}]
    assert dynamodb_faults.requests["TransactWriteItems"] == app_module.DYNAMODB_MAX_ATTEMPTS


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_publish_whose_table_calls_fail_once_each_still_reaches_every_member(
    kind: str, faulty_client: Any, dynamodb_faults: Any, management: Any
) -> None:
    alice, bob = faulty_client(), faulty_client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    management.clear()
    inject(dynamodb_faults, kind, "GetItem", times=1)
    inject(dynamodb_faults, kind, "Query", times=1)

    alice.send({"type": "publish", "data": "hi"})

    assert dynamodb_faults.faulted == {"GetItem": 1, "Query": 1}
    assert bob.frames()[-1] == message("lobby", sender_id, "hi")
    assert alice.frames()[-1] == {"type": "publishSuccess"}


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("operation", ["GetItem", "Query"], ids=["state-read", "channel-query"])
def test_a_publish_whose_reads_keep_failing_replies_publish_failure_and_posts_to_nobody(
    operation: str, kind: str, faulty_client: Any, dynamodb_faults: Any, management: Any
) -> None:
    alice, bob = faulty_client(), faulty_client()
    alice.join("lobby")
    bob.join("lobby")
    management.clear()
    inject(dynamodb_faults, kind, operation)

    alice.send({"type": "publish", "data": "hi"})

    assert dynamodb_faults.faulted[operation] > 1  # retried before giving up
    assert alice.frames()[-1] == {"type": "publishFailure", "data": INTERNAL_ERROR}
    assert management.attempts == []


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_disconnect_whose_table_calls_fail_once_each_still_closes_the_connection(
    kind: str, faulty_client: Any, dynamodb_faults: Any, dynamodb: Any, table: str
) -> None:
    alice, bob = faulty_client(), faulty_client()
    alice.join("lobby")
    bob.join("lobby")
    inject(dynamodb_faults, kind, "PutItem", times=1)
    inject(dynamodb_faults, kind, "DeleteItem", times=1)

    assert alice.disconnect() == OK

    assert dynamodb_faults.faulted == {"PutItem": 1, "DeleteItem": 1}
    assert closed(dynamodb, table, alice.connection_id)
    assert len(rows_of(dynamodb, table, bob.connection_id)) == 2


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("operation", ["PutItem", "DeleteItem"])
def test_a_disconnect_whose_table_calls_keep_failing_returns_200_and_logs_the_connection_and_route(
    operation: str, kind: str, faulty_client: Any, dynamodb_faults: Any, dynamodb: Any, table: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = faulty_client()
    alice.join("lobby")
    inject(dynamodb_faults, kind, operation)

    assert alice.disconnect() == OK

    (record,) = failures_logged(caplog, alice.connection_id, "$disconnect")
    assert record.getMessage() == "closing the connection's rows failed"
    assert record.exc_info and isinstance(record.exc_info[1], awsjson.ClientError)  # the app's own client's error
    # what the failed call would have changed is left to the rows' TTL
    left = rows_of(dynamodb, table, alice.connection_id)
    assert len(left) == 2 and any(row[spec.CHANNEL_ID] == "lobby" for row in left)


# =====================================================================================
# Exceptions inside the handlers
# =====================================================================================

EXCEPTIONS = [
    pytest.param(RuntimeError("boom"), id="RuntimeError"),
    pytest.param(KeyError("currentChannel"), id="KeyError"),
    pytest.param(
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "GetItem"),
        id="ClientError-AccessDenied",
    ),
]

#: (route, what raises, the frame sent, the reply expected or None when no reply is possible)
FAILING_STEPS = [
    pytest.param("join", (Store, "join"), {"type": "join", "channelId": "kitchen"},
                 {"type": "joinFailure", "data": INTERNAL_ERROR}, id="join-store-join"),
    pytest.param("join", (Store, "_raw_state"), {"type": "join", "channelId": "kitchen"},
                 {"type": "joinFailure", "data": INTERNAL_ERROR}, id="join-store-read"),
    pytest.param("publish", (Store, "membership"), {"type": "publish", "data": 1},
                 {"type": "publishFailure", "data": INTERNAL_ERROR}, id="publish-state-read"),
    pytest.param("publish", (Store, "members"), {"type": "publish", "data": 1},
                 {"type": "publishFailure", "data": INTERNAL_ERROR}, id="publish-channel-query"),
    pytest.param("publish", (Sender, "post_many"), {"type": "publish", "data": 1},
                 {"type": "publishFailure", "data": INTERNAL_ERROR}, id="publish-fan-out"),
    pytest.param("ping", (protocol, "pong"), {"type": "ping", "data": 7},
                 {"type": "error", "data": INTERNAL_ERROR}, id="ping-pong"),
    # $default runs code of its own only for a valid frame that lacks its route
    pytest.param("$default", (app_module, "_misrouted"), '{"type":"ping"}',
                 {"type": "error", "data": INTERNAL_ERROR}, id="default-misrouted"),
    pytest.param("$disconnect", (Store, "close_connection"), None, None, id="disconnect-close"),
]

def raising(exc: BaseException) -> Any:
    def raise_it(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return raise_it


def send_on(world: Any, route: str, connection_id: str, frame: Any) -> Any:
    """Invoke the entry point of ``route`` (not the one the body would pick:
    $default is tested with a frame that belongs elsewhere)."""
    if route == "$disconnect":
        return world.disconnect(connection_id)
    return world.send(connection_id, frame, route=route)


@pytest.mark.parametrize("exc", EXCEPTIONS)
@pytest.mark.parametrize("route, target, frame, reply", FAILING_STEPS)
def test_an_exception_in_a_route_is_logged_answered_and_never_escapes_the_entry_point(
    route: str, target: tuple[Any, str], frame: Any, reply: dict | None, exc: BaseException,
    client: Any, world: Any, management: Any, dynamodb: Any, table: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN alice and bob in "lobby", and one step of the route that raises
    alice, bob = client(), client()
    alice.join("lobby")
    bob.join("lobby")
    before = rows(dynamodb, table)
    management.clear()
    monkeypatch.setattr(*target, raising(exc))

    # WHEN alice's frame reaches the route
    result = send_on(world, route, alice.connection_id, frame)

    # THEN the entry point returns normally (with the reply it posted),
    assert result == (answered(reply) if reply else OK)
    # alice gets the failure reply of her frame's kind (none after $disconnect),
    assert alice.frames() == ([reply] if reply else [])
    # the failure is logged with her connection id, the route and the exception,
    (record,) = failures_logged(caplog, alice.connection_id, route)
    assert record.exc_info and record.exc_info[1] is exc
    # nobody else was sent anything, and the table is untouched
    assert bob.frames()[1:] == []
    assert rows(dynamodb, table) == before


@pytest.mark.parametrize("route, frame", [("$default", "hello"), ("ping", {"type": "ping"})])
def test_an_exception_while_decoding_the_frame_is_logged_and_answered(
    route: str, frame: Any, world: Any, management: Any,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    connection_id = new_connection_id()
    exc = RuntimeError("boom")
    monkeypatch.setattr(protocol, "decode", raising(exc))

    result = send_on(world, route, connection_id, frame)

    assert result == answered({"type": "error", "data": INTERNAL_ERROR})
    assert management.frames(connection_id) == [{"type": "error", "data": INTERNAL_ERROR}]
    (record,) = failures_logged(caplog, connection_id, route)
    assert record.exc_info and record.exc_info[1] is exc


@pytest.mark.parametrize(
    "route, frame",
    [("join", {"type": "join", "channelId": "lobby"}), ("publish", {"type": "publish", "data": 1}),
     ("ping", {"type": "ping"}), ("$default", "hello")],
)
def test_an_exception_while_encoding_the_reply_is_logged_and_answered_with_an_error(
    route: str, frame: Any, world: Any,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    connection_id = new_connection_id()
    exc = RuntimeError("boom")
    monkeypatch.setattr(protocol, "encode_reply", raising(exc))

    result = send_on(world, route, connection_id, frame)

    assert result == answered({"type": "error", "data": INTERNAL_ERROR})
    (record,) = failures_logged(caplog, connection_id, route)
    assert record.exc_info and record.exc_info[1] is exc


# --- the function's time ------------------------------------------------------------------


def test_posts_that_would_start_after_the_deadline_are_failed_without_being_sent(management: Any) -> None:
    from channel_server.handlers.sender import management_client

    sender = Sender(management_client(management.endpoint))
    ids = [new_connection_id() for _ in range(3)]

    deliveries = sender.post_many(ids, b"{}", deadline=0.0)  # long past

    assert deliveries.delivered == 0 and deliveries.gone == []
    assert [(f.connection_id, f.code) for f in deliveries.failed] == [(i, "DeadlineExceeded") for i in ids]
    assert management.attempts == []


def test_a_publish_with_too_little_time_left_reports_the_members_it_did_not_reach(
    client: Any, management: Any, lambda_context: Any
) -> None:
    # GIVEN alice, bob and carol in "lobby", and a publish invoked with no time
    # left for a post to finish before Lambda's timeout
    alice, bob, carol = (client() for _ in range(3))
    alice.join("lobby")
    bob.join("lobby")
    carol.join("lobby")
    management.clear()
    alice.context = type(lambda_context)(**{**vars(lambda_context), "get_remaining_time_in_millis": lambda: 0})

    alice.send({"type": "publish", "data": "late"})

    # THEN nobody is posted to, and alice learns it reached neither member
    assert management.attempts == []
    assert alice.frames() == [{
        "type": "publishFailure",
        "data": "could not deliver to 2 of 2 members; the others received the message",
        "delivered": 0,
        "failed": 2,
    }]


def test_a_join_cancelled_for_throttling_backs_off_and_tries_again() -> None:
    import boto3
    from botocore.stub import ANY, Stubber

    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    store = Store(client, "t", "byChannel")
    with Stubber(client) as stub:
        # botocore does not retry a cancelled transaction: the join loop must
        stub.add_response("get_item", {}, {"TableName": "t", "Key": ANY, "ConsistentRead": True})
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            http_status_code=400,
            response_meta={},
        )
        stub.add_response("get_item", {}, {"TableName": "t", "Key": ANY, "ConsistentRead": True})
        stub.add_response("transact_write_items", {}, {"TransactItems": ANY})
        # the cancellation's reasons: an item throttled, the other not evaluated
        original = client._make_api_call

        def with_reasons(operation: str, params: dict) -> Any:
            try:
                return original(operation, params)
            except ClientError as exc:
                exc.response["CancellationReasons"] = [{"Code": "ThrottlingError"}, {"Code": "None"}]
                raise client.exceptions.TransactionCanceledException(exc.response, operation) from None

        client._make_api_call = with_reasons

        joined = store.join("AbCdEfGhIjKlMnO=", "lobby", "sender")

        stub.assert_no_pending_responses()
    assert (joined.channel_id, joined.sender_id, joined.version) == ("lobby", "sender", 1)


@pytest.mark.parametrize("timeout_seconds", [1, 5, 10])
def test_a_publish_whose_whole_timeout_is_shorter_than_the_reserve_still_delivers(
    timeout_seconds: int, client: Any, management: Any, lambda_context: Any
) -> None:
    """lambdaTimeoutSeconds may be 1-29: below POST_RESERVE_SECONDS the reserve
    is half the time, rather than a deadline already past."""
    alice, bob = client(), client()
    sender_id = alice.join("lobby")
    bob.join("lobby")
    management.clear()
    alice.context = type(lambda_context)(
        **{**vars(lambda_context), "get_remaining_time_in_millis": lambda: timeout_seconds * 1000}
    )

    alice.send({"type": "publish", "data": "in time"})

    assert bob.frames() == [message("lobby", sender_id, "in time")]
    assert alice.frames() == [{"type": "publishSuccess"}]
