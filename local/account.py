"""The account's request quota, as local mode's management API enforces it:
a token bucket of ``rate`` requests a second with a burst of ``burst``.

API Gateway throttles every request of an account and Region, the
management API's posts included, with a token bucket (10,000 a second, burst
5,000 by default: ``DEFAULT_RATE``, ``DEFAULT_BURST``); a request beyond it
gets 429 ``LimitExceededException``. Local mode answers its management API
the same way, so a fan-out that is not paced draws 429s here as on AWS, and
counts the requests it took by second of the clock, so a test can read how
many came in each second.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Callable

#: API Gateway's default account quota, per account and Region, across HTTP,
#: REST and WebSocket APIs and WebSocket callback APIs: steady requests a
#: second and the token bucket's capacity (docs.aws.amazon.com/apigateway/
#: latest/developerguide/limits.html, "API Gateway account-level quotas, per
#: Region", read 2026-12-08; 2,500 and 1,250 in thirteen Regions).
DEFAULT_RATE = 10_000
DEFAULT_BURST = 5_000


class AccountQuota:
    """A token bucket of ``rate`` tokens a second holding at most ``burst``
    (full at the start). ``clock`` gives seconds (epoch seconds, so the
    counts' seconds are the budget rows')."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: float | None = None,
                 clock: Callable[[], float] = time.time):
        if rate <= 0:
            raise ValueError(f"the account quota must be above 0 requests a second, not {rate}")
        self.rate = rate
        self.burst = max(1.0, rate / 2 if burst is None else burst)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        #: requests taken, by second of the clock (epoch seconds)
        self.taken: Counter[int] = Counter()
        #: requests refused with 429
        self.refused = 0

    def take(self) -> bool:
        """Whether one request may go now (it is counted), or is throttled."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            self.refused += 1
            return False
        self._tokens -= 1
        self.taken[math.floor(now)] += 1
        return True
