"""Joins moderation decisions with the labels that arrive later: paired evidence for the canary.

Framework-free; the canary service feeds it from `predictions.v1` and `labels.v1`. Labels come
minutes to days after the decision (user reports, moderator reviews), so the join keeps recent
decisions in a bounded map and also holds labels that overtake their decisions.

Two views of the same join:
- pairs: messages both variants scored (one answered, the other in the shadow) whose label
  arrived, split into concordant and discordant on whether each decision did harm (`harmful`:
  spam let through, ham held back), and for the discordant ones who was right (the counts of
  the exact McNemar test);
- labelled blocks per variant (block precision, reported).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from modstack.names import VARIANT_CHALLENGER, VARIANT_CHAMPION
from modstack.paired import harmful
from services.canary.evidence import PairedLabels

_VARIANTS = (VARIANT_CHAMPION, VARIANT_CHALLENGER)


@dataclass
class LabelledBlocks:
    """Blocks of one variant whose label arrived, and how many of those were spam."""

    labelled: int = 0
    spam: int = 0


def blocked(action: str) -> bool:
    """The decision block precision is about."""
    return action == "block"


class LabelJoin:
    """Pairs and block precision over the decisions made since `reset(since)`.

    Args:
        max_pending: messages (and early labels) remembered; the oldest are forgotten first.
    """

    def __init__(self, max_pending: int = 200_000, positive_label: str = "spam") -> None:
        self.max_pending = max_pending
        self.positive_label = positive_label  # the policy's harm ("spam", "abuse", ...)
        self.since: datetime | None = None
        self.reset(None)

    def reset(self, since: datetime | None) -> None:
        """Forget everything; count only decisions scored at or after `since` from now on."""
        self.since = since
        # message_id -> {variant: action}, decisions whose label has not arrived yet
        self._decisions: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._labels: OrderedDict[str, str] = OrderedDict()  # message_id -> first label
        self._counted: set[str] = set()  # "variant:message_id" already counted
        self._paired_seen: set[str] = set()
        self._blocks = {v: LabelledBlocks() for v in _VARIANTS}
        self.pairs = PairedLabels()

    def add_decision(self, message_id: str, variant: str, action: str, scored_at: datetime) -> None:
        """A decision from predictions.v1, served or shadow."""
        if variant not in _VARIANTS or (self.since is not None and scored_at < self.since):
            return
        if f"{variant}:{message_id}" in self._counted:
            return  # at-least-once delivery: the same decision again
        decisions = self._decisions.setdefault(message_id, {})
        if variant in decisions:
            return
        decisions[variant] = action
        if len(decisions) == len(_VARIANTS) and message_id not in self._paired_seen:
            self._paired_seen.add(message_id)
            self.pairs.paired += 1
        self._trim(self._decisions)
        self._settle(message_id)

    def add_label(self, message_id: str, label: str) -> None:
        """A label from labels.v1 (the policy's positive or negative label); the first label
        of a message counts."""
        if message_id in self._labels:
            return
        self._labels[message_id] = label
        self._trim(self._labels)
        self._settle(message_id)

    def _settle(self, message_id: str) -> None:
        label = self._labels.get(message_id)
        decisions = self._decisions.get(message_id)
        if label is None or not decisions:
            return
        spam = label == self.positive_label  # "spam" below: the policy's harm
        for variant, action in decisions.items():
            key = f"{variant}:{message_id}"
            if key in self._counted:
                continue
            self._counted.add(key)
            if blocked(action):
                self._blocks[variant].labelled += 1
                self._blocks[variant].spam += int(spam)
        if len(decisions) < len(_VARIANTS):
            return  # the other variant's (shadow) decision may still come
        champion_wrong = harmful(decisions[VARIANT_CHAMPION], spam)
        challenger_wrong = harmful(decisions[VARIANT_CHALLENGER], spam)
        if champion_wrong == challenger_wrong:
            self.pairs.concordant += 1
        elif champion_wrong:
            self.pairs.challenger_right += 1
        else:
            self.pairs.champion_right += 1
        del self._decisions[message_id]

    def _trim(self, mapping: OrderedDict) -> None:
        while len(mapping) > self.max_pending:
            mapping.popitem(last=False)

    def blocks(self, variant: str) -> LabelledBlocks:
        """Labelled blocks of `variant` so far."""
        return self._blocks.get(variant, LabelledBlocks())

    def paired(self) -> PairedLabels:
        """A copy of the pair counts so far."""
        return PairedLabels(**vars(self.pairs))
