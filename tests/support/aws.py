"""Fake AWS credentials, and an environment in which boto3 finds nothing else.

conftest's autouse ``aws_environment`` applies :func:`scrub_aws_environment` to
every test; :func:`fake_aws_environment` applies it for a moment, for clients
built outside a test function (module-scoped fixtures), which resolve their
credentials when built and keep the fake ones afterwards.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest

from channel_server.local.placeholders import REGION  # the tests' region: local mode's and the mock engine's

#: boto3 client keyword arguments; the environment gets the same values.
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

#: Environment variables through which boto3 could find real credentials or endpoints.
AWS_ENV = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", "AWS_ENDPOINT_URL_SQS", "AWS_REGION",
)


def scrub_aws_environment(env: pytest.MonkeyPatch) -> None:
    """Through ``env``: none of :data:`AWS_ENV`, no config or credentials file,
    no instance metadata; the fake credentials and :data:`REGION` instead."""
    for name in AWS_ENV:
        env.delenv(name, raising=False)
    env.setenv("AWS_CONFIG_FILE", os.devnull)
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in FAKE_CREDENTIALS.items():
        env.setenv(name.upper(), value)
    env.setenv("AWS_DEFAULT_REGION", REGION)


@contextlib.contextmanager
def fake_aws_environment() -> Iterator[None]:
    """:func:`scrub_aws_environment` for the length of the ``with`` block."""
    with pytest.MonkeyPatch.context() as env:
        scrub_aws_environment(env)
        yield
