"""The moderator review queue: `review` decisions persisted in SQLite under
`{DATA_DIR}/review_queue`, listed oldest first, labelled once.

SQLite (WAL) rather than memory: the queue survives a serving restart, and several uvicorn
workers on one host share it. Replicas on different hosts would each keep their own file; a
multi-host deployment points DATA_DIR at shared storage or swaps this for a database table.

Items hold personal data (subject, the start of the body, the sender): `erase_sender` deletes
a sender's items and compacts the file (`modstack forget`).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from modstack.events import utcnow

REVIEW_DB_RELATIVE = Path("review_queue") / "review.sqlite3"


def review_db_path(data_dir: Path) -> Path:
    """The queue's SQLite file under a DATA_DIR (the one place that names it)."""
    return Path(data_dir) / REVIEW_DB_RELATIVE


_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_items (
    message_id    TEXT PRIMARY KEY,
    sender_id     TEXT NOT NULL,
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    sent_at       TEXT NOT NULL,
    score         REAL NOT NULL,
    model_version TEXT NOT NULL,
    variant       TEXT NOT NULL,
    enqueued_at   TEXT NOT NULL,
    label         TEXT,
    labeled_at    TEXT,
    labeled_by    TEXT
);
CREATE INDEX IF NOT EXISTS review_pending ON review_items (label, enqueued_at);
"""
# A moderator needs enough of the body to decide, not a 200 kB mail in every list response.
BODY_PREVIEW_CHARS = 4_000


@dataclass(frozen=True)
class ReviewItem:
    """One message waiting for (or having had) a moderator's decision."""

    message_id: str
    sender_id: str
    subject: str
    body: str
    sent_at: str
    score: float
    model_version: str
    variant: str
    enqueued_at: str
    label: str | None = None
    labeled_at: str | None = None
    labeled_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class AlreadyLabeled(ValueError):
    """The item has a label already; moderators label once."""


class ReviewQueue:
    """Thread-safe SQLite-backed queue (one connection, serialised by a lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupts the file
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)

    def add(
        self,
        *,
        message_id: str,
        sender_id: str,
        subject: str,
        body: str,
        sent_at: datetime,
        score: float,
        model_version: str,
        variant: str,
    ) -> bool:
        """Enqueue a message for review; False when it is queued already (a retried request)."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO review_items (message_id, sender_id, subject, body, "
                "sent_at, score, model_version, variant, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    sender_id,
                    subject,
                    body[:BODY_PREVIEW_CHARS],
                    sent_at.isoformat(),
                    score,
                    model_version,
                    variant,
                    utcnow().isoformat(),
                ),
            )
            return cursor.rowcount == 1

    def pending(self, limit: int = 100) -> list[ReviewItem]:
        """Unlabelled items, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM review_items WHERE label IS NULL ORDER BY enqueued_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [ReviewItem(**dict(row)) for row in rows]

    def pending_count(self) -> int:
        """How many items wait for a moderator."""
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM review_items WHERE label IS NULL"
                ).fetchone()[0]
            )

    def get(self, message_id: str) -> ReviewItem | None:
        """One item by message id."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM review_items WHERE message_id = ?", (message_id,)
            ).fetchone()
        return ReviewItem(**dict(row)) if row else None

    def mark_labeled(self, message_id: str, label: str, labeled_by: str) -> ReviewItem:
        """Record the moderator's label.

        Raises:
            KeyError: no such item.
            AlreadyLabeled: it was labelled before.
        """
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE review_items SET label = ?, labeled_at = ?, labeled_by = ? "
                "WHERE message_id = ? AND label IS NULL",
                (label, utcnow().isoformat(), labeled_by, message_id),
            )
            row = self._conn.execute(
                "SELECT * FROM review_items WHERE message_id = ?", (message_id,)
            ).fetchone()
        if row is None:
            raise KeyError(message_id)
        if cursor.rowcount == 0:
            raise AlreadyLabeled(f"message {message_id} is already labelled {row['label']!r}")
        return ReviewItem(**dict(row))

    def unmark(self, message_id: str) -> None:
        """Put an item back to pending (the label could not be published)."""
        with self._lock:
            self._conn.execute(
                "UPDATE review_items SET label = NULL, labeled_at = NULL, labeled_by = NULL "
                "WHERE message_id = ?",
                (message_id,),
            )

    def erase_sender(self, sender_id: str) -> int:
        """Delete every item of one sender (erasure); returns how many.

        Then VACUUM and fold the WAL back into the file, so no erased page lingers on disk.
        """
        with self._lock:
            gone = self._conn.execute(
                "DELETE FROM review_items WHERE sender_id = ?", (sender_id,)
            ).rowcount
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()


def erase_sender(path: Path, sender_id: str) -> int:
    """Erase a sender's items from the queue file at `path` (0 when there is no such file:
    nothing is created); returns how many. Safe while serving runs (SQLite locks the file)."""
    if not path.exists():
        return 0
    with closing(ReviewQueue(path)) as queue:
        return queue.erase_sender(sender_id)
