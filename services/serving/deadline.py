"""Calls that must answer within a deadline, for a dependency that may hang (the online store).

Hand-written rather than a circuit-breaker library: what serving needs is one worker thread, a
deadline per call, and no queueing behind a call that missed it (a dozen lines); the libraries
on PyPI count failures over windows and would still need this executor around a blocking call.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")


class NotAnswering(RuntimeError):
    """The dependency did not answer within the deadline, or still has not since."""


class DeadlineCaller:
    """Runs calls on one worker thread and waits at most `timeout_s` for each.

    A call that misses its deadline keeps running on the worker (a blocking client cannot be
    interrupted); until it returns, every further call raises NotAnswering at once instead of
    queueing behind it. The first call after it returns reaches the dependency again.
    """

    def __init__(self, timeout_s: float, name: str) -> None:
        self.timeout_s = timeout_s
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._unanswered: Future[Any] | None = None

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)`'s result, or NotAnswering after the deadline."""
        if self._unanswered is not None:
            if not self._unanswered.done():
                raise NotAnswering(
                    f"an earlier call is still unanswered after its {self.timeout_s:g} s deadline"
                )
            self._unanswered = None
        future = self._worker.submit(function, *args)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            self._unanswered = future
            raise NotAnswering(f"no answer within {self.timeout_s:g} s") from None
