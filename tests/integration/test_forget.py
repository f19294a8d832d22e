"""`modstack forget --sender ID` against real stores: the processor writes the message log,
Feast (offline and online: parquet and SQLite, or PostgreSQL and Redis in the scale profile) and
dead letters; serving's review queue holds items;
after the command nothing of that sender remains anywhere, and the other sender is intact."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from features import store as featurestore
from features.sender import ACTIVITY_FEATURES
from features.store import sender_entity_key
from modstack.deadletter_store import DeadLetterStore
from modstack.events import DeadLetter, LabelEvent, MessageEvent
from modstack.message_log import MessageLog
from modstack.names import TOPIC_LABELS, TOPIC_MESSAGES, VIEW_SENDER_ACTIVITY
from modstack.settings import get_settings
from services.processor.metrics import ProcessorMetrics
from services.processor.pipeline import FeaturePipeline
from stack.cli import app
from tests.support.browser import publish_reviews, review_request, running_review, wait_for_items
from tests.support.profile import profile_name

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2] / "features"
T0 = datetime(2002, 7, 1, tzinfo=UTC)
GONE, KEPT = "gone@example.com", "kept@example.com"
SECRET = "the-secret-subject-of-gone"


class Record:
    def __init__(self, topic: str, value: bytes, offset: int, key: str) -> None:
        self.topic, self.value, self.offset, self.key, self.partition = topic, value, offset, key, 0


def events(sender: str, n: int) -> list[Record]:
    out = []
    for i in range(n):
        at = T0 + timedelta(minutes=i)
        message = MessageEvent(
            message_id=f"{sender}-{i}",
            sender_id=sender,
            subject=f"{SECRET if sender == GONE else 'hello'} {i}",
            body="body",
            sent_at=at,
            received_at=at,
        )
        label = LabelEvent(
            message_id=message.message_id,
            sender_id=sender,
            label="spam",
            source="user_report",
            reporter_id=f"app/u{i}",
            labeled_at=at + timedelta(seconds=30),
            received_at=at,
        )
        out.append(Record(TOPIC_MESSAGES, message.to_bytes(), 2 * i, sender))
        out.append(Record(TOPIC_LABELS, label.to_bytes(), 2 * i + 1, sender))
    # a broken record of theirs becomes a dead letter holding their bytes
    secret = SECRET if sender == GONE else "hello"
    out.append(Record(TOPIC_MESSAGES, f'{{"subject": "{secret}"'.encode(), 99, sender))
    return out


def test_forget_erases_every_store_of_one_sender(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_kafka: str,
    request: pytest.FixtureRequest,
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.delenv("FEAST_DATA_DIR", raising=False)
    get_settings.cache_clear()
    feast_dir = featurestore.feast_data_dir(data_dir)
    featurestore.apply_repo(REPO, data_dir=data_dir)
    store = featurestore.get_store(REPO, data_dir=data_dir)
    letters = DeadLetterStore(data_dir)

    def push(view: str, rows: list[dict[str, Any]]) -> None:
        pusher = (
            featurestore.push_activity
            if view == VIEW_SENDER_ACTIVITY
            else (featurestore.push_reputation)
        )
        pusher(store, rows)

    def dead(found: list[DeadLetter]) -> None:
        letters.add(found)

    pipeline = FeaturePipeline(
        MessageLog(data_dir), push, dead, ProcessorMetrics(CollectorRegistry())
    )
    pipeline.handle(events(GONE, 5) + events(KEPT, 3))
    # the review service, a real process with its queue under the same DATA_DIR
    review = running_review(tmp_path, private_kafka, {"DATA_DIR": str(data_dir)})
    service = review.__enter__()
    request.addfinalizer(lambda: review.__exit__(None, None, None))
    monkeypatch.setenv("REVIEW_ADDR", service.url)
    publish_reviews(
        private_kafka,
        *(
            review_request(f"{s}-0", sender=s, subject=SECRET if s == GONE else "hello")
            for s in (GONE, KEPT)
        ),
    )
    wait_for_items(service, {f"{GONE}-0", f"{KEPT}-0"})

    def queued() -> set[str]:
        with service.api("admin") as api:
            return {i["message_id"] for i in api.get("/v1/queue").json()["items"]}

    def redis_keys() -> list[bytes]:
        with featurestore.online_redis_client() as client:
            return list(client.scan_iter())

    def online(sender: str) -> Any:
        refs = [f"sender_activity:{f}" for f in ACTIVITY_FEATURES]
        values = store.get_online_features(features=refs, entity_rows=[{"sender_id": sender}])
        return values.to_dict()["sender_msgs_total"][0]

    assert online(GONE) == 5.0 and len(letters.read(GONE)) == 1

    result = CliRunner().invoke(app, ["forget", "--sender", GONE])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "message_log.messages: 5 rows erased" in result.output
    assert "review.items: 1 rows erased" in result.output

    # nothing of theirs in any store ...
    log = MessageLog(data_dir)
    assert GONE not in set(log.read("messages")["sender_id"]) | set(log.read("labels")["sender_id"])
    assert letters.read(GONE) == []
    for path in (feast_dir / "offline").glob("*.parquet"):
        assert GONE not in set(pq.read_table(path)["sender_id"].to_pylist())
    assert online(GONE) is None
    if profile_name() == "local":
        with sqlite3.connect(feast_dir / "online.db") as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                hits = (
                    db.execute(
                        f'SELECT COUNT(*) FROM "{table}" WHERE entity_key = ?',
                        (sender_entity_key(GONE),),
                    ).fetchone()[0]
                    if "moderation_" in table
                    else 0
                )
                assert hits == 0, table
    else:  # Redis: no key of the sender's left, the other sender's still there
        keys = redis_keys()
        assert not any(sender_entity_key(GONE) in key for key in keys)
        assert any(sender_entity_key(KEPT) in key for key in keys)
    assert f"{GONE}-0" not in queued()
    # ... nor in the bytes of any file under DATA_DIR (SQLite files vacuumed, parquet rewritten)
    for path in data_dir.rglob("*"):
        if path.is_file() and (".sqlite3" in path.name or path.suffix == ".db"):
            raw = path.read_bytes()
            assert GONE.encode() not in raw and SECRET.encode() not in raw, path
    # the other sender is intact
    assert online(KEPT) == 3.0
    assert f"{KEPT}-0" in queued()
    assert set(log.read("messages")["sender_id"]) == {KEPT}
