"""Erasure of one sender's personal data across the stores that hold it (`modstack forget`).

Stores (docs/privacy.md has the whole inventory):

- the message log (subjects, bodies, labels): `MessageLog.erase_sender` rewrites its files;
- dead letters on disk (raw bytes of refused records, keyed by sender): `DeadLetterStore`;
- the Feast offline parquet files and the SQLite online store (the sender's feature rows);
- serving's review queue (SQLite table `review_items`, column `sender_id`, defined by
  services/serving/review_queue.py; this module only deletes rows from it by that column).

The stores are passed in as paths so this module stays below `features` and `services` in the
layering; `stack.cli` resolves them from the settings. What is in flight is not here: the
broker's topics keep events until their retention (Tansu: until it restarts), and a running
processor keeps the sender's counts in memory until it restarts and rebuilds from the erased
log, so run `forget` with the processor stopped or restart it after.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modstack.message_log import DeadLetterStore, MessageLog

REVIEW_TABLE = "review_items"
FEAST_JOIN_KEY = "sender_id"


@dataclass
class Erased:
    """How many rows of the sender each store held (and no longer holds)."""

    sender_id: str
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows erased in all."""
        return sum(self.counts.values())


def forget_sender(
    sender_id: str,
    data_dir: Path,
    *,
    feast_dir: Path | None = None,
    feast_project: str = "moderation",
    review_db: Path | None = None,
) -> Erased:
    """Erase everything stored about `sender_id`; returns the counts per store."""
    erased = Erased(sender_id)
    for kind, count in MessageLog(data_dir).erase_sender(sender_id).items():
        erased.counts[f"message_log.{kind}"] = count
    erased.counts["deadletters"] = DeadLetterStore(data_dir).erase_key(sender_id)
    if feast_dir is not None:
        for path in sorted((feast_dir / "offline").glob("*.parquet")):
            erased.counts[f"feast.offline.{path.stem}"] = _erase_offline(path, sender_id)
        online = feast_dir / "online.db"
        if online.exists():
            erased.counts["feast.online"] = _erase_online_sqlite(online, sender_id, feast_project)
        else:
            erased.notes.append(f"no SQLite online store at {online} (Redis: not erased here)")
    if review_db is not None:
        erased.counts["review_queue"] = _erase_review(review_db, sender_id)
    return erased


def _erase_offline(path: Path, sender_id: str) -> int:
    # the same lock file features.store takes when it appends, so no push is lost
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = pq.read_table(path)
        if FEAST_JOIN_KEY not in table.column_names:
            return 0
        keep = pc.fill_null(pc.not_equal(table[FEAST_JOIN_KEY], pa.scalar(sender_id)), True)
        kept = table.filter(keep)
        gone = table.num_rows - kept.num_rows
        if gone:
            scratch = path.with_suffix(f".{os.getpid()}.erase.tmp")
            pq.write_table(kept, scratch)
            os.replace(scratch, path)
        return gone


def sender_entity_key(sender_id: str) -> bytes:
    """The sender's entity key as Feast stores it in the online store (serialization v3)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=[FEAST_JOIN_KEY], entity_values=[Value(string_val=sender_id)])
    return serialize_entity_key(key, entity_key_serialization_version=3)


def _delete_and_compact(
    connection: sqlite3.Connection, tables: list[str], column: str, value: object
) -> int:
    """Delete the rows whose `column` is `value` from `tables` in one transaction, then compact
    the file so the erased rows do not linger in free pages; the rows deleted."""
    gone = 0
    with connection:
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            gone += connection.execute(
                f"DELETE FROM {quoted} WHERE {column} = ?",
                (value,),
            ).rowcount
    connection.execute("VACUUM")
    # serving keeps the queue in WAL mode: fold the log back so no erased page lingers
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return gone


def _erase_online_sqlite(path: Path, sender_id: str, project: str) -> int:
    key = sender_entity_key(sender_id)
    connection = sqlite3.connect(path, timeout=30)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if row[0].startswith(f"{project}_")
        ]
        return _delete_and_compact(connection, tables, "entity_key", key)
    finally:
        connection.close()


def _erase_review(path: Path, sender_id: str) -> int:
    if not path.exists():
        return 0
    connection = sqlite3.connect(path, timeout=30)
    try:
        exists = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (REVIEW_TABLE,)
        ).fetchone()
        if not exists:
            return 0
        return _delete_and_compact(connection, [REVIEW_TABLE], "sender_id", sender_id)
    finally:
        connection.close()
