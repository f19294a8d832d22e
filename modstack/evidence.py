"""How much labelled evidence the quality gate needs to decide, and how much has arrived.

The gate compares a candidate with the champion on a holdout, allowing each rate (recall,
the share of ham flagged or sent to review) to differ by `z` standard errors of the
difference of two rates, `z * sqrt(2) * sqrt(p (1 - p) / n)`. Over few rows that allowance
grows until the gate passes anything: on 12 spam it allows a recall drop of 0.37. A holdout
can decide only when the allowance is at most `max_noise`; inverting the formula gives the
rows per class it needs (`rows_to_decide`). Monitoring waits for that many labels per class
before it starts a retrain (`LabelEvidence`), and the retrain refuses to register when its
holdout holds fewer: both read the same `EvidenceNeed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

LabelClass = Literal["spam", "ham"]
CLASSES: tuple[LabelClass, ...] = ("spam", "ham")
# A retrain holds out the newest 30 % of the labelled messages that arrived since the
# champion's data ended; monitoring counts labels against what that holdout needs.
RETRAIN_HOLDOUT_FRACTION = 0.3


def noise_allowance(z: float, rate: float, rows: float) -> float:
    """`z` standard errors of the difference of two rates near `rate`, each over `rows`; the
    rate is kept half a row away from 0 and 1 (a holdout of n rows cannot tell 0 from 1/(2n))."""
    if rows < 1:
        return math.inf
    p = min(max(rate, 0.5 / rows), 1.0 - 0.5 / rows)
    return z * math.sqrt(2.0 * p * (1.0 - p) / rows)


def rows_to_decide(max_noise: float, z: float, rate: float) -> int:
    """The fewest rows over which `noise_allowance(z, rate, rows)` is at most `max_noise`."""
    if max_noise <= 0:
        raise ValueError(f"max_noise must be > 0, got {max_noise}")
    p = min(max(rate, 1e-9), 1.0 - 1e-9)
    rows = math.ceil(2.0 * z * z * p * (1.0 - p) / (max_noise * max_noise))
    # the floor of half a row can only raise the allowance: step up until it holds
    while noise_allowance(z, rate, rows) > max_noise:
        rows += 1
    return rows


@dataclass(frozen=True)
class EvidenceNeed:
    """Labelled rows per class a holdout needs before the gate's verdict means something.

    spam: the spam checks (recall at precision 0.99, recall at the review cut-off) are rates
    near `spam_rate` that may move by at most `spam_noise`; ham: the share of ham flagged or
    sent to review, a rate near `ham_rate` that may move by at most `ham_noise`.
    """

    z: float = 2.0
    spam_rate: float = 0.8
    spam_noise: float = 0.15
    ham_rate: float = 0.05
    ham_noise: float = 0.05

    @property
    def spam(self) -> int:
        """Spam rows a holdout needs."""
        return rows_to_decide(self.spam_noise, self.z, self.spam_rate)

    @property
    def ham(self) -> int:
        """Ham rows a holdout needs."""
        return rows_to_decide(self.ham_noise, self.z, self.ham_rate)

    def per_class(self) -> dict[LabelClass, int]:
        """Rows needed per class in the holdout."""
        return {"spam": self.spam, "ham": self.ham}

    def labels_to_collect(self, holdout_fraction: float) -> dict[LabelClass, int]:
        """Fresh labels per class to collect so that the newest `holdout_fraction` of them
        (the retrain's holdout) holds what the gate needs."""
        if not 0 < holdout_fraction <= 1:
            raise ValueError(f"holdout_fraction must be in (0, 1], got {holdout_fraction}")
        return {c: math.ceil(n / holdout_fraction) for c, n in self.per_class().items()}

    def shortfall(self, counts: dict[LabelClass, int]) -> dict[LabelClass, int]:
        """Holdout rows still missing per class (0 where there are enough)."""
        return {c: max(0, n - counts.get(c, 0)) for c, n in self.per_class().items()}


def describe_shortfall(missing: dict[LabelClass, int]) -> str:
    """'57 more spam and 12 more ham labels' (empty when nothing is missing)."""
    parts = [f"{n} more {c}" for c, n in missing.items() if n > 0]
    return " and ".join(parts) + " labels" if parts else ""


@dataclass
class LabelEvidence:
    """Labels per class that arrived since the last retrain started, against what a retrain
    needs (`EvidenceNeed.labels_to_collect`)."""

    needed: dict[LabelClass, int]
    counts: dict[LabelClass, int] = field(default_factory=lambda: {c: 0 for c in CLASSES})

    def add(self, is_spam: bool) -> None:
        """Count one label."""
        self.counts["spam" if is_spam else "ham"] += 1

    def missing(self) -> dict[LabelClass, int]:
        """Labels per class still to arrive (0 where enough have)."""
        return {c: max(0, n - self.counts.get(c, 0)) for c, n in self.needed.items()}

    def enough(self) -> bool:
        """True when every class has what a retrain needs."""
        return not any(self.missing().values())

    def reset(self) -> None:
        """A retrain started: count afresh."""
        self.counts = {c: 0 for c in CLASSES}
