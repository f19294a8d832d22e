"""The ingestion API against a real broker: 202 only once events are stored, the ids it
answers, idempotent repeats, 422/413 for bad bodies, 503 naming the broker when it is down;
reports only from client apps with a key, only on messages received from that sender; 429
past a client's rate."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr

from modstack.events import MAX_BATCH, LabelEvent, MessageEvent
from modstack.kafka import ensure_topics
from modstack.names import TOPIC_LABELS, TOPIC_MESSAGES
from modstack.processes import BackgroundProcess, kafka_ready, tansu_argv
from modstack.settings import DEV_ADMIN_TOKEN
from modstack.waits import free_port, wait_until
from services.ingestion.app import create_app
from services.ingestion.settings import IngestionSettings

pytestmark = pytest.mark.integration

MAX_REQUEST_BYTES = 64 * 1024
KEY = "test-key-of-the-app"
AUTH = {"Authorization": f"Bearer {KEY}"}


def a_message(**change: object) -> dict:
    return {
        "message_id": f"api-{uuid.uuid4().hex[:12]}",
        "sender_id": "alice@example.com",
        "subject": "hello",
        "body": "see you at noon",
        "sent_at": "2002-08-01T10:00:00Z",
        **change,
    }


def a_label(message_id: str, **change: object) -> dict:
    return {
        "message_id": message_id,
        "sender_id": "alice@example.com",
        "label": "spam",
        "source": "user_report",
        "reporter_id": "user-1",
        "labeled_at": "2002-08-01T11:00:00Z",
        **change,
    }


@pytest.fixture(scope="module")
def client(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = IngestionSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        ingestion_max_request_bytes=MAX_REQUEST_BYTES,
        ingestion_produce_timeout_s=5,
        ingestion_client_keys={"app": SecretStr(KEY)},
        ingestion_rate_per_s=0,
        data_dir=tmp_path_factory.mktemp("ingestion-data"),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def records_with_ids(bootstrap: str, topic: str, ids: set[str]) -> list:
    """Every record on `topic` whose JSON value has one of `ids` as message_id."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=300)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found = []

        def drained() -> bool:
            for batch in consumer.poll(timeout_ms=300).values():
                found.extend(r for r in batch if json.loads(r.value).get("message_id") in ids)
            return all(consumer.position(tp) >= ends[tp] for tp in partitions)

        wait_until(drained, 20, f"reading {topic} to its end")
        return found
    finally:
        consumer.close()


def test_accepted_messages_are_on_the_topic_keyed_by_sender_with_received_at(
    client: TestClient, kafka_bootstrap: str
) -> None:
    batch = [a_message(), a_message(sender_id="bob@example.com")]
    response = client.post("/v1/messages", json={"messages": batch})
    assert response.status_code == 202
    ids = [m["message_id"] for m in batch]
    assert response.json() == {"accepted": ids, "duplicates": []}

    # Readable right after the 202: the answer waited for the broker's acknowledgement.
    records = records_with_ids(kafka_bootstrap, TOPIC_MESSAGES, set(ids))
    assert sorted(r.key.decode() for r in records) == ["alice@example.com", "bob@example.com"]
    events = [MessageEvent.model_validate_json(r.value) for r in records]
    assert all(e.received_at.tzinfo is not None for e in events)


def test_a_repeated_message_id_is_stored_once(client: TestClient, kafka_bootstrap: str) -> None:
    message = a_message()
    first = client.post("/v1/messages", json=message)
    again = client.post("/v1/messages", json={"messages": [message, message]})
    assert first.status_code == again.status_code == 202
    assert again.json() == {
        "accepted": [message["message_id"]] * 2,
        "duplicates": [message["message_id"]] * 2,
    }
    assert len(records_with_ids(kafka_bootstrap, TOPIC_MESSAGES, {message["message_id"]})) == 1


def test_reports_are_accepted_one_per_message_and_reporter(
    client: TestClient, kafka_bootstrap: str
) -> None:
    message = a_message()
    message_id = message["message_id"]
    assert client.post("/v1/messages", json=message).status_code == 202
    labels = [a_label(message_id), a_label(message_id, reporter_id="user-2")]
    response = client.post("/v1/labels", json={"labels": labels}, headers=AUTH)
    assert response.status_code == 202
    assert response.json()["duplicates"] == []
    again = client.post("/v1/labels", json=labels[0], headers=AUTH)
    assert again.json()["duplicates"] == [message_id]
    records = records_with_ids(kafka_bootstrap, TOPIC_LABELS, {message_id})
    events = [LabelEvent.model_validate_json(r.value) for r in records]
    assert sorted(e.reporter_id or "" for e in events) == ["app/user-1", "app/user-2"]
    assert {e.source for e in events} == {"user_report"}


def test_erasure_drops_the_senders_recent_ids_and_needs_the_admin_token(
    client: TestClient,
) -> None:
    message = a_message(sender_id="erase-me@example.com")
    assert client.post("/v1/messages", json=message).status_code == 202
    path = "/v1/admin/senders/erase-me@example.com"
    assert client.delete(path).status_code == 401
    assert client.delete(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
    admin = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    response = client.delete(path, headers=admin)
    assert response.status_code == 200
    assert response.json() == {"sender_id": "erase-me@example.com", "recent_message_ids": 1}
    assert client.delete(path, headers=admin).json()["recent_message_ids"] == 0


def test_a_report_without_a_valid_client_key_gets_401(client: TestClient) -> None:
    message = a_message()
    client.post("/v1/messages", json=message)
    report = a_label(message["message_id"])
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic eA=="}):
        response = client.post("/v1/labels", json=report, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert "INGESTION_CLIENT_KEYS" in response.json()["detail"]


def test_a_forged_moderator_label_is_refused_and_nothing_is_stored(
    client: TestClient, kafka_bootstrap: str
) -> None:
    message = a_message()
    client.post("/v1/messages", json=message)
    for source in ("moderator", "corpus"):
        forged = a_label(message["message_id"], source=source)
        response = client.post("/v1/labels", json=forged, headers=AUTH)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "source"]
    assert records_with_ids(kafka_bootstrap, TOPIC_LABELS, {message["message_id"]}) == []


def test_a_report_on_a_message_never_seen_from_that_sender_gets_404(
    client: TestClient, kafka_bootstrap: str
) -> None:
    message = a_message()
    client.post("/v1/messages", json=message)
    made_up = a_label(f"api-never-{uuid.uuid4().hex[:8]}")
    other_sender = a_label(message["message_id"], sender_id="victim@example.com")
    fine = a_label(message["message_id"])
    response = client.post(
        "/v1/labels", json={"labels": [fine, made_up, other_sender]}, headers=AUTH
    )
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == [
        ["body", "labels", 1, "message_id"],
        ["body", "labels", 2, "message_id"],
    ]
    assert all(e["type"] == "message_not_seen" for e in detail)
    ids = {message["message_id"], made_up["message_id"]}
    assert records_with_ids(kafka_bootstrap, TOPIC_LABELS, ids) == []


def test_a_report_on_a_message_only_the_message_log_holds_is_accepted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A fresh process (restart, another replica) checks reports against the durable log."""
    from datetime import UTC, datetime

    from modstack.message_log import MessageLog

    logged = MessageEvent(
        message_id=f"api-logged-{uuid.uuid4().hex[:8]}",
        sender_id="alice@example.com",
        sent_at=datetime(2002, 8, 1, 10, tzinfo=UTC),
        received_at=datetime(2002, 8, 1, 10, tzinfo=UTC),
    )
    MessageLog(tmp_path).append([logged])
    settings = IngestionSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        ingestion_client_keys={"app": SecretStr(KEY)},
        data_dir=tmp_path,
    )
    with TestClient(create_app(settings)) as fresh:
        ok = fresh.post("/v1/labels", json=a_label(logged.message_id), headers=AUTH)
        assert ok.status_code == 202
        wrong = a_label(logged.message_id, sender_id="victim@example.com", reporter_id="u9")
        assert fresh.post("/v1/labels", json=wrong, headers=AUTH).status_code == 404


def test_a_client_over_its_rate_gets_429_with_retry_after(kafka_bootstrap: str) -> None:
    settings = IngestionSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        ingestion_client_keys={"app": SecretStr(KEY)},
        ingestion_messages_need_key=True,
        ingestion_rate_per_s=0.5,
        ingestion_rate_burst=3,
    )
    with TestClient(create_app(settings)) as limited:
        answers = [limited.post("/v1/messages", json=a_message(), headers=AUTH) for _ in range(5)]
        assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert "INGESTION_RATE_PER_S" in answers[-1].json()["detail"]
        # the limit is per client: an anonymous caller is refused (key needed), not limited
        assert limited.post("/v1/messages", json=a_message()).status_code == 401
        metrics = limited.get("/metrics").text
        assert 'ingestion_rejected_total{reason="rate_limited"} 2.0' in metrics


def test_an_invalid_message_gets_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, kafka_bootstrap: str
) -> None:
    good, bad = a_message(), a_message(sent_at="2999-01-01T00:00:00Z")
    response = client.post("/v1/messages", json={"messages": [good, bad]})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "messages", 1, "sent_at"]
    assert "future" in error["msg"]
    # All or nothing: the valid message of a refused batch is not stored either.
    assert records_with_ids(kafka_bootstrap, TOPIC_MESSAGES, {good["message_id"]}) == []


def test_a_batch_over_the_limit_gets_422_naming_messages(client: TestClient) -> None:
    batch = [a_message(body="") for _ in range(MAX_BATCH + 1)]
    response = client.post("/v1/messages", json={"messages": batch})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "messages"]


def test_an_oversized_body_gets_413_before_parsing(client: TestClient) -> None:
    big = json.dumps(a_message(body="x" * MAX_REQUEST_BYTES)).encode()
    assert client.post("/v1/messages", content=big).status_code == 413

    # Chunked, no Content-Length: the streamed bytes are counted.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = client.post("/v1/messages", content=chunks())
    assert streamed.status_code == 413
    assert "INGESTION_MAX_REQUEST_BYTES" in streamed.json()["detail"]
    metrics = client.get("/metrics").text
    assert 'ingestion_rejected_total{reason="too_large"} 2.0' in metrics


def test_health_readiness_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert ready.json()["checks"]["broker"]["ok"] is True
    client.post("/v1/messages", json=a_message())
    metrics = client.get("/metrics").text
    for name in (
        "ingestion_requests_total",
        "ingestion_rejected_total",
        "ingestion_produce_duration_seconds_bucket",
        "ingestion_events_total",
    ):
        assert name in metrics
    assert 'ingestion_requests_total{endpoint="messages",outcome="accepted"}' in metrics


def test_a_broker_that_goes_down_gets_503_naming_its_address(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = BackgroundProcess(
        "Tansu broker",
        tansu_argv(port),
        tmp_path / "tansu.log",
        ready=lambda: kafka_ready(bootstrap),
    ).start()
    try:
        ensure_topics(bootstrap)
        settings = IngestionSettings(
            kafka_bootstrap_servers=bootstrap, ingestion_produce_timeout_s=1.5
        )
        with TestClient(create_app(settings)) as client:
            assert client.post("/v1/messages", json=a_message()).status_code == 202
            # A crash, not a shutdown (Tansu drains connections for ~5 s on SIGTERM).
            assert broker.proc is not None
            os.killpg(broker.proc.pid, signal.SIGKILL)
            broker.proc.wait(timeout=10)
            response = client.post("/v1/messages", json=a_message())
            assert response.status_code == 503
            assert bootstrap in response.json()["detail"]
            assert int(response.headers["retry-after"]) >= 1
            readiness = client.get("/readyz")
            assert readiness.status_code == 503
            assert readiness.json()["status"] == "unavailable"
            assert bootstrap in readiness.json()["checks"]["broker"]["detail"]
            assert (
                'ingestion_rejected_total{reason="broker_unavailable"} 1.0'
                in client.get("/metrics").text
            )
    finally:
        broker.stop()


def test_a_broker_that_never_came_up_gets_503_and_the_app_still_starts() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    settings = IngestionSettings(kafka_bootstrap_servers=nowhere, ingestion_produce_timeout_s=1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post("/v1/messages", json=a_message())
        assert response.status_code == 503
        assert nowhere in response.json()["detail"]
