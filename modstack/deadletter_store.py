"""Dead letters on disk: the durable, erasable and expiring copy of what `deadletter.v1` gets.

The topic `deadletter.v1` is for alerting and replay tooling and is bounded by the broker's
retention; this is the copy an operator inspects, and the one `modstack forget` erases (by the
record key, which is the sender_id on messages.v1 and labels.v1).

Layout: one SQLite file, `{DATA_DIR}/deadletters/deadletters.sqlite3`, table `deadletters`.
Every operation opens its own connection and closes it before returning.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modstack.events import DeadLetter

DEADLETTER_DIRNAME = "deadletters"
DEADLETTER_FILENAME = "deadletters.sqlite3"


class DeadLetterStore:
    """Dead letters on disk (SQLite under `{data_dir}/deadletters/`), erasable and expiring."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DEADLETTER_DIRNAME / DEADLETTER_FILENAME

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection to the (created if need be) table: one transaction, committed when
        the block ends without an error, rolled back otherwise, and closed either way."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=10)) as connection, connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS deadletters (id INTEGER PRIMARY KEY, "
                "failed_at TEXT, source_topic TEXT, key TEXT, error TEXT, letter TEXT)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS deadletters_key ON deadletters(key)")
            yield connection

    def add(self, letters: Sequence[DeadLetter]) -> None:
        """Store letters durably (one transaction)."""
        if not letters:
            return
        with self._transaction() as connection:
            connection.executemany(
                "INSERT INTO deadletters (failed_at, source_topic, key, error, letter) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        d.failed_at.astimezone(UTC).isoformat(),
                        d.source_topic,
                        d.key,
                        d.error,
                        d.model_dump_json(),
                    )
                    for d in letters
                ],
            )

    def read(self, key: str | None = None) -> list[DeadLetter]:
        """Stored letters (all, or those of one record key), oldest first."""
        if not self.path.exists():
            return []
        with self._transaction() as connection:
            query = "SELECT letter FROM deadletters"
            rows = connection.execute(
                query + (" WHERE key = ? ORDER BY id" if key is not None else " ORDER BY id"),
                (key,) if key is not None else (),
            ).fetchall()
        return [DeadLetter.model_validate(json.loads(row[0])) for row in rows]

    def expire(self, retention_days: int, now: datetime | None = None) -> int:
        """Delete letters older than `retention_days` (0 keeps all); returns how many."""
        if retention_days <= 0 or not self.path.exists():
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        with self._transaction() as connection:
            cursor = connection.execute(
                "DELETE FROM deadletters WHERE failed_at < ?", (cutoff.isoformat(),)
            )
            return cursor.rowcount

    def erase_sender(self, sender_id: str) -> int:
        """Delete the letters whose record key is `sender_id`; returns how many."""
        if not self.path.exists():
            return 0
        with self._transaction() as connection:
            erased = connection.execute(
                "DELETE FROM deadletters WHERE key = ?", (sender_id,)
            ).rowcount
        # VACUUM (outside any transaction) so erased rows do not linger in free pages
        with closing(sqlite3.connect(self.path, timeout=10)) as connection:
            connection.execute("VACUUM")
        return erased
