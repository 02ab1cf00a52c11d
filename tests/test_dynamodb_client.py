"""The handlers' own AWS JSON client (``handlers/awsjson.py``), as the store's
DynamoDB client (``handlers/dynamodb.py``), against boto3's.

- Same inputs, same outputs: one corpus of calls (every operation the store
  makes, successes and errors) goes through boto3's client to one table and
  through ours to a twin table on the same moto server; results, error codes,
  messages and cancellation reasons must be equal.
- Retries as botocore's standard mode: throttling and 5xx are retried up to
  the attempts, client errors never; a failure to connect is retried; a lost
  answer is retried only by a client for idempotent calls (DynamoDB's, whose
  retried transaction keeps its ClientRequestToken, so DynamoDB applies it
  once); a body whose CRC32 does not match is retried.
- Keep-alive: a connection the server closed while idle is not used again.
"""

from __future__ import annotations

import json
import socket
import threading
import zlib
from typing import Any, Callable, Iterator

import pytest

from channel_server.handlers import awsjson, dynamodb
from channel_server.handlers import sigv4, spec
from support.aws import FAKE_CREDENTIALS, REGION
from support.table import create_test_table

Call = tuple[str, dict]


def corpus(table: str, index: str) -> list[Call]:
    """Calls in order; each sees the state the ones before it left."""
    row = {
        spec.CONNECTION_ID: {"S": "conn-1"}, spec.CHANNEL_ID: {"S": "lobby"}, spec.EXPIRES_AT: {"N": "4102444800"},
        "text": {"S": "ünïcødé 🎉 \"quoted\""}, "map": {"M": {"a": {"N": "1.50"}, "b": {"L": [{"BOOL": True}, {"NULL": True}]}}},
        "set": {"SS": ["x", "y"]}, "numbers": {"NS": ["1", "2"]},
    }
    key = {spec.CONNECTION_ID: {"S": "conn-1"}, spec.CHANNEL_ID: {"S": "lobby"}}
    members = [
        {"PutRequest": {"Item": {spec.CONNECTION_ID: {"S": f"m-{n:02d}"}, spec.CHANNEL_ID: {"S": "lobby"},
                                 spec.EXPIRES_AT: {"N": str(4102444800 - n)}}}}
        for n in range(12)
    ]
    query = {
        "TableName": table, "IndexName": index, "KeyConditionExpression": "#c = :c",
        "FilterExpression": "#e > :now", "ProjectionExpression": "#k", "Limit": 5,
        "ExpressionAttributeNames": {"#c": spec.CHANNEL_ID, "#e": spec.EXPIRES_AT, "#k": spec.CONNECTION_ID},
        "ExpressionAttributeValues": {":c": {"S": "lobby"}, ":now": {"N": "4102444795"}},
    }
    return [
        ("put_item", {"TableName": table, "Item": row, "ReturnValues": "ALL_OLD"}),
        ("put_item", {"TableName": table, "Item": {**row, "text": {"S": "second"}}, "ReturnValues": "ALL_OLD"}),
        ("get_item", {"TableName": table, "Key": key, "ConsistentRead": True}),
        ("get_item", {"TableName": table, "Key": {**key, spec.CHANNEL_ID: {"S": "nowhere"}}}),
        ("put_item", {"TableName": table, "Item": row, "ConditionExpression": "attribute_not_exists(#k)",
                      "ExpressionAttributeNames": {"#k": spec.CONNECTION_ID}}),
        ("transact_write_items", {"TransactItems": [
            {"Put": {"TableName": table, "Item": {**key, spec.CHANNEL_ID: {"S": "kitchen"}},
                     "ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": spec.CONNECTION_ID}}},
            {"Delete": {"TableName": table, "Key": key}},
        ]}),
        ("transact_write_items", {"TransactItems": [
            {"Put": {"TableName": table, "Item": {**key, spec.CHANNEL_ID: {"S": "kitchen"}},
                     "ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": spec.CONNECTION_ID}}},
            {"Put": {"TableName": table, "Item": {**key, spec.CHANNEL_ID: {"S": "hall"}}}},
        ]}),
        ("batch_write_item", {"RequestItems": {table: members}}),
        ("query", query),
        ("query", {**query, "ExclusiveStartKey": {spec.CONNECTION_ID: {"S": "m-04"}, spec.CHANNEL_ID: {"S": "lobby"}}}),
        ("query", {**query, "Limit": 100}),
        ("delete_item", {"TableName": table, "Key": {**key, spec.CHANNEL_ID: {"S": "hall"}}, "ReturnValues": "ALL_OLD"}),
        ("delete_item", {"TableName": table, "Key": {**key, spec.CHANNEL_ID: {"S": "hall"}}, "ReturnValues": "ALL_OLD"}),
        ("batch_write_item", {"RequestItems": {table: [
            {"DeleteRequest": {"Key": {spec.CONNECTION_ID: {"S": f"m-{n:02d}"}, spec.CHANNEL_ID: {"S": "lobby"}}}}
            for n in range(3)
        ]}}),
        ("get_item", {"TableName": table, "Key": {spec.CONNECTION_ID: {"S": "conn-1"}}}),  # half a key
        ("get_item", {"TableName": table + "-missing", "Key": key}),
    ]


def outcome(call: Callable[[], dict], table: str) -> tuple:
    """What a call did, with the table's name and the request metadata taken out."""
    try:
        result = call()
    except Exception as exc:
        response = getattr(exc, "response", None)
        if response is None:
            raise
        # The message is compared in Error; botocore repeats it among the
        # members only for error codes its model names, and raises a plain
        # ClientError for the others, where ours has a class per code.
        extra = {k: v for k, v in response.items() if k not in ("Error", "ResponseMetadata", "message", "Message")}
        error = response["Error"]
        kind = type(exc).__name__
        return ("error", error["Code"] if kind == "ClientError" else kind, error["Code"],
                error["Message"].replace(table, "TABLE"), json.dumps(extra, sort_keys=True).replace(table, "TABLE"))
    result = {k: v for k, v in result.items() if k != "ResponseMetadata"}
    return ("ok", json.dumps(result, sort_keys=True).replace(table, "TABLE"))


@pytest.fixture
def twin_tables(dynamodb: Any, table_definition: Any) -> Iterator[tuple[str, str, str]]:
    first, second = create_test_table(dynamodb, table_definition), create_test_table(dynamodb, table_definition)
    yield first, second, spec.CHANNEL_INDEX
    for name in (first, second):
        dynamodb.delete_table(TableName=name)


def own_client(endpoint: str, **options: Any) -> awsjson.Client:
    """The store's client, as dynamodb.client() configures it, at ``endpoint``."""
    credentials = sigv4.Credentials(FAKE_CREDENTIALS["aws_access_key_id"], FAKE_CREDENTIALS["aws_secret_access_key"])
    options = {"tokens": dynamodb.TOKENS, "retry_unanswered": True, "max_attempts": MAX_ATTEMPTS, **options}
    return awsjson.Client(endpoint, sigv4.Signer(lambda: credentials, REGION, "dynamodb"),
                          dynamodb.TARGET_PREFIX, dynamodb.OPERATIONS, **options)


MAX_ATTEMPTS = 5


def test_every_call_has_the_outcome_it_has_through_boto3(
    dynamodb: Any, embedded_dynamodb: Any, twin_tables: tuple[str, str, str]
) -> None:
    theirs_table, our_table, index = twin_tables
    client = own_client(embedded_dynamodb.endpoint)
    compared = []
    for (method, params), (_, our_params) in zip(corpus(theirs_table, index), corpus(our_table, index), strict=True):
        expected = outcome(lambda: getattr(dynamodb, method)(**params), theirs_table)
        actual = outcome(lambda: getattr(client, method)(**our_params), our_table)
        assert actual == expected, (method, params)
        compared.append(expected[0] if expected[0] == "ok" else expected[2])
    # the corpus reaches what it means to: successes and each kind of error
    assert {"ok", "ConditionalCheckFailedException", "TransactionCanceledException",
            "ValidationException", "ResourceNotFoundException"} <= set(compared)


def test_a_cancelled_transaction_is_caught_as_boto3s_is(
    embedded_dynamodb: Any, twin_tables: tuple[str, str, str]
) -> None:
    table, _, _ = twin_tables
    client = own_client(embedded_dynamodb.endpoint)
    put = {"Put": {"TableName": table, "Item": {spec.CONNECTION_ID: {"S": "c"}, spec.CHANNEL_ID: {"S": "x"}},
                   "ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": spec.CONNECTION_ID}}}
    client.transact_write_items(TransactItems=[put])

    with pytest.raises(client.exceptions.TransactionCanceledException) as cancelled:
        client.transact_write_items(TransactItems=[put])

    assert isinstance(cancelled.value, awsjson.ClientError)
    assert cancelled.value.response["CancellationReasons"] == [
        {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
    ]
    with pytest.raises(AttributeError, match="offers"):
        client.scan  # noqa: B018 - only the store's operations exist


def test_the_endpoint_comes_from_the_environment_as_botocore_reads_it() -> None:
    url = awsjson.endpoint_url
    assert url("dynamodb", {"AWS_REGION": "eu-west-1"}) == "https://dynamodb.eu-west-1.amazonaws.com"
    assert url("dynamodb", {"AWS_DEFAULT_REGION": "cn-north-1"}) == "https://dynamodb.cn-north-1.amazonaws.com.cn"
    assert url("sqs", {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://a:1"}) == "http://a:1"
    assert url("dynamodb", {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://b:2"}) == "http://b:2"
    assert url("sqs", {"AWS_ENDPOINT_URL_DYNAMODB": "http://b:2", "AWS_REGION": "us-east-1"}) == "https://sqs.us-east-1.amazonaws.com"
    with pytest.raises(ValueError, match="AWS_REGION"):
        url("dynamodb", {})


# --- retries, against DynamoDB's own errors ---------------------------------------------


@pytest.fixture
def faulty(faulty_dynamodb_server: Any, dynamodb_faults: Any, no_retry_delay: None,
           dynamodb: Any, table_definition: Any) -> Iterator[tuple[awsjson.Client, Any, str]]:
    server, _ = faulty_dynamodb_server
    name = create_test_table(dynamodb, table_definition)
    yield own_client(server.endpoint), dynamodb_faults, name
    dynamodb.delete_table(TableName=name)


def get(client: awsjson.Client, table: str) -> dict:
    return client.get_item(TableName=table, Key={spec.CONNECTION_ID: {"S": "c"}, spec.CHANNEL_ID: {"S": "x"}})


@pytest.mark.parametrize("kind", ["throttle", "fail"])
def test_throttling_and_server_errors_are_retried(kind: str, faulty: tuple) -> None:
    client, faults, table = faulty
    getattr(faults, kind)("GetItem", times=4)

    assert "Item" not in get(client, table)
    assert faults.requests["GetItem"] == 5


@pytest.mark.parametrize("kind, code", [("throttle", "ProvisionedThroughputExceededException"),
                                        ("fail", "InternalServerError")])
def test_a_call_is_tried_max_attempts_times_then_raises_the_services_error(kind: str, code: str, faulty: tuple) -> None:
    client, faults, table = faulty
    getattr(faults, kind)("GetItem")

    with pytest.raises(awsjson.ClientError) as failed:
        get(client, table)

    assert failed.value.response["Error"]["Code"] == code
    assert faults.requests["GetItem"] == MAX_ATTEMPTS


def test_a_client_error_is_not_retried(faulty: tuple) -> None:
    client, faults, table = faulty
    with pytest.raises(client.exceptions.ValidationException):
        client.get_item(TableName=table, Key={spec.CONNECTION_ID: {"S": "c"}})
    assert faults.requests["GetItem"] == 1


# --- retries, against the network ------------------------------------------------------


class RawServer:
    """A loopback HTTP server that answers each request with ``answer(body)``:
    bytes to send, or None to send nothing (and keep the connection open)."""

    def __init__(self, answer: Callable[[bytes], bytes | None]):
        self._answer = answer
        self.bodies: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        while True:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buffer[:head_end].decode("latin-1").lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                if len(buffer) >= head_end + 4 + length:
                    body = buffer[head_end + 4:head_end + 4 + length]
                    buffer = buffer[head_end + 4 + length:]
                    self.bodies.append(body)
                    answer = self._answer(body)
                    if answer is not None:
                        sock.sendall(answer)
                    continue
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data

    def close_idle(self) -> None:
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # sends the FIN now, even while _serve waits in recv
            except OSError:
                pass
            sock.close()
        self._open.clear()

    def stop(self) -> None:
        self.close_idle()
        self._listener.close()


def http_answer(body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(body) if crc is None else crc
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nx-amz-crc32: {crc}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[bytes], bytes | None]], RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Callable[[bytes], bytes | None]) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_a_transaction_whose_answer_is_lost_is_retried_with_the_same_token(
    raw_server: Any, no_retry_delay: None
) -> None:
    answers = iter([None, None, http_answer(b"{}")])  # two attempts time out, the third is answered
    server = raw_server(lambda body: next(answers))
    client = own_client(server.endpoint, read_timeout=0.2)

    client.transact_write_items(TransactItems=[{"Delete": {"TableName": "t", "Key": {}}}])

    tokens = [json.loads(body)["ClientRequestToken"] for body in server.bodies]
    assert len(tokens) == 3 and len(set(tokens)) == 1
    assert server.connections == 3  # a connection that lost an answer is never used again


def test_no_answer_after_max_attempts_raises_transport_error(raw_server: Any, no_retry_delay: None) -> None:
    server = raw_server(lambda body: None)
    client = own_client(server.endpoint, read_timeout=0.1, max_attempts=2)

    with pytest.raises(awsjson.TransportError, match="GetItem"):
        client.get_item(TableName="t", Key={})
    assert len(server.bodies) == 2


def test_a_client_for_calls_that_are_not_idempotent_never_resends_an_unanswered_request(
    raw_server: Any, no_retry_delay: None
) -> None:
    server = raw_server(lambda body: None)
    client = own_client(server.endpoint, read_timeout=0.1, retry_unanswered=False, tokens={})

    with pytest.raises(awsjson.TransportError) as failed:
        client.put_item(TableName="t", Item={})
    assert failed.value.sent and len(server.bodies) == 1


def test_a_refused_connection_is_retried_then_raises(no_retry_delay: None) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    client = own_client(f"http://127.0.0.1:{port}", max_attempts=3)

    with pytest.raises(awsjson.TransportError, match="cannot connect") as failed:
        client.get_item(TableName="t", Key={})
    assert not failed.value.sent


def test_a_body_whose_crc32_does_not_match_is_retried(raw_server: Any, no_retry_delay: None) -> None:
    good = b'{"Item":{"k":{"S":"v"}}}'
    answers = iter([http_answer(good, crc=12345), http_answer(good)])
    server = raw_server(lambda body: next(answers))

    result = own_client(server.endpoint).get_item(TableName="t", Key={})

    assert result["Item"] == {"k": {"S": "v"}} and len(server.bodies) == 2


def test_an_unreadable_answer_is_not_resent_by_a_client_for_calls_that_are_not_idempotent(
    raw_server: Any, no_retry_delay: None
) -> None:
    server = raw_server(lambda body: http_answer(b"{}", crc=1))
    client = own_client(server.endpoint, retry_unanswered=False, tokens={})

    with pytest.raises(awsjson.TransportError) as failed:
        client.put_item(TableName="t", Item={})
    assert failed.value.sent and len(server.bodies) == 1  # it may have been carried out


def test_the_error_code_is_read_as_botocore_reads_it() -> None:
    from channel_server.handlers import aws, http1

    def answer(headers: dict, body: bytes) -> http1.Response:
        return http1.Response(400, headers, body)

    sqs = b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no"}'
    assert aws.error_code(answer({"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"}, sqs)) \
        == "AWS.SimpleQueueService.NonExistentQueue"
    assert aws.error_code(answer({}, sqs)) == "QueueDoesNotExist"
    assert aws.error_code(answer({"x-amzn-errortype": "GoneException:http://internal/"}, b"")) == "GoneException"
    assert aws.error_code(http1.Response(200, {}, b"{}")) is None


def test_a_connection_closed_while_idle_is_not_used_again(raw_server: Any) -> None:
    server = raw_server(lambda body: http_answer(b"{}"))
    client = own_client(server.endpoint)
    client.get_item(TableName="t", Key={})
    client.get_item(TableName="t", Key={})
    assert server.connections == 1  # kept alive

    server.close_idle()
    client.get_item(TableName="t", Key={})

    assert len(server.bodies) == 3 and server.connections == 2  # one request per call: no failed attempt
