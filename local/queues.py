"""Local SQS: the component's queues in the embedded moto, and its event
source mappings, which invoke a function with each batch of messages.

As Lambda's event source mapping does: a batch is received (hidden for the
queue's visibility timeout), the function is invoked with an SQS event, and
the messages are deleted when the invocation succeeds. When it fails they
come back after the visibility timeout, and moto's redrive policy moves a
message received too often to its dead-letter queue. Where it differs: the
poller is woken by every message sent through the embedded moto (a WSGI
middleware sees the SendMessage calls), so a queued chunk is taken at once
instead of at the next long poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
import time
from typing import Any, Callable, Iterable, Mapping

from ..handlers import handoff
from .functions import InvocationError, LocalFunction
from .world import QueueDef, Subscription

log = logging.getLogger("channel_server.local")

#: How often a poller looks again with nothing sent meanwhile: messages whose
#: visibility timeout ran out come back this late at most.
IDLE_POLL_SECONDS = 1.0
#: SQS's limit on the messages of one ReceiveMessage call.
RECEIVE_LIMIT = 10
SEND_TARGETS = (handoff.TARGET_PREFIX + "SendMessage", handoff.TARGET_PREFIX + "SendMessageBatch")


class SendWatcher:
    """WSGI middleware for the embedded moto: calls every listener after each
    SendMessage(Batch) request was served, and counts every request it serves
    by its ``X-Amz-Target`` (``requests``: DynamoDB's and SQS's alike)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        #: requests served, by X-Amz-Target (``DynamoDB_20120810.Query``, ``AmazonSQS.SendMessageBatch``)
        self.requests: Counter[str] = Counter()

    def listen(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def forget(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def __call__(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def middleware(environ: dict, start_response: Any) -> Iterable[bytes]:
            body = list(app(environ, start_response))
            target = environ.get("HTTP_X_AMZ_TARGET")
            with self._lock:
                self.requests[str(target)] += 1
            if target in SEND_TARGETS:
                with self._lock:
                    listeners = list(self._listeners)
                for listener in listeners:
                    try:
                        listener()
                    except Exception:  # the send was served: its answer must stand
                        log.exception("a queue listener failed")
            return body

        return middleware


def sqs_event(messages: list[dict], queue_arn: str, region: str) -> dict:
    """The event Lambda's SQS event source mapping invokes a function with,
    for messages as ReceiveMessage returns them (with their attributes)."""
    return {"Records": [
        {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        for message in messages
    ]}


def create_queues(client: Any, queues: Iterable[QueueDef]) -> dict[str, tuple[str, str]]:
    """Create ``queues`` (dead-letter queues first) through boto3's SQS
    ``client``; returns, by declared ARN, each queue's local (URL, ARN)."""
    made: dict[str, tuple[str, str]] = {}
    for queue in queues:
        attributes = {"VisibilityTimeout": str(queue.visibility_timeout_seconds)}
        if queue.dead_letter_arn is not None:
            attributes["RedrivePolicy"] = json.dumps({
                "deadLetterTargetArn": made[queue.dead_letter_arn][1], "maxReceiveCount": queue.max_receives,
            })
        url = client.create_queue(QueueName=queue.name, Attributes=attributes)["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        made[queue.arn] = (url, arn)
    return made


class Poller:
    """Feeds ``function`` from the queue at ``url``, as ``subscription`` says."""

    def __init__(self, subscription: Subscription, url: str, function: LocalFunction, client: Any, region: str,
                 concurrency: int):
        """``concurrency``: invocations at once, at most; the poller takes no
        more messages than it can invoke, so none waits hidden in local mode
        while its visibility timeout runs out."""
        self._subscription = subscription
        self._slots = asyncio.Semaphore(concurrency)
        self._free = concurrency
        self._url = url
        self._function = function
        self._client = client
        self._region = region
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._invocations: set[asyncio.Task] = set()

    def wake(self) -> None:
        """Look at the queue now (thread-safe)."""
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:
            pass  # the loop has closed: local mode is stopping

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"poll {self._subscription.queue.name}")

    async def stop(self) -> None:
        """Stop taking messages; wait for the invocations under way."""
        # the flag too: wait_for (Python 3.11) can swallow a cancel that
        # meets a wake-up, and the loop would poll on forever
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._invocations, return_exceptions=True)

    async def _run(self) -> None:
        size = self._subscription.batch_size
        while not self._stopping:
            self._wake.clear()
            await self._slots.acquire()  # one free slot at least, before taking anything
            self._slots.release()
            try:
                messages = await asyncio.to_thread(self._receive, min(RECEIVE_LIMIT, self._free * size))
            except Exception:
                log.exception("receiving from %s failed", self._subscription.queue.name)
                messages = []
            if not messages:
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
                continue
            for start in range(0, len(messages), size):
                await self._slots.acquire()
                self._free -= 1
                task = asyncio.create_task(self._invoke(messages[start:start + size]))
                self._invocations.add(task)
                task.add_done_callback(self._invocations.discard)

    def _receive(self, limit: int) -> list[dict]:
        # no long poll: the embedded moto serves one request at a time
        return self._client.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=max(1, limit), AttributeNames=["All"], WaitTimeSeconds=0,
        ).get("Messages", [])

    async def _invoke(self, messages: list[dict]) -> None:
        name = self._subscription.function.name
        started = time.monotonic()
        event = sqs_event(messages, self._subscription.queue.arn, self._region)
        try:
            try:
                await self._function.invoke(event, wait_for_slot=True)
            except InvocationError as exc:
                log.warning("%s: %d message(s) not handled (%s); SQS hands them over again after the "
                            "visibility timeout", name, len(messages), exc)
                return
            await asyncio.to_thread(self._client.delete_message_batch, QueueUrl=self._url, Entries=[
                {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(messages)
            ])
            log.info("function %s: %d message(s) from queue %s in %.0f ms", name, len(messages),
                     self._subscription.queue.name, (time.monotonic() - started) * 1000)
        except Exception:
            log.exception("%s: deleting %d handled message(s) failed", name, len(messages))
        finally:
            self._free += 1
            self._slots.release()


def local_urls(made: Mapping[str, tuple[str, str]], queues: Iterable[QueueDef]) -> dict[str, str]:
    """Declared queue URL → local queue URL."""
    return {queue.url: made[queue.arn][0] for queue in queues}
