"""One micro-batch, start to finish: parse -> features -> push -> message log -> dead letters.

The order is what makes restarts safe. Everything here happens before the consumer commits
the batch's offsets, so a crash at any point redelivers the batch:

- push before log: a crash after the push but before the log write redelivers events the
  rebuilt state has not seen, so they are computed again to the same rows and pushed again
  (identical values); the other order could leave pushed-never features for logged events.
- log before commit: a crash after the log write redelivers events the rebuilt state has
  seen, so the computer calls them duplicates and nothing is counted twice.

The in-memory state is never rolled back: when a push or a write fails for good, the process
exits and the next one rebuilds its state from the log (`rebuild`).

Labels it cannot trust become dead letters with the reason and are never counted (ingestion
refuses what it can check with a 4xx first; these catch what reached the topic otherwise): a
user report without a reporter, and a report naming a sender other than the one the message
came from (by a bounded index of recent message ids). A report whose message the processor
has not seen yet is counted: the two topics are consumed independently, so a report can
arrive here before its message, and ingestion already checked that the message exists.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from features.sender import USER_REPORT, SenderFeatureComputer, events_from_frames
from modstack.events import DeadLetter, LabelEvent, MessageEvent
from modstack.message_log import MessageLog, next_seqs
from modstack.names import TOPIC_LABELS, TOPIC_MESSAGES
from services.processor.metrics import ProcessorMetrics

log = logging.getLogger(__name__)

PushRows = Callable[[str, list[dict[str, Any]]], None]
"""Push rows of one feature view (name, rows) to the feature store; raises on failure."""
SendDeadLetters = Callable[[list[DeadLetter]], None]
"""Store dead letters durably (acknowledged); raises on failure."""


class Record(Protocol):
    """What the pipeline needs of a Kafka record (kafka-python's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None


_PARSERS: dict[str, type[MessageEvent] | type[LabelEvent]] = {
    TOPIC_MESSAGES: MessageEvent,
    TOPIC_LABELS: LabelEvent,
}


def parse(record: Record) -> MessageEvent | LabelEvent:
    """The event in a record; raises ValueError saying why it is unusable."""
    model = _PARSERS.get(record.topic)
    if model is None:
        raise ValueError(f"no schema for topic {record.topic!r}")
    if not record.value:
        raise ValueError("empty record value")
    try:
        return model.model_validate_json(record.value)
    except ValidationError as exc:
        raise ValueError(
            f"not a valid {model.__name__}: {exc.error_count()} error(s): "
            + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
        ) from None


@dataclass
class BatchResult:
    """What one batch did (for logs and tests)."""

    accepted: int = 0
    duplicate: int = 0
    too_late: int = 0
    deadletter: int = 0
    rows: dict[str, int] = field(default_factory=dict)


# Message ids -> sender the processor keeps to check reports against (bounded: the oldest are
# forgotten first; a report on an older message is checked by ingestion against the log).
SENDER_INDEX_SIZE = 200_000


class SenderIndex:
    """A bounded map of recently seen message ids to their sender (oldest evicted first)."""

    def __init__(self, capacity: int = SENDER_INDEX_SIZE) -> None:
        self.capacity = capacity
        self._senders: OrderedDict[str, str] = OrderedDict()

    def add(self, message_id: str, sender_id: str) -> None:
        """Remember a message's sender (the first one seen keeps it)."""
        self._senders.setdefault(message_id, sender_id)
        while len(self._senders) > self.capacity:
            self._senders.popitem(last=False)

    def get(self, message_id: str) -> str | None:
        """The sender of a known message, else None."""
        return self._senders.get(message_id)

    def forget_sender(self, sender_id: str) -> None:
        """Drop every id of one sender (erasure)."""
        for message_id in [m for m, s in self._senders.items() if s == sender_id]:
            del self._senders[message_id]


def untrusted_label(event: LabelEvent, senders: SenderIndex) -> str | None:
    """Why a label must not be counted, or None when it may be."""
    if event.source != USER_REPORT:
        return None
    if not event.reporter_id:
        return "user report without reporter_id: reports come through ingestion, which sets it"
    sender = senders.get(event.message_id)
    if sender is not None and sender != event.sender_id:
        return (
            f"report names sender {event.sender_id!r} but message {event.message_id!r} "
            "came from another sender"
        )
    return None


class FeaturePipeline:
    """Per-sender feature state plus the sinks it writes to."""

    def __init__(
        self,
        message_log: MessageLog,
        push_rows: PushRows,
        send_deadletters: SendDeadLetters,
        metrics: ProcessorMetrics,
    ) -> None:
        self.message_log = message_log
        self.push_rows = push_rows
        self.send_deadletters = send_deadletters
        self.metrics = metrics
        self.computer = SenderFeatureComputer()
        self.senders = SenderIndex()

    def rebuild(self) -> int:
        """Fold the whole message log, in processing order, into a fresh state; returns events.

        Rows are not pushed again: every logged event's row was pushed before it was logged.
        """
        started = time.perf_counter()
        computer = SenderFeatureComputer()
        senders = SenderIndex()
        events = events_from_frames(
            self.message_log.read("messages"), self.message_log.read("labels"), order_by="seq"
        )
        for event in events:
            computer.apply(event)
            if isinstance(event, MessageEvent):
                senders.add(event.message_id, event.sender_id)
        self.computer = computer
        self.senders = senders
        elapsed = time.perf_counter() - started
        self.metrics.rebuild_duration.set(elapsed)
        self.metrics.senders.set(len(computer))
        log.info(
            "rebuilt feature state from the message log: %d events, %d senders in %.2f s",
            len(events),
            len(computer),
            elapsed,
        )
        return len(events)

    def handle(self, records: Sequence[Record]) -> BatchResult:
        """Process one polled batch; returns only when every sink has it (else raises)."""
        started = time.perf_counter()
        result = BatchResult()
        rows: dict[str, list[dict[str, Any]]] = {}
        accepted: list[MessageEvent | LabelEvent] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                event = parse(record)
            except ValueError as exc:
                dead.append(
                    DeadLetter.of(
                        record.topic,
                        record.value or b"",
                        str(exc),
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key if isinstance(record.key, str) else None,
                    )
                )
                self.metrics.events.labels(record.topic, "deadletter").inc()
                continue
            refused = None
            if isinstance(event, LabelEvent):
                refused = untrusted_label(event, self.senders)
            if refused is not None:
                dead.append(
                    DeadLetter.of(
                        record.topic,
                        record.value or b"",
                        refused,
                        partition=record.partition,
                        offset=record.offset,
                        key=event.sender_id,
                    )
                )
                self.metrics.events.labels(record.topic, "deadletter").inc()
                continue
            if isinstance(event, MessageEvent):
                self.senders.add(event.message_id, event.sender_id)
            duplicates_before = self.computer.stats.duplicates
            view, row = self.computer.apply(event)
            if row is not None:
                rows.setdefault(view, []).append(row)
                accepted.append(event)
                outcome = "accepted"
            elif self.computer.stats.duplicates > duplicates_before:
                outcome = "duplicate"
            else:
                # Older than the sender's state keeps: no feature row, but the event is still
                # part of the record training reads.
                accepted.append(event)
                outcome = "too_late"
            self.metrics.events.labels(record.topic, outcome).inc()
            setattr(result, outcome, getattr(result, outcome) + 1)

        for view, view_rows in rows.items():
            push_started = time.perf_counter()
            self.push_rows(view, view_rows)
            self.metrics.push_duration.labels(view).observe(time.perf_counter() - push_started)
            result.rows[view] = len(view_rows)

        messages = [e for e in accepted if isinstance(e, MessageEvent)]
        labels = [e for e in accepted if isinstance(e, LabelEvent)]
        seqs = next_seqs(len(accepted))
        # The log takes messages then labels; keep each event's place in the processing order.
        order = {id(e): s for e, s in zip(accepted, seqs, strict=True)}
        self.message_log.append(messages, labels, seqs=[order[id(e)] for e in (*messages, *labels)])
        self.metrics.log_rows.labels("messages").inc(len(messages))
        self.metrics.log_rows.labels("labels").inc(len(labels))

        if dead:
            self.send_deadletters(dead)
            self.metrics.deadletters.inc(len(dead))
            for letter in dead:
                log.warning(
                    "dead letter from %s[%s]@%s: %s",
                    letter.source_topic,
                    letter.partition,
                    letter.offset,
                    letter.error[:300],
                )
            result.deadletter = len(dead)

        self.metrics.senders.set(len(self.computer))
        self.metrics.batch_duration.observe(time.perf_counter() - started)
        return result
