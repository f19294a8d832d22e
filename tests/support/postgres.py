"""A real PostgreSQL for tests, as a plain process: Debian's binaries (/usr/lib/postgresql/<n>/bin,
not on PATH), `initdb` into a fresh temporary directory and `pg_ctl start` on a free loopback
port, run as an unprivileged user (PostgreSQL refuses to run as root), stopped at the end.

    with running_postgres() as url:   # postgresql+psycopg2://review@127.0.0.1:PORT/postgres
        ...

Every step is bounded; a failure says which step and shows the server log's tail.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modstack.processes import MissingBinary, log_tail, postgres_bin, postgres_user
from modstack.waits import free_port

STEP_TIMEOUT_S = 60.0
DB_USER = "review"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed or would not start; the message says what to do."""


def _installed() -> tuple[Path, str | None]:
    """The PostgreSQL bin directory and the user to run it as (`modstack.processes`, which the
    scale profile uses too); PostgresUnavailable says what to install."""
    try:
        return postgres_bin(), postgres_user()
    except MissingBinary as exc:
        raise PostgresUnavailable(str(exc)) from exc


def _argv(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _step(what: str, argv: list[str], log: Path | None = None) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PostgresUnavailable(f"{what} took over {STEP_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = log_tail(log) if log else ""
        raise PostgresUnavailable(
            f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}\n{tail}"
        )


@contextmanager
def running_postgres(db_user: str = DB_USER) -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free loopback port (trust auth, loopback only) whose
    superuser is `db_user`; yields its SQLAlchemy URL and removes everything at the end."""
    bin_dir, user = _installed()
    # not under pytest's tmp dir: its parents are private to root, the server user must enter
    root = Path(tempfile.mkdtemp(prefix="modstack-pg-"))
    data, log = root / "data", root / "server.log"
    port = free_port()
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    started = False
    try:
        _step(
            "initdb",
            _argv(
                user,
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    db_user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
            ),
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
        _step("pg_ctl start", _argv(user, [*start, "-w", "-t", "30", "start"]), log)
        started = True
        yield f"postgresql+psycopg2://{db_user}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30"]
            subprocess.run(
                _argv(user, [*stop, "stop"]),
                capture_output=True,
                timeout=STEP_TIMEOUT_S,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


_fresh_databases = itertools.count()


def fresh_database(server_url: str, prefix: str) -> str:
    """A new, empty database `<prefix>_<n>` on the server at `server_url`; its URL."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    server = make_url(server_url)
    name = f"{prefix}_{next(_fresh_databases)}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.set(database=name).render_as_string(hide_password=False)
