"""Monitoring windows and the retraining trigger: plain Python, no Kafka, no Evidently.

A window collects the served predictions the monitoring service sees. It closes when it holds
`max_rows` rows, or when `max_age_s` seconds (processing time) have passed since its first row
and it holds at least `min_rows` (fewer rows would give drift scores that are mostly noise).
Recently closed windows stay available for labels that arrive late, so realized quality can be
computed from ground truth that trails the predictions.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]


@dataclass(frozen=True)
class WindowPolicy:
    """When the current window closes.

    Args:
        max_rows: close as soon as the window holds this many rows.
        max_age_s: close once this many seconds passed since the window's first row...
        min_rows: ...provided it holds at least this many rows; otherwise it keeps filling.
    """

    max_rows: int = 1_000
    max_age_s: float = 300.0
    min_rows: int = 100

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")
        if self.max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, got {self.max_age_s}")
        if not 1 <= self.min_rows <= self.max_rows:
            raise ValueError(f"need 1 <= min_rows <= max_rows, got {self.min_rows}")


@dataclass
class WindowRow:
    """One served prediction as monitoring keeps it."""

    message_id: str
    score: float
    action: str
    model_version: str
    variant: str
    features: dict[str, float | None]
    label: str | None = None  # 'spam' | 'ham' once ground truth arrived


@dataclass
class ClosedWindow:
    """A window handed over for evaluation."""

    index: int
    rows: list[WindowRow]
    opened_at: float
    closed_at: float
    reason: str  # "rows" or "age"


@dataclass
class PredictionWindows:
    """The current window plus the last few closed ones (for late labels).

    Duplicate deliveries (at-least-once consumption) are recognised by message id and counted
    once. Labels for messages not seen yet are parked (bounded) and applied when the
    prediction arrives, since labels and predictions travel on different topics.
    """

    policy: WindowPolicy = field(default_factory=WindowPolicy)
    keep_closed: int = 3
    max_pending_labels: int = 50_000
    clock: Clock = time.time

    def __post_init__(self) -> None:
        self._current: OrderedDict[str, WindowRow] = OrderedDict()
        self._opened_at: float | None = None
        self._closed: deque[ClosedWindow] = deque(maxlen=self.keep_closed)
        self._index = 0
        self._pending_labels: OrderedDict[str, str] = OrderedDict()
        self._by_id: dict[str, WindowRow] = {}

    @property
    def current_rows(self) -> int:
        """Rows in the window being filled."""
        return len(self._current)

    @property
    def closed(self) -> list[ClosedWindow]:
        """Recently closed windows, oldest first."""
        return list(self._closed)

    def seen(self, message_id: str) -> bool:
        """True when the message is in the current or a kept closed window."""
        return message_id in self._by_id

    def add(self, row: WindowRow) -> ClosedWindow | None:
        """Add a prediction; returns the window it closed, if it closed one."""
        if row.message_id in self._by_id:
            return None
        row.label = self._pending_labels.pop(row.message_id, row.label)
        if self._opened_at is None:
            self._opened_at = self.clock()
        self._current[row.message_id] = row
        self._by_id[row.message_id] = row
        if len(self._current) >= self.policy.max_rows:
            return self._close("rows")
        return self.poll()

    def add_label(self, message_id: str, label: str) -> bool:
        """Attach ground truth; True when the message is in a kept window (else parked)."""
        row = self._by_id.get(message_id)
        if row is not None:
            row.label = label
            return True
        self._pending_labels[message_id] = label
        self._pending_labels.move_to_end(message_id)
        while len(self._pending_labels) > self.max_pending_labels:
            self._pending_labels.popitem(last=False)
        return False

    def poll(self) -> ClosedWindow | None:
        """Close the current window if it is old enough (call when the stream is idle too)."""
        if self._opened_at is None or len(self._current) < self.policy.min_rows:
            return None
        if self.clock() - self._opened_at >= self.policy.max_age_s:
            return self._close("age")
        return None

    def labelled_rows(self) -> list[WindowRow]:
        """Rows of the kept closed windows that have a label (for realized quality)."""
        return [r for w in self._closed for r in w.rows if r.label is not None]

    def _close(self, reason: str) -> ClosedWindow:
        assert self._opened_at is not None
        window = ClosedWindow(
            index=self._index,
            rows=list(self._current.values()),
            opened_at=self._opened_at,
            closed_at=self.clock(),
            reason=reason,
        )
        if len(self._closed) == self._closed.maxlen:
            for old in self._closed[0].rows:
                self._by_id.pop(old.message_id, None)
        self._closed.append(window)
        self._index += 1
        self._current = OrderedDict()
        self._opened_at = None
        return window


def rows_to_records(
    rows: Iterable[WindowRow], score_model_version: str | None = None
) -> list[dict[str, Any]]:
    """Flat records (feature columns + `score`) for a data frame.

    `score` is kept only for rows scored by `score_model_version` (None keeps all): prediction
    drift compares one model's scores with that same model's reference scores, so rows a
    canary challenger answered carry their features but no score.
    """
    records = []
    for row in rows:
        record: dict[str, Any] = dict(row.features)
        keep_score = score_model_version is None or row.model_version == score_model_version
        record["score"] = row.score if keep_score else None
        records.append(record)
    return records


@dataclass
class RetrainTrigger:
    """Hysteresis for retraining: fire after `consecutive` drifted windows in a row, then stay
    quiet for `cooldown_s` seconds however many drifted windows follow.

    A window without drift resets the streak, so isolated noisy windows never fire.
    """

    consecutive: int = 3
    cooldown_s: float = 3_600.0
    enabled: bool = True
    clock: Clock = time.time
    streak: int = 0
    last_fired_at: float | None = None

    def __post_init__(self) -> None:
        if self.consecutive < 1:
            raise ValueError(f"consecutive must be >= 1, got {self.consecutive}")
        if self.cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s}")

    def in_cooldown(self) -> bool:
        """True while a previous firing is less than `cooldown_s` ago."""
        return self.last_fired_at is not None and (
            self.clock() - self.last_fired_at < self.cooldown_s
        )

    def observe(self, drifted: bool) -> bool:
        """Feed one evaluated window; True when retraining should start now."""
        self.streak = self.streak + 1 if drifted else 0
        if not self.enabled or self.streak < self.consecutive or self.in_cooldown():
            return False
        self.last_fired_at = self.clock()
        self.streak = 0
        return True
