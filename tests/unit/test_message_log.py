"""The offline message log: durable batches, one row per id on read, event-time ranges,
processing order kept, compaction that changes nothing a reader sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from features.sender import events_from_frames
from modstack.events import LabelEvent, MessageEvent
from modstack.message_log import MessageLog, next_seqs, read_labels, read_messages

T0 = datetime(2002, 6, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def message(i: int, sender: str = "a@x", minutes: int | None = None) -> MessageEvent:
    return MessageEvent(
        message_id=f"m{i}",
        sender_id=sender,
        subject=f"s{i}",
        body="body",
        sent_at=T0 + timedelta(minutes=i if minutes is None else minutes),
        received_at=RECEIVED,
    )


def label(i: int, source: str = "moderator", value: str = "spam") -> LabelEvent:
    return LabelEvent(
        message_id=f"m{i}",
        sender_id="a@x",
        label=value,  # type: ignore[arg-type]
        source=source,  # type: ignore[arg-type]
        labeled_at=T0 + timedelta(hours=1, minutes=i),
        received_at=RECEIVED,
    )


def test_an_empty_log_reads_as_empty_frames_with_the_columns(tmp_path: Path) -> None:
    frame = read_messages(data_dir=tmp_path)
    assert frame.empty
    assert {"message_id", "sender_id", "sent_at", "seq"} <= set(frame.columns)
    assert read_labels(data_dir=tmp_path).empty


def test_appended_batches_read_back_once_per_id_in_event_time_order(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    log.append([message(3), message(1)])
    log.append([message(2), message(1)], [label(1)])  # m1 again: a redelivered batch
    frame = log.read("messages")
    assert list(frame["message_id"]) == ["m1", "m2", "m3"]
    assert frame["sent_at"].dt.tz is not None
    assert len(log.read("labels")) == 1


def test_the_first_logged_copy_of_an_id_wins(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    first = message(1)
    log.append([first])
    log.append([first.model_copy(update={"subject": "changed later"})])
    assert log.read("messages")["subject"].tolist() == ["s1"]


def test_labels_are_one_per_message_and_source(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    log.append(labels=[label(1, "user_report"), label(1, "moderator", "ham")])
    log.append(labels=[label(1, "user_report", "ham")])  # a repeat of the same source
    frame = log.read("labels")
    assert sorted(zip(frame["source"], frame["label"], strict=True)) == [
        ("moderator", "ham"),
        ("user_report", "spam"),
    ]


def test_ranges_are_by_event_time_and_half_open(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    log.append([message(i) for i in range(10)])
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    assert list(log.read("messages", start, end)["message_id"]) == ["m2", "m3", "m4"]
    naive = pd.Timestamp("2002-06-01 00:08:00")  # naive means UTC
    assert list(read_messages(start=naive, data_dir=tmp_path)["message_id"]) == ["m8", "m9"]


def test_folding_the_log_by_seq_replays_the_processing_order(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    # Processed: m5 (late in event time), then label of m5, then m1.
    seqs = next_seqs(3)
    log.append([message(5), message(1)], [label(5)], seqs=[seqs[0], seqs[2], seqs[1]])
    events = events_from_frames(log.read("messages"), log.read("labels"), order_by="seq")
    assert [(type(e).__name__, e.message_id) for e in events] == [
        ("MessageEvent", "m5"),
        ("LabelEvent", "m5"),
        ("MessageEvent", "m1"),
    ]


def test_sequence_numbers_increase_strictly_across_calls() -> None:
    first, second = next_seqs(1000), next_seqs(3)
    together = first + second
    assert together == sorted(set(together))


def test_compaction_merges_files_without_changing_what_readers_see(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    for i in range(5):
        log.append([message(i), message(0)])
    before = log.read("messages")
    assert log.file_count("messages") == 5
    removed = log.compact("messages")
    assert removed == 5 and log.file_count("messages") == 1
    pd.testing.assert_frame_equal(log.read("messages"), before)


def test_an_interrupted_write_leaves_nothing_readers_see(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    log.append([message(1)])
    folder = next((tmp_path / "message_log" / "messages").iterdir())
    (folder / ".part-123.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert list(log.read("messages")["message_id"]) == ["m1"]


def test_reading_only_some_columns_keeps_one_row_per_id(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    log.append([message(1), message(2)])
    log.append([message(1)])
    frame = log.read("messages", columns=["sender_id"])
    assert list(frame["message_id"]) == ["m1", "m2"]
    assert "body" not in frame.columns and "sender_id" in frame.columns


def test_two_reporters_on_one_message_are_two_labels(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    reports = [
        label(1, source="user_report").model_copy(update={"reporter_id": r})
        for r in ("app/u1", "app/u2", "app/u1")
    ]
    log.append(labels=reports)
    assert sorted(log.read("labels")["reporter_id"]) == ["app/u1", "app/u2"]


def test_erasing_a_sender_removes_every_row_of_theirs_and_keeps_the_rest(tmp_path: Path) -> None:
    log = MessageLog(tmp_path)
    log.append([message(1, sender="gone@x"), message(2, sender="kept@x")])
    log.append([message(3, sender="gone@x")], [label(1).model_copy(update={"sender_id": "gone@x"})])
    assert log.erase_sender("gone@x") == {"messages": 2, "labels": 1}
    assert log.read("messages")["sender_id"].tolist() == ["kept@x"]
    assert log.read("labels").empty
    assert log.erase_sender("gone@x") == {"messages": 0, "labels": 0}
    # nothing of theirs left in any file, not just hidden by the reader's dedupe
    for file in (tmp_path / "message_log").rglob("*.parquet"):
        assert b"gone@x" not in file.read_bytes()


def test_retention_drops_partitions_logged_before_the_cutoff(tmp_path: Path) -> None:
    from datetime import date

    log = MessageLog(tmp_path)
    log.append([message(1)], [label(1)])
    today = datetime.now(UTC).date()
    assert log.expire(30, today=today) == {"messages": 0, "labels": 0}
    assert log.expire(0, today=today + timedelta(days=999)) == {"messages": 0, "labels": 0}
    later: date = today + timedelta(days=31)
    assert log.expire(30, today=later) == {"messages": 1, "labels": 1}
    assert log.read("messages").empty and log.read("labels").empty


def test_a_retrain_reads_only_what_the_log_held_when_its_evidence_was_complete(
    tmp_path: Path,
) -> None:
    from pipelines.training_data import logged_rows

    log = MessageLog(tmp_path)
    log.append([message(1), message(2)], [label(1), label(2, value="ham")])
    complete = datetime.now(UTC)
    # a repeated pass of the same timeline: same event times, logged later
    log.append([message(3, minutes=1)], [label(3)])
    everything = logged_rows(None, None, tmp_path)
    assert set(everything["message_id"]) == {"m1", "m2", "m3"}
    at_evidence = logged_rows(None, None, tmp_path, logged_before=complete)
    assert list(at_evidence["message_id"]) == ["m1", "m2"]
