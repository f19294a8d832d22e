"""Every moderation decision to `predictions.v1`, and every one a model was unsure of to
`reviews.v1` (the review service's queue), off the request path.

Requests put events on a bounded in-memory queue and return; one thread hands them to the Kafka
producer, whose own sender thread batches them to the broker. A full queue (broker down for
long) drops events and counts them instead of slowing answers or growing memory without bound:
predictions feed monitoring, where a counted gap is acceptable, a slow moderation API is not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from modstack.events import PredictionEvent, ReviewRequest
from modstack.kafka import BrokerUnavailable, make_producer
from modstack.names import TOPIC_PREDICTIONS, TOPIC_REVIEWS
from services.serving.metrics import PREDICTION_EVENTS, PRODUCER_REPLACEMENTS

log = logging.getLogger(__name__)

_STOP = object()
# How long the sender waits before trying to reconnect to an unreachable broker.
_RECONNECT_DELAY_S = 2.0
PRODUCER_LINGER_MS = 50
PRODUCER_BATCH_BYTES = 256 * 1024


class PredictionPublisher:
    """Non-blocking `publish(event)`; the background thread owns the producer."""

    def __init__(
        self, bootstrap_servers: str, max_queue: int = 10_000, delivery_timeout_s: float = 30.0
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.delivery_timeout_ms = int(delivery_timeout_s * 1000)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="prediction-publisher", daemon=True)
        self._producer: Any = None
        self._stopped = threading.Event()
        self._replace = threading.Event()  # set by a non-retriable delivery error
        # monotonic time of the first failure with no delivery since (None while delivering)
        self._failing_since: float | None = None
        # the last delivery failure, cleared by the next delivered event (/readyz shows it)
        self.last_error = ""

    def start(self) -> PredictionPublisher:
        """Start the sender thread (connects lazily, retries while the broker is down)."""
        self._thread.start()
        return self

    def publish(self, event: PredictionEvent | ReviewRequest) -> None:
        """Queue one event (a prediction, or a review request for `reviews.v1`); never blocks.
        A full queue drops the event (counted by topic)."""
        topic = TOPIC_REVIEWS if isinstance(event, ReviewRequest) else TOPIC_PREDICTIONS
        try:
            self._queue.put_nowait((topic, event))
        except queue.Full:
            PREDICTION_EVENTS.labels("dropped", topic).inc()
            self.last_error = f"queue full ({self._queue.maxsize} events): dropping"

    @property
    def connected(self) -> bool:
        """True once the producer reached the broker."""
        return self._producer is not None

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued (bounded) and close the producer."""
        self._stopped.set()
        # blocks briefly at most: the sender drains the queue continuously
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.warning("prediction queue still full at shutdown; unsent events are dropped")
        self._thread.join(timeout=timeout_s)
        if self._producer is not None:
            self._producer.close(timeout=timeout_s)

    def _connect(self) -> bool:
        try:
            # prediction events are many and small: a longer linger and bigger batches mean
            # fewer, better-compressed broker requests (the sender thread does the waiting)
            self._producer = make_producer(
                self.bootstrap_servers,
                linger_ms=PRODUCER_LINGER_MS,
                batch_size=PRODUCER_BATCH_BYTES,
                # an event the broker has not acknowledged by then is counted as failed
                delivery_timeout_ms=self.delivery_timeout_ms,
                request_timeout_ms=min(10_000, self.delivery_timeout_ms - PRODUCER_LINGER_MS),
            )
            log.info(
                "prediction events go to %s and review requests to %s on %s",
                TOPIC_PREDICTIONS,
                TOPIC_REVIEWS,
                self.bootstrap_servers,
            )
            return True
        except BrokerUnavailable as exc:
            log.warning("%s; prediction events wait in the queue", exc)
            return False

    def _on_error(self, topic: str, exc: BaseException) -> None:
        PREDICTION_EVENTS.labels("failed", topic).inc()
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        if not getattr(exc, "retriable", False):
            # e.g. a restarted broker that no longer knows this idempotent producer's id: the
            # producer stays in its fatal state for good, so the sender thread makes a new one
            self._replace.set()
        log.warning("prediction event not delivered: %s", exc)

    def _on_sent(self, topic: str, _metadata: object) -> None:
        PREDICTION_EVENTS.labels("sent", topic).inc()
        self.last_error = ""
        self._failing_since = None

    def _ensure_producer(self) -> None:
        """Connect (retrying while the broker is down); replace a producer gone fatal."""
        # "retriable" errors that never stop (a restarted broker that no longer knows this
        # idempotent producer, seen as expiring batches for good) also get a new producer once
        # a whole delivery timeout has passed without one delivered event
        failing = self._failing_since
        stuck = failing is not None and time.monotonic() - failing > self.delivery_timeout_ms / 1000
        if (self._replace.is_set() or stuck) and self._producer is not None:
            self._replace.clear()
            self._failing_since = None
            log.warning("replacing the prediction producer (no delivery: %s)", self.last_error)
            try:
                self._producer.close(timeout=0)
            except Exception as exc:  # close() flushes first: a stuck producer times out there
                log.warning("the old prediction producer did not close cleanly: %s", exc)
            self._producer = None
            PRODUCER_REPLACEMENTS.inc()
        while self._producer is None and not self._stopped.is_set():
            if not self._connect():
                self._stopped.wait(_RECONNECT_DELAY_S)

    def _run(self) -> None:
        self._ensure_producer()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            topic, event = item
            self._ensure_producer()
            if self._producer is None:  # stopped while reconnecting
                return
            try:
                future = self._producer.send(topic, key=event.message_id, value=event.to_bytes())
            except Exception as exc:  # KafkaTimeoutError when metadata is unavailable, etc.
                self._on_error(topic, exc)
                continue
            future.add_callback(self._on_sent, topic)
            future.add_errback(self._on_error, topic)
