"""Joins moderation decisions with the labels that arrive later: block precision per variant.

Framework-free; the canary service feeds it from `predictions.v1` and `labels.v1`. Labels come
minutes to days after the decision (user reports, moderator reviews), so the join keeps recent
decisions in a bounded map and also holds labels that overtake their decision.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from modstack.names import VARIANT_CHALLENGER, VARIANT_CHAMPION

_VARIANTS = (VARIANT_CHAMPION, VARIANT_CHALLENGER)


@dataclass
class LabelledBlocks:
    """Blocks of one variant whose label arrived, and how many of those were spam."""

    labelled: int = 0
    spam: int = 0


class LabelJoin:
    """Block precision by variant, over the decisions made since `reset(since)`.

    Args:
        max_pending: decisions (and early labels) remembered; the oldest are forgotten first.
    """

    def __init__(self, max_pending: int = 200_000) -> None:
        self.max_pending = max_pending
        self.since: datetime | None = None
        # message_id -> (variant, action) of decisions not labelled yet
        self._decisions: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._early_labels: OrderedDict[str, str] = OrderedDict()
        self._counted: set[str] = set()
        self._blocks = {v: LabelledBlocks() for v in _VARIANTS}

    def reset(self, since: datetime | None) -> None:
        """Forget everything; count only decisions scored at or after `since` from now on."""
        self.since = since
        self._decisions.clear()
        self._early_labels.clear()
        self._counted.clear()
        self._blocks = {v: LabelledBlocks() for v in _VARIANTS}

    def add_decision(self, message_id: str, variant: str, action: str, scored_at: datetime) -> None:
        """A decision from predictions.v1; shadow decisions count too (the challenger's in
        shadow mode, the champion's at a canary weight of 100 %)."""
        if variant not in _VARIANTS or (self.since is not None and scored_at < self.since):
            return
        key = f"{variant}:{message_id}"
        if key in self._counted:
            return  # at-least-once delivery: the same decision again
        label = self._early_labels.get(message_id)
        if label is not None:
            self._count(key, variant, action, label)
            return
        self._decisions[key] = (variant, action)
        self._trim(self._decisions)

    def add_label(self, message_id: str, label: str) -> None:
        """A label from labels.v1 ('spam' or 'ham'); the first label of a message counts."""
        matched = False
        for variant in _VARIANTS:
            key = f"{variant}:{message_id}"
            decision = self._decisions.pop(key, None)
            if decision is not None:
                self._count(key, decision[0], decision[1], label)
                matched = True
        if not matched and message_id not in self._early_labels:
            self._early_labels[message_id] = label
            self._trim(self._early_labels)

    def _count(self, key: str, variant: str, action: str, label: str) -> None:
        self._counted.add(key)
        if action == "block":
            self._blocks[variant].labelled += 1
            self._blocks[variant].spam += int(label == "spam")

    def _trim(self, mapping: OrderedDict) -> None:
        while len(mapping) > self.max_pending:
            mapping.popitem(last=False)

    def blocks(self, variant: str) -> LabelledBlocks:
        """Labelled blocks of `variant` so far."""
        return self._blocks.get(variant, LabelledBlocks())
