"""Dead letters kept for inspection: the durable, erasable and expiring copy of `deadletter.v1`.

The topic `deadletter.v1` is for alerting and replay tooling and is bounded by the broker's
retention; this is the copy an operator inspects, and the one `modstack forget` erases (by the
record key, which is the sender_id on messages.v1 and labels.v1).

Where (SQLAlchemy Core, one table `deadletters`):

- by default one SQLite file, `{DATA_DIR}/deadletters/deadletters.sqlite3`. Every operation
  opens its own connection and closes it before returning; reading, expiring or erasing
  creates no file when there is none;
- with `DEADLETTER_DATABASE_URL` (a SQLAlchemy URL; PostgreSQL in compose, k8s and the scale
  profile, the message log's database) a table every processor replica and `modstack forget`
  reach, so no letter is kept on a pod's disk. Same methods, same results.

`failed_at` is ISO 8601 UTC text in SQLite (the layout of the files written before, which keep
working; in UTC text order is time order) and a `timestamptz` elsewhere (PostgreSQL orders
text by its collation).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from modstack.events import DeadLetter
from modstack.settings import CommonSettings
from modstack.sql import create_tables, engine_for

if TYPE_CHECKING:
    import sqlalchemy as sa

DEADLETTER_DIRNAME = "deadletters"
DEADLETTER_FILENAME = "deadletters.sqlite3"
TABLE = "deadletters"


class DeadLetterSettings(CommonSettings):
    """Where dead letters live: empty = the SQLite file under DATA_DIR; else a SQLAlchemy URL."""

    deadletter_database_url: str = ""


class DeadLetterStore:
    """Dead letters in SQLite under `{data_dir}/deadletters/`, or in a database; erasable and
    expiring.

    `database_url`: None reads DEADLETTER_DATABASE_URL; "" means the file.
    """

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.path = Path(data_dir) / DEADLETTER_DIRNAME / DEADLETTER_FILENAME
        if database_url is None:
            database_url = DeadLetterSettings().deadletter_database_url
        self._in_file = not database_url
        self.url = database_url or f"sqlite:///{self.path}"
        self._table_ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        return f"DeadLetterStore({make_url(self.url).render_as_string(hide_password=True)})"

    def _absent(self) -> bool:
        """Nothing stored yet: the default file does not exist (a database always answers)."""
        return self._in_file and not self.path.exists()

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A connection to the (created if need be) table: one transaction, committed when
        the block ends without an error, rolled back otherwise, and closed either way."""
        engine = engine_for(self.url)
        self._create_table(engine)
        with engine.begin() as connection:
            yield connection

    def _create_table(self, engine: sa.Engine) -> None:
        if self._in_file:  # the file may have been removed since: check every time (cheap)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_tables(_table().metadata, engine)
            return
        with self._lock:
            if not self._table_ready:
                create_tables(_table().metadata, engine)
                self._table_ready = True

    def add(self, letters: Sequence[DeadLetter]) -> None:
        """Store letters durably (one transaction)."""
        if not letters:
            return
        engine = engine_for(self.url)
        rows = [
            {
                "failed_at": _time(engine, d.failed_at),
                "source_topic": d.source_topic,
                "key": d.key,
                "error": d.error,
                "letter": d.model_dump_json(),
            }
            for d in letters
        ]
        with self._transaction() as connection:
            connection.execute(_table().insert(), rows)

    def read(self, key: str | None = None) -> list[DeadLetter]:
        """Stored letters (all, or those of one record key), oldest first."""
        if self._absent():
            return []
        import sqlalchemy as sa

        table = _table()
        query = sa.select(table.c.letter).order_by(table.c.id)
        if key is not None:
            query = query.where(table.c.key == key)
        with self._transaction() as connection:
            letters = connection.execute(query).scalars().all()
        return [DeadLetter.model_validate(json.loads(letter)) for letter in letters]

    def expire(self, retention_days: int, now: datetime | None = None) -> int:
        """Delete letters older than `retention_days` (0 keeps all); returns how many."""
        if retention_days <= 0 or self._absent():
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        table = _table()
        older = table.c.failed_at < _time(engine_for(self.url), cutoff)
        with self._transaction() as connection:
            return connection.execute(table.delete().where(older)).rowcount

    def erase_sender(self, sender_id: str) -> int:
        """Delete the letters whose record key is `sender_id`; returns how many."""
        if self._absent():
            return 0
        table = _table()
        with self._transaction() as connection:
            erased = connection.execute(table.delete().where(table.c.key == sender_id)).rowcount
        # VACUUM (outside any transaction) so erased rows do not linger in free pages
        engine = engine_for(self.url)
        if engine.dialect.name in ("sqlite", "postgresql"):
            vacuum = "VACUUM" if engine.dialect.name == "sqlite" else f"VACUUM {TABLE}"
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql(vacuum)
        return erased


def _time(engine: sa.Engine, when: datetime) -> datetime | str:
    """A time as the `failed_at` column holds it: in SQLite the ISO 8601 UTC text the file has
    always held (UTC, so text order is time order), elsewhere the time itself."""
    when = when.astimezone(UTC)
    return when.isoformat() if engine.dialect.name == "sqlite" else when


@lru_cache(maxsize=1)
def _table() -> sa.Table:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    table = sa.Table(
        TABLE,
        metadata,
        # INTEGER PRIMARY KEY is SQLite's rowid; elsewhere a 64-bit identity
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        # ISO 8601 UTC text in SQLite (see `_time`), a timestamptz elsewhere
        sa.Column("failed_at", sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")),
        sa.Column("source_topic", sa.Text()),
        sa.Column("key", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("letter", sa.Text()),
    )
    sa.Index("deadletters_key", table.c.key)
    sa.Index("deadletters_failed_at", table.c.failed_at)
    return table
