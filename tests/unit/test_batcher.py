"""The micro-batcher (services/serving/batcher.py) on a real event loop: batches fill under
concurrency, a lone item waits at most max_wait, a bad row fails alone, overload is shed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.serving.batcher import MicroBatcher, Overloaded


class Recorder:
    """A handler that doubles numbers, refuses negatives for the whole batch, and records
    every call's size."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.sleep_s = sleep_s

    def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.calls.append(list(items))
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if any(i < 0 for i in items):
            raise ValueError(f"negative item in {items}")
        return [ValueError("seven") if i == 1007 else i * 2 for i in items]


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@asynccontextmanager
async def _running(handler: Recorder, **options: Any) -> AsyncIterator[MicroBatcher[int, int]]:
    """A started batcher around `handler`, stopped when the block ends."""
    batcher: MicroBatcher[int, int] = MicroBatcher(handler, **options)
    batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()


def _submit_all(
    handler: Recorder, items: Iterable[int], return_exceptions: bool = False, **options: Any
) -> list[Any]:
    """The answers to `items` submitted at once to a batcher around `handler`."""

    async def main() -> list[Any]:
        async with _running(handler, **options) as batcher:
            submits = (batcher.submit(i) for i in items)
            return await asyncio.gather(*submits, return_exceptions=return_exceptions)

    return _run(main())


def test_concurrent_submits_share_one_handler_call_and_each_gets_its_answer() -> None:
    handler = Recorder()
    answers = _submit_all(handler, range(20), max_batch=32, max_wait_s=0.05)
    assert answers == [i * 2 for i in range(20)]
    assert len(handler.calls) == 1
    assert sorted(handler.calls[0]) == list(range(20))


def test_batches_never_exceed_max_batch() -> None:
    handler = Recorder()
    answers = _submit_all(handler, range(30), max_batch=8, max_wait_s=0.05)
    assert answers == [i * 2 for i in range(30)]
    assert [len(c) for c in handler.calls] == [8, 8, 8, 6]


def test_a_lone_item_is_held_at_most_max_wait() -> None:
    handler = Recorder()
    max_wait = 0.02

    async def main() -> float:
        async with _running(handler, max_batch=32, max_wait_s=max_wait) as batcher:
            started = time.perf_counter()
            assert await batcher.submit(3) == 6
            return time.perf_counter() - started

    waited = _run(main())
    assert max_wait * 0.9 <= waited < max_wait + 0.5  # bounded, with slack for a busy machine
    assert handler.calls == [[3]]


def test_an_item_error_fails_that_item_only() -> None:
    handler = Recorder()
    results = _submit_all(handler, (5, 1007, 9), True, max_batch=32, max_wait_s=0.02)
    assert results[0] == 10 and results[2] == 18
    assert isinstance(results[1], ValueError) and str(results[1]) == "seven"


def test_a_batch_that_raises_is_rescored_row_by_row() -> None:
    handler = Recorder()

    async def main() -> tuple[list[object], int]:
        async with _running(handler, max_batch=32, max_wait_s=0.02) as batcher:
            out = await asyncio.gather(
                *(batcher.submit(i) for i in (1, -1, 2)), return_exceptions=True
            )
            return out, batcher.stats.fallbacks

    results, fallbacks = _run(main())
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], ValueError) and "negative" in str(results[1])
    assert fallbacks == 1
    assert sorted(handler.calls[0]) == [-1, 1, 2]  # the batch first, then each row alone
    assert sorted(map(tuple, handler.calls[1:])) == [(-1,), (1,), (2,)]


def test_a_queue_beyond_the_budget_is_shed_at_once() -> None:
    handler = Recorder(sleep_s=0.05)  # 50 ms per batch of up to 4 rows: ~12 ms per row

    async def main() -> tuple[int, int, float]:
        async with _running(
            handler, max_batch=4, max_wait_s=0.001, budget_s=0.1, initial_row_cost_s=0.0125
        ) as batcher:
            started = time.perf_counter()
            results = await asyncio.gather(
                *(batcher.submit(i) for i in range(40)), return_exceptions=True
            )
            elapsed = time.perf_counter() - started
            shed = [r for r in results if isinstance(r, Overloaded)]
            assert all(r.retry_after_s >= 1 for r in shed)
            ok = [r for r in results if isinstance(r, int)]
            return len(ok), len(shed), elapsed

    ok, shed, elapsed = _run(main())
    assert ok + shed == 40
    # (depth + 1) x 12.5 ms + 1 ms <= 100 ms admits 7 rows; the rest are refused, not queued
    assert 1 <= ok <= 10 and shed >= 30
    assert elapsed < 1.0  # 40 rows queued would take ~0.5 s; the admitted ones ~0.1 s


def test_shedding_can_be_bypassed_for_items_that_must_not_be_refused() -> None:
    handler = Recorder()

    async def main() -> list[int]:
        async with _running(
            handler, max_batch=4, max_wait_s=0.001, budget_s=0.001, initial_row_cost_s=1.0
        ) as batcher:
            first = batcher.submit_nowait(0)  # an empty queue is never refused
            with pytest.raises(Overloaded):
                await batcher.submit(1)
            rest = await asyncio.gather(*(batcher.submit(i, shed=False) for i in range(1, 3)))
            return [await first, *rest]

    assert _run(main()) == [0, 2, 4]


def test_the_next_row_in_line_is_not_shed_behind_a_slow_batch() -> None:
    """Light traffic on a busy machine: one slow batch in flight, nothing waiting. The row
    that arrives is next whatever happens, so it is queued, not refused; a row behind it is
    refused."""
    handler = Recorder(sleep_s=0.3)

    async def main() -> tuple[list[int], bool]:
        async with _running(
            handler, max_batch=4, max_wait_s=0.001, budget_s=0.1, initial_row_cost_s=0.3
        ) as batcher:
            first = batcher.submit_nowait(1)
            while batcher._in_flight == 0:  # the first row is being scored
                await asyncio.sleep(0.001)
            second = batcher.submit_nowait(2)  # nothing waits ahead of it
            with pytest.raises(Overloaded):
                batcher.submit_nowait(3)  # the second row waits ahead of it
            return [await first, await second], batcher.stats.shed == 1

    assert _run(main()) == ([2, 4], True)


def test_the_cost_fit_separates_the_fixed_part_from_the_per_row_part() -> None:
    from services.serving.batcher import BatchCost

    cost = BatchCost(initial_row_cost_s=0.01)
    for rows in (1, 4, 16, 32, 8, 2):
        cost.add(rows, 0.030 + 0.002 * rows)
    assert cost.fixed_s == pytest.approx(0.030)
    assert cost.per_row_s == pytest.approx(0.002)
    assert cost.seconds(10) == pytest.approx(0.050)
    assert cost.seconds(0) == 0.0
