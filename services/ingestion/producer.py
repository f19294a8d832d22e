"""Sending events to Kafka with a bound, and remembering what was recently sent.

`EventSender.send` returns only when the broker acknowledged every event (acks=all) or raises:
`BrokerUnavailable` (names the address) when the broker cannot be reached in time,
`EventTooLarge` when one event exceeds the producer's request size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

from modstack.kafka import BrokerUnavailable, make_producer

log = logging.getLogger(__name__)


class EventTooLarge(ValueError):
    """One serialized event is larger than the broker accepts."""


@dataclass(frozen=True)
class Outgoing:
    """One record to produce."""

    key: str
    value: bytes
    event_id: str


class EventSender:
    """A lazily connected, shared KafkaProducer (thread-safe) with bounded waits."""

    def __init__(self, bootstrap_servers: str, timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def producer(self) -> KafkaProducer:
        """The connected producer; connects on first use (the broker may start after us)."""
        with self._lock:
            if self._producer is None:
                timeout_ms = int(self.timeout_s * 1000)
                self._producer = make_producer(
                    self.bootstrap_servers,
                    bootstrap_timeout_ms=timeout_ms,
                    max_block_ms=timeout_ms,
                )
            return self._producer

    def send(self, topic: str, records: Sequence[Outgoing]) -> None:
        """Produce every record and wait for all acknowledgements, at most `timeout_s` in all.

        A record whose acknowledgement did not arrive in time may still be stored later: the
        caller answers 503, the client retries, and downstream dedupe by id makes it one.
        """
        if not records:
            return
        producer = self.producer()
        deadline = time.monotonic() + self.timeout_s
        try:
            futures = [producer.send(topic, key=r.key, value=r.value) for r in records]
            for future in futures:
                future.get(timeout=max(deadline - time.monotonic(), 0.001))
        except MessageSizeTooLargeError as exc:
            raise EventTooLarge(str(exc)) from exc
        except (KafkaError, OSError) as exc:
            raise BrokerUnavailable(self.bootstrap_servers, exc) from exc

    def reset(self) -> None:
        """Drop the producer without flushing; the next send connects a new one.

        After the broker restarted, kafka-python's producer can keep failing on metadata it
        will not refresh (the topics were re-created); a new producer starts clean. Anything
        in flight was already answered with a 503, so nothing acknowledged is dropped."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except KafkaError:
                sender = getattr(producer, "_sender", None)
                if sender is not None:
                    sender.force_close()

    def close(self) -> None:
        """Flush what is in flight (bounded) and close."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=self.timeout_s)
        except KafkaError:
            # kafka-python's close() flushes first and raises on timeout without closing, which
            # leaves the sender thread running and retried in __del__: stop it ourselves.
            log.warning("producer did not flush before closing (broker down?); records dropped")
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
            producer._closed = True


class RecentIds:
    """A bounded, thread-safe map of the most recently stored ids (oldest evicted first) to a
    value: the sender of a message, so reports can be checked against it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, event_id: object) -> bool:
        with self._lock:
            return event_id in self._ids

    def get(self, event_id: str) -> str | None:
        """The value stored with an id, else None."""
        with self._lock:
            return self._ids.get(event_id)

    def add_all(self, event_ids: Sequence[str], values: Sequence[str] | None = None) -> None:
        """Remember ids that the broker acknowledged (with their values)."""
        if self.capacity == 0:
            return
        with self._lock:
            for index, event_id in enumerate(event_ids):
                self._ids[event_id] = values[index] if values is not None else ""
                self._ids.move_to_end(event_id)
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)

    def erase_sender(self, sender_id: str) -> int:
        """Drop the ids stored with one sender (erasure); returns how many.

        The values are senders (ingestion stores each id with its event's sender_id), so this
        is the cache's part of `modstack forget`. The cache lives in the ingestion process: only
        that process can call this (`stack.privacy` cannot reach it from the CLI)."""
        with self._lock:
            gone = [k for k, v in self._ids.items() if v == sender_id]
            for key in gone:
                del self._ids[key]
            return len(gone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)
