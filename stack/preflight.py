"""Checks before the stack starts: is each program's binary installed, is its port free
(and if not, which process holds it)."""

from __future__ import annotations

import socket
from collections.abc import Iterable

import psutil

from stack.programs import Program


def port_holder(port: int) -> str | None:
    """Who listens on a local TCP port: "pid 123 (tansu broker ...)", "an unknown process"
    when it cannot be told, or None when the port is free."""
    if not _port_in_use(port):
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return "another process (run as root or `ss -ltnp` to see which)"
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "another user's process"
            try:
                cmdline = " ".join(psutil.Process(conn.pid).cmdline())
            except psutil.Error:
                cmdline = "?"
            return f"pid {conn.pid} ({_shorten(cmdline)})"
    return "an unknown process"


def _port_in_use(port: int) -> bool:
    # bind is the real question ("can our server listen here?"); a connect would miss a
    # socket bound but not yet listening and would hang on a firewalled port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers themselves bind (uvicorn, Tansu): connections of a stopped stack that
        # linger in TIME_WAIT do not stop a new listener, so they must not count as "taken"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _shorten(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preflight(programs: Iterable[Program]) -> list[str]:
    """Problems that stop these programs from starting: missing binary, port taken.
    Empty when all can start."""
    problems = []
    for program in programs:
        if program.missing:
            problems.append(f"{program.name}: {program.missing}")
        if program.port:
            holder = port_holder(program.port)
            if holder:
                problems.append(
                    f"{program.name}: port {program.port} is already taken by {holder}; stop "
                    "it or set another port (see `.env.example`)"
                )
    return problems
