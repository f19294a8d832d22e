"""Per-client rate limits: a token bucket per client, in this process.

Hand-written rather than a library (`limits`, `slowapi`): the bucket is ~20 lines, needs no
storage backend (limits are per process, like the recent-id index), and gives the exact time
until the next token, which is what `Retry-After` must say. With N replicas a client gets N
times the rate; a shared limit would need Redis, which the local stack does not run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Clients idle this long are forgotten, so anonymous callers cannot grow the table forever.
IDLE_FORGET_S = 600.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` requests per second per client, bursts up to `burst`; rate 0 turns it off."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def acquire(self, client: str) -> float:
        """Take a token for `client`: 0.0 when allowed, else seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            if now - self._last_sweep > IDLE_FORGET_S:
                self._sweep(now)
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for client in [c for c, b in self._buckets.items() if now - b.updated > IDLE_FORGET_S]:
            del self._buckets[client]


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` in whole seconds (the header has no fractions), at least 1."""
    return str(max(1, math.ceil(wait_s)))
