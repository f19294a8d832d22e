"""Server CPU as psutil sees it: which processes hold a listening port, and the CPU seconds
of their process trees (used by `python -m loadtests.bench.serving` and the loadtest)."""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    """The process and all its children; [] when it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def process_tree_cpu(pids: Iterable[int]) -> float:
    """User + system CPU seconds of these processes and all their children."""
    seen: set[int] = set()
    total = 0.0
    for pid in pids:
        for proc in _tree(pid):
            if proc.pid not in seen:
                seen.add(proc.pid)
                total += _cpu_seconds(proc)
    return total


def _listens_on(proc: psutil.Process, port: int) -> bool:
    try:
        connections = proc.net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections
    )


def listening_pids(port: int) -> list[int]:
    """Every process holding a listening socket on `port`: the server, its supervisor and
    its workers (uvicorn's workers inherit the supervisor's socket). `psutil.net_connections`
    names one process per socket, which would leave the other workers' CPU uncounted."""
    return sorted(proc.pid for proc in psutil.process_iter() if _listens_on(proc, port))


def worker_count(pids: list[int]) -> int:
    """How many of the socket's holders answer requests: the children of a holding
    supervisor (uvicorn --workers N), or the one process when there is no supervisor."""
    held = set(pids)
    children = 0
    for pid in pids:
        try:
            children += psutil.Process(pid).ppid() in held
        except psutil.NoSuchProcess:
            continue
    return children or len(held)
