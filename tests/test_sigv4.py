"""The handlers' own SigV4 signer against botocore's (known answers): for a
corpus of management API posts, with and without a session token, the headers
it signs with are exactly botocore's."""

from __future__ import annotations

import datetime
import itertools
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from channel_server.handlers import sigv4
from channel_server.handlers.sender import ManagementApi

ENDPOINTS = [
    "https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod",
    "https://abc123defg.execute-api.us-east-1.amazonaws.com/dev/",
    "http://127.0.0.1:8080/dev",
    "http://localhost:80/stage_2",
    "https://[::1]:8443/v-1",
]
CONNECTION_IDS = ["AbCdEfGhIjKlMnO=", "L0SM9cOFvHcCIhw=", "a+b/c=d", "plain", "%41~x"]
PAYLOADS = [b"", b'{"type":"message","data":"hi"}', "ünïcødé 🎉 \"quoted\"".encode(), b"x" * 4096]
CREDENTIALS = [
    sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    sigv4.Credentials("ASIAEXAMPLE", "secret/with+symbols=", "FwoGZXIvYXdzEJr//////////wEaDAbc+/token=="),
]
MOMENTS = [
    datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.timezone.utc),
    datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc),
    datetime.datetime(2027, 1, 1, 0, 0, 0, tzinfo=datetime.timezone.utc),
]


def region_of(endpoint: str) -> str:
    host = endpoint.split("/")[2]
    return host.split(".")[2] if ".execute-api." in host else "us-east-1"


def botocore_headers(url: str, body: bytes, credentials: sigv4.Credentials, region: str,
                     moment: datetime.datetime) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body)
    auth = SigV4Auth(BotocoreCredentials(credentials.access_key, credentials.secret_key, credentials.token),
                     sigv4.SERVICE, region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)):
        auth.add_auth(request)
    return {name: (value.decode() if isinstance(value, bytes) else value) for name, value in request.headers.items()}


@pytest.mark.parametrize("credentials", CREDENTIALS, ids=["keys", "session token"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_signatures_equal_botocores(endpoint: str, credentials: sigv4.Credentials) -> None:
    region = region_of(endpoint)
    signer = sigv4.Signer(lambda: credentials, region)  # one signer throughout: its cached key must follow the date
    api = ManagementApi(endpoint, signer)
    scheme, rest = endpoint.split("://", 1)
    for connection_id, payload, moment in itertools.product(CONNECTION_IDS, PAYLOADS, MOMENTS):
        url = f"{scheme}://{rest.split('/', 1)[0]}{api.path(connection_id)}"
        ours = signer.headers("POST", api.host, api.path(connection_id), payload, now=moment.timestamp())
        assert ours == botocore_headers(url, payload, credentials, region, moment), (connection_id, payload, moment)


@pytest.mark.parametrize("credentials", CREDENTIALS, ids=["keys", "session token"])
def test_a_post_is_signed_as_boto3s_post_to_connection_signs_it(credentials: sigv4.Credentials) -> None:
    """Against the request boto3 itself builds (its path encoding included)."""
    endpoint, connection_id, payload = ENDPOINTS[0], "AbCdEfGhIjKlMnO=", b'{"type":"pong"}'
    moment = MOMENTS[0]
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=endpoint, region_name="eu-west-1",
        aws_access_key_id=credentials.access_key, aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    )
    sent = boto3_request(client, lambda: client.post_to_connection(ConnectionId=connection_id, Data=payload), moment)

    api = ManagementApi(endpoint, sigv4.Signer(lambda: credentials, "eu-west-1"))
    ours = api._signer.headers("POST", api.host, api.path(connection_id), payload, now=moment.timestamp())
    assert sent["url"] == f"https://{api.host}{api.path(connection_id)}"
    assert {name: sent["headers"][name] for name in ours} == ours


def boto3_request(client: Any, call: Any, moment: datetime.datetime) -> dict[str, Any]:
    """The request boto3 would send for ``call()`` at ``moment``: its url,
    body and headers, captured just before sending (nothing is sent)."""
    sent: dict[str, Any] = {}

    class Captured(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        sent.update(url=request.url, body=request.body,
                    headers={k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})
        raise Captured

    client.meta.events.register("before-send", capture)
    try:
        with mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)):
            with pytest.raises(Captured):
                call()
    finally:
        client.meta.events.unregister("before-send", capture)
    return sent


def test_the_signing_key_is_derived_once_per_day() -> None:
    derived: list[bytes] = []
    real_hmac = sigv4._hmac

    def counting(key: bytes, message: str) -> bytes:
        derived.append(key)
        return real_hmac(key, message)

    signer = sigv4.Signer(lambda: CREDENTIALS[0], "eu-west-1")
    with mock.patch.object(sigv4, "_hmac", counting):
        for moment in (MOMENTS[1], MOMENTS[1] + datetime.timedelta(seconds=1), MOMENTS[2], MOMENTS[2]):
            for _ in range(3):
                signer.headers("POST", "h", "/dev/@connections/x", b"{}", now=moment.timestamp())

    assert len(derived) == 2 * 4  # two days, four HMACs each


def test_credentials_come_from_lambdas_environment() -> None:
    environ = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "tok"}
    assert sigv4.environment_credentials(environ) == sigv4.Credentials("AKID", "secret", "tok")
    assert sigv4.environment_credentials({**environ, "AWS_SESSION_TOKEN": ""}) == sigv4.Credentials("AKID", "secret")
    assert sigv4.environment_credentials({"AWS_ACCESS_KEY_ID": "AKID"}) is None


def test_without_credentials_in_the_environment_botocores_chain_is_used(tmp_path, monkeypatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text("[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = fromprofile\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))

    current = sigv4.botocore_credentials()

    assert current() == sigv4.Credentials("AKIDPROFILE", "fromprofile")


@pytest.mark.parametrize("credentials", CREDENTIALS, ids=["keys", "session token"])
@pytest.mark.parametrize("endpoint", ["https://dynamodb.eu-west-1.amazonaws.com", "http://127.0.0.1:8000"])
def test_a_dynamodb_request_is_signed_as_boto3_signs_it(endpoint: str, credentials: sigv4.Credentials) -> None:
    """DynamoDB's JSON API signs two more headers (Content-Type, X-Amz-Target):
    against the request boto3 builds, for each operation the store makes."""
    from channel_server.handlers import aws, awsjson, dynamodb

    client = boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name="eu-west-1",
        aws_access_key_id=credentials.access_key, aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    )
    origin = aws.Origin.of(endpoint)
    signer = sigv4.Signer(lambda: credentials, "eu-west-1", "dynamodb")
    calls: dict[str, dict[str, Any]] = {
        "get_item": {"TableName": "t", "Key": {"k": {"S": "ü 🎉"}}, "ConsistentRead": True},
        "transact_write_items": {"TransactItems": [{"Delete": {"TableName": "t", "Key": {"k": {"S": "v"}}}}],
                                 "ClientRequestToken": "token"},
        "query": {"TableName": "t", "KeyConditionExpression": "#c = :c", "ExpressionAttributeNames": {"#c": "c"},
                  "ExpressionAttributeValues": {":c": {"S": "x"}}},
    }
    for method, params in calls.items():
        for moment in MOMENTS:
            sent = boto3_request(client, lambda: getattr(client, method)(**params), moment)
            operation = dynamodb.OPERATIONS[method]
            extra = {"Content-Type": awsjson.CONTENT_TYPE, "X-Amz-Target": dynamodb.TARGET_PREFIX + operation}
            assert {name: sent["headers"][name] for name in extra} == extra
            ours = signer.headers("POST", origin.host, "/", sent["body"], now=moment.timestamp(), signed=extra)
            assert {name: sent["headers"][name] for name in ours} == ours, (method, moment)
