"""Bounded polling for the demos, on `modstack.waits.wait_until` (tenacity).

`wait_until` counts every exception of the predicate as "not yet"; a demo retries only the
errors it names as transient (e.g. a service restarting) and fails at once on any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from modstack.waits import GiveUp, wait_until

T = TypeVar("T")


class _Failed(GiveUp):
    """Carries an error the demo does not retry out of `wait_until` at once."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def poll(
    step: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 1.0,
    transient: tuple[type[Exception], ...] = (),
) -> T:
    """Call `step` every `interval_s` until it returns something truthy, and return that.

    Errors of the `transient` types mean "not yet"; any other error propagates unchanged at
    once. Raises TimeoutError (from `wait_until`, naming `what`) after `timeout_s` seconds.
    """
    found: list[T] = []

    def attempt() -> bool:
        try:
            value = step()
        except transient:
            raise
        except Exception as exc:
            raise _Failed(exc) from exc
        if value:
            found.append(value)
        return bool(value)

    try:
        wait_until(attempt, timeout_s, what, interval_s=interval_s)
    except _Failed as failed:
        raise failed.error from None
    return found[-1]
