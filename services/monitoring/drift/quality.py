"""Realized moderation quality from delayed ground truth (plain Python).

Positive class is spam. A message counts as flagged when the served action was `review` or
`block` (a person or the system acted on it); block precision looks at `block` alone, the
action that must almost never hit a legitimate message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.monitoring.drift.windows import WindowRow

FLAGGED_ACTIONS = frozenset({"review", "block"})


@dataclass(frozen=True)
class RealizedQuality:
    """Precision/recall of the served actions over labelled rows; None where undefined."""

    labelled_rows: int
    precision: float | None  # spam among flagged
    recall: float | None  # flagged among spam
    block_precision: float | None  # spam among blocked
    blocked_rows: int = 0  # labelled rows served with `block`: block precision's denominator


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def realized_quality(rows: Iterable[WindowRow], positive_label: str = "spam") -> RealizedQuality:
    """Quality of the served actions on the rows that have a label (`positive_label`: the
    policy's harm; "spam" below stands for it)."""
    labelled = [r for r in rows if r.label is not None]
    spam = [r for r in labelled if r.label == positive_label]
    flagged = [r for r in labelled if r.action in FLAGGED_ACTIONS]
    blocked = [r for r in labelled if r.action == "block"]
    return RealizedQuality(
        labelled_rows=len(labelled),
        precision=_ratio(sum(r.label == positive_label for r in flagged), len(flagged)),
        recall=_ratio(sum(r.action in FLAGGED_ACTIONS for r in spam), len(spam)),
        block_precision=_ratio(sum(r.label == positive_label for r in blocked), len(blocked)),
        blocked_rows=len(blocked),
    )
