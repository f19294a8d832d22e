"""serving's DeadlineCaller: a hung dependency costs one deadline, then nothing, till it answers."""

from __future__ import annotations

import threading
import time

import pytest

from services.serving.deadline import DeadlineCaller, NotAnswering


def test_an_answer_within_the_deadline_is_returned() -> None:
    caller = DeadlineCaller(1.0, "t")
    assert caller.call(lambda a, b: a + b, 2, 3) == 5


def test_errors_of_the_call_reach_the_caller() -> None:
    caller = DeadlineCaller(1.0, "t")

    def broken() -> None:
        raise ValueError("store file corrupt")

    with pytest.raises(ValueError, match="corrupt"):
        caller.call(broken)


def test_a_hung_call_costs_one_deadline_and_the_next_calls_do_not_wait() -> None:
    caller = DeadlineCaller(0.05, "t")
    hung = threading.Event()
    started = time.perf_counter()
    with pytest.raises(NotAnswering, match=r"no answer within 0\.05 s"):
        caller.call(hung.wait)
    assert 0.04 <= time.perf_counter() - started < 1.0
    # still hung: refused at once, and nothing queued behind the hung call
    started = time.perf_counter()
    for _ in range(20):
        with pytest.raises(NotAnswering, match="still unanswered"):
            caller.call(lambda: "never run")
    assert time.perf_counter() - started < 0.05
    hung.set()  # the dependency answers again
    deadline = time.monotonic() + 2
    while True:
        try:
            assert caller.call(lambda: "read again") == "read again"
            break
        except NotAnswering:
            assert time.monotonic() < deadline, "the caller never recovered"
            time.sleep(0.01)
