"""The review service's background work: consume `reviews.v1` into the queue, and publish the
label outbox to `labels.v1`.

Consuming is at-least-once (commit after the batch is in the database) and the insert is
idempotent per (message_id, policy), so a redelivered batch changes nothing. Publishing is
at-least-once too: a label stays in the outbox until the broker acknowledged it, and
consumers of `labels.v1` keep the first label per message, source and reporter.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from pydantic import ValidationError

from modstack.events import ReviewRequest
from modstack.kafka import BatchConsumerLoop, BrokerUnavailable, make_consumer, make_producer
from modstack.names import TOPIC_LABELS, TOPIC_REVIEWS
from services.review.metrics import ReviewMetrics
from services.review.queue import ReviewQueue
from services.review.settings import ReviewSettings

log = logging.getLogger(__name__)
RECONNECT_DELAY_S = 2.0
OUTBOX_INTERVAL_S = 1.0


class Worker:
    """The consumer thread and the outbox publisher thread."""

    def __init__(self, settings: ReviewSettings, queue: ReviewQueue, metrics: ReviewMetrics):
        self.settings = settings
        self.queue = queue
        self.metrics = metrics
        self.consuming = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._loop: BatchConsumerLoop | None = None
        self._producer: KafkaProducer | None = None
        self._publish_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for target, name in ((self._consume, "consume-reviews"), (self._publish, "publish")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._loop is not None:
            self._loop.stop()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        if self._producer is not None:
            self._producer.close(timeout=5)

    # -- in --------------------------------------------------------------------------------

    def handle(self, records: list[ConsumerRecord]) -> None:
        """Queue a batch of ReviewRequest records (invalid ones are logged and counted)."""
        for record in records:
            try:
                request = ReviewRequest.model_validate_json(record.value)
            except ValidationError as exc:
                log.warning(
                    "skipping an invalid ReviewRequest at offset %s: %s", record.offset, exc
                )
                self.metrics.requests.labels("invalid").inc()
                continue
            added = self.queue.add_request(request)
            self.metrics.requests.labels("queued" if added else "duplicate").inc()

    def _consume(self) -> None:
        while not self._stopping.is_set():
            try:
                consumer = make_consumer(
                    [TOPIC_REVIEWS],
                    self.settings.review_consumer_group,
                    self.settings.kafka_bootstrap_servers,
                )
            except BrokerUnavailable as exc:
                log.warning("%s; retrying in %.0f s", exc, RECONNECT_DELAY_S)
                self._stopping.wait(RECONNECT_DELAY_S)
                continue
            self._loop = BatchConsumerLoop(consumer, self.handle)
            if self._stopping.is_set():
                self._loop.stop()
            self.consuming = True
            try:
                self._loop.run()
            except Exception:
                log.exception("consumer loop failed; reconnecting")
                self._stopping.wait(RECONNECT_DELAY_S)
            finally:
                self.consuming = False

    # -- out -------------------------------------------------------------------------------

    def publish_soon(self) -> None:
        """Wake the publisher (after a decision committed labels to the outbox)."""
        self._wake.set()

    def publish_now(self) -> int:
        """Send every unpublished label and wait for the broker; returns how many went out."""
        with self._publish_lock:
            pending = self.queue.unpublished()
            if not pending:
                return 0
            producer = self._producer_or_none()
            if producer is None:
                return 0
            try:
                sent = self._send(producer, pending)
            except (KafkaError, OSError) as exc:
                log.warning("publishing %d labels failed (retried): %s", len(pending), exc)
                self.metrics.publish_failures.inc()
                self._reset_producer()
                return 0
            self.queue.mark_published(sent)
            self.metrics.labels_published.inc(len(sent))
            return len(sent)

    def _send(self, producer: KafkaProducer, pending: list[dict[str, Any]]) -> list[int]:
        futures = [
            (
                row["id"],
                producer.send(TOPIC_LABELS, key=row["sender_id"], value=row["payload"].encode()),
            )
            for row in pending
        ]
        timeout = self.settings.review_publish_timeout_s
        for _, future in futures:
            future.get(timeout=timeout)
        return [row_id for row_id, _ in futures]

    def _producer_or_none(self) -> KafkaProducer | None:
        if self._producer is None:
            try:
                self._producer = make_producer(self.settings.kafka_bootstrap_servers)
            except BrokerUnavailable as exc:
                log.warning("cannot publish labels yet: %s", exc)
                self.metrics.publish_failures.inc()
                return None
        return self._producer

    def _reset_producer(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=1)
            self._producer = None

    def _publish(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(OUTBOX_INTERVAL_S)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.publish_now()
            except Exception:
                log.exception("outbox publisher failed; retrying")
