"""The account budget: every post takes its place in ``postsPerSecond`` posts
a second, shared by every function through rows of the table.

API Gateway's request quota is the account's, per Region, and the management
API's posts count against it: a fan-out that ignored it would draw 429s and,
once its attempts were spent, lose posts. So each tenth of a second of the
clock (a *slot*, ``spec.BUDGET_SLOTS_PER_SECOND``) has its share of the
second's budget and a counter, an attribute of the second's row in the table.
A function that wants to post adds what it wants to the current slot's counter
with one UpdateItem (``ADD``, which never conflicts) and reads back the total:
the part of its request that still fits in the slot's share is granted, to be
started within the slot, and the rest waits for the next slot.

A request that does not fit still counts, so a counter may read more than its
share; it only ever over-counts (as does a retried UpdateItem whose answer was
lost), so the posts started in any slot never exceed its share, nor those in
any second of the clock the budget. Rows expire a minute after their second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import spec


@dataclass(frozen=True)
class Grant:
    """What one request to the budget gave: ``posts`` to start from
    ``start`` and before ``until`` (``time.time()`` seconds: the slot's
    bounds), 0 when the slot's share is spent; ask again from ``until``."""

    posts: int
    start: float
    until: float


def share(posts_per_second: int, slot: int) -> int:
    """Slot ``slot``'s share of the second's budget: the slots of one second
    share ``posts_per_second`` exactly, as evenly as whole posts allow."""
    slots = spec.BUDGET_SLOTS_PER_SECOND
    index = slot % slots
    return (posts_per_second * (index + 1)) // slots - (posts_per_second * index) // slots


class PostBudget:
    """The budget of ``posts_per_second`` posts a second in ``table_name``,
    through ``client`` (a DynamoDB client with boto3's ``update_item``).
    ``clock`` gives epoch seconds, as the row keys are."""

    def __init__(self, client: Any, table_name: str, posts_per_second: int,
                 clock: Callable[[], float] = time.time):
        if posts_per_second < 1:
            raise ValueError(f"posts_per_second must be at least 1, not {posts_per_second}")
        self._client = client
        self._table = table_name
        self.posts_per_second = posts_per_second
        self._clock = clock

    def take(self, wanted: int, ahead: bool = False) -> Grant:
        """Ask for ``wanted`` posts in the current slot, or with ``ahead`` in
        the next one (asked for before it starts, so that places are held
        when it does): one UpdateItem (none in a slot whose share is 0, when
        the budget is under ten a second)."""
        slots = spec.BUDGET_SLOTS_PER_SECOND
        slot = math.floor(self._clock() * slots) + (1 if ahead else 0)
        start, until = slot / slots, (slot + 1) / slots
        available = share(self.posts_per_second, slot)
        if available == 0:
            return Grant(0, start, until)
        second, index = divmod(slot, slots)
        key = spec.BUDGET_PREFIX + str(second)
        counter = f"{spec.BUDGET_TAKEN}{index}"
        answer = self._client.update_item(
            TableName=self._table,
            Key={spec.CONNECTION_ID: {"S": key}, spec.CHANNEL_ID: {"S": key}},
            UpdateExpression="ADD #t :n SET #e = if_not_exists(#e, :e)",
            ExpressionAttributeNames={"#t": counter, "#e": spec.EXPIRES_AT},
            ExpressionAttributeValues={":n": {"N": str(wanted)}, ":e": {"N": str(second + spec.BUDGET_ROW_SECONDS)}},
            ReturnValues="UPDATED_NEW",
        )
        before = int(answer["Attributes"][counter]["N"]) - wanted
        return Grant(posts=max(0, min(wanted, available - before)), start=start, until=until)
