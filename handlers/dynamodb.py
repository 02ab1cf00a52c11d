"""The store's DynamoDB client: :class:`awsjson.Client` for DynamoDB's
operations, configured from the environment as boto3 would be."""

from __future__ import annotations

import os
from typing import Mapping

from . import aws, awsjson, spec

TARGET_PREFIX = "DynamoDB_20120810."
#: The operations the store calls, by their boto3 method names.
OPERATIONS = {
    "get_item": "GetItem",
    "query": "Query",
    "put_item": "PutItem",
    "delete_item": "DeleteItem",
    "update_item": "UpdateItem",
    "batch_write_item": "BatchWriteItem",
    "transact_write_items": "TransactWriteItems",
}
#: What makes a retried transaction apply once (botocore fills it in too).
TOKENS = {"TransactWriteItems": "ClientRequestToken"}


def client(
    environ: Mapping[str, str] | None = None, *, max_attempts: int, pool_size: int,
    read_timeout: float = spec.READ_TIMEOUT,
) -> awsjson.Client:
    """Endpoint, region and credentials from the environment (Lambda sets
    them all). A call whose answer was lost is retried, as botocore retries
    it: transactions carry a ClientRequestToken, the other writes set the
    same values again (docs/failure-semantics.md, DynamoDB)."""
    environ = os.environ if environ is None else environ
    return awsjson.Client(
        awsjson.endpoint_url("dynamodb", environ),
        aws.signer(environ, awsjson.signing_region("dynamodb", environ), "dynamodb"),
        TARGET_PREFIX, OPERATIONS, tokens=TOKENS, retry_unanswered=True,
        max_attempts=max_attempts, pool_size=pool_size, read_timeout=read_timeout,
    )
