"""The stream path end to end, with real parts: HTTP ingestion (in-process) -> a real Tansu
broker -> the real processor (a subprocess) -> a real Feast store and the message log in a tmp
DATA_DIR.

The module starts its own broker instead of the session one: the processor consumes whole
topics as group `processor`, so events other tests produce would change its counts.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from features import store as featurestore
from features.sender import (
    ACTIVITY_FEATURES,
    REPUTATION_FEATURES,
    SenderFeatureComputer,
)
from modstack.events import DeadLetter, LabelEvent, MessageEvent
from modstack.kafka import ensure_topics, make_producer
from modstack.message_log import MessageLog
from modstack.names import (
    TOPIC_DEADLETTER,
    TOPIC_LABELS,
    TOPIC_MESSAGES,
    VIEW_SENDER_ACTIVITY,
    VIEW_SENDER_REPUTATION,
)
from modstack.processes import (
    BackgroundProcess,
    http_ok,
    kafka_ready,
    log_tail,
    tansu_argv,
)
from modstack.waits import free_port, wait_until
from services.ingestion.app import create_app
from services.ingestion.settings import DEV_CLIENT_KEY, IngestionSettings
from tests.support.message_log import stored_message_ids

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESSOR_START_TIMEOUT_S = 60.0
# the ingestion app's development client key (services.ingestion.settings)
CLIENT_AUTH = {"Authorization": f"Bearer {DEV_CLIENT_KEY}"}
CATCH_UP_TIMEOUT_S = 90.0


@dataclass
class Stream:
    """A running stream stack: broker, ingestion client, processor (restartable)."""

    bootstrap: str
    data_dir: Path
    client: TestClient
    processor_env: dict[str, str]
    processor_log: Path
    metrics_url: str
    processor: BackgroundProcess | None = None

    @property
    def log(self) -> MessageLog:
        return MessageLog(self.data_dir)

    def start_processor(self) -> None:
        self.processor = BackgroundProcess(
            "processor",
            [sys.executable, "-m", "services.processor"],
            self.processor_log,
            ready=lambda: http_ok(self.metrics_url),
            timeout_s=PROCESSOR_START_TIMEOUT_S,
            env=self.processor_env,
            cwd=REPO_ROOT,
        ).start()

    def kill_processor(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed."""
        assert self.processor is not None and self.processor.proc is not None
        os.killpg(self.processor.proc.pid, signal.SIGKILL)
        self.processor.proc.wait(timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the processor's metrics endpoint (0 when absent)."""
        text = httpx.get(self.metrics_url, timeout=2).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                wanted = all(sample.labels.get(k) == v for k, v in labels.items())
                if sample.name == name and wanted:
                    return sample.value
        return 0.0

    def logged_ids(self, kind: str, prefix: str) -> set[str]:
        frame = self.log.read(kind)  # type: ignore[arg-type]
        ids = frame["message_id"]
        return set(ids[ids.str.startswith(prefix)])

    def wait_logged(self, kind: str, prefix: str, expected: int) -> None:
        wait_until(
            lambda: len(self.logged_ids(kind, prefix)) >= expected,
            CATCH_UP_TIMEOUT_S,
            f"{expected} {kind} with prefix {prefix!r} in the message log",
            interval_s=0.25,
            detail=lambda: log_tail(self.processor_log, 30),
        )

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, json=payload, headers=CLIENT_AUTH)
        assert response.status_code == 202, response.text
        return response.json()


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stream]:
    tmp = tmp_path_factory.mktemp("stream")
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    data_dir = tmp / "data"
    with BackgroundProcess(
        "Tansu broker", tansu_argv(port), tmp / "tansu.log", ready=lambda: kafka_ready(bootstrap)
    ):
        ensure_topics(bootstrap)
        featurestore.apply_repo(REPO_ROOT / "features", data_dir=data_dir)
        metrics_port = free_port()
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATA_DIR": str(data_dir),
            "FEAST_DATA_DIR": str(data_dir / "feast"),
            "FEAST_REPO_PATH": str(REPO_ROOT / "features"),
            "PROCESSOR_METRICS_PORT": str(metrics_port),
            "PROCESSOR_POLL_TIMEOUT_MS": "50",
        }
        settings = IngestionSettings(kafka_bootstrap_servers=bootstrap, data_dir=data_dir)
        with TestClient(create_app(settings)) as client:
            running = Stream(
                bootstrap=bootstrap,
                data_dir=data_dir,
                client=client,
                processor_env=env,
                processor_log=tmp / "processor.log",
                metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            )
            running.start_processor()
            try:
                yield running
            finally:
                if running.processor is not None:
                    running.processor.stop()


def synthetic_traffic(
    prefix: str, n_messages: int, n_senders: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages in event-time order over ~2 weeks (links, HTML, repeated subjects) and labels
    for about half of them (user reports, moderator decisions, some messages with both)."""
    rng = random.Random(seed)
    sent_at = datetime(2002, 3, 1, tzinfo=UTC)
    messages, labels = [], []
    for i in range(n_messages):
        sent_at += timedelta(minutes=rng.randint(1, 120))
        html = rng.random() < 0.3
        body = f"message {i} " + ("visit http://example.com/x " if rng.random() < 0.4 else "")
        messages.append(
            {
                "message_id": f"{prefix}-m{i:04d}",
                "sender_id": f"{prefix}-s{rng.randrange(n_senders)}@example.com",
                "subject": rng.choice(["hello", "Re: hello", "FREE offer", "meeting", f"n{i % 7}"]),
                "body": f"<html><body>{body}</body></html>" if html else body,
                "sent_at": sent_at.isoformat(),
            }
        )
        for source in ("user_report", "moderator"):
            if rng.random() < 0.35:
                labels.append(
                    {
                        "message_id": f"{prefix}-m{i:04d}",
                        "sender_id": messages[-1]["sender_id"],
                        "label": rng.choice(["spam", "ham"]),
                        "source": source,
                        "labeled_at": (sent_at + timedelta(hours=rng.randint(1, 72))).isoformat(),
                        **(
                            {"reporter_id": f"reporter-{rng.randrange(4)}"}
                            if source == "user_report"
                            else {}
                        ),
                    }
                )
    labels.sort(key=lambda label: label["labeled_at"])
    return messages, labels


def recompute(messages: list[dict[str, Any]], labels: list[dict[str, Any]]) -> dict[str, dict]:
    """Last row per (view, sender) from the pure computer, fed in the order the processor saw
    each sender's events (all messages, in post order, then the labels)."""
    computer = SenderFeatureComputer()
    latest: dict[str, dict] = {}
    received = datetime.now(UTC)
    for message in messages:
        row = computer.apply_message(MessageEvent(**message, received_at=received))
        if row is not None:
            latest.setdefault(row["sender_id"], {}).update(
                {f"{VIEW_SENDER_ACTIVITY}:{k}": row[k] for k in ACTIVITY_FEATURES}
            )
    for label in labels:
        row = computer.apply_label(LabelEvent(**label, received_at=received))
        if row is not None:
            latest.setdefault(row["sender_id"], {}).update(
                {f"{VIEW_SENDER_REPUTATION}:{k}": row[k] for k in REPUTATION_FEATURES}
            )
    return latest


def online_values(data_dir: Path, senders: list[str]) -> dict[str, dict]:
    store = featurestore.get_store(REPO_ROOT / "features", data_dir=data_dir)
    refs = [f"{VIEW_SENDER_ACTIVITY}:{f}" for f in ACTIVITY_FEATURES] + [
        f"{VIEW_SENDER_REPUTATION}:{f}" for f in REPUTATION_FEATURES
    ]
    response = store.get_online_features(
        features=refs, entity_rows=[{"sender_id": s} for s in senders], full_feature_names=True
    ).to_dict()
    return {
        sender: {ref: response[ref.replace(":", "__")][i] for ref in refs}
        for i, sender in enumerate(senders)
    }


def test_every_posted_message_is_logged_once_and_online_features_match_a_recompute_across_a_processor_crash(  # noqa: E501
    stream: Stream,
) -> None:
    messages, labels = synthetic_traffic("crash", n_messages=300, n_senders=15, seed=11)
    batches = [messages[i : i + 25] for i in range(0, len(messages), 25)]

    for batch in batches[:6]:
        stream.post("/v1/messages", {"messages": batch})
    stream.wait_logged("messages", "crash-", 1)
    stream.kill_processor()

    # While the processor is down: the rest of the traffic, plus redeliveries of events it
    # already had (produced directly, past ingestion's own duplicate check).
    for batch in batches[6:]:
        stream.post("/v1/messages", {"messages": batch})
    producer = make_producer(stream.bootstrap)
    received = datetime.now(UTC)
    for message in messages[:20]:
        event = MessageEvent(**message, received_at=received)
        producer.send(TOPIC_MESSAGES, key=event.sender_id, value=event.to_bytes())
    producer.flush(timeout=10)
    producer.close()

    stream.start_processor()
    stream.wait_logged("messages", "crash-", len(messages))
    # Labels after the messages: user reports through ingestion, moderator decisions straight
    # to the topic (as serving's review API produces them); each chunk reports first, so each
    # sender's events reach the processor in the order `recompute` applies them.
    producer = make_producer(stream.bootstrap)
    ordered: list[dict[str, Any]] = []
    for i in range(0, len(labels), 50):
        chunk = labels[i : i + 50]
        reports = [label for label in chunk if label["source"] == "user_report"]
        decisions = [label for label in chunk if label["source"] == "moderator"]
        if reports:
            stream.post("/v1/labels", {"labels": reports})
        for label in decisions:
            event = LabelEvent(**label, received_at=datetime.now(UTC))
            producer.send(TOPIC_LABELS, key=event.sender_id, value=event.to_bytes())
        producer.flush(timeout=10)
        ordered += reports + decisions
    producer.close()
    labels = ordered
    label_keys = {(label["message_id"], label["source"]) for label in labels}
    stream.wait_logged("labels", "crash-", len({k[0] for k in label_keys}))
    wait_until(
        lambda: (
            len(stream.log.read("labels").query("message_id.str.startswith('crash-')"))
            == len(label_keys)
        ),
        CATCH_UP_TIMEOUT_S,
        "every label in the message log",
    )

    logged = stream.log.read("messages")
    logged = logged[logged["message_id"].str.startswith("crash-")]
    assert sorted(logged["message_id"]) == sorted(m["message_id"] for m in messages)
    # Not only deduplicated on read: no message was written twice.
    raw_ids = stored_message_ids(stream.data_dir)
    assert sum(i.startswith("crash-") for i in raw_ids) == len(messages)
    assert stream.metric("processor_events_total", topic=TOPIC_MESSAGES, outcome="duplicate") >= 20

    wait_until(
        lambda: (
            stream.metric("processor_consumer_lag_messages", topic=TOPIC_MESSAGES) == 0
            and stream.metric("processor_consumer_lag_messages", topic=TOPIC_LABELS) == 0
        ),
        10,
        "processor consumer lag 0",
    )

    expected = recompute(messages, labels)
    senders = sorted(expected)
    actual = online_values(stream.data_dir, senders)
    for sender in senders:
        for ref, value in expected[sender].items():
            assert actual[sender][ref] == pytest.approx(value), (sender, ref)
        missing_reputation = f"{VIEW_SENDER_REPUTATION}:{REPUTATION_FEATURES[0]}"
        if missing_reputation not in expected[sender]:
            assert actual[sender][missing_reputation] is None, sender


def _deadletters(bootstrap: str, minimum: int) -> list[DeadLetter]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=500)
    try:
        partitions = [
            TopicPartition(TOPIC_DEADLETTER, p)
            for p in consumer.partitions_for_topic(TOPIC_DEADLETTER) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        letters: list[DeadLetter] = []

        def read_some() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                letters.extend(DeadLetter.model_validate_json(r.value) for r in batch)
            return len(letters) >= minimum

        wait_until(read_some, 30, f"{minimum} dead letters on {TOPIC_DEADLETTER}")
        return letters
    finally:
        consumer.close()


def test_garbage_on_the_topics_goes_to_deadletter_and_the_consumer_keeps_going(
    stream: Stream,
) -> None:
    producer = make_producer(stream.bootstrap)
    garbage = {
        TOPIC_MESSAGES: [b"\x00\xffnot json", b'{"message_id": "dl-incomplete"}'],
        TOPIC_LABELS: [b'{"message_id": "dl-x", "sender_id": "a", "label": "maybe"}'],
    }
    for topic, values in garbage.items():
        for value in values:
            producer.send(topic, key="dl-sender", value=value)
    producer.flush(timeout=10)
    producer.close()
    valid = {
        "message_id": "dl-valid-after-garbage",
        "sender_id": "dl-sender@example.com",
        "subject": "still here",
        "body": "the consumer kept going",
        "sent_at": "2002-05-01T12:00:00Z",
    }
    stream.post("/v1/messages", valid)

    stream.wait_logged("messages", "dl-valid", 1)
    letters = _deadletters(stream.bootstrap, minimum=3)
    originals = {(dl.source_topic, dl.original.encode("latin-1")) for dl in letters}
    for topic, values in garbage.items():
        for value in values:
            assert (topic, value) in originals
    incomplete = next(dl for dl in letters if "dl-incomplete" in dl.original)
    assert "sender_id" in incomplete.error and incomplete.offset is not None
    assert stream.processor is not None and stream.processor.proc is not None
    assert stream.processor.proc.poll() is None, "the processor stopped on garbage"
    assert stream.metric("processor_deadletters_total") >= 3


def test_replaying_the_fixture_corpus_logs_every_message_and_label(
    stream: Stream, tmp_path: Path
) -> None:
    from modstack.corpus import build_corpus, load_corpus
    from pipelines.demo.replay import run

    build_corpus(REPO_ROOT / "tests" / "fixtures" / "corpus", tmp_path)
    corpus = load_corpus(tmp_path)
    history = corpus[corpus["period"] == "history"]

    report = run(
        "history",
        corpus=corpus,
        data_dir=stream.data_dir,
        http=stream.client,
        batch_size=40,
        timeout_s=CATCH_UP_TIMEOUT_S,
        show_senders=2,
        kafka_bootstrap_servers=stream.bootstrap,
    )

    assert report.rejected == []
    assert report.messages_sent == report.labels_sent == len(history)
    logged = stream.log.read("messages", columns=[])
    assert set(history["message_id"]) <= set(logged["message_id"])
    labels = stream.log.read("labels")
    replayed = labels[labels["message_id"].isin(history["message_id"])]
    # messages through ingestion, their corpus labels onto labels.v1 (never the public API)
    assert len(replayed) == len(history) and set(replayed["source"]) == {"corpus"}


def test_sigterm_stops_the_processor_cleanly(stream: Stream) -> None:
    """Runs last in this module: it stops the module's processor."""
    assert stream.processor is not None and stream.processor.proc is not None
    stream.processor.stop(timeout_s=15)
    assert stream.processor.proc.returncode == 0
    tail = log_tail(stream.processor_log, 5)
    assert "partitions revoked" in tail and "stopped" in tail
