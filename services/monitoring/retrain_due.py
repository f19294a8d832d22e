"""When a retrain starts: persistent drift makes it due; it starts once enough labels per class
have arrived for the quality gate to decide on the retrain's holdout, and at least
`min_wait_s` after it became due, whichever is later. Plain Python, no Kafka.

A retrain started on whatever had arrived when the third drifted window closed was gated on
12-13 spam: a verdict of noise, and cut-offs that were accidents of the few rows (review
cut-offs of 0.035 and 0.254 from the same data in two runs). The counts needed come from
`modstack.evidence` (the gate's own tolerance, inverted), so monitoring and the gate agree.

The retrain then reads what had arrived when the evidence was complete (`evidence_complete_at`,
wall clock: messages and labels logged before it), not whatever has arrived by the time its
process gets a core: on a busy machine a retrain that started late read a third more traffic
(a 919-mail holdout instead of 632) and trained another model than the same demo on a quiet
machine. Arrival time, not event time: a replayed or backfilled stream repeats event times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modstack.evidence import (
    CLASSES,
    RETRAIN_HOLDOUT_FRACTION,
    EvidenceNeed,
    LabelClass,
    LabelEvidence,
    describe_shortfall,
)

Clock = Callable[[], float]


@dataclass
class DueRetrain:
    """Whether a retrain is due, what it waits for, and when it may start."""

    need: EvidenceNeed = field(default_factory=EvidenceNeed)
    holdout_fraction: float = RETRAIN_HOLDOUT_FRACTION
    min_wait_s: float = 0.0
    clock: Clock = time.time
    reason: str | None = None
    due_since: float | None = None
    evidence: LabelEvidence = field(init=False)
    # when the last label the evidence needed arrived: the retrain reads what was logged before
    evidence_complete_at: datetime | None = field(default=None, init=False)
    # the first label of each message counts (several user reports on one message are one row
    # of the retrain's data); cleared with the counts
    _labelled: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.evidence = LabelEvidence(self.need.labels_to_collect(self.holdout_fraction))

    @property
    def due(self) -> bool:
        """True from the drift that made a retrain due until a run settles it."""
        return self.reason is not None

    def mark_due(self, reason: str) -> bool:
        """Persistent drift: a retrain is due (True when it was not already)."""
        if self.due:
            return False
        self.reason, self.due_since = reason, self.clock()
        return True

    def count_label(self, message_id: str, is_spam: bool) -> None:
        """One label arrived on labels.v1. Counted only while some class still lacks labels:
        the ids kept to count each message once then stop growing (a busy platform labels
        millions of messages between two retrains)."""
        if self.evidence.enough() or message_id in self._labelled:
            return
        self._labelled.add(message_id)
        self.evidence.add(is_spam)
        if self.evidence.enough():
            self.evidence_complete_at = datetime.fromtimestamp(self.clock(), UTC)

    def ready(self) -> bool:
        """Due, enough labels per class, and the minimum wait over."""
        if not self.due or not self.evidence.enough():
            return False
        return self.clock() - (self.due_since or 0.0) >= self.min_wait_s

    def waiting_for(self) -> str:
        """What the due retrain waits for ('' when nothing)."""
        if not self.due:
            return ""
        missing = describe_shortfall(self.evidence.missing())
        if missing:
            return f"waiting for {missing}"
        left = self.min_wait_s - (self.clock() - (self.due_since or 0.0))
        return f"waiting {left:.0f} s more (RETRAIN_MIN_WAIT_SECONDS)" if left > 0 else ""

    def evidence_line(self) -> str:
        """'212 spam and 1,204 ham labels (needs 190 and 507)'."""
        counts, needed = self.evidence.counts, self.evidence.needed
        return (
            f"{counts['spam']:,} spam and {counts['ham']:,} ham labels since the last retrain "
            f"(needs {needed['spam']:,} and {needed['ham']:,})"
        )

    def holdout_short(self, missing: dict[LabelClass, int]) -> None:
        """The retrain found its holdout short by `missing` rows per class (dedupe and
        already-seen mails leave fewer than the labels counted): wait for that many more
        holdout rows' worth of labels, still due."""
        for c in CLASSES:
            more = math.ceil(missing.get(c, 0) / self.holdout_fraction)
            self.evidence.needed[c] = self.evidence.counts[c] + more
        self.evidence_complete_at = None  # set again when the larger need is met

    def settled(self) -> None:
        """A run ended with a verdict (a challenger, or a refusal): no longer due, and the
        next retrain needs fresh labels."""
        self.reason, self.due_since = None, None
        self.evidence = LabelEvidence(self.need.labels_to_collect(self.holdout_fraction))
        self._labelled.clear()
        self.evidence_complete_at = None

    def status(self) -> dict[str, object]:
        """For monitoring's /v1/status."""
        return {
            "due": self.due,
            "reason": self.reason,
            "labels": dict(self.evidence.counts),
            "labels_needed": dict(self.evidence.needed),
            "waiting_for": self.waiting_for(),
            "evidence_complete_at": (
                self.evidence_complete_at.isoformat() if self.evidence_complete_at else None
            ),
        }
