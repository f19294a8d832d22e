"""What one step window is judged on: each variant's serving metrics (`VariantWindow`) and the
labelled pairs both variants scored (`PairedLabels`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.canary.promql import histogram_quantile


@dataclass
class VariantWindow:
    """What one variant did during the window (increases, not totals since start)."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative
    score_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative
    actions: dict[str, float] = field(default_factory=dict)
    # Labels that arrived for this variant's `block` decisions (since the rollout started).
    labelled_blocks: float = 0.0
    labelled_blocks_spam: float = 0.0

    @property
    def observations(self) -> float:
        """Requests seen: answered ones, or in shadow mode the scores the challenger logged."""
        scored = self.score_buckets.get(math.inf, 0.0)
        return max(self.requests, scored)

    @property
    def scored(self) -> bool:
        """Whether the window holds any score of this variant."""
        return bool(self.score_buckets) and self.score_buckets.get(math.inf, 0.0) > 0

    @property
    def decided(self) -> float:
        """Actions taken (allow, review, block)."""
        return sum(self.actions.values())

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def block_rate(self) -> float | None:
        decided = self.decided
        return self.actions.get("block", 0.0) / decided if decided > 0 else None

    @property
    def latency_p99(self) -> float | None:
        return histogram_quantile(0.99, self.latency_buckets) if self.latency_buckets else None

    @property
    def block_precision(self) -> float | None:
        if self.labelled_blocks <= 0:
            return None
        return self.labelled_blocks_spam / self.labelled_blocks


@dataclass
class PairedLabels:
    """Messages scored by both variants whose label arrived, split by who was right.

    `challenger_right` (b) and `champion_right` (c) are the discordant pairs: the variants'
    decisions differ in harm (spam let through, ham held back), so exactly one was right.
    """

    challenger_right: int = 0
    champion_right: int = 0
    concordant: int = 0  # labelled pairs where both decided the same
    paired: int = 0  # pairs seen (labelled or not)
