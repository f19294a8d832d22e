"""The durable offline message log: every accepted message and label, as partitioned parquet.

It is the record training sets are built from and the one that survives the local broker
(Tansu keeps topics in memory only). The stream processor appends one file per batch and kind;
readers get one row per id.

Layout (hive partitions by the day the processor logged the batch, so an append touches one
folder; event-time filters are pushed down to the `sent_at` / `labeled_at` column statistics):

    {DATA_DIR}/message_log/messages/logged_date=2026-11-22/part-<ns>-<rand>.parquet
    {DATA_DIR}/message_log/labels/logged_date=2026-11-22/part-<ns>-<rand>.parquet

Identity: a message is its `message_id`; a label is (`message_id`, `source`, `reporter_id`) — a
user report and a moderator decision on the same message are two labels, two reporters' reports
are two, a repeat of any is one (`reporter_id` is null except on user reports). Rows are
also deduplicated on read (first logged wins), so a batch written twice — a crash between the
write and the offset commit — still reads as one.

`seq` is the processor's processing order (monotonic nanoseconds): folding the log in `seq`
order (`features.sender.events_from_frames`) replays exactly what the live processor
saw, so a restarted processor rebuilds the same state.

Personal data: subjects and bodies are personal data. `expire` drops whole `logged_date`
partitions older than the retention (PROCESSOR_LOG_RETENTION_DAYS, applied by the processor
when idle); `erase_sender` rewrites the files that hold a sender's rows without them
(`modstack forget`). Dead letters are kept apart, in `modstack.deadletter_store`.

In a database instead (compose, k8s: `MESSAGE_LOG_DATABASE_URL`, a SQLAlchemy URL, PostgreSQL
there): two tables, `message_log_messages` and `message_log_labels`, with the same columns
and the ids as unique keys, so a batch written twice is stored once; every writer and reader
(the processor replicas, ingestion, training, `modstack forget`) reaches the same log without
a shared disk. Same interface and results; `compact` has nothing to do there.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from modstack.events import LabelEvent, MessageEvent
from modstack.settings import CommonSettings
from modstack.sql import create_tables, engine_for

if TYPE_CHECKING:
    import sqlalchemy as sa

Kind = Literal["messages", "labels"]
LOG_DIRNAME = "message_log"
PARTITION_KEY = "logged_date"

_TS = pa.timestamp("us", tz="UTC")
MESSAGE_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("sender_id", pa.string()),
        ("subject", pa.string()),
        ("body", pa.string()),
        ("sent_at", _TS),
        ("received_at", _TS),
        ("logged_at", _TS),
        ("seq", pa.int64()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("sender_id", pa.string()),
        ("label", pa.string()),
        ("source", pa.string()),
        ("labeled_at", _TS),
        ("received_at", _TS),
        ("logged_at", _TS),
        ("seq", pa.int64()),
        # last: files written before the column existed read it as null
        ("reporter_id", pa.string()),
    ]
)
SCHEMAS: dict[Kind, pa.Schema] = {"messages": MESSAGE_SCHEMA, "labels": LABEL_SCHEMA}
ID_COLUMNS: dict[Kind, list[str]] = {
    "messages": ["message_id"],
    "labels": ["message_id", "source", "reporter_id"],
}
EVENT_TIME: dict[Kind, str] = {"messages": "sent_at", "labels": "labeled_at"}


class _SeqClock:
    """Strictly increasing int64 sequence numbers based on the wall clock (ns).

    Based on time so that order holds across restarts of the processor, strictly increasing so
    that two events in one batch never tie.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> int:
        """Reserve `count` numbers; returns the first."""
        with self._lock:
            first = max(time.time_ns(), self._last + 1)
            self._last = first + count - 1
            return first


_SEQ = _SeqClock()


class MessageLogSettings(CommonSettings):
    """Where the log lives: empty = parquet files under DATA_DIR; else a SQLAlchemy URL."""

    message_log_database_url: str = ""


class MessageLog:
    """Append and read the log: parquet under `{data_dir}/message_log`, or in a database.

    `database_url`: None reads MESSAGE_LOG_DATABASE_URL; "" means the files.
    """

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.root = Path(data_dir) / LOG_DIRNAME
        if database_url is None:
            database_url = MessageLogSettings().message_log_database_url
        self._db = _DatabaseLog(database_url) if database_url else None

    # ---- writing ---------------------------------------------------------------------------

    def append(
        self,
        messages: Sequence[MessageEvent] = (),
        labels: Sequence[LabelEvent] = (),
        *,
        seqs: Sequence[int] | None = None,
    ) -> int:
        """Durably append one batch (one file per kind); returns the number of rows written.

        `seqs`, when given, are the processing-order numbers of `messages + labels` in that
        order (see `next_seqs`); otherwise the order of the arguments is taken.
        """
        total = len(messages) + len(labels)
        if total == 0:
            return 0
        if seqs is None:
            seqs = next_seqs(total)
        if len(seqs) != total:
            raise ValueError(f"{len(seqs)} seqs for {total} events")
        logged_at = datetime.now(UTC)
        write = self._db.write if self._db is not None else self._write
        if messages:
            rows = [
                {
                    "message_id": m.message_id,
                    "sender_id": m.sender_id,
                    "subject": m.subject,
                    "body": m.body,
                    "sent_at": m.sent_at,
                    "received_at": m.received_at,
                    "logged_at": logged_at,
                    "seq": seq,
                }
                for m, seq in zip(messages, seqs[: len(messages)], strict=True)
            ]
            write("messages", rows, logged_at)
        if labels:
            rows = [
                {
                    "message_id": lab.message_id,
                    "sender_id": lab.sender_id,
                    "label": lab.label,
                    "source": lab.source,
                    "labeled_at": lab.labeled_at,
                    "received_at": lab.received_at,
                    "logged_at": logged_at,
                    "seq": seq,
                    "reporter_id": lab.reporter_id,
                }
                for lab, seq in zip(labels, seqs[len(messages) :], strict=True)
            ]
            write("labels", rows, logged_at)
        return total

    def _write(self, kind: Kind, rows: list[dict], logged_at: datetime) -> Path:
        table = pa.Table.from_pylist(rows, schema=SCHEMAS[kind])
        folder = self.root / kind / f"{PARTITION_KEY}={logged_at.date().isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{secrets.token_hex(4)}.parquet"
        final = folder / name
        # Write under a hidden name, fsync, then rename: readers and a crash never see half a
        # file (pyarrow datasets skip names starting with '.').
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(folder)
        return final

    # ---- reading ---------------------------------------------------------------------------

    def read(
        self,
        kind: Kind,
        start: datetime | pd.Timestamp | None = None,
        end: datetime | pd.Timestamp | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of one kind with event time in [start, end), one per id, in event-time order.

        `columns` limits what is read (the id, event-time and `seq` columns always come along).
        """
        schema = SCHEMAS[kind]
        if columns is not None:
            needed = [*ID_COLUMNS[kind], EVENT_TIME[kind], "seq"]
            columns = list(dict.fromkeys([*needed, *columns]))
            schema = pa.schema([schema.field(name) for name in columns])
        if self._db is not None:
            return _one_per_id(self._db.read(kind, schema, start, end), kind)
        folder = self.root / kind
        if not folder.is_dir() or not any(folder.glob(f"{PARTITION_KEY}=*/*.parquet")):
            return schema.empty_table().to_pandas()
        time_col = ds.field(EVENT_TIME[kind])
        condition = None
        if start is not None:
            condition = time_col >= pa.scalar(_utc(start), type=_TS)
        if end is not None:
            before_end = time_col < pa.scalar(_utc(end), type=_TS)
            condition = before_end if condition is None else condition & before_end
        frame = _read_retrying(
            dataset_of=lambda: ds.dataset(
                folder, format="parquet", schema=SCHEMAS[kind], partitioning="hive"
            ),
            condition=condition,
            columns=columns,
        )
        return _one_per_id(frame, kind)

    def senders_of(self, message_ids: Sequence[str]) -> dict[str, str]:
        """{message_id: sender_id} of the logged messages among `message_ids` (reads two
        columns, filtered by id: what ingestion checks a report against on a cache miss)."""
        if self._db is not None:
            return self._db.senders_of(message_ids)
        folder = self.root / "messages"
        if not message_ids or not any(folder.glob(f"{PARTITION_KEY}=*/*.parquet")):
            return {}
        frame = _read_retrying(
            dataset_of=lambda: ds.dataset(
                folder, format="parquet", schema=MESSAGE_SCHEMA, partitioning="hive"
            ),
            condition=ds.field("message_id").isin(list(message_ids)),
            columns=["message_id", "sender_id", "seq"],
        )
        frame = frame.sort_values("seq", kind="stable").drop_duplicates("message_id")
        return dict(zip(frame["message_id"], frame["sender_id"], strict=True))

    def file_count(self, kind: Kind) -> int:
        """How many parquet files hold this kind (compaction is worth it when many; a
        database holds none)."""
        if self._db is not None:
            return 0
        return sum(1 for _ in (self.root / kind).glob(f"{PARTITION_KEY}=*/*.parquet"))

    def compact(self, kind: Kind) -> int:
        """Merge each partition's files into one (deduplicated); returns files removed.

        Crash-safe: the merged file is in place before the old ones are deleted, and a crash in
        between only leaves duplicates, which reads drop.
        """
        removed = 0
        if self._db is not None:
            return removed  # the unique keys already keep one row per id
        for folder in sorted((self.root / kind).glob(f"{PARTITION_KEY}=*")):
            files = sorted(folder.glob("*.parquet"))
            if len(files) < 2:
                continue
            table = pa.concat_tables(pq.read_table(f, schema=SCHEMAS[kind]) for f in files)
            frame = table.to_pandas().sort_values("seq", kind="stable")
            frame = frame.drop_duplicates(ID_COLUMNS[kind], keep="first")
            merged = pa.Table.from_pandas(frame, schema=SCHEMAS[kind], preserve_index=False)
            name = f"part-{time.time_ns()}-{secrets.token_hex(4)}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(merged, tmp)
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, folder / name)
            for old in files:
                old.unlink()
                removed += 1
            _fsync_dir(folder)
        return removed

    # ---- personal data ---------------------------------------------------------------------

    def expire(self, retention_days: int, today: date | None = None) -> dict[str, int]:
        """Delete the partitions logged more than `retention_days` ago; returns files removed
        per kind (rows, in a database). 0 keeps everything."""
        removed = {"messages": 0, "labels": 0}
        if retention_days <= 0:
            return removed
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
        if self._db is not None:
            return self._db.expire(cutoff)
        for kind in ("messages", "labels"):
            for folder in sorted((self.root / kind).glob(f"{PARTITION_KEY}=*")):
                try:
                    logged = date.fromisoformat(folder.name.split("=", 1)[1])
                except ValueError:
                    continue
                if logged >= cutoff:
                    continue
                for file in folder.iterdir():
                    file.unlink()
                    removed[kind] += 1
                folder.rmdir()
        return removed

    def erase_sender(self, sender_id: str) -> dict[str, int]:
        """Rewrite every file holding rows of `sender_id` without them; returns rows removed
        per kind. Crash-safe like `compact`: the rewritten file replaces the old one by rename.
        """
        if self._db is not None:
            return self._db.erase_sender(sender_id)
        removed = {"messages": 0, "labels": 0}
        for kind in ("messages", "labels"):
            schema = SCHEMAS[kind]
            for file in sorted((self.root / kind).glob(f"{PARTITION_KEY}=*/*.parquet")):
                table = pq.read_table(file, schema=schema)
                keep = pc.not_equal(table["sender_id"], pa.scalar(sender_id))
                kept = table.filter(pc.fill_null(keep, True))
                gone = table.num_rows - kept.num_rows
                if gone == 0:
                    continue
                removed[kind] += gone
                if kept.num_rows == 0:
                    file.unlink()
                else:
                    tmp = file.with_name(f".{file.name}.tmp")
                    pq.write_table(kept, tmp)
                    with tmp.open("rb") as handle:
                        os.fsync(handle.fileno())
                    os.replace(tmp, file)
                _fsync_dir(file.parent)
        return removed


def _one_per_id(frame: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    """The first logged row of each id (lowest `seq`), in event-time order."""
    frame = frame.sort_values("seq", kind="stable")
    frame = frame.drop_duplicates(ID_COLUMNS[kind], keep="first")
    frame = frame.sort_values([EVENT_TIME[kind], "seq"], kind="stable")
    return frame.reset_index(drop=True)


class _DatabaseLog:
    """The log in two tables of a SQL database (SQLAlchemy Core: PostgreSQL, or SQLite)."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)
        self.tables = _tables()
        create_tables(self.tables["messages"].metadata, self.engine)

    def write(self, kind: Kind, rows: list[dict], logged_at: datetime) -> None:
        table = self.tables[kind]
        values = [{**row, PARTITION_KEY: logged_at.date()} for row in rows]
        # one transaction: the batch is in or not; ids already logged are skipped (first wins)
        with self.engine.begin() as connection:
            connection.execute(_insert_ignoring_duplicates(self.engine, table), values)

    def read(
        self,
        kind: Kind,
        schema: pa.Schema,
        start: datetime | pd.Timestamp | None,
        end: datetime | pd.Timestamp | None,
    ) -> pd.DataFrame:
        import sqlalchemy as sa

        table = self.tables[kind]
        query = sa.select(*(table.c[name] for name in schema.names))
        if start is not None:
            query = query.where(table.c[EVENT_TIME[kind]] >= _utc(start))
        if end is not None:
            query = query.where(table.c[EVENT_TIME[kind]] < _utc(end))
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        return _frame(rows, schema)

    def senders_of(self, message_ids: Sequence[str]) -> dict[str, str]:
        import sqlalchemy as sa

        table = self.tables["messages"]
        found: dict[str, str] = {}
        ids = list(dict.fromkeys(message_ids))
        with self.engine.connect() as connection:
            for start in range(0, len(ids), 1000):  # bounded IN lists
                query = sa.select(table.c.message_id, table.c.sender_id).where(
                    table.c.message_id.in_(ids[start : start + 1000])
                )
                found.update({row.message_id: row.sender_id for row in connection.execute(query)})
        return found

    def expire(self, cutoff: date) -> dict[str, int]:
        with self.engine.begin() as connection:
            return {
                kind: connection.execute(
                    table.delete().where(table.c[PARTITION_KEY] < cutoff)
                ).rowcount
                for kind, table in self.tables.items()
            }

    def erase_sender(self, sender_id: str) -> dict[str, int]:
        with self.engine.begin() as connection:
            return {
                kind: connection.execute(
                    table.delete().where(table.c.sender_id == sender_id)
                ).rowcount
                for kind, table in self.tables.items()
            }


@lru_cache(maxsize=1)
def _tables() -> dict[Kind, sa.Table]:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    types: dict[pa.DataType, Any] = {
        pa.string(): sa.Text(),
        _TS: sa.DateTime(timezone=True),
        pa.int64(): sa.BigInteger(),
    }
    tables: dict[Kind, sa.Table] = {}
    for kind, schema in SCHEMAS.items():
        required = set(ID_COLUMNS[kind]) - {"reporter_id"}  # null except on user reports
        columns = [
            sa.Column(field.name, types[field.type], nullable=field.name not in required)
            for field in schema
        ]
        table = sa.Table(
            f"message_log_{kind}",
            metadata,
            *columns,
            sa.Column(PARTITION_KEY, sa.Date(), nullable=False, index=True),
        )
        # unique on reporter_id's value or '' (NULLs are distinct in a unique index, so two
        # moderator labels of one message would both be kept)
        key: list[Any] = [
            sa.func.coalesce(c, "") if c.nullable else c
            for c in (table.c[name] for name in ID_COLUMNS[kind])
        ]
        sa.Index(f"message_log_{kind}_id", *key, unique=True)
        sa.Index(f"message_log_{kind}_sender", table.c.sender_id)
        sa.Index(f"message_log_{kind}_time", table.c[EVENT_TIME[kind]])
        tables[kind] = table
    return tables


def _insert_ignoring_duplicates(engine: sa.Engine, table: sa.Table) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    raise ValueError(f"MESSAGE_LOG_DATABASE_URL: PostgreSQL or SQLite, not {engine.dialect.name}")


def _frame(rows: list[dict], schema: pa.Schema) -> pd.DataFrame:
    """Rows as the parquet reader returns them (same dtypes; SQLite hands back naive UTC)."""
    for row in rows:
        for field in schema:
            value = row[field.name]
            if field.type == _TS and value is not None and value.tzinfo is None:
                row[field.name] = value.replace(tzinfo=UTC)
    return pa.Table.from_pylist(rows, schema=schema).to_pandas()


def next_seqs(count: int) -> list[int]:
    """`count` strictly increasing processing-order numbers, later than any handed out before."""
    first = _SEQ.take(count)
    return list(range(first, first + count))


def _read_retrying(
    dataset_of: Callable[[], ds.Dataset], condition: Any, columns: list[str] | None
) -> pd.DataFrame:
    # A compaction may delete files between listing and reading them; list again.
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

    retrying = Retrying(
        retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(3), reraise=True
    )
    return retrying(lambda: dataset_of().to_table(columns=columns, filter=condition).to_pandas())


def _utc(value: datetime | pd.Timestamp) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (the directory entry is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _log(data_dir: Path | None) -> MessageLog:
    if data_dir is None:
        from modstack.settings import get_settings

        data_dir = get_settings().data_dir
    return MessageLog(data_dir)


def read_messages(
    start: datetime | pd.Timestamp | None = None,
    end: datetime | pd.Timestamp | None = None,
    *,
    data_dir: Path | None = None,
) -> pd.DataFrame:
    """Logged messages sent in [start, end), one row per message_id, in `sent_at` order.

    Columns: message_id, sender_id, subject, body, sent_at, received_at, logged_at, seq.
    """
    return _log(data_dir).read("messages", start, end)


def read_labels(
    start: datetime | pd.Timestamp | None = None,
    end: datetime | pd.Timestamp | None = None,
    *,
    data_dir: Path | None = None,
) -> pd.DataFrame:
    """Logged labels given in [start, end) (by `labeled_at`), one per (message_id, source).

    Columns: message_id, sender_id, label, source, labeled_at, received_at, logged_at, seq,
    reporter_id.
    """
    return _log(data_dir).read("labels", start, end)
