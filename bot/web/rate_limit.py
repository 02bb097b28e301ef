"""Token buckets for the webhooks, in this process's memory.

In memory rather than in PostgreSQL: a check is a dict lookup and some arithmetic, so the limit
costs the intake's hot path no round trip and no row lock, and a flood of refused requests never
reaches the database it protects. The price is that each web process keeps its own buckets, so with
N web processes behind a balancer a client gets up to N times the limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# With this many buckets, the one idle longest is dropped even though it has not refilled: its
# client gets a full bucket early. ~200 bytes a bucket: at most ~20 MB per limiter.
MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    at: float  # when `tokens` was last brought up to date


class RateLimiter:
    """`rate_per_minute` requests a minute per key, up to `burst` at once. A refused request takes
    no token. A bucket idle long enough to have refilled is forgotten: a new one is the same."""

    def __init__(self, rate_per_minute: float, burst: float, *, clock: Callable[[], float] = time.monotonic,
                 max_buckets: int = MAX_BUCKETS) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("a limiter needs a positive rate and a burst of at least 1")
        self._per_second = rate_per_minute / 60
        self._burst = float(burst)
        self._refill_seconds = self._burst / self._per_second  # from empty to full
        self._clock = clock
        self._max_buckets = max_buckets
        # Least recently used first: idle buckets are evicted from the front.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float | None:
        """Take a token for `key`: None if there was one, else the seconds until there will be."""
        now = self._clock()
        self._evict_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._per_second)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self._per_second

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict_idle(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.at < self._refill_seconds:
                return
            self._buckets.popitem(last=False)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; rounding down would send the client back too early."""
    return str(max(1, math.ceil(seconds)))
