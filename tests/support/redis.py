"""A Redis server for a test, on a free loopback port (`modstack.processes.redis_argv`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NoReturn

from modstack.processes import BackgroundProcess, MissingBinary, redis_argv
from modstack.waits import free_port, port_open


@contextmanager
def running_redis(folder: Path) -> Iterator[str]:
    """Redis keeping its files in `folder`; yields its "127.0.0.1:PORT", stopped at the end.
    MissingBinary (from redis_argv) says what to install."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    with BackgroundProcess(
        "redis-server",
        redis_argv(port, folder),
        folder / "redis.log",
        ready=lambda: port_open("127.0.0.1", port),
        timeout_s=15,
    ):
        yield f"127.0.0.1:{port}"


@contextmanager
def redis_or(folder: Path, missing: Callable[[str], NoReturn]) -> Iterator[str]:
    """`running_redis`, with a missing redis-server handed to `missing` (a test module's own
    answer: `pytest.skip` where Redis is optional, `pytest.fail` where it is the subject)."""
    with ExitStack() as servers:
        try:
            address = servers.enter_context(running_redis(folder))
        except MissingBinary as exc:
            missing(str(exc))
        yield address
