"""Per-token token buckets held in the cell's memory.

Each API token gets `burst` requests at once and `rate` more per second. The buckets are per process:
with N API processes a token's effective limit is N times higher, which is acceptable for abuse
protection (a shared limit would need NATS KV or the database on every request).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        # LRU order so that memory stays bounded however many tokens are seen.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one request for `key`: 0.0 if allowed, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        self._buckets[key] = bucket
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after_header(wait: float) -> str:
    # Retry-After takes whole seconds; rounding up keeps an obedient client from being refused again.
    return str(max(1, math.ceil(wait)))
