"""The review service as a real process, events in and out of the real broker, and Debian's
Chromium driven by Playwright, for the review service's integration and browser tests.

Playwright cannot download its own browsers here: it drives /usr/bin/chromium by path.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from modstack.events import LabelEvent, ReviewRequest
from modstack.kafka import make_producer
from modstack.names import TOPIC_LABELS, TOPIC_REVIEWS
from modstack.processes import BackgroundProcess, http_ok
from modstack.waits import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SENT_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

# the documented dev accounts (services/review/settings.py, docs/review.md)
PASSWORDS = {
    "alice": "alice-dev-password",
    "bob": "bob-dev-password",
    "admin": "admin-dev-password",
}
TOKENS = {
    "alice": "dev-review-token-alice",
    "bob": "dev-review-token-bob",
    "admin": "dev-review-token-admin",
}
APPEAL_KEY = "dev-client-key"


def chromium_path() -> str | None:
    """Debian's Chromium, if installed (`apt-get install chromium`)."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


@dataclass(frozen=True)
class ReviewService:
    """A running review service: its URL, broker and log."""

    url: str
    kafka: str
    log: Path

    def api(self, who: str = "alice") -> httpx.Client:
        """An HTTP client with `who`'s personal token."""
        return httpx.Client(
            base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {TOKENS[who]}"}
        )


@contextmanager
def running_review(
    tmp_path: Path, kafka: str, extra_env: dict[str, str] | None = None
) -> Iterator[ReviewService]:
    """`python -m services.review` on a free port, its SQLite under tmp_path, its own consumer
    group (so earlier runs' offsets do not matter), started once /readyz answers (90 s max)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "REVIEW_ADDR": url,
        "BIND_HOST": "127.0.0.1",
        "DATA_DIR": str(tmp_path / "data"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "REVIEW_CONSUMER_GROUP": f"review-test-{uuid.uuid4().hex[:8]}",
        "LOG_FORMAT": "text",
        **(extra_env or {}),
    }
    log = tmp_path / "review.log"
    with BackgroundProcess(
        "review service",
        [sys.executable, "-m", "services.review"],
        log,
        ready=lambda: http_ok(f"{url}/readyz"),
        timeout_s=90,
        env=env,
        cwd=REPO_ROOT,
    ):
        yield ReviewService(url, kafka, log)


def review_request(
    message_id: str,
    *,
    policy: str = "spam",
    body: str = "Cheap pills, best prices",
    subject: str = "offer",
    sender: str = "sender-1",
    score: float = 0.6,
) -> ReviewRequest:
    return ReviewRequest(
        message_id=message_id,
        sender_id=sender,
        policy=policy,
        subject=subject,
        body=body,
        sent_at=SENT_AT,
        score=score,
        model_version="3",
        variant="champion",
    )


def publish_reviews(kafka: str, *requests: ReviewRequest, raw: tuple[bytes, ...] = ()) -> None:
    """Produce ReviewRequests (and any raw bytes) to reviews.v1, acknowledged."""
    producer = make_producer(kafka)
    try:
        for request in requests:
            producer.send(TOPIC_REVIEWS, key=request.message_id, value=request.to_bytes())
        for value in raw:
            producer.send(TOPIC_REVIEWS, key="raw", value=value)
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)


def wait_for_items(
    service: ReviewService, message_ids: set[str], timeout_s: float = 30.0
) -> dict[str, dict[str, Any]]:
    """The queue's items for these message ids (waits until all are consumed)."""

    def found() -> dict[str, dict[str, Any]] | None:
        with service.api("admin") as api:
            items = api.get("/v1/queue", params={"limit": 1000}).json()["items"]
        mine = {i["message_id"]: i for i in items if i["message_id"] in message_ids}
        return mine if set(mine) == message_ids else None

    return wait_until(found, timeout_s, f"items {sorted(message_ids)} in the review queue")


@contextmanager
def label_reader(
    kafka: str,
) -> Iterator[Callable[[Callable[[LabelEvent], bool], float], LabelEvent]]:
    """A real consumer of labels.v1 (every partition, from the start, no group); yields
    `wait(predicate, timeout_s)` returning the first label that matches."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    partitions = [
        TopicPartition(TOPIC_LABELS, p) for p in consumer.partitions_for_topic(TOPIC_LABELS) or []
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)

    def wait(predicate: Callable[[LabelEvent], bool], timeout_s: float = 20.0) -> LabelEvent:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    event = LabelEvent.model_validate(json.loads(record.value))
                    if predicate(event):
                        return event
        raise TimeoutError(f"no matching label on {TOPIC_LABELS} within {timeout_s:.0f} s")

    try:
        yield wait
    finally:
        consumer.close()
