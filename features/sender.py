"""Per-sender features in event time: pure, framework-free, one implementation for all callers.

`SenderFeatureComputer` folds message and label events into per-sender state and returns the
feature row to push after each event: `apply_message` -> a `sender_activity` row,
`apply_label` -> a `sender_reputation` row. The stream processor, the corpus backfill and a
rebuild from the offline message log all call the same two methods.

Semantics (the tests in tests/unit/test_sender_features.py pin each one):

- Event time is the event's own timestamp: `sent_at` for messages, `labeled_at` for labels.
  A sender's clock (`as_of`) is the latest event time seen for that sender; windows are
  `(as_of - window, as_of]` and include the event just applied.
- Leak-free rows: a row describes the state *after* its event, so its `event_timestamp` is
  strictly later than the event (`+1 µs`) and strictly later than the sender's previous row.
  A point-in-time join at a message's `sent_at` (Feast picks rows with timestamp <= entity
  time) therefore never sees that message, its label, another message with the same `sent_at`,
  or anything later. Strictly increasing row timestamps per sender also keep Redis, which
  ignores a write that is not newer than the stored one, in step with SQLite and the offline
  store.
- Duplicates: a message is its `message_id`, counted once (a repeat returns None). A label is
  (`message_id`, `source`, `reporter_id`) like in the message log: a repeat returns None.
- Trust: a moderator or corpus label decides its message (the latest of them wins; user
  reports on that message then count for nothing). A message with user reports only counts
  through its reporters, and each reporter adds at most `reports_per_reporter` (default 1) to
  the spam count and as much to the ham count of a sender in the 30-day window, however many
  of the sender's messages they report: the counts are distinct reporters, so 1,000 forged
  reports from one account move a sender's reputation by at most that cap.
- Label timing: a label counts from its `labeled_at` on, never before, and for 30 days.
- Out of order: an event older than the sender's clock still counts in every window it falls
  into; the row it produces is stamped after the sender's previous row, so the past rows are not
  rewritten (they stay what was known then). An event more than `allowed_lateness` behind the
  sender's clock is dropped (None): it could no longer be deduplicated, since state older than
  that is pruned to keep memory bounded.
- Windows are evaluated when an event arrives: a sender who goes quiet keeps the counts of their
  last event, online and offline alike (no training/serving skew, but counts do not decay).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import pandas as pd

from features.text import looks_like_html, url_count
from modstack.events import LabelEvent, MessageEvent
from modstack.names import VIEW_SENDER_ACTIVITY, VIEW_SENDER_REPUTATION
from modstack.policy import DEFAULT_POLICY, policy_of_label

WINDOWS: Final = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
LABEL_WINDOW: Final = timedelta(days=30)
RECENT_MESSAGES: Final = 20
ALLOWED_LATENESS: Final = timedelta(days=30)
REPORTS_PER_REPORTER: Final = 1
USER_REPORT: Final = "user_report"
ROW_TICK: Final = timedelta(microseconds=1)

ACTIVITY_FEATURES: Final = (
    "sender_msgs_1h",
    "sender_msgs_24h",
    "sender_msgs_7d",
    "sender_msgs_total",
    "sender_distinct_subjects_recent",
    "sender_link_ratio_recent",
    "sender_html_ratio_recent",
    "sender_seconds_since_first_seen",
)
REPUTATION_FEATURES: Final = (
    "sender_spam_labels_30d",
    "sender_ham_labels_30d",
    "sender_label_spam_ratio_30d",
)

_SUBJECT_PREFIX = re.compile(r"^(?:\s*(?:re|fw|fwd|aw)\s*(?:\[\d+\])?\s*:)+", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def normalize_subject(subject: str) -> str:
    """Subject without reply/forward prefixes, case and repeated spaces: "Re: Hi  X" == "hi x"."""
    return _SPACES.sub(" ", _SUBJECT_PREFIX.sub("", subject)).strip().lower()


@dataclass(frozen=True, order=True)
class _Message:
    sent_at: datetime
    seq: int
    message_id: str = field(compare=False)
    subject_key: str = field(compare=False)
    has_link: bool = field(compare=False)
    is_html: bool = field(compare=False)


@dataclass(frozen=True)
class _Label:
    labeled_at: datetime
    seq: int
    label: str
    reporter: str | None = None  # set on user reports only


@dataclass
class _SenderState:
    messages: list[_Message] = field(default_factory=list)  # sorted by (sent_at, seq)
    message_ids: set[str] = field(default_factory=set)
    # message -> label identity (source, or user_report + reporter) -> label
    labels: dict[str, dict[str, _Label]] = field(default_factory=dict)
    first_seen: datetime | None = None
    total_messages: int = 0
    as_of: datetime | None = None
    last_row_at: datetime | None = None


@dataclass
class ComputerStats:
    """What the computer did with the events it got (for processor metrics and reports)."""

    messages: int = 0
    labels: int = 0
    duplicates: int = 0
    too_late: int = 0
    other_policy: int = 0  # labels about another policy (abuse): not a spam reputation


class SenderFeatureComputer:
    """Folds message and label events into per-sender feature rows (see the module docstring)."""

    def __init__(
        self,
        allowed_lateness: timedelta = ALLOWED_LATENESS,
        reports_per_reporter: int = REPORTS_PER_REPORTER,
    ) -> None:
        if allowed_lateness < max(LABEL_WINDOW, *WINDOWS.values()):
            raise ValueError("allowed_lateness must cover the longest window")
        if reports_per_reporter < 1:
            raise ValueError("reports_per_reporter must be at least 1")
        self.allowed_lateness = allowed_lateness
        self.reports_per_reporter = reports_per_reporter
        self.stats = ComputerStats()
        self._senders: dict[str, _SenderState] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._senders)

    def apply_message(self, event: MessageEvent) -> dict[str, Any] | None:
        """Count a message; return its `sender_activity` row, or None (duplicate or too late)."""
        state = self._senders.setdefault(event.sender_id, _SenderState())
        if event.message_id in state.message_ids:
            self.stats.duplicates += 1
            return None
        if self._too_late(state, event.sent_at):
            return None
        self._seq += 1
        text = f"{event.subject}\n{event.body}"
        message = _Message(
            sent_at=event.sent_at,
            seq=self._seq,
            message_id=event.message_id,
            subject_key=normalize_subject(event.subject),
            has_link=url_count(text) > 0,
            is_html=looks_like_html(event.body),
        )
        bisect.insort(state.messages, message)
        state.message_ids.add(event.message_id)
        state.total_messages += 1
        state.first_seen = min(filter(None, (state.first_seen, event.sent_at)))
        self.stats.messages += 1
        self._advance(state, event.sent_at)
        return self._row(event.sender_id, state, self._activity(state))

    def apply_label(self, event: LabelEvent) -> dict[str, Any] | None:
        """Count a label; return its `sender_reputation` row, or None (duplicate, too late,
        or about another policy than spam: the reputation views count spam and ham)."""
        if event.policy != DEFAULT_POLICY:
            self.stats.other_policy += 1
            return None
        state = self._senders.setdefault(event.sender_id, _SenderState())
        by_source = state.labels.setdefault(event.message_id, {})
        identity = label_identity(event.source, event.reporter_id)
        if identity in by_source:
            self.stats.duplicates += 1
            return None
        if self._too_late(state, event.labeled_at):
            return None
        self._seq += 1
        reporter = (event.reporter_id or "") if event.source == USER_REPORT else None
        by_source[identity] = _Label(event.labeled_at, self._seq, event.label, reporter)
        self.stats.labels += 1
        self._advance(state, event.labeled_at)
        return self._row(event.sender_id, state, self._reputation(state))

    def forget_sender(self, sender_id: str) -> bool:
        """Drop a sender's state (erasure); returns whether there was any."""
        return self._senders.pop(sender_id, None) is not None

    def apply(self, event: MessageEvent | LabelEvent) -> tuple[str, dict[str, Any] | None]:
        """Apply either kind; returns (feature view name, row or None)."""
        if isinstance(event, MessageEvent):
            return VIEW_SENDER_ACTIVITY, self.apply_message(event)
        return VIEW_SENDER_REPUTATION, self.apply_label(event)

    # -- internals -------------------------------------------------------------------------

    def _too_late(self, state: _SenderState, event_time: datetime) -> bool:
        if state.as_of is not None and event_time < state.as_of - self.allowed_lateness:
            self.stats.too_late += 1
            return True
        return False

    def _advance(self, state: _SenderState, event_time: datetime) -> None:
        state.as_of = max(filter(None, (state.as_of, event_time)))
        self._prune(state)

    def _prune(self, state: _SenderState) -> None:
        # Keep everything the windows, the dedup horizon and the "recent N" ratios can still see.
        assert state.as_of is not None
        horizon = state.as_of - self.allowed_lateness
        cut = bisect.bisect_left([m.sent_at for m in state.messages], horizon)
        cut = min(cut, max(0, len(state.messages) - RECENT_MESSAGES))
        if cut:
            for old in state.messages[:cut]:
                state.message_ids.discard(old.message_id)
            del state.messages[:cut]
        for message_id in [
            m for m, by in state.labels.items() if all(x.labeled_at < horizon for x in by.values())
        ]:
            del state.labels[message_id]

    def _row(self, sender_id: str, state: _SenderState, values: dict[str, float]) -> dict:
        assert state.as_of is not None
        stamp = state.as_of + ROW_TICK
        if state.last_row_at is not None and stamp <= state.last_row_at:
            stamp = state.last_row_at + ROW_TICK
        state.last_row_at = stamp
        return {"sender_id": sender_id, "event_timestamp": stamp, **values}

    def _activity(self, state: _SenderState) -> dict[str, float]:
        assert state.as_of is not None and state.first_seen is not None
        times = [m.sent_at for m in state.messages]
        end = bisect.bisect_right(times, state.as_of)
        counts = {
            f"sender_msgs_{name}": float(end - bisect.bisect_right(times, state.as_of - width))
            for name, width in WINDOWS.items()
        }
        recent = state.messages[max(0, end - RECENT_MESSAGES) : end]
        return {
            **counts,
            "sender_msgs_total": float(state.total_messages),
            "sender_distinct_subjects_recent": float(len({m.subject_key for m in recent})),
            "sender_link_ratio_recent": sum(m.has_link for m in recent) / len(recent),
            "sender_html_ratio_recent": sum(m.is_html for m in recent) / len(recent),
            "sender_seconds_since_first_seen": (state.as_of - state.first_seen).total_seconds(),
        }

    def _reputation(self, state: _SenderState) -> dict[str, float]:
        assert state.as_of is not None
        start = state.as_of - LABEL_WINDOW
        spam = ham = 0
        reported: dict[tuple[str, str], int] = {}  # (reporter, label) -> reports in the window
        for by_source in state.labels.values():
            decided = [x for x in by_source.values() if x.reporter is None]
            if decided:
                winner = max(decided, key=lambda x: (x.labeled_at, x.seq))
                if start < winner.labeled_at <= state.as_of:
                    spam += winner.label == "spam"
                    ham += winner.label == "ham"
                continue
            for report in by_source.values():
                if start < report.labeled_at <= state.as_of:
                    assert report.reporter is not None
                    key = (report.reporter, report.label)
                    reported[key] = reported.get(key, 0) + 1
        for (_, label), count in reported.items():
            counted = min(count, self.reports_per_reporter)
            spam += counted if label == "spam" else 0
            ham += counted if label == "ham" else 0
        return {
            "sender_spam_labels_30d": float(spam),
            "sender_ham_labels_30d": float(ham),
            # Laplace-smoothed so a sender without labels reads 0.5 ("unknown"), never NaN.
            "sender_label_spam_ratio_30d": (spam + 1) / (spam + ham + 2),
        }


def label_identity(source: str, reporter_id: str | None) -> str:
    """What makes a label one: its source, and for a user report also who reported it."""
    return f"{source}\x1f{reporter_id or ''}" if source == USER_REPORT else source


def events_from_frames(
    messages: pd.DataFrame, labels: pd.DataFrame, order_by: str = "seq"
) -> list[MessageEvent | LabelEvent]:
    """Message and label rows (message log or corpus replay columns) as events, in fold order.

    `order_by="seq"` replays the processing order the message log recorded, so a restarted
    processor rebuilds exactly the live state; `order_by="event_time"` orders by sent_at /
    labeled_at (a backfill), messages before labels on equal times, then by message_id.
    """
    keyed: list[tuple[Any, MessageEvent | LabelEvent]] = []
    # kind 0 = message, 1 = label: on equal event times a message is applied before a label.
    for kind, frame, time_col in ((0, messages, "sent_at"), (1, labels, "labeled_at")):
        if frame.empty:
            continue
        frame = frame.copy()
        if "received_at" not in frame.columns:
            frame["received_at"] = frame[time_col]
        for column in (time_col, "received_at"):
            # Vectorised: aware UTC, microsecond grid (like the wire schema), then datetimes.
            stamps = pd.to_datetime(frame[column], utc=True).dt.floor("us")
            frame[column] = pd.Series(stamps.array.to_pydatetime(), index=frame.index, dtype=object)
        for record in frame.to_dict("records"):
            event: MessageEvent | LabelEvent = (
                _message_event(record) if kind == 0 else _label_event(record)
            )
            if order_by == "seq":
                key: Any = record["seq"]
            else:
                key = (record[time_col], kind, record["message_id"])
            keyed.append((key, event))
    keyed.sort(key=lambda pair: pair[0])
    return [event for _, event in keyed]


# model_construct: rows from the message log or the corpus were validated when they were made;
# re-validating thousands of bodies would only slow a replay down.
def _message_event(record: dict[str, Any]) -> MessageEvent:
    return MessageEvent.model_construct(
        message_id=record["message_id"],
        sender_id=record["sender_id"],
        subject=record.get("subject") or "",
        body=record.get("body") or "",
        sent_at=record["sent_at"],
        received_at=record["received_at"],
    )


def _label_event(record: dict[str, Any]) -> LabelEvent:
    # model_construct skips validation (these rows were validated when logged), so the policy
    # a label is about is filled here, as the event's validator would: from the label itself
    return LabelEvent.model_construct(
        message_id=record["message_id"],
        sender_id=record["sender_id"],
        policy=record.get("policy") or policy_of_label(record["label"]),
        label=record["label"],
        source=record.get("source") or "corpus",
        labeled_at=record["labeled_at"],
        received_at=record["received_at"],
        reporter_id=_text_or_none(record.get("reporter_id")),
    )


def _text_or_none(value: Any) -> str | None:
    # parquet nulls come back as None or NaN depending on the column's other values
    return value if isinstance(value, str) and value else None
