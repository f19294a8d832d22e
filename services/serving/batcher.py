"""Adaptive micro-batching for asyncio callers (the technique of Triton's dynamic batcher, Ray
Serve's `@serve.batch`, BentoML's adaptive batching), framework-free.

Callers `await batcher.submit(item)`. One collector task takes the first waiting item, then
gathers more until `max_batch` items are queued or the first one has waited `max_wait_s`, and
hands the batch to `handler` on one scoring thread. While that thread scores, the next batch
gathers, so under load batches fill up by themselves and a lone request waits at most
`max_wait_s` before it is scored.

`handler(items)` returns one result per item; an element may be an exception, which fails
only that item. When the handler raises for the whole batch, each item is scored alone, so one
bad row fails alone.

Load shedding: the batcher fits the cost of a batch as `fixed + per_row x rows` over the last
batches (a model call has a large fixed part, so the cost per row depends on the batch size); a
submit whose estimated wait (what is left of the batch being scored, then the queued rows ahead
of it in full batches, plus `max_wait_s`) exceeds `budget_s` is refused at once with
`Overloaded`, instead of queueing for seconds. A row with no row waiting ahead of it is never
shed: it is next whatever happens, so refusing it shortens no one's wait, and a stale estimate
(one slow batch on a busy machine) cannot lock light traffic out.

Hand-written: Ray Serve and BentoML bring their own servers and process models; the batching
loop itself is ~100 lines and needs nothing but asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Weight of the newest batch in the moving average of the per-row cost.
_EWMA_ALPHA = 0.2
# Batches the cost fit looks back over.
_COST_WINDOW = 64


class BatchCost:
    """`seconds ~ fixed + per_row x rows`, least squares over the last batches.

    With one batch size only seen so far (no spread to fit a slope), all the cost is taken as
    per row: pessimistic for larger batches, which is the safe side for shedding.
    """

    def __init__(self, initial_row_cost_s: float) -> None:
        self.fixed_s = 0.0
        self.per_row_s = initial_row_cost_s
        self._samples: deque[tuple[int, float]] = deque(maxlen=_COST_WINDOW)

    def add(self, rows: int, seconds: float) -> None:
        self._samples.append((rows, seconds))
        n = len(self._samples)
        mean_x = sum(r for r, _ in self._samples) / n
        mean_y = sum(s for _, s in self._samples) / n
        var_x = sum((r - mean_x) ** 2 for r, _ in self._samples)
        if var_x < 1e-9:
            self.fixed_s, self.per_row_s = 0.0, mean_y / mean_x
            return
        slope = sum((r - mean_x) * (s - mean_y) for r, s in self._samples) / var_x
        slope = max(slope, 0.0)
        fixed = max(mean_y - slope * mean_x, 0.0)
        if slope == 0.0 and fixed == 0.0:
            slope = mean_y / mean_x
        self.fixed_s, self.per_row_s = fixed, slope

    def seconds(self, rows: int) -> float:
        """Predicted time to score a batch of `rows`."""
        return self.fixed_s + self.per_row_s * rows if rows > 0 else 0.0


class Overloaded(RuntimeError):
    """The queue is longer than can be answered within the latency budget."""

    def __init__(self, estimated_wait_s: float, budget_s: float) -> None:
        super().__init__(
            f"overloaded: estimated wait {estimated_wait_s * 1000:.0f} ms "
            f"exceeds the {budget_s * 1000:.0f} ms budget"
        )
        self.estimated_wait_s = estimated_wait_s
        # a client that backs off for about one queue's worth of work finds it drained
        self.retry_after_s = max(1, round(estimated_wait_s))


@dataclass
class BatcherStats:
    """Counters for metrics and tests."""

    batches: int = 0
    rows: int = 0
    fallbacks: int = 0  # batches that raised and were re-scored row by row
    shed: int = 0
    sizes: list[int] = field(default_factory=list)  # last batch sizes (bounded)


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued: float


class MicroBatcher(Generic[T, R]):
    """Batches concurrent `submit` calls into `handler` calls.

    Args:
        handler: scores a list of items; returns one result (or exception) per item. Runs on
            the batcher's own thread, so it may block (Feast read, model call).
        max_batch: most items per handler call.
        max_wait_s: longest an item waits for others before its batch is dispatched.
        budget_s: latency budget for shedding; 0 switches shedding off.
        initial_row_cost_s: the per-row cost assumed before the first batch is measured.
        on_batch: called with (rows, seconds) after every batch (metrics).
    """

    def __init__(
        self,
        handler: Callable[[list[T]], Sequence[R | BaseException]],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        budget_s: float = 0.0,
        initial_row_cost_s: float = 0.002,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.handler = handler
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.budget_s = budget_s
        self.row_cost_s = initial_row_cost_s  # moving average, for /healthz
        self.cost = BatchCost(initial_row_cost_s)
        self.on_batch = on_batch
        self.stats = BatcherStats()
        self._queue: deque[_Pending[T, R]] = deque()
        self._in_flight = 0
        self._in_flight_started = 0.0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._name = name

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the collector on the running loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name=self._name)

    async def stop(self) -> None:
        """Stop collecting; waiting items fail with CancelledError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- submitting -------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Rows queued or being scored."""
        return len(self._queue) + self._in_flight

    def estimated_wait_s(self) -> float:
        """How long a row submitted now would wait for its answer: what is left of the batch in
        flight, the queue ahead of it in full batches, its own batch."""
        full, rest = divmod(len(self._queue) + 1, self.max_batch)
        in_flight_left = 0.0
        if self._in_flight:
            elapsed = time.perf_counter() - self._in_flight_started
            in_flight_left = max(self.cost.seconds(self._in_flight) - elapsed, 0.0)
        return (
            in_flight_left
            + full * self.cost.seconds(self.max_batch)
            + self.cost.seconds(rest)
            + self.max_wait_s
        )

    def submit_nowait(self, item: T, shed: bool = True) -> asyncio.Future[R]:
        """Queue one item; the returned future resolves to its result.

        Raises:
            Overloaded: `shed` and the estimated wait exceeds the budget.
        """
        if self._arrived is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        # Shed only behind waiting rows: the next row in line gains nothing from a refusal, and
        # the cost estimate only moves when rows are scored, so one slow batch (a cold first
        # call, a busy machine) would otherwise refuse light traffic.
        if shed and self.budget_s > 0 and self._queue:
            wait = self.estimated_wait_s()
            if wait > self.budget_s:
                self.stats.shed += 1
                raise Overloaded(wait, self.budget_s)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Pending(item, future, loop.time()))
        self._arrived.set()
        return future

    async def submit(self, item: T, shed: bool = True) -> R:
        """Queue one item and wait for its result (raises what the handler raised for it)."""
        return await self.submit_nowait(item, shed)

    # -- the collector ----------------------------------------------------------------------

    async def _collect(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._queue[0].enqueued + self.max_wait_s
            while len(self._queue) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            count = min(self.max_batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            batch = [p for p in batch if not p.future.done()]  # caller gone (cancelled)
            if batch:
                await self._dispatch(loop, batch)

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[T, R]]) -> None:
        items = [p.item for p in batch]
        self._in_flight = len(items)
        started = self._in_flight_started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._score, items)
        except BaseException as exc:  # the executor itself failed (shutdown): fail the batch
            results = [exc] * len(items)
        finally:
            self._in_flight = 0
        seconds = time.perf_counter() - started
        self.row_cost_s += _EWMA_ALPHA * (seconds / len(items) - self.row_cost_s)
        self.cost.add(len(items), seconds)
        self.stats.batches += 1
        self.stats.rows += len(items)
        self.stats.sizes = [*self.stats.sizes[-99:], len(items)]
        if self.on_batch is not None:
            self.on_batch(len(items), seconds)
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    def _score(self, items: list[T]) -> list[R | BaseException]:
        """The handler on the whole batch; row by row when the batch call raises."""
        try:
            results = list(self.handler(items))
            if len(results) != len(items):
                raise RuntimeError(
                    f"batch handler returned {len(results)} results for {len(items)} items"
                )
            return results
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            self.stats.fallbacks += 1
        out: list[R | BaseException] = []
        for item in items:
            try:
                out.extend(self.handler([item])[:1])
            except Exception as exc:
                out.append(exc)
        return out
