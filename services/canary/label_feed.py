"""Feeds `LabelJoin` from predictions.v1 and labels.v1 (labelled pairs, block precision).

Events are parsed with the wire schemas of `modstack.events` (`model_validate_json`), so an
event with a field the producers renamed is skipped (logged at debug level), not read as a
silent zero.

A plain assigned consumer, no consumer group: the join lives in memory, so after a restart the
controller re-reads what the broker still holds instead of resuming from committed offsets.
"""

from __future__ import annotations

import logging
import threading

from pydantic import ValidationError

from modstack.events import LabelEvent, PredictionEvent
from modstack.names import TOPIC_LABELS, TOPIC_PREDICTIONS
from modstack.policy import DEFAULT_POLICY, catalogue
from services.canary.label_join import LabelJoin

log = logging.getLogger(__name__)


class LabelFollower:
    """Background thread: decisions and labels into a `LabelJoin`, guarded by a lock."""

    def __init__(self, bootstrap_servers: str, policy: str = DEFAULT_POLICY) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.policy = policy
        self.join = LabelJoin(positive_label=catalogue().get(policy).positive_label)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="canary-labels", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _consumer(self):
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        partitions = [
            TopicPartition(topic, p)
            for topic in (TOPIC_PREDICTIONS, TOPIC_LABELS)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            consumer.close()
            raise RuntimeError("topics predictions.v1 / labels.v1 do not exist yet")
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        return consumer

    def _run(self) -> None:
        consumer = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                    self.error = ""
                polled = consumer.poll(timeout_ms=500, max_records=2_000)
            except Exception as exc:  # broker down or topics missing: retry, keep the join
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("label join paused (%s); retrying", self.error)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(5)
                continue
            for tp, records in polled.items():
                with self.lock:
                    for record in records:
                        self._apply(tp.topic, record.value)
        if consumer is not None:
            consumer.close()

    def _apply(self, topic: str, raw: bytes) -> None:
        try:
            if topic == TOPIC_PREDICTIONS:
                prediction = PredictionEvent.model_validate_json(raw)
                if prediction.policy != self.policy:
                    return
                self.join.add_decision(
                    prediction.message_id,
                    prediction.variant,
                    prediction.action,
                    prediction.scored_at,
                )
            else:
                label = LabelEvent.model_validate_json(raw)
                if label.policy == self.policy:
                    self.join.add_label(label.message_id, label.label)
        except ValidationError as exc:
            log.debug("skipping an unreadable %s event: %s", topic, exc)
