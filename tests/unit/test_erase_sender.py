"""Each store's own erasure of one sender (`stack.privacy.forget_sender` composes them; the
integration test tests/integration/test_forget.py runs them against real stores)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from features import store as featurestore
from services.ingestion.producer import RecentIds
from stack.privacy import forget_sender

T0 = datetime(2002, 7, 1, tzinfo=UTC)


def test_ingestion_id_cache_drops_one_senders_ids() -> None:
    cache = RecentIds(10)
    cache.add_all(["m1", "m2", "m3"], ["gone@x", "kept@x", "gone@x"])
    assert cache.erase_sender("gone@x") == 2
    assert "m1" not in cache and cache.get("m2") == "kept@x" and len(cache) == 1
    assert cache.erase_sender("gone@x") == 0


def _offline_file(folder: Path, view: str, senders: list[str | None]) -> Path:
    path = folder / "offline" / f"{view}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "sender_id": pa.array(senders, pa.string()),
            "event_timestamp": pa.array([T0] * len(senders), pa.timestamp("us", tz="UTC")),
            "value": pa.array([1.0] * len(senders)),
        }
    )
    pq.write_table(table, path)
    return path


def test_feast_offline_files_are_rewritten_without_the_sender(tmp_path: Path) -> None:
    activity = _offline_file(tmp_path, "sender_activity", ["gone@x", "kept@x", None, "gone@x"])
    _offline_file(tmp_path, "sender_reputation", ["kept@x"])
    erased = featurestore.erase_sender_offline("gone@x", tmp_path)
    assert erased == {"sender_activity": 2, "sender_reputation": 0}
    assert pq.read_table(activity)["sender_id"].to_pylist() == ["kept@x", None]
    assert not list((tmp_path / "offline").glob("*.tmp"))


def test_feast_online_erasure_without_a_sqlite_store_says_so(tmp_path: Path) -> None:
    assert featurestore.erase_sender_online("gone@x", tmp_path) is None
    assert not (tmp_path / featurestore.ONLINE_DB).exists()


def test_feast_online_sqlite_rows_of_the_project_are_deleted(tmp_path: Path) -> None:
    key = featurestore.sender_entity_key("gone@x")
    other = featurestore.sender_entity_key("kept@x")
    path = tmp_path / featurestore.ONLINE_DB
    with sqlite3.connect(path) as db:
        for table in ("moderation_sender_activity", "other_project_view"):
            db.execute(f"CREATE TABLE {table} (entity_key BLOB, value TEXT)")
            db.executemany(f"INSERT INTO {table} VALUES (?, 'v')", [(key,), (other,)])
    db.close()
    assert featurestore.erase_sender_online("gone@x", tmp_path) == 1
    with sqlite3.connect(path) as db:
        left = db.execute("SELECT COUNT(*) FROM moderation_sender_activity").fetchone()[0]
        untouched = db.execute("SELECT COUNT(*) FROM other_project_view").fetchone()[0]
    db.close()
    assert (left, untouched) == (1, 2)


def test_forget_sender_composes_the_stores_and_skips_what_it_is_not_given(
    tmp_path: Path,
) -> None:
    erased = forget_sender("gone@x", tmp_path, review=lambda sender: 1)
    assert erased.counts == {
        "message_log.messages": 0,
        "message_log.labels": 0,
        "deadletters": 0,
        "review.items": 1,
    }
    assert erased.total == 1
    erased = forget_sender("gone@x", tmp_path, feast_dir=tmp_path / "feast")
    assert "review.items" not in erased.counts
    assert any("no online store" in note for note in erased.notes)

    def unreachable(sender_id: str) -> int:
        raise httpx.ConnectError("connection refused")

    erased = forget_sender("gone@x", tmp_path, review=unreachable)
    assert any("the review service not reached" in note for note in erased.notes)


def test_forget_sender_asks_ingestion_and_notes_when_it_cannot_reach_it(tmp_path: Path) -> None:
    asked: list[str] = []

    def ingestion(sender_id: str) -> int:
        asked.append(sender_id)
        return 3

    erased = forget_sender("gone@x", tmp_path, ingestion=ingestion)
    assert asked == ["gone@x"]
    assert erased.counts["ingestion.recent_message_ids"] == 3

    def unreachable(sender_id: str) -> int:
        raise httpx.ConnectError("connection refused")

    erased = forget_sender("gone@x", tmp_path, ingestion=unreachable)
    assert "ingestion.recent_message_ids" not in erased.counts
    assert any("ingestion not reached" in note for note in erased.notes)
