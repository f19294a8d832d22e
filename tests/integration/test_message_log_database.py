"""The message log in a database (MESSAGE_LOG_DATABASE_URL): the same results as the parquet
files, on SQLite and on a real PostgreSQL 15, and readable by every process that has the URL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from features.sender import events_from_frames
from modstack.events import LabelEvent, MessageEvent
from modstack.message_log import Kind, MessageLog, next_seqs, read_labels, read_messages
from tests.support.postgres import fresh_database, running_postgres

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]

T0 = datetime(2002, 6, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def message(i: int, sender: str = "a@x") -> MessageEvent:
    at = T0 + timedelta(minutes=i)
    return MessageEvent(
        message_id=f"m{i}", sender_id=sender, subject=f"s{i}", body="body", sent_at=at,
        received_at=RECEIVED,
    )  # fmt: skip


def label(
    i: int, source: str = "moderator", value: str = "spam", reporter_id: str | None = None
) -> LabelEvent:
    at = T0 + timedelta(hours=1, minutes=i)
    return LabelEvent(
        message_id=f"m{i}", sender_id="a@x", label=value, source=source,  # type: ignore[arg-type]
        labeled_at=at, received_at=RECEIVED, reporter_id=reporter_id,
    )  # fmt: skip


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind for each test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.sqlite3'}"
    return fresh_database(request.getfixturevalue("postgres_server"), "log")


def both(tmp_path: Path, database_url: str) -> tuple[MessageLog, MessageLog]:
    """A log in the database and one in files, in separate folders."""
    return MessageLog(tmp_path / "db", database_url), MessageLog(tmp_path / "files", "")


def test_the_database_log_reads_exactly_what_the_file_log_reads(
    tmp_path: Path, database_url: str
) -> None:
    in_db, in_files = both(tmp_path, database_url)
    reports = [label(1, "user_report", reporter_id=r) for r in ("app/u1", "app/u2", "app/u1")]
    batches = [
        ([message(3), message(1)], [label(3)]),
        ([message(2), message(1).model_copy(update={"subject": "redelivered"})], reports),
        ([], [label(1, "moderator", "ham"), label(3)]),  # label(3) again: a redelivery
    ]
    for messages, labels in batches:
        seqs = next_seqs(len(messages) + len(labels))
        for log in (in_db, in_files):
            log.append(messages, labels, seqs=seqs)
    kinds: tuple[Kind, Kind] = ("messages", "labels")
    for kind in kinds:  # equal but for the wall-clock time each append took
        pd.testing.assert_frame_equal(
            in_db.read(kind).drop(columns="logged_at"),
            in_files.read(kind).drop(columns="logged_at"),
        )
    frame = in_db.read("messages")
    assert frame["message_id"].tolist() == ["m1", "m2", "m3"]
    assert frame["subject"].tolist() == ["s1", "s2", "s3"]  # the first logged copy wins
    labels = in_db.read("labels")
    assert sorted(zip(labels["source"], labels["reporter_id"].fillna(""), strict=True)) == [
        ("moderator", ""),
        ("moderator", ""),
        ("user_report", "app/u1"),
        ("user_report", "app/u2"),
    ]
    # rows are stored once, not only read once
    with sa.create_engine(database_url).connect() as connection:
        stored = connection.execute(sa.text("SELECT count(*) FROM message_log_labels")).scalar()
    assert stored == 4


def test_ranges_columns_and_senders_match_the_files(tmp_path: Path, database_url: str) -> None:
    in_db, in_files = both(tmp_path, database_url)
    batch = [message(i, sender=f"s{i % 3}@x") for i in range(10)]
    seqs = next_seqs(len(batch))
    for log in (in_db, in_files):
        log.append(batch, seqs=seqs)
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    pd.testing.assert_frame_equal(
        in_db.read("messages", start, end).drop(columns="logged_at"),
        in_files.read("messages", start, end).drop(columns="logged_at"),
    )
    assert in_db.read("messages", start, end)["message_id"].tolist() == ["m2", "m3", "m4"]
    naive = pd.Timestamp("2002-06-01 00:08:00")  # naive means UTC
    assert in_db.read("messages", start=naive)["message_id"].tolist() == ["m8", "m9"]
    pd.testing.assert_frame_equal(
        in_db.read("messages", columns=["sender_id"]),
        in_files.read("messages", columns=["sender_id"]),
    )
    assert in_db.senders_of(["m1", "m4", "nope"]) == {"m1": "s1@x", "m4": "s1@x"}
    assert in_db.senders_of(["m1", "m4", "nope"]) == in_files.senders_of(["m1", "m4", "nope"])
    assert (in_db.file_count("messages"), in_db.compact("messages")) == (0, 0)


def test_the_processing_order_replays_from_the_database(tmp_path: Path, database_url: str) -> None:
    log = MessageLog(tmp_path, database_url)
    seqs = next_seqs(3)
    log.append([message(5), message(1)], [label(5)], seqs=[seqs[0], seqs[2], seqs[1]])
    events = events_from_frames(log.read("messages"), log.read("labels"), order_by="seq")
    assert [(type(e).__name__, e.message_id) for e in events] == [
        ("MessageEvent", "m5"),
        ("LabelEvent", "m5"),
        ("MessageEvent", "m1"),
    ]


def test_erasure_and_retention_delete_rows(tmp_path: Path, database_url: str) -> None:
    log = MessageLog(tmp_path, database_url)
    log.append([message(1, sender="gone@x"), message(2, sender="kept@x")])
    log.append([message(3, sender="gone@x")], [label(1).model_copy(update={"sender_id": "gone@x"})])
    assert log.erase_sender("gone@x") == {"messages": 2, "labels": 1}
    assert log.read("messages")["sender_id"].tolist() == ["kept@x"]
    assert log.erase_sender("gone@x") == {"messages": 0, "labels": 0}
    with sa.create_engine(database_url).connect() as connection:
        stored = connection.execute(
            sa.text("SELECT count(*) FROM message_log_messages WHERE sender_id = 'gone@x'")
        ).scalar()
    assert stored == 0
    today = datetime.now(UTC).date()
    assert log.expire(30, today=today) == {"messages": 0, "labels": 0}
    assert log.expire(30, today=today + timedelta(days=31)) == {"messages": 1, "labels": 0}
    assert log.read("messages").empty


def test_the_environment_selects_the_database_for_every_reader(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSAGE_LOG_DATABASE_URL", database_url)
    MessageLog(tmp_path / "writer").append([message(1)], [label(1)])
    # another process's data folder: nothing on disk is shared, the database is
    elsewhere = tmp_path / "reader"
    assert read_messages(data_dir=elsewhere)["message_id"].tolist() == ["m1"]
    assert read_labels(data_dir=elsewhere)["label"].tolist() == ["spam"]
    assert not (tmp_path / "writer").exists() and not elsewhere.exists()


def test_replicas_creating_the_tables_at_once_all_start(postgres_server: str) -> None:
    """Ingestion and the processor open the log together on a fresh database: each runs the
    existence check, then CREATE TABLE; the losers of that race must start all the same."""
    import threading

    url = fresh_database(postgres_server, "race")
    barrier = threading.Barrier(6)
    failures: list[BaseException] = []

    def open_log() -> None:
        barrier.wait()
        try:
            # a fresh engine each: separate connections, as separate processes have
            MessageLog(Path("unused"), url + f"?application_name=r{threading.get_ident()}")
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=open_log) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert {"message_log_messages", "message_log_labels"} <= set(
        sa.inspect(sa.create_engine(url)).get_table_names()
    )
