"""Small helpers for tests and start-up checks: free loopback ports and bounded waits."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


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


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll `predicate` until it returns a truthy value, at most `timeout_s` seconds.

    A plain bounded loop instead of tenacity: the only policy needed is "fixed interval,
    hard deadline, one clear error", and exceptions from the predicate count as "not yet"
    (a server that is still starting refuses connections).

    A predicate raises `GiveUp` to end the wait at once (it propagates unchanged).
    Raises TimeoutError naming `what` (e.g. "MLflow at http://127.0.0.1:5123/health"), the
    last exception seen, and `detail()` (e.g. the tail of the process log) when given.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
            last_error = None
        except GiveUp:
            raise
        except Exception as exc:  # any failure of the probe means "not ready yet"
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    message = f"{what} did not come up within {timeout_s:g} s"
    if last_error is not None:
        message += f" (last error: {type(last_error).__name__}: {last_error})"
    if detail is not None:
        extra = detail()
        if extra:
            message += f"\n{extra}"
    raise TimeoutError(message)
