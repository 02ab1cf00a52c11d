"""A large channel's fan-out, handed over: members beyond a publish's inline
limit go, in chunks, through an SQS queue to the fan-out function.

A chunk is one SQS message: a JSON line ``{"channelId", "connectionIds"}``,
a newline, then the ``message`` frame exactly as the members receive it
(encoded once by the publish), except that U+FFFE and U+FFFF, which SQS
refuses in a message, travel as their JSON escapes: equal JSON, as they can
only stand inside a string.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from . import aws, awsjson, spec

#: SQS's JSON protocol's prefix of X-Amz-Target.
TARGET_PREFIX = "AmazonSQS."
#: SQS's limit on one message, and on one SendMessageBatch call.
MAX_BODY_BYTES = 256 * 1024
#: SQS's limit on the messages of one SendMessageBatch call.
BATCH_ENTRIES = 10
#: Attempts for entries SQS reports failed on its side (not the sender's fault).
ENTRY_ATTEMPTS = 3
_ESCAPES = str.maketrans({"\ufffe": "\\ufffe", "\uffff": "\\uffff"})


@dataclass(frozen=True)
class Chunk:
    channel_id: str
    connection_ids: list[str]
    payload: bytes


def encode(channel_id: str, connection_ids: list[str], payload_text: str) -> str:
    head = json.dumps({"channelId": channel_id, "connectionIds": connection_ids}, separators=(",", ":"))
    return f"{head}\n{payload_text}"


def decode(body: str) -> Chunk:
    """Raises ValueError (or KeyError, TypeError) for a body :func:`encode` did not make."""
    head, newline, payload = body.partition("\n")
    if not newline:
        raise ValueError("no frame after the chunk's head")
    fields = json.loads(head)
    ids = fields["connectionIds"]
    if not isinstance(fields["channelId"], str) or not all(isinstance(i, str) for i in ids):
        raise ValueError("the chunk's head is not a channel and connection ids")
    return Chunk(fields["channelId"], ids, payload.encode("utf-8"))


def chunks(channel_id: str, connection_ids: list[str], payload: bytes) -> tuple[list[tuple[str, int]], list[str]]:
    """The message bodies that carry ``payload`` to ``connection_ids`` (at
    most spec.FANOUT_CHUNK_MEMBERS ids and MAX_BODY_BYTES each), with how
    many members each carries, and the ids no body can carry (the frame
    alone is too large for SQS)."""
    text = payload.decode("utf-8").translate(_ESCAPES)
    room = MAX_BODY_BYTES - len(text.encode("utf-8")) - len(encode(channel_id, [], ""))
    longest = max((len(i.encode("utf-8")) for i in connection_ids), default=0) + 3  # quotes and a comma
    per_chunk = min(spec.FANOUT_CHUNK_MEMBERS, max(0, room // longest))
    if per_chunk == 0:
        return [], list(connection_ids)
    ids = list(connection_ids)
    slices = [ids[i:i + per_chunk] for i in range(0, len(ids), per_chunk)]
    return [(encode(channel_id, part, text), len(part)) for part in slices], []


class Queue:
    """Sends chunks to the fan-out queue at ``queue_url`` through ``client``
    (an :class:`awsjson.Client` for SQS). Never resends a batch whose answer
    was lost: SQS might hold it already, and its members would get the
    message twice."""

    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self._url = queue_url

    def send(self, channel_id: str, connection_ids: list[str], payload: bytes,
             deadline: float | None = None) -> tuple[int, int]:
        """Queue ``payload`` for ``connection_ids``: (members queued, members
        that could not be). No batch starts after ``deadline`` (a
        ``time.monotonic()`` value): the members left count as not queued."""
        bodies, unsent = chunks(channel_id, connection_ids, payload)
        pending = {n: body for n, (body, _) in enumerate(bodies)}
        for batch in _batches(pending):
            for attempt in range(1, ENTRY_ATTEMPTS + 1):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                try:
                    answer = self._client.send_message_batch(
                        QueueUrl=self._url, Entries=[{"Id": str(n), "MessageBody": pending[n]} for n in batch]
                    )
                except (awsjson.ClientError, awsjson.TransportError):
                    break  # the client retried what it safely could
                retry = [int(f["Id"]) for f in answer.get("Failed", ()) if not f.get("SenderFault")]
                for entry in answer.get("Successful", ()):
                    pending.pop(int(entry["Id"]), None)
                if not retry or attempt == ENTRY_ATTEMPTS:
                    break
                time.sleep(aws.backoff_delay(attempt))
                batch = retry
        lost = len(unsent) + sum(bodies[n][1] for n in pending)
        return len(connection_ids) - lost, lost


def _batches(bodies: Mapping[int, str]) -> list[list[int]]:
    """Indexes of ``bodies`` grouped into SendMessageBatch calls."""
    groups: list[list[int]] = [[]]
    size = 0
    for n, body in bodies.items():
        length = len(body.encode("utf-8"))
        if groups[-1] and (len(groups[-1]) == BATCH_ENTRIES or size + length > MAX_BODY_BYTES):
            groups.append([])
            size = 0
        groups[-1].append(n)
        size += length
    return [group for group in groups if group]


def queue(queue_url: str, environ: Mapping[str, str] | None = None) -> Queue:
    """The fan-out queue at ``queue_url``, with a client configured from the
    environment as boto3's would be (endpoint, region, credentials)."""
    environ = os.environ if environ is None else environ
    client = awsjson.Client(
        awsjson.endpoint_url("sqs", environ), aws.signer(environ, awsjson.signing_region("sqs", environ), "sqs"),
        TARGET_PREFIX, {"send_message_batch": "SendMessageBatch"},
    )
    return Queue(client, queue_url)
