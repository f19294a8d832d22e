"""Faults from outside the code, on the real stack processes (Tansu, ingestion, processor,
monitoring as `python -m ...` subprocesses on free ports), each with what it cost:

- the processor SIGKILLed mid-batch five times: no accepted message lost, none counted twice;
- the broker stopped and started again: ingestion answers 503 with Retry-After while it is
  down and recovers without a restart;
- monitoring SIGKILLed and started again: it consumes again from its committed offsets.

The costs go to var/run/results/faults.json (docs/stream.md quotes them).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from features import store as featurestore
from modstack.events import PredictionEvent
from modstack.kafka import ensure_topics, make_producer
from modstack.names import TOPIC_MESSAGES, TOPIC_PREDICTIONS
from modstack.processes import BackgroundProcess, child_env, http_ok
from modstack.waits import free_port, wait_until
from tests.faults.results import record_fault
from tests.support.message_log import stored_message_ids
from tests.support.processes import kill, metric_total, start_module, start_tansu

pytestmark = [pytest.mark.integration, pytest.mark.faults]

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "fault-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
T0 = datetime(2002, 7, 1, tzinfo=UTC)
KILLS = 5


def _results(name: str, values: dict[str, Any]) -> None:
    record_fault(name, values)


def _messages(prefix: str, n: int, senders: int = 7) -> list[dict[str, Any]]:
    return [
        {
            "message_id": f"{prefix}-{i}",
            "sender_id": f"{prefix.split('-')[0]}-s{i % senders}@x",
            "subject": f"hello {i}",
            "body": "plain text",
            "sent_at": (T0 + timedelta(seconds=i)).isoformat(),
        }
        for i in range(n)
    ]


@dataclass
class Stack:
    tmp: Path
    bootstrap: str
    broker: BackgroundProcess
    data_dir: Path
    ingestion_url: str
    ingestion: BackgroundProcess | None = None
    processor: BackgroundProcess | None = None
    processor_metrics: str = ""
    started: list[BackgroundProcess] = field(default_factory=list)

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        return child_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "DATA_DIR": str(self.data_dir),
                "FEAST_DATA_DIR": str(self.data_dir / "feast"),
                "FEAST_REPO_PATH": str(REPO_ROOT / "features"),
                "BIND_HOST": "127.0.0.1",
                **extra,
            }
        )

    def start(self, name: str, module: str, ready_url: str, extra: dict[str, str]) -> Any:
        process = start_module(name, module, self.tmp, ready_url, self.env(extra))
        self.started.append(process)
        return process

    def start_processor(self) -> float:
        started = time.monotonic()
        port = free_port()
        self.processor_metrics = f"http://127.0.0.1:{port}/metrics"
        self.processor = self.start(
            "processor",
            "services.processor",
            self.processor_metrics,
            {
                "PROCESSOR_METRICS_PORT": str(port),
                "PROCESSOR_POLL_TIMEOUT_MS": "50",
                "PROCESSOR_MAX_BATCH": "40",
            },
        )
        return time.monotonic() - started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    bootstrap = f"127.0.0.1:{free_port()}"
    broker = start_tansu(bootstrap, tmp / "tansu.log")
    data_dir = tmp / "data"
    ensure_topics(bootstrap)
    featurestore.apply_repo(REPO_ROOT / "features", data_dir=data_dir)
    ingestion_url = f"http://127.0.0.1:{free_port()}"
    running = Stack(tmp, bootstrap, broker, data_dir, ingestion_url)
    running.ingestion = running.start(
        "ingestion",
        "services.ingestion",
        f"{ingestion_url}/healthz",
        {
            "INGESTION_ADDR": ingestion_url,
            "INGESTION_CLIENT_KEYS": json.dumps({"faults": KEY}),
            "INGESTION_PRODUCE_TIMEOUT_S": "1.5",
            "INGESTION_RATE_PER_S": "0",
        },
    )
    try:
        yield running
    finally:
        for process in reversed(running.started):
            process.stop()
        running.broker.stop()


def _logged_ids(data_dir: Path, prefix: str) -> tuple[set[str], int]:
    """(distinct logged message ids with the prefix, stored rows holding them)."""
    ids = [i for i in stored_message_ids(data_dir) if i.startswith(prefix)]
    return set(ids), len(ids)


def test_processor_sigkilled_mid_batch_five_times_loses_nothing_and_counts_nothing_twice(
    stack: Stack,
) -> None:
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    restart_s = [stack.start_processor()]
    accepted: list[dict[str, Any]] = []
    kills_mid_batch = 0
    with httpx.Client(base_url=stack.ingestion_url, timeout=10) as client:
        for round_no in range(KILLS):
            batch = _messages(f"{prefix}-r{round_no}", 400)
            for start in range(0, len(batch), 100):
                answer = client.post("/v1/messages", json={"messages": batch[start : start + 100]})
                assert answer.status_code == 202, answer.text
            accepted += batch
            # kill once the processor is inside this round's records, not before or after
            wait_until(
                lambda r=round_no: _logged_ids(stack.data_dir, f"{prefix}-r{r}-")[0] != set(),
                timeout_s=60,
                what="the processor started on the round",
            )
            done = len(_logged_ids(stack.data_dir, f"{prefix}-r{round_no}-")[0])
            assert stack.processor is not None
            kill(stack.processor)
            kills_mid_batch += done < len(batch)
            restart_s.append(stack.start_processor())
    expected = {m["message_id"] for m in accepted}
    wait_until(
        lambda: _logged_ids(stack.data_dir, prefix)[0] >= expected,
        timeout_s=120,
        what="every accepted message in the message log",
    )
    logged, rows = _logged_ids(stack.data_dir, prefix)
    missing = expected - logged
    # counted once: every sender's online total is its number of distinct messages
    senders: dict[str, int] = {}
    for message in accepted:
        senders[message["sender_id"]] = senders.get(message["sender_id"], 0) + 1
    store = featurestore.get_store(REPO_ROOT / "features", data_dir=stack.data_dir)

    def totals() -> dict[str, float | None]:
        values = store.get_online_features(
            features=["sender_activity:sender_msgs_total"],
            entity_rows=[{"sender_id": s} for s in senders],
        ).to_dict()
        return dict(zip(values["sender_id"], values["sender_msgs_total"], strict=True))

    wait_until(
        lambda: totals() == {s: float(n) for s, n in senders.items()},
        timeout_s=30,
        what="online totals equal to the distinct messages per sender",
    )
    _results(
        "processor_sigkill",
        {
            "kills": KILLS,
            "kills_mid_round": kills_mid_batch,
            "accepted_messages": len(expected),
            "lost": len(missing),
            "counted_twice": 0,
            "rows_written_again_after_kills": rows - len(logged),
            "restart_seconds": [round(s, 2) for s in restart_s[1:]],
            "restart_seconds_median": round(sorted(restart_s[1:])[len(restart_s[1:]) // 2], 2),
        },
    )
    assert not missing
    assert kills_mid_batch >= 1, "no kill landed inside a round: the test did not test anything"
    stack.processor and stack.processor.stop()


def test_broker_stopped_and_started_gets_503_with_retry_after_and_ingestion_recovers(
    stack: Stack,
) -> None:
    assert stack.ingestion is not None and stack.ingestion.proc is not None
    ingestion_pid = stack.ingestion.proc.pid
    answers: list[tuple[float, int, str | None, str]] = []
    stop = threading.Event()

    def post_forever() -> None:
        with httpx.Client(base_url=stack.ingestion_url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                message = _messages(f"brk-{uuid.uuid4().hex[:8]}", 1)[0]
                try:
                    response = client.post("/v1/messages", json=message)
                except httpx.TransportError:
                    answers.append((time.monotonic(), 0, None, message["message_id"]))
                    continue
                answers.append(
                    (
                        time.monotonic(),
                        response.status_code,
                        response.headers.get("retry-after"),
                        message["message_id"],
                    )
                )
                i += 1
                time.sleep(0.05)

    poster = threading.Thread(target=post_forever, daemon=True)
    poster.start()
    time.sleep(1.0)
    stopped_at = time.monotonic()
    kill(stack.broker)
    time.sleep(3.0)
    stack.broker = start_tansu(stack.bootstrap, stack.tmp / "tansu-2.log")
    # This broker keeps memory only and comes back without its topics; a durable one (the
    # stack's default, Tansu on S3: tests/faults/test_broker_durability.py) keeps them. Left
    # to auto-creation under concurrent produce requests, one record acknowledged after the
    # restart was not on the topic in 1 of 2 runs here (not diagnosed further): the topics
    # are created as an operator's broker would have them.
    ensure_topics(stack.bootstrap)
    back_at = time.monotonic()

    def recovered() -> bool:
        return any(t > back_at and code == 202 for t, code, _, _ in answers)

    wait_until(recovered, timeout_s=45, what="ingestion answering 202 again")
    time.sleep(1.0)
    stop.set()
    poster.join(timeout=15)
    unavailable = [a for a in answers if a[1] == 503]
    first_ok_after = min(t for t, code, _, _ in answers if t > back_at and code == 202)
    after_ids = {i for t, code, _, i in answers if code == 202 and t >= first_ok_after}
    consumer = KafkaConsumer(
        bootstrap_servers=stack.bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    partitions = [
        TopicPartition(TOPIC_MESSAGES, p)
        for p in consumer.partitions_for_topic(TOPIC_MESSAGES) or []
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    on_topic = {json.loads(r.value)["message_id"] for r in consumer}
    consumer.close()
    before_ids = {i for t, code, _, i in answers if code == 202 and t < stopped_at}
    _results(
        "broker_restart",
        {
            "broker_down_seconds": round(back_at - stopped_at, 2),
            "seconds_of_503": round(
                (max(a[0] for a in unavailable) - min(a[0] for a in unavailable))
                if unavailable
                else 0.0,
                2,
            ),
            "answers_503": len(unavailable),
            "answers_503_without_retry_after": sum(1 for a in unavailable if not a[2]),
            "recovery_seconds_after_broker_back": round(first_ok_after - back_at, 2),
            "accepted_after_recovery": len(after_ids),
            "accepted_after_recovery_missing_on_topic": len(after_ids - on_topic),
            "accepted_before_stop_lost_with_memory_only_broker": len(before_ids - on_topic),
            "other_statuses": sorted({a[1] for a in answers} - {202, 503}),
        },
    )
    assert unavailable, "no request saw the broker down"
    assert all(a[2] and int(a[2]) >= 1 for a in unavailable)
    assert {a[1] for a in answers} <= {202, 503}
    assert after_ids <= on_topic
    assert stack.ingestion.proc.pid == ingestion_pid and stack.ingestion.proc.poll() is None


def test_monitoring_sigkilled_and_started_again_resumes_consuming(stack: Stack) -> None:
    ensure_topics(stack.bootstrap)
    url = f"http://127.0.0.1:{free_port()}"
    extra = {
        "MONITORING_ADDR": url,
        "RETRAIN_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
    }
    producer = make_producer(stack.bootstrap)

    def produce(prefix: str, n: int) -> None:
        for i in range(n):
            event = PredictionEvent(
                message_id=f"{prefix}-{i}",
                sender_id="s@x",
                sent_at=T0,
                scored_at=T0,
                score=0.1,
                action="allow",
                model_version="1",
                variant="champion",
            )
            producer.send(TOPIC_PREDICTIONS, key=event.message_id, value=event.to_bytes())
        producer.flush(timeout=10)

    def used() -> float:
        return metric_total(
            httpx.get(f"{url}/metrics", timeout=2).text,
            "monitoring_events_total",
            topic=TOPIC_PREDICTIONS,
            outcome="used",
        )

    monitoring = stack.start("monitoring", "services.monitoring", f"{url}/healthz", extra)
    wait_until(lambda: http_ok(f"{url}/readyz"), timeout_s=60, what="monitoring consuming")
    produce("mon-a", 50)
    wait_until(lambda: used() >= 50, timeout_s=30, what="monitoring used the first 50")
    time.sleep(6)  # past the consumer's auto-commit interval (5 s)
    kill(monitoring)
    produce("mon-b", 30)  # while it is down
    restarted = time.monotonic()
    stack.started.remove(monitoring)
    monitoring = stack.start("monitoring", "services.monitoring", f"{url}/healthz", extra)
    wait_until(lambda: http_ok(f"{url}/readyz"), timeout_s=60, what="monitoring consuming again")
    wait_until(lambda: used() >= 30, timeout_s=30, what="monitoring used what came while down")
    resumed_s = time.monotonic() - restarted
    time.sleep(1.0)
    after = used()
    status = httpx.get(f"{url}/v1/status", timeout=5).json()
    _results(
        "monitoring_restart",
        {
            "seconds_to_consuming_again": round(resumed_s, 2),
            "events_while_down": 30,
            "used_after_restart": after,
            "reconsumed_after_restart": after - 30,
            "open_window_rows_after_restart": status["current_window_rows"],
            "open_window_rows_lost": 50 - max(0, status["current_window_rows"] - 30),
        },
    )
    producer.close(timeout=5)
    assert after >= 30
