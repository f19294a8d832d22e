"""Wiring of the processor to the outside: Kafka consumer and producer, Feast, metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from prometheus_client import start_http_server
from tenacity import retry, stop_after_attempt, wait_exponential

from modstack.deadletter_store import DeadLetterStore
from modstack.events import DeadLetter
from modstack.kafka import BatchConsumerLoop, ensure_topics, make_consumer, make_producer
from modstack.message_log import MessageLog
from modstack.names import (
    GROUP_PROCESSOR,
    TOPIC_DEADLETTER,
    TOPIC_LABELS,
    TOPIC_MESSAGES,
    VIEW_SENDER_ACTIVITY,
    VIEW_SENDER_REPUTATION,
)
from services.processor.metrics import ProcessorMetrics
from services.processor.pipeline import FeaturePipeline, PushRows, SendDeadLetters
from services.processor.settings import ProcessorSettings

log = logging.getLogger(__name__)


class RepoNotApplied(RuntimeError):
    """The Feast registry lacks the sender views the processor pushes to."""


LAG_EVERY_S = 1.0
COMPACT_EVERY_S = 30.0


def feast_pusher(settings: ProcessorSettings) -> PushRows:
    """Rows of a sender view -> its Feast push source (online and offline), with retries.

    After the last retry the error propagates and the process exits: the batch is not
    committed, and the next process rebuilds its state from the message log.
    """
    from features import (
        store as featurestore,
    )  # Feast takes seconds to import; only the processor needs it

    store = featurestore.get_store(settings.feast_repo_path)
    # The processor does not apply the repo itself: `apply_repo` deletes objects it does not
    # define (e.g. a newer model's FeatureService); the stack applies it before starting us.
    try:
        store.get_feature_view(VIEW_SENDER_ACTIVITY)
        store.get_feature_view(VIEW_SENDER_REPUTATION)
    except Exception as exc:  # FeatureViewNotFoundException, or no registry file at all
        raise RepoNotApplied(
            f"the Feast repo {settings.feast_repo_path} is not applied in "
            f"{featurestore.feast_data_dir()} ({exc}); run `modstack feast-apply` first"
        ) from exc
    pushers: dict[str, Callable[..., Any]] = {
        VIEW_SENDER_ACTIVITY: featurestore.push_activity,
        VIEW_SENDER_REPUTATION: featurestore.push_reputation,
    }

    @retry(stop=stop_after_attempt(3), wait=wait_exponential(min=0.2, max=2), reraise=True)
    def push(view: str, rows: list[dict[str, Any]]) -> None:
        pushers[view](store, rows)

    return push


def deadletter_sender(
    producer: KafkaProducer, timeout_s: float, store: DeadLetterStore | None = None
) -> SendDeadLetters:
    """Store dead letters (erasable, expiring: the file under DATA_DIR, or the database of
    DEADLETTER_DATABASE_URL), then produce them and wait for every acknowledgement (bounded)."""

    def send(letters: list[DeadLetter]) -> None:
        if store is not None:
            store.add(letters)
        deadline = time.monotonic() + timeout_s
        futures = [
            producer.send(TOPIC_DEADLETTER, key=letter.key, value=letter.to_bytes())
            for letter in letters
        ]
        for future in futures:
            future.get(timeout=max(deadline - time.monotonic(), 0.001))

    return send


class LagTracker:
    """`processor_consumer_lag_messages{topic}` = end offsets - positions of the assignment."""

    def __init__(self, consumer: KafkaConsumer, metrics: ProcessorMetrics) -> None:
        self.consumer = consumer
        self.metrics = metrics
        self._last = 0.0

    def update(self, force: bool = False) -> None:
        """Refresh the gauge (at most once a second unless forced)."""
        now = time.monotonic()
        if not force and now - self._last < LAG_EVERY_S:
            return
        self._last = now
        assigned: list[TopicPartition] = sorted(self.consumer.assignment())
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(assigned)
            lag: dict[str, int] = {TOPIC_MESSAGES: 0, TOPIC_LABELS: 0}
            for tp in assigned:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - self.consumer.position(tp))
        except KafkaError as exc:  # a metric must never stop the consumer
            log.debug("lag not updated: %s", exc)
            return
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)


class RebuildOnReassignment(ConsumerRebalanceListener):
    """Rebuild the feature state when partitions move between processor instances.

    A sender's state must include every event of that sender; after another instance owned
    its partition for a while, only the message log has them all. The first assignment needs
    no rebuild: the state was just built at start-up.
    """

    def __init__(self, pipeline: FeaturePipeline) -> None:
        self.pipeline = pipeline
        self._assigned_once = False

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("partitions revoked: %s", _partitions(revoked))
        self.pipeline.metrics.assigned_partitions.set(0)

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", _partitions(assigned))
        self.pipeline.metrics.assigned_partitions.set(len(assigned))
        if self._assigned_once:
            self.pipeline.rebuild()
        self._assigned_once = True


def _partitions(tps: Any) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"


def run(settings: ProcessorSettings) -> None:
    """Build the state from the message log, then consume until SIGTERM/SIGINT."""
    bootstrap = settings.kafka_bootstrap_servers
    created = ensure_topics(bootstrap)
    if created:
        log.info("created topics %s", ", ".join(created))
    metrics = ProcessorMetrics()
    if settings.processor_metrics_port:
        start_http_server(settings.processor_metrics_port, addr=settings.bind_host)
        log.info(
            "metrics on http://%s:%d/metrics", settings.bind_host, settings.processor_metrics_port
        )
    producer = make_producer(bootstrap)
    message_log = MessageLog(settings.data_dir)
    deadletters = DeadLetterStore(settings.data_dir)  # DEADLETTER_DATABASE_URL, or the file
    log.info("dead letters kept in %r", deadletters)
    pipeline = FeaturePipeline(
        message_log,
        feast_pusher(settings),
        deadletter_sender(producer, settings.processor_deadletter_timeout_s, deadletters),
        metrics,
    )
    pipeline.rebuild()

    consumer = make_consumer([], GROUP_PROCESSOR, bootstrap)
    consumer.subscribe(
        topics=[TOPIC_MESSAGES, TOPIC_LABELS], listener=RebuildOnReassignment(pipeline)
    )
    lag = LagTracker(consumer, metrics)
    last_compaction = time.monotonic()

    def handle(records: list[Any]) -> None:
        result = pipeline.handle(records)
        log.info(
            "batch: %d records, %d accepted, %d duplicate, %d too late, %d dead letters, rows %s",
            len(records),
            result.accepted,
            result.duplicate,
            result.too_late,
            result.deadletter,
            result.rows,
        )
        lag.update()

    def when_idle() -> None:
        nonlocal last_compaction
        lag.update()
        if time.monotonic() - last_compaction < COMPACT_EVERY_S:
            return
        last_compaction = time.monotonic()
        expired = message_log.expire(settings.processor_log_retention_days)
        if any(expired.values()):
            log.info("retention: removed message log files %s", expired)
        dropped = deadletters.expire(settings.processor_deadletter_retention_days)
        if dropped:
            log.info("retention: removed %d dead letters", dropped)
        for kind in ("messages", "labels"):
            if message_log.file_count(kind) > settings.processor_compact_after_files:
                removed = message_log.compact(kind)
                log.info("compacted the %s log: %d files merged", kind, removed)

    loop = BatchConsumerLoop(
        consumer,
        handle,
        max_records=settings.processor_max_batch,
        poll_timeout_ms=settings.processor_poll_timeout_ms,
        on_idle=when_idle,
    )
    loop.install_signal_handlers()
    log.info(
        "consuming %s, %s as group %r from %s",
        TOPIC_MESSAGES,
        TOPIC_LABELS,
        GROUP_PROCESSOR,
        bootstrap,
    )
    try:
        loop.run()
    finally:
        producer.close(timeout=5)
        log.info("stopped")
