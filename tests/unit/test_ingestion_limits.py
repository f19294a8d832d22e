"""The per-client token bucket: bursts, refill, the wait it reports, clients apart."""

from __future__ import annotations

import pytest

from services.ingestion.limits import RateLimiter, retry_after_header
from tests.support.clock import ManualClock


def test_a_burst_then_the_rate_with_the_exact_wait() -> None:
    clock = ManualClock(100.0)
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # another client has its own bucket


def test_rate_zero_turns_the_limit_off_and_retry_after_is_whole_seconds() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.acquire("a") == 0.0 for _ in range(1000))
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"
