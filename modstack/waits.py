"""Small helpers for tests and start-up checks: free loopback ports and bounded waits."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar, cast

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

T = TypeVar("T")


class GiveUp(Exception):
    """Raised by a `wait_until` predicate to stop waiting at once (e.g. the process exited)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _not_yet(value: object) -> bool:
    return not value


def _probe_failed(retry_on: tuple[type[Exception], ...]) -> Callable[[BaseException], bool]:
    # a failure of the probe of a `retry_on` type means "not ready yet" (a starting server
    # refuses connections); GiveUp and every other error end the wait at once
    def failed(exc: BaseException) -> bool:
        return isinstance(exc, retry_on) and not isinstance(exc, GiveUp)

    return failed


def wait_until(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.1,
    detail: Callable[[], str] | None = None,
    retry_on: tuple[type[Exception], ...] = (Exception,),
) -> T:
    """Poll `predicate` until it returns a truthy value, at most `timeout_s` seconds, and
    return that value (e.g. the status document a caller waited for).

    Exceptions of the `retry_on` types (default: any) count as "not yet"; any other, and
    `GiveUp`, which a predicate raises to end the wait at once, propagate unchanged. Raises
    TimeoutError naming `what` (e.g. "MLflow at http://127.0.0.1:5123/health"), the last
    exception seen, and `detail()` (e.g. the tail of the process log) when given.
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry=retry_if_result(_not_yet) | retry_if_exception(_probe_failed(retry_on)),
    )
    try:
        answer = retrying(predicate)
    except RetryError as exc:
        error = exc.last_attempt.exception()  # None when the predicate just said "not yet"
        raise TimeoutError(_timeout_message(error, timeout_s, what, detail)) from None
    # a falsy answer (None included) is retried, never returned
    return cast(T, answer)


def _timeout_message(
    error: BaseException | None, timeout_s: float, what: str, detail: Callable[[], str] | None
) -> str:
    message = f"{what} did not come up within {timeout_s:g} s"
    if error is not None:
        message += f" (last error: {type(error).__name__}: {error})"
    if detail is not None:
        extra = detail()
        if extra:
            message += f"\n{extra}"
    return message
