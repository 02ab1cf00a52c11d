"""The publisher (``channel_server.publish``) against a publish endpoint of
our own: a real HTTP server on 127.0.0.1 that records every request and
answers what the test scripts. Each signature is checked exactly: recomputed
with botocore from what arrived on the wire, for the test's known secret.

No real AWS credentials are used: conftest scrubs the environment, and the
commands run with no AWS_* variable but those a test sets, HOME an empty
folder (no ~/.aws) and instance metadata off. Every wait is for an answer
or a process's exit, bounded by TIMEOUT only so that a broken build fails
instead of hanging; servers stop at the end of their test.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from channel_server.handlers import aws, protocol
from channel_server.local.placeholders import LOCAL_CREDENTIALS, REGION
from channel_server.publish import (
    Published, PublishError, Publisher, PublisherSetupError, PublishFailed, PublishRejected,
)
from support.recorder import HOLD, Answer, Received, Recorder

TIMEOUT = 30
COMMAND = [sys.executable, "-m", "channel_server.publish"]
ROOT = Path(__file__).resolve().parents[1]

#: Known test credentials: what the endpoint checks each signature against.
ACCESS_KEY, SECRET_KEY = "AKIDPUBLISHERTEST", "publisher-test-secret"
FUNCTION_URL = "https://k7x2mq9ehdabcdefghijklmnopqrstuv.lambda-url.eu-west-1.on.aws/"
OUTCOME: dict[str, Any] = {"delivered": 2, "failed": 0, "queued": 0}
#: The shape of a SigV4 Authorization header signed for a function URL.
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/lambda/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)
NO_CREDENTIALS = ("no AWS credentials to sign with: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                  "AWS_PROFILE (a profile in ~/.aws), or run where a role supplies them (ECS, EC2, Lambda)")


# --- the endpoint ---------------------------------------------------------------------


class Endpoint(Recorder):
    """A publish endpoint: answers each request with the next scripted answer,
    ``(status, body)`` (a dict is sent as JSON) or :data:`HOLD`; 200 with
    :data:`OUTCOME` once the script is used up."""

    def __init__(self) -> None:
        self._answers: deque[Answer] = deque()
        super().__init__(lambda request: self._answers.popleft() if self._answers else (200, OUTCOME))

    def answer(self, *answers: Answer) -> None:
        self._answers.extend(answers)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint() as running:
        yield running


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The known test credentials in the environment, and no region."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_DEFAULT_REGION")


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials and no region anywhere (conftest has removed the rest)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The attempts after which the publisher backed off, in order; it waits 0 s."""
    waited: list[int] = []

    def no_wait(attempt: int) -> int:
        waited.append(attempt)
        return 0

    monkeypatch.setattr(aws, "backoff_delay", no_wait)
    return waited


def verify_signature(request: Received, secret: str, token: str | None = None) -> dict[str, str]:
    """Check ``request``'s SigV4 signature exactly: its Authorization header
    has the shape AWS wants for a function URL, signs the host, the date and
    the content type, and its signature is the one botocore computes from
    what arrived (method, path and query, signed headers, body) with
    ``secret``. Returns the header's parts (key, date, region, signed)."""
    found = AUTHORIZATION.fullmatch(request.headers.get("authorization", ""))
    assert found, request.headers.get("authorization")
    signed = found["signed"].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    assert ("x-amz-security-token" in signed) is (token is not None)
    assert request.headers["x-amz-date"][:8] == found["date"]
    # a request through a proxy names its whole URL
    url = request.target if "://" in request.target else f"http://{request.headers['host']}{request.target}"
    rebuilt = AWSRequest(method=request.method, url=url,
                         data=request.body, headers={name: request.headers[name] for name in signed})
    rebuilt.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(found["key"], secret, token), "lambda", found["region"])
    expected = signer.signature(signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt)), rebuilt)
    assert found["signature"] == expected, "the signature does not match the request that arrived"
    return {"key": found["key"], "date": found["date"], "region": found["region"], "signed": found["signed"]}


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: a connection to it is refused."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


# --- what is sent ---------------------------------------------------------------------


def test_a_publish_posts_one_signed_json_body_and_returns_the_outcome(endpoint: Endpoint, credentials: None) -> None:
    outcome = Publisher(endpoint.url, region="eu-west-1").publish(
        "lobby", {"text": "the order shipped", "n": [1, 2.5, None]}, idempotency_key="order-1042:shipped")

    assert outcome == Published(delivered=2, failed=0, queued=0, replayed=False)
    [request] = endpoint.requests
    assert (request.method, request.target) == ("POST", "/")
    assert request.headers["content-type"] == "application/json"
    assert request.body == (b'{"channelId":"lobby","data":{"text":"the order shipped","n":[1,2.5,null]},'
                            b'"idempotencyKey":"order-1042:shipped"}')
    signature = verify_signature(request, SECRET_KEY)
    assert (signature["key"], signature["region"]) == (ACCESS_KEY, "eu-west-1")
    with pytest.raises(AssertionError, match="does not match"):  # the check is no formality
        verify_signature(request, "another-secret")


def test_a_publish_without_a_key_sends_none(endpoint: Endpoint, credentials: None) -> None:
    Publisher(endpoint.url, region="eu-west-1").publish("lobby", "hi")

    assert endpoint.requests[0].json() == {"channelId": "lobby", "data": "hi"}


def test_the_signature_holds_for_a_url_with_a_path_and_a_query(endpoint: Endpoint, credentials: None) -> None:
    url = endpoint.url + "stage/publish%20it/?b=2&a=x%20y&a=1&empty="

    Publisher(url, region="eu-west-1").publish("lobby", 1)

    [request] = endpoint.requests
    assert request.target == "/stage/publish%20it/?b=2&a=x%20y&a=1&empty="  # sent to the URL as given
    verify_signature(request, SECRET_KEY)


def test_temporary_credentials_sign_their_session_token_too(endpoint: Endpoint, no_aws: None) -> None:
    session = botocore.session.Session()
    session.set_credentials(ACCESS_KEY, SECRET_KEY, "the-session-token")

    Publisher(endpoint.url, region="eu-west-1", session=session).publish("lobby", 1)

    [request] = endpoint.requests
    assert request.headers["x-amz-security-token"] == "the-session-token"
    verify_signature(request, SECRET_KEY, token="the-session-token")


def test_requests_go_out_without_waiting_for_nagles_algorithm(endpoint: Endpoint, credentials: None) -> None:
    # botocore's session writes a request's headers and body separately: with
    # Nagle's algorithm on, the body waited for the server's delayed ACK
    # (measured: 44 ms a publish instead of 0.6 ms against a local endpoint)
    publisher = Publisher(endpoint.url, region="eu-west-1")
    publisher.publish("lobby", 1)

    pool = publisher._http._manager.connection_from_url(endpoint.url)
    [connection] = [connection for connection in pool.pool.queue if connection is not None]
    assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


@pytest.mark.parametrize("data, error, message", [
    ({1, 2}, TypeError, "data must be a JSON value: Object of type set is not JSON serializable"),
    (float("nan"), ValueError, "data must be a JSON value: Out of range float values are not JSON compliant"),
])
def test_data_that_is_not_json_is_refused_before_anything_is_sent(endpoint: Endpoint, credentials: None,
                                                                   data: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", data)

    assert str(raised.value) == message
    assert endpoint.requests == []


@pytest.mark.parametrize("key", ["", "order 1042", "k" * 129, "ключ", 1042])
def test_an_idempotency_key_out_of_the_rules_is_refused_before_anything_is_sent(
        endpoint: Endpoint, credentials: None, key: Any) -> None:
    with pytest.raises(ValueError) as raised:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key=key)

    assert str(raised.value) == ("idempotency_key must be 1 to 128 letters, digits, '_', '.', ':' or '-', "
                                 f"not {key!r}")
    assert endpoint.requests == []


def test_a_key_of_128_allowed_characters_is_sent(endpoint: Endpoint, credentials: None) -> None:
    key = ("Az09_.:-" * 16)

    Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key=key)

    assert endpoint.requests[0].json()["idempotencyKey"] == key


def test_a_replayed_answer_says_so(endpoint: Endpoint, credentials: None) -> None:
    endpoint.answer((200, {"delivered": 5, "failed": 1, "queued": 900, "replayed": True}))

    outcome = Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert outcome == Published(delivered=5, failed=1, queued=900, replayed=True)


# --- region ----------------------------------------------------------------------------


@pytest.mark.parametrize("url, region, environ, expected", [
    (FUNCTION_URL, None, {}, "eu-west-1"),
    (FUNCTION_URL + "any/path?x=1", None, {}, "eu-west-1"),
    ("https://ABCDEF123.LAMBDA-URL.AP-SOUTHEAST-2.ON.AWS/", None, {}, "ap-southeast-2"),
    (FUNCTION_URL, "us-west-2", {"AWS_REGION": "ap-south-1"}, "us-west-2"),  # the argument first
    (FUNCTION_URL, None, {"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "ca-central-1"}, "eu-west-1"),
    ("https://publish.example.com/", None, {"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "ca-central-1"},
     "ap-south-1"),
    ("https://publish.example.com/", None, {"AWS_DEFAULT_REGION": "ca-central-1"}, "ca-central-1"),
    # only a function URL's own host names a region
    ("https://x.lambda-url.eu-west-1.on.aws.example.com/", None, {"AWS_REGION": "ap-south-1"}, "ap-south-1"),
    ("https://publish.example.com/x.lambda-url.eu-west-1.on.aws/", None, {"AWS_REGION": "ap-south-1"},
     "ap-south-1"),
])
def test_the_region_is_the_arguments_then_the_function_urls_then_the_environments(
        monkeypatch: pytest.MonkeyPatch, credentials: None, url: str, region: str | None,
        environ: dict[str, str], expected: str) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    assert Publisher(url, region=region).region == expected


def test_the_region_can_come_from_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              credentials: None) -> None:
    config = tmp_path / "config"
    config.write_text("[profile publisher]\nregion = sa-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "publisher")

    assert Publisher("https://publish.example.com/").region == "sa-east-1"


def test_the_region_signed_for_is_the_publishers(endpoint: Endpoint, credentials: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-northeast-3")

    Publisher(endpoint.url).publish("lobby", 1)

    assert verify_signature(endpoint.requests[0], SECRET_KEY)["region"] == "ap-northeast-3"


def test_a_function_url_is_signed_for_its_region_and_a_403_from_aws_says_what_it_wants(
        endpoint: Endpoint, credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # the endpoint stands in for AWS as an HTTP proxy, which botocore's session
    # takes from the environment as every AWS client does
    url = FUNCTION_URL.replace("https://", "http://")
    monkeypatch.setenv("HTTP_PROXY", endpoint.url)
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    endpoint.answer((403, {"Message": "Forbidden"}))

    with pytest.raises(PublishRejected) as raised:
        Publisher(url).publish("lobby", 1)

    [request] = endpoint.requests
    assert (request.target, "http://" + request.headers["host"] + "/") == (url, url)
    assert verify_signature(request, SECRET_KEY)["region"] == "eu-west-1"
    assert (raised.value.status, raised.value.reason) == (403, "Forbidden")
    assert str(raised.value) == (
        f"publish rejected (403): Forbidden (signed for eu-west-1 as {ACCESS_KEY}: the function URL takes requests "
        "signed for its region by principals allowed lambda:InvokeFunctionUrl and lambda:InvokeFunction on it)")


def test_an_endpoint_off_this_machine_with_no_region_to_find_is_refused_naming_what_to_set(credentials: None) -> None:
    with pytest.raises(PublisherSetupError) as raised:
        Publisher("https://publish.example.com/")

    assert str(raised.value) == (
        "no region to sign for: pass one (--region, or Publisher(url, region=...)) or set AWS_REGION; "
        "https://publish.example.com/ is not a function URL (https://<id>.lambda-url.<region>.on.aws/), "
        "which names its own")


# --- credentials: local mode's placeholders on loopback only ---------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_with_nothing_in_the_environment_a_loopback_url_is_signed_with_local_modes_placeholders(
        endpoint: Endpoint, no_aws: None, host: str) -> None:
    publisher = Publisher(endpoint.url.replace("127.0.0.1", host))

    assert publisher.publish("lobby", 1) == Published(**OUTCOME)
    signature = verify_signature(endpoint.requests[0], LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    assert (signature["key"], signature["region"]) == (LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"], REGION)
    assert publisher.region == REGION


def test_credentials_and_a_region_that_are_found_are_used_against_loopback_too(
        endpoint: Endpoint, credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-north-1")

    Publisher(endpoint.url).publish("lobby", 1)

    signature = verify_signature(endpoint.requests[0], SECRET_KEY)
    assert (signature["key"], signature["region"]) == (ACCESS_KEY, "eu-north-1")


@pytest.mark.parametrize("url", [
    FUNCTION_URL,
    "http://10.0.0.1:8000/",
    "http://0.0.0.0:8000/",
    "http://localhost.example.com:8000/",
    "http://127.0.0.1.nip.io/",
    "http://[::2]:8000/",
])
def test_placeholder_credentials_never_go_to_a_url_off_this_machine(no_aws: None, url: str) -> None:
    with pytest.raises(PublisherSetupError) as raised:
        Publisher(url, region="eu-west-1")

    assert str(raised.value) == NO_CREDENTIALS


def test_a_profile_that_does_not_exist_is_named(monkeypatch: pytest.MonkeyPatch, no_aws: None) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nowhere")

    with pytest.raises(PublisherSetupError) as raised:
        Publisher(FUNCTION_URL)

    assert str(raised.value) == "cannot read the AWS configuration: The config profile (nowhere) could not be found"


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/", "'ftp://example.com/' is not an http:// or https:// URL with a host"),
    ("https:///publish", "'https:///publish' is not an http:// or https:// URL with a host"),
    ("abc123.lambda-url.eu-west-1.on.aws", "'abc123.lambda-url.eu-west-1.on.aws' is not an http:// or https:// "
                                           "URL with a host"),
    ("http://127.0.0.1:99999/", "'http://127.0.0.1:99999/' is not a URL: Port out of range 0-65535"),
])
def test_a_url_that_is_not_http_is_refused(credentials: None, url: str, message: str) -> None:
    with pytest.raises(PublisherSetupError) as raised:
        Publisher(url, region="eu-west-1")

    assert str(raised.value) == message


# --- answers that are not an outcome --------------------------------------------------------


@pytest.mark.parametrize("status, body, reason, message", [
    (400, {"message": "channelId must not start with '$' (reserved)"}, "channelId must not start with '$' (reserved)",
     "publish rejected (400): channelId must not start with '$' (reserved)"),
    (403, {"message": "not signed: send an Authorization header with an AWS SigV4 signature"},
     "not signed: send an Authorization header with an AWS SigV4 signature",
     "publish rejected (403): not signed: send an Authorization header with an AWS SigV4 signature"),
    (422, {"message": "this idempotency key was used for a different publish"},
     "this idempotency key was used for a different publish",
     "publish rejected (422): this idempotency key was used for a different publish"),
    (404, b"", "Not Found", "publish rejected (404): Not Found"),
    (413, b"<html>\n<body>Request Entity Too Large</body></html>",
     "<html> <body>Request Entity Too Large</body></html>",
     "publish rejected (413): <html> <body>Request Entity Too Large</body></html>"),
])
def test_a_rejection_is_raised_with_its_status_and_reason_and_never_retried(
        endpoint: Endpoint, credentials: None, backoffs: list[int],
        status: int, body: Any, reason: str, message: str) -> None:
    endpoint.answer((status, body))

    with pytest.raises(PublishRejected) as raised:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert (raised.value.status, raised.value.reason, str(raised.value)) == (status, reason, message)
    assert isinstance(raised.value, PublishError)
    assert len(endpoint.requests) == 1 and backoffs == []


def test_a_retry_that_meets_the_keys_first_publish_running_waits_for_its_outcome(
        endpoint: Endpoint, credentials: None, backoffs: list[int]) -> None:
    # GIVEN the first attempt's answer lost (a 502 here), and its publish still running at the first retry
    endpoint.answer((502, {"Message": "Bad Gateway"}),
                    (409, {"message": protocol.KEY_IN_PROGRESS}), (409, {"message": protocol.KEY_IN_PROGRESS}),
                    (200, {"delivered": 3, "failed": 0, "queued": 0, "replayed": True}))

    # WHEN the publish is retried with its key THEN it waits for the first one and gets its outcome
    outcome = Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert outcome == Published(delivered=3, failed=0, queued=0, replayed=True)
    assert len(endpoint.requests) == 4


def test_a_key_whose_first_publish_stopped_without_an_outcome_fails_with_its_fate_unknown(
        endpoint: Endpoint, credentials: None, backoffs: list[int]) -> None:
    endpoint.answer((409, {"message": protocol.KEY_OUTCOME_UNKNOWN}))

    with pytest.raises(PublishFailed) as failed:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert str(failed.value) == f"publish failed (409): {protocol.KEY_OUTCOME_UNKNOWN}"
    assert len(endpoint.requests) == 1


def test_a_first_publish_that_runs_longer_than_the_function_can_is_not_waited_for_again(
        endpoint: Endpoint, credentials: None, backoffs: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    import channel_server.publish as publish_module

    monkeypatch.setattr(publish_module, "IN_PROGRESS_MARGIN_SECONDS", -3600.0)  # its time is up already
    endpoint.answer((409, {"message": protocol.KEY_IN_PROGRESS}))

    with pytest.raises(PublishFailed) as failed:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert (failed.value.status, failed.value.reason) == (409, protocol.KEY_IN_PROGRESS)
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize("answer, message", [
    ((200, b"hello"), "publish failed (200): the answer is not a publish outcome: hello"),
    ((200, {"delivered": 1}), 'publish failed (200): the answer is not a publish outcome: {"delivered": 1}'),
    ((200, {"delivered": True, "failed": 0, "queued": 0}),
     'publish failed (200): the answer is not a publish outcome: {"delivered": true, "failed": 0, "queued": 0}'),
    ((302, b""), "publish failed (302): Found"),
])
def test_an_answer_that_is_no_publish_outcome_fails_and_is_not_retried(
        endpoint: Endpoint, credentials: None, backoffs: list[int], answer: Any, message: str) -> None:
    endpoint.answer(answer)

    with pytest.raises(PublishFailed) as raised:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert str(raised.value) == message
    assert len(endpoint.requests) == 1 and backoffs == []


# --- retries: only with an idempotency key -----------------------------------------------------


@pytest.mark.parametrize("status, body, reason", [
    (500, {"message": "internal error"}, "internal error"),
    (502, {"Message": "Internal Server Error"}, "Internal Server Error"),
    (503, b"", "Service Unavailable"),
    (429, {"Message": "Too Many Requests"}, "Too Many Requests"),
])
def test_with_a_key_a_server_error_or_throttling_is_retried_with_backoff(
        endpoint: Endpoint, credentials: None, backoffs: list[int], status: int, body: Any, reason: str) -> None:
    endpoint.answer((status, body), (status, body), (200, {**OUTCOME, "replayed": True}))

    outcome = Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert outcome == Published(**OUTCOME, replayed=True)
    assert backoffs == [1, 2]
    assert len(endpoint.requests) == 3
    assert {request.body for request in endpoint.requests} == {b'{"channelId":"lobby","data":1,"idempotencyKey":"k1"}'}
    for request in endpoint.requests:
        verify_signature(request, SECRET_KEY)


def test_with_a_key_the_publisher_gives_up_after_its_attempts(endpoint: Endpoint, credentials: None,
                                                              backoffs: list[int]) -> None:
    endpoint.answer(*[(503, {"Message": "Service Unavailable"})] * 4)

    with pytest.raises(PublishFailed) as raised:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1, idempotency_key="k1")

    assert (raised.value.status, raised.value.attempts) == (503, 3)
    assert str(raised.value) == "publish failed (503): Service Unavailable (after 3 attempts)"
    assert len(endpoint.requests) == 3 and backoffs == [1, 2]


def test_max_attempts_sets_how_often_a_keyed_publish_is_tried(endpoint: Endpoint, credentials: None,
                                                              backoffs: list[int]) -> None:
    endpoint.answer(*[(500, {"message": "internal error"})] * 5)

    with pytest.raises(PublishFailed):
        Publisher(endpoint.url, region="eu-west-1", max_attempts=5).publish("lobby", 1, idempotency_key="k1")

    assert len(endpoint.requests) == 5 and backoffs == [1, 2, 3, 4]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_without_a_key_a_publish_is_never_retried(endpoint: Endpoint, credentials: None, backoffs: list[int],
                                                  status: int) -> None:
    endpoint.answer((status, {"message": "try again"}))

    with pytest.raises(PublishFailed) as raised:
        Publisher(endpoint.url, region="eu-west-1").publish("lobby", 1)

    assert (raised.value.status, raised.value.attempts, str(raised.value)) == (
        status, 1, f"publish failed ({status}): try again")
    assert len(endpoint.requests) == 1 and backoffs == []


@pytest.mark.parametrize("key, attempts", [("k1", 3), (None, 1)])
def test_an_unreachable_endpoint_fails_with_no_status(credentials: None, backoffs: list[int],
                                                      key: str | None, attempts: int) -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(PublishFailed) as raised:
            Publisher(url, region="eu-west-1").publish("lobby", 1, idempotency_key=key)

    assert (raised.value.status, raised.value.attempts) == (None, attempts)
    after = f" (after {attempts} attempts)" if attempts > 1 else ""
    assert str(raised.value) == (f'publish failed: no answer from {url}: Could not connect to the endpoint URL: '
                                 f'"{url}"{after}')
    assert backoffs == list(range(1, attempts))


def test_with_a_key_a_lost_answer_is_retried_and_gets_the_first_outcome(endpoint: Endpoint, credentials: None,
                                                                        backoffs: list[int]) -> None:
    # the first attempt's answer never comes (the client gives up after its
    # timeout); the endpoint answers the retry with that attempt's outcome
    endpoint.answer(HOLD, (200, {**OUTCOME, "replayed": True}))

    outcome = Publisher(endpoint.url, region="eu-west-1", timeout=0.5).publish("lobby", 1, idempotency_key="k1")

    assert outcome == Published(**OUTCOME, replayed=True)
    first, retry = endpoint.requests
    assert first.body == retry.body == b'{"channelId":"lobby","data":1,"idempotencyKey":"k1"}'
    assert backoffs == [1]


def test_without_a_key_a_lost_answer_is_not_retried(endpoint: Endpoint, credentials: None,
                                                    backoffs: list[int]) -> None:
    endpoint.answer(HOLD)

    with pytest.raises(PublishFailed) as raised:
        Publisher(endpoint.url, region="eu-west-1", timeout=0.5).publish("lobby", 1)

    assert str(raised.value) == (f"publish failed: no answer from {endpoint.url}: Read timeout on endpoint URL: "
                                 f'"{endpoint.url}"')
    assert len(endpoint.requests) == 1 and backoffs == []


# --- the command line ---------------------------------------------------------------------


def command_environ(home: Path, **aws_settings: str) -> dict[str, str]:
    """This process's environment without any AWS_* variable but ``aws_settings``,
    HOME an empty folder (no ~/.aws), instance metadata off."""
    home.mkdir(exist_ok=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", **aws_settings)
    return env


def publish_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT)


def test_the_command_prints_the_outcome_as_one_json_line(endpoint: Endpoint, tmp_path: Path) -> None:
    endpoint.answer((200, {"delivered": 3, "failed": 1, "queued": 0, "replayed": True}))

    result = publish_command(endpoint.url + "dev", "--channel", "lobby", "--data", '{"text": "hi"}',
                             "--idempotency-key", "order-1042", env=command_environ(tmp_path / "home"))

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == '{"delivered": 3, "failed": 1, "queued": 0, "replayed": true}\n'
    [request] = endpoint.requests
    assert request.target == "/dev"
    assert request.json() == {"channelId": "lobby", "data": {"text": "hi"}, "idempotencyKey": "order-1042"}
    # nothing in its environment: local mode's placeholders, for a loopback URL
    signature = verify_signature(request, LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    assert (signature["key"], signature["region"]) == ("local", REGION)


def test_the_command_signs_with_the_environments_credentials_and_its_region_flag(
        endpoint: Endpoint, tmp_path: Path) -> None:
    env = command_environ(tmp_path / "home", AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)

    result = publish_command(endpoint.url, "--channel", "lobby", "--data", '"hi"', "--region", "eu-west-3", env=env)

    assert (result.returncode, result.stdout) == (0, '{"delivered": 2, "failed": 0, "queued": 0, "replayed": false}\n')
    signature = verify_signature(endpoint.requests[0], SECRET_KEY)
    assert (signature["key"], signature["region"]) == (ACCESS_KEY, "eu-west-3")


@pytest.mark.parametrize("answers, key, line", [
    ([(400, {"message": "message is 131073 bytes encoded; at most 131072"})], None,
     "publish rejected (400): message is 131073 bytes encoded; at most 131072"),
    ([(503, {"Message": "Service Unavailable"})], None, "publish failed (503): Service Unavailable"),
    ([(500, {"message": "internal error"})] * 3, "k1", "publish failed (500): internal error (after 3 attempts)"),
])
def test_the_command_reports_a_rejection_or_failure_on_one_line_and_exits_1(
        endpoint: Endpoint, tmp_path: Path, answers: list[Any], key: str | None, line: str) -> None:
    endpoint.answer(*answers)
    args = ["--idempotency-key", key] if key else []

    result = publish_command(endpoint.url, "--channel", "lobby", "--data", "1", *args,
                             env=command_environ(tmp_path / "home"))

    assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n")
    assert len(endpoint.requests) == len(answers)


@pytest.mark.parametrize("args, error", [
    (["--channel", "lobby", "--data", "hi"],
     "argument --data: not a JSON value (Expecting value: line 1 column 1 (char 0)); text is a JSON string: "
     "--data '\"hello\"'"),
    (["--channel", "lobby", "--data", "NaN"],
     "argument --data: not a JSON value (NaN is not JSON); text is a JSON string: --data '\"hello\"'"),
    (["--channel", "lobby", "--data", "1", "--idempotency-key", "order 1042"],
     "argument --idempotency-key: 'order 1042' is not 1 to 128 letters, digits, '_', '.', ':' or '-'"),
    (["--data", "1"], "the following arguments are required: --channel"),
    (["--channel", "lobby"], "the following arguments are required: --data"),
])
def test_the_command_refuses_bad_arguments_naming_the_flag(tmp_path: Path, args: list[str], error: str) -> None:
    with closed_port() as port:  # nothing may be sent: a refused connection would be exit status 1
        result = publish_command(f"http://127.0.0.1:{port}/", *args, env=command_environ(tmp_path / "home"))

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"python -m channel_server.publish: error: {error}"


@pytest.mark.parametrize("url, aws_settings, error", [
    ("ftp://example.com/", {}, "argument URL: 'ftp://example.com/' is not an http:// or https:// URL with a host"),
    (FUNCTION_URL, {}, NO_CREDENTIALS),
    ("https://publish.example.com/", {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
     "no region to sign for: pass one (--region, or Publisher(url, region=...)) or set AWS_REGION; "
     "https://publish.example.com/ is not a function URL (https://<id>.lambda-url.<region>.on.aws/), "
     "which names its own"),
])
def test_the_command_names_a_missing_setting(tmp_path: Path, url: str, aws_settings: dict[str, str],
                                             error: str) -> None:
    result = publish_command(url, "--channel", "lobby", "--data", "1",
                             env=command_environ(tmp_path / "home", **aws_settings))

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"python -m channel_server.publish: error: {error}"


def test_the_command_without_botocore_says_how_to_install_it(tmp_path: Path) -> None:
    hide = ("import importlib.metadata as m, runpy, sys\n"
            "real = m.distribution\n"
            "def distribution(name):\n"
            "    if name.lower() == 'botocore': raise m.PackageNotFoundError(name)\n"
            "    return real(name)\n"
            "m.distribution = distribution\n"
            "sys.modules['botocore'] = None\n"
            "sys.argv = ['channel_server.publish', 'http://127.0.0.1:1/', '--channel', 'lobby', '--data', '1']\n"
            "runpy.run_module('channel_server.publish', run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([sys.executable, "-c", hide], env=command_environ(tmp_path / "home"),
                            capture_output=True, text=True, timeout=TIMEOUT)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"the publisher needs botocore: pip install -e '{ROOT}[publish]'\n"
