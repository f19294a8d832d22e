"""How sure a model's action cut-offs are: a bootstrap over the validation rows they were
chosen on, and a judgement of each interval against the cut-off's purpose.

A cut-off chosen on few labelled rows is an accident of those rows: the same retraining data
gave review cut-offs of 0.035 and 0.254 in two runs. Each resample of the validation rows
chooses its own cut-offs with the same rule; the 5th-95th percentiles are the interval. A
cut-off is refused when the resamples show it may not do its job:

- block must block at precision >= the policy's target - `BLOCK_PRECISION_SLACK` (at the
  deployment's share of the harm) on the resamples too (5th percentile of its precision);
- review must keep the review band within `REVIEW_BUDGET_FACTOR` x the budget of traffic even
  at the low end of its interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import precision_score

from modstack.registry.contract import Thresholds
from pipelines.metrics import precision_at_share

# what "does its job" means, stated once: a plausible block cut-off may not fall more than
# this below the policy's target precision (spam: 0.99 target, 0.95 floor); the review band
# may not plausibly hold twice its budget
BLOCK_PRECISION_SLACK = 0.04
REVIEW_BUDGET_FACTOR = 2.0
INTERVAL = (5.0, 95.0)
RESAMPLES = 200


@dataclass(frozen=True)
class CutoffInterval:
    """A cut-off and the 5th-95th percentile of its bootstrap distribution."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class CutoffUncertainty:
    """The block and review cut-offs with their intervals, and why either is refused."""

    block: CutoffInterval
    review: CutoffInterval
    failures: tuple[str, ...]
    # the block cut-off's precision at the deployment prior, 5th percentile over resamples
    block_precision_low: float = float("nan")

    def as_metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: threshold_block_low, threshold_block_high, ..."""
        out: dict[str, float] = {}
        for name, interval in (("block", self.block), ("review", self.review)):
            out[f"threshold_{name}_low"] = interval.low
            out[f"threshold_{name}_high"] = interval.high
        out["threshold_block_precision_low"] = self.block_precision_low
        return out


@dataclass(frozen=True)
class Resample:
    """The cut-offs one bootstrap resample chose, and its validation rows."""

    thresholds: Thresholds
    rows: npt.NDArray[np.int_]


Chooser = Callable[[npt.NDArray[np.int_], npt.NDArray[np.int_] | None], Thresholds]


def bootstrap_thresholds(
    choose: Chooser,
    rows: int,
    short_rows: int | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[Resample]:
    """`choose(rows, short_rows)` on `resamples` resamples (with replacement) of the `rows`
    validation rows and, independently, of the `short_rows` short windows cut from them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(resamples):
        picked = rng.integers(0, rows, rows)
        short = rng.integers(0, short_rows, short_rows) if short_rows else None
        out.append(Resample(choose(picked, short), picked))
    return out


def interval(value: float, samples: list[float]) -> CutoffInterval:
    """`value` with the 5th-95th percentile of `samples`."""
    low, high = np.percentile(np.asarray(samples, dtype=float), INTERVAL)
    return CutoffInterval(value, float(low), float(high))


def precision_at_prior(
    y_true: npt.NDArray[np.int_], scores: npt.NDArray[np.float64], cutoff: float, spam_share: float
) -> float:
    """Precision of `scores >= cutoff` had the rows been `spam_share` spam (1.0 when nothing
    is flagged)."""
    flagged = scores >= cutoff
    if not flagged.any():
        return 1.0
    precision = float(precision_score(y_true, flagged, zero_division=1.0))
    recall = float(flagged[y_true == 1].mean()) if (y_true == 1).any() else 0.0
    shifted = precision_at_share(
        np.array([precision]), np.array([recall]), float(y_true.mean()), spam_share
    )
    return float(shifted[0]) if recall > 0 else 0.0


def traffic_share_in_band(
    y_true: npt.NDArray[np.int_], scores: npt.NDArray[np.float64], band: Thresholds, spam: float
) -> float:
    """Share of traffic (validation reweighted to `spam` spam) in [review, block) of `band`:
    what moderators would read."""
    in_band = (scores >= band.review) & (scores < band.block)
    is_spam, is_ham = y_true == 1, y_true == 0
    spam_part = in_band[is_spam].mean() if is_spam.any() else 0.0
    ham_part = in_band[is_ham].mean() if is_ham.any() else 0.0
    return float(spam * spam_part + (1 - spam) * ham_part)


def judge_cutoffs(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    thresholds: Thresholds,
    samples: list[Resample],
    review_budget: float,
    traffic_spam_share: float,
    cold_scores: npt.ArrayLike | None = None,
    block_precision: float = 0.99,
) -> CutoffUncertainty:
    """The intervals of both cut-offs over `samples`, judged on the validation `scores` (and
    `cold_scores`, the same rows as new senders: the review band must hold for them too).

    block: the precision of the chosen cut-off on each resample (at the deployment's spam
    share); its 5th percentile must reach `block_precision - BLOCK_PRECISION_SLACK`. review:
    the band from the low end of the review interval to block, on all validation rows, must
    hold at most `REVIEW_BUDGET_FACTOR` x the budget of traffic.
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    block = interval(thresholds.block, [r.thresholds.block for r in samples])
    review = interval(thresholds.review, [r.thresholds.review for r in samples])
    failures: list[str] = []
    precisions = [
        precision_at_prior(y[r.rows], s[r.rows], thresholds.block, traffic_spam_share)
        for r in samples
    ]
    low_precision = float(np.percentile(precisions, INTERVAL[0]))
    floor = block_precision - BLOCK_PRECISION_SLACK
    if low_precision < floor:
        failures.append(
            f"block cut-off too uncertain: {block}; its precision on resamples of the "
            f"{int((y == 1).sum())} validation spam falls to {low_precision:.3f} (5th "
            f"percentile; floor {floor:g})"
        )
    widest = Thresholds(block=thresholds.block, review=min(review.low, thresholds.block))
    band = traffic_share_in_band(y, s, widest, traffic_spam_share)
    if cold_scores is not None:
        cold = np.asarray(cold_scores, dtype=float)
        band = max(band, traffic_share_in_band(y, cold, widest, traffic_spam_share))
    if band > REVIEW_BUDGET_FACTOR * review_budget:
        failures.append(
            f"review cut-off too uncertain: {review}; at its low end the review band holds "
            f"{band:.1%} of traffic (budget {review_budget:.0%}, limit "
            f"{REVIEW_BUDGET_FACTOR:g}x)"
        )
    return CutoffUncertainty(block, review, tuple(failures), low_precision)
