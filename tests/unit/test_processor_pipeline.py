"""The processor's micro-batch against a real Feast store and message log in a tmp dir, with
faults injected between the steps: whatever step a batch dies in, replaying it on a rebuilt
processor ends with every event logged once and the same features as an undisturbed run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from features import store as featurestore
from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES
from modstack.events import DeadLetter, LabelEvent, MessageEvent
from modstack.message_log import MessageLog
from modstack.names import TOPIC_LABELS, TOPIC_MESSAGES, VIEW_SENDER_ACTIVITY
from services.processor.metrics import ProcessorMetrics
from services.processor.pipeline import FeaturePipeline

REPO = Path(__file__).resolve().parents[2] / "features"
T0 = datetime(2002, 7, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Record:
    topic: str
    value: bytes | None
    partition: int = 0
    offset: int = 0
    key: str | None = None


class Crash(Exception):
    """Stands for the process dying at this point."""


class FailingLog(MessageLog):
    """The real log, except that the next append dies before writing."""

    fail_next = False

    def append(self, *args: Any, **kwargs: Any) -> int:
        if FailingLog.fail_next:
            FailingLog.fail_next = False
            raise Crash("died before the log write")
        return super().append(*args, **kwargs)


def records(n: int, offset: int = 0) -> list[Record]:
    out = []
    for i in range(offset, offset + n):
        sender = f"s{i % 3}@x"
        message = MessageEvent(
            message_id=f"m{i}",
            sender_id=sender,
            subject="hello" if i % 2 else "FREE money",
            body="see http://x.example" if i % 4 == 0 else "plain",
            sent_at=T0 + timedelta(minutes=7 * i),
            received_at=RECEIVED,
        )
        label = LabelEvent(
            message_id=f"m{i}",
            sender_id=sender,
            label="spam" if i % 2 == 0 else "ham",
            source="moderator",
            labeled_at=T0 + timedelta(minutes=7 * i + 3),
            received_at=RECEIVED,
        )
        out.append(Record(TOPIC_MESSAGES, message.to_bytes(), offset=2 * i, key=sender))
        out.append(Record(TOPIC_LABELS, label.to_bytes(), offset=2 * i + 1, key=sender))
    return out


@pytest.fixture(scope="module")
def store_factory(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    def make(name: str) -> tuple[Any, Path]:
        data_dir = tmp_path_factory.mktemp(name)
        featurestore.apply_repo(REPO, data_dir=data_dir)
        return featurestore.get_store(REPO, data_dir=data_dir), data_dir

    return make


def pipeline(store: Any, data_dir: Path, dead: list[DeadLetter]) -> FeaturePipeline:
    def push(view: str, rows: list[dict[str, Any]]) -> None:
        if view == VIEW_SENDER_ACTIVITY:
            featurestore.push_activity(store, rows)
        else:
            featurestore.push_reputation(store, rows)

    built = FeaturePipeline(
        FailingLog(data_dir), push, dead.extend, ProcessorMetrics(CollectorRegistry())
    )
    built.rebuild()
    return built


def online(store: Any, senders: list[str]) -> list[dict[str, Any]]:
    refs = [f"sender_activity:{f}" for f in ACTIVITY_FEATURES] + [
        f"sender_reputation:{f}" for f in REPUTATION_FEATURES
    ]
    values = store.get_online_features(
        features=refs, entity_rows=[{"sender_id": s} for s in senders]
    ).to_dict()
    return [{k: values[k][i] for k in sorted(values)} for i in range(len(senders))]


SENDERS = ["s0@x", "s1@x", "s2@x"]


def test_a_batch_replayed_after_a_crash_at_any_step_gives_the_undisturbed_result(
    store_factory,  # type: ignore[no-untyped-def]
) -> None:
    first, second, third = records(10), records(10, offset=10), records(10, offset=20)

    reference_store, reference_dir = store_factory("undisturbed")
    undisturbed = pipeline(reference_store, reference_dir, [])
    for batch in (first, second, third):
        undisturbed.handle(batch)
    expected = online(reference_store, SENDERS)

    store, data_dir = store_factory("crashing")
    dead: list[DeadLetter] = []
    live = pipeline(store, data_dir, dead)
    live.handle(first)

    # Dies after the push, before the log write: the batch is redelivered to a new process.
    FailingLog.fail_next = True
    with pytest.raises(Crash):
        live.handle(second)
    restarted = pipeline(store, data_dir, dead)
    result = restarted.handle(second)
    assert result.accepted == len(second) and result.duplicate == 0

    # Dies after the log write, before the commit: redelivered, every event is a duplicate.
    restarted.handle(third)
    again = pipeline(store, data_dir, dead)
    result = again.handle(third)
    assert result.duplicate == len(third) and result.accepted == 0 and result.rows == {}

    log = MessageLog(data_dir)
    assert len(log.read("messages")) == 30 and len(log.read("labels")) == 30
    assert online(store, SENDERS) == expected
    assert dead == []


def test_unparseable_records_become_dead_letters_and_the_rest_is_processed(
    store_factory,  # type: ignore[no-untyped-def]
) -> None:
    store, data_dir = store_factory("garbage")
    dead: list[DeadLetter] = []
    live = pipeline(store, data_dir, dead)
    batch = [
        Record(TOPIC_MESSAGES, b"\xff\x00 not json", offset=1, key="k"),
        Record(TOPIC_LABELS, b'{"message_id": "m1"}', offset=2),
        Record(TOPIC_MESSAGES, None, offset=3),
        *records(2),
    ]
    result = live.handle(batch)
    assert result.deadletter == 3 and result.accepted == 4
    assert [(d.source_topic, d.offset) for d in dead] == [
        (TOPIC_MESSAGES, 1),
        (TOPIC_LABELS, 2),
        (TOPIC_MESSAGES, 3),
    ]
    assert dead[0].original.encode("latin-1") == b"\xff\x00 not json" and dead[0].key == "k"
    assert "sender_id" in dead[1].error and "empty" in dead[2].error
    assert len(MessageLog(data_dir).read("messages")) == 2


def test_untrusted_reports_are_dead_lettered_with_the_reason_and_never_counted(
    store_factory: Any,
) -> None:
    store, data_dir = store_factory("untrusted")
    dead: list[DeadLetter] = []
    built = pipeline(store, data_dir, dead)
    sent = MessageEvent(
        message_id="mine",
        sender_id="alice@x",
        sent_at=T0,
        received_at=RECEIVED,
    )

    def report(sender: str, reporter: str | None) -> Record:
        event = LabelEvent(
            message_id="mine",
            sender_id=sender,
            label="spam",
            source="user_report",
            reporter_id=reporter,
            labeled_at=T0 + timedelta(hours=1),
            received_at=RECEIVED,
        )
        return Record(TOPIC_LABELS, event.to_bytes(), key=sender)

    result = built.handle(
        [
            Record(TOPIC_MESSAGES, sent.to_bytes(), key="alice@x"),
            report("alice@x", None),  # produced around ingestion: no reporter
            report("victim@x", "app/u1"),  # names a sender the message did not come from
            report("alice@x", "app/u1"),  # the one trustworthy report
        ]
    )
    assert result.deadletter == 2
    reasons = sorted(letter.error for letter in dead)
    assert "without reporter_id" in reasons[1]
    assert "came from another sender" in reasons[0]
    assert [letter.key for letter in dead] == ["alice@x", "victim@x"]
    labels = MessageLog(data_dir).read("labels")
    assert labels[["sender_id", "reporter_id"]].values.tolist() == [["alice@x", "app/u1"]]
    [victim] = online(store, ["victim@x"])
    assert victim["sender_spam_labels_30d"] is None
