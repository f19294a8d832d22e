"""`wait_until` hands back what the predicate answered, so a caller waiting for a document
(a status, a health answer) need not fetch it again."""

from __future__ import annotations

import itertools

import httpx
import pytest

from modstack.waits import wait_until


def test_wait_until_returns_the_first_truthy_answer() -> None:
    answers = itertools.chain([None, {}, ConnectionError("starting")], itertools.repeat({"ok": 1}))

    def probe() -> dict[str, int] | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(probe, 5, "the probe", interval_s=0.01) == {"ok": 1}


def test_wait_until_times_out_with_the_last_error() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nobody listens")

    with pytest.raises(TimeoutError, match=r"the probe did not come up within 0.1 s .*nobody"):
        wait_until(refused, 0.1, "the probe", interval_s=0.02)


def test_wait_until_retries_only_the_errors_named_transient() -> None:
    calls = itertools.count()

    def flaky() -> str:
        if next(calls) < 2:
            raise httpx.ConnectError("starting")
        return "up"

    assert wait_until(flaky, 5, "serving", interval_s=0.01, retry_on=(httpx.HTTPError,)) == "up"

    def broken() -> str:
        next(calls)
        raise KeyError("status")

    before = next(calls)
    with pytest.raises(KeyError):
        wait_until(broken, 5, "serving", interval_s=0.01, retry_on=(httpx.HTTPError,))
    assert next(calls) == before + 2  # one attempt, no retry
