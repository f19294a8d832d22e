"""Pure evaluation helpers: threshold selection, ranking and calibration metrics, per-group
error rates. No MLflow, no plotting: unit-tested on hand-made numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from modstack.corpus.comments import COMMENT_GROUP_PREFIX
from modstack.registry.contract import Thresholds

BLOCK_MIN_PRECISION = 0.99
REVIEW_MIN_RECALL = 0.95
# "comments": the insult data's comments, all ham for spam: the everyday short messages of a
# messaging app (modstack/corpus/comments.py)
GROUPS = ("easy_ham", "hard_ham", "spam", "comments")
EMAIL_GROUPS = frozenset({"easy_ham", "hard_ham", "spam"})


def coarse_group(group: str) -> str:
    """'easy-ham-2' -> 'easy_ham', 'spam-1' -> 'spam' (the corpus folders, without the part),
    'comments-train' / 'comments-test' -> 'comments'."""
    if group.startswith(COMMENT_GROUP_PREFIX):
        return "comments"
    name = group.rsplit("-", 1)[0] if group[-1:].isdigit() else group
    return name.replace("-", "_")


def recall_at_precision(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, min_precision: float = BLOCK_MIN_PRECISION
) -> float:
    """Highest recall over all cut-offs whose precision is >= min_precision (0 when none is)."""
    precision, recall, _ = precision_recall_curve(y_true, scores)
    # the last point (precision 1, recall 0) has no threshold: drop it
    ok = precision[:-1] >= min_precision
    return float(recall[:-1][ok].max()) if ok.any() else 0.0


def precision_at_share(
    precision: npt.NDArray[np.float64],
    recall: npt.NDArray[np.float64],
    share: float,
    spam_share: float,
) -> npt.NDArray[np.float64]:
    """Precision of each cut-off had the rows been `spam_share` spam instead of `share`.

    Bayes on the same TPR/FPR: precision' = pi' TPR / (pi' TPR + (1 - pi') FPR), where
    FPR = TPR * share/(1 - share) * (1 - precision)/precision at the measured mix.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr_over_tpr = share / (1 - share) * (1 - precision) / precision
        shifted = spam_share / (spam_share + (1 - spam_share) * fpr_over_tpr)
    return np.where(recall > 0, shifted, 0.0)


def select_thresholds(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    block_precision: float = BLOCK_MIN_PRECISION,
    review_recall: float = REVIEW_MIN_RECALL,
    spam_share: float | None = None,
) -> Thresholds:
    """Action cut-offs from validation scores.

    block: the cut-off with the highest recall among those with precision >= block_precision
    (1.0, i.e. block only certain spam, when no cut-off is that precise). With `spam_share`,
    precision is judged at that spam share (the deployment prior) instead of the validation
    mix: at a few percent spam one false block weighs ~20x more than at the corpus's 45 %.
    review: the highest cut-off that still has recall >= review_recall, never above block.
    """
    precision, recall, cutoffs = precision_recall_curve(y_true, scores)
    precision, recall = precision[:-1], recall[:-1]
    if spam_share is not None:
        precision = precision_at_share(
            precision, recall, float(np.mean(np.asarray(y_true))), spam_share
        )
    precise = np.flatnonzero(precision >= block_precision)
    if precise.size:
        best_recall = recall[precise].max()
        # among equally good cut-offs, the highest: fewest false blocks on unseen data
        block = float(cutoffs[precise[recall[precise] == best_recall]].max())
    else:
        block = 1.0
    recalled = np.flatnonzero(recall >= review_recall)
    review = float(cutoffs[recalled].max()) if recalled.size else float(cutoffs.min())
    return Thresholds(block=block, review=min(review, block))


def budget_review_cutoff(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    block: float,
    review_budget: float,
    traffic_spam_share: float,
) -> float:
    """The lowest review cut-off that sends at most `review_budget` of traffic into
    [review, block), counted on validation reweighted to `traffic_spam_share` spam.

    Never empty: when even the highest score below `block` exceeds the budget, the band
    holds just that score (review = that score), so the model can always say "unsure".
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    below = s < block
    if not below.any():
        return block
    share = y.mean()
    # prior shift by reweighting: the validation mix is not the platform's mix
    weight = np.where(y == 1, traffic_spam_share / share, (1 - traffic_spam_share) / (1 - share))
    weight = weight / weight.sum()
    order = np.argsort(-s[below], kind="stable")
    ranked = s[below][order]
    within = np.flatnonzero(np.cumsum(weight[below][order]) <= review_budget)
    return float(ranked[within[-1]] if within.size else ranked[0])


def action_thresholds(
    y_true: npt.ArrayLike,
    warm_scores: npt.ArrayLike,
    cold_scores: npt.ArrayLike | None,
    review_budget: float,
    traffic_spam_share: float,
    block_precision: float = BLOCK_MIN_PRECISION,
    short: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> Thresholds:
    """Deployment cut-offs from validation: block at precision >= `block_precision` at the
    traffic's spam share (`traffic_spam_share`, the deployment prior, not the validation mix)
    on the validation rows with their sender history, on the same rows as unknown senders,
    and (`short`: labels and scores) on short windows cut from them as new senders send them
    (the highest of the cut-offs, so a new sender's text-only score, long or short, is held
    to 0.99 too: validation mail is long, messaging traffic is not);
    review sized by the budget (`budget_review_cutoff`) on the warm scores and on the cold ones
    (the higher cut-off: at most the budget for known and for new senders). The budget binds:
    a floor at 95 % recall of validation spam used to pull the review cut-off down to wherever
    the lowest-scoring validation spam sat (a retrain's 0.224, whose bootstrap interval
    reached down to 0.005, sent 9.6 % of new senders' ham to review on its holdout); spam
    caught at review is reported, not bought with moderators' time."""
    share = traffic_spam_share
    block = select_thresholds(y_true, warm_scores, block_precision, spam_share=share).block
    if cold_scores is not None:
        cold = select_thresholds(y_true, cold_scores, block_precision, spam_share=share).block
        block = max(block, cold)
    if short is not None:
        short_y, short_scores = short
        block = max(
            block, select_thresholds(short_y, short_scores, block_precision, spam_share=share).block
        )
    review = budget_review_cutoff(y_true, warm_scores, block, review_budget, traffic_spam_share)
    if cold_scores is not None:
        # the budget holds for new senders too: their text-only scores spread wider, and on
        # the warm cut-off 16 % of new senders' future mail went to review (3x the budget)
        cold_review = budget_review_cutoff(
            y_true, cold_scores, block, review_budget, traffic_spam_share
        )
        review = max(review, cold_review)
    return Thresholds(block=block, review=min(review, block))


def expected_calibration_error(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, bins: int = 10
) -> float:
    """ECE over `bins` equal-width score bins: sum over bins of share x |mean score - spam share|.

    Hand-written: scikit-learn has no ECE (calibration_curve drops the bin weights)."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    if not len(y):
        return float("nan")
    index = np.minimum((s * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(s[mask].mean() - y[mask].mean())
    return float(total)


def bootstrap_pr_auc_difference(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    reference_scores: npt.ArrayLike,
    resamples: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """PR-AUC(scores) - PR-AUC(reference) on the same rows, and its bootstrap standard error
    (paired: both models are scored on each resample of rows)."""
    y = np.asarray(y_true, dtype=int)
    a = np.asarray(scores, dtype=float)
    b = np.asarray(reference_scores, dtype=float)
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) < 2:
            continue
        ours, theirs = (average_precision_score(y[rows], x[rows]) for x in (a, b))
        diffs.append(ours - theirs)
    diff = float(average_precision_score(y, a) - average_precision_score(y, b))
    return diff, float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")


@dataclass
class EvaluationReport:
    """Everything measured on one scored slice. `metrics` is flat (MLflow metric names)."""

    metrics: dict[str, float]
    reliability: dict[str, list[float]] = field(default_factory=dict)


def _group_metrics(
    y_true: npt.NDArray[np.int_],
    scores: npt.NDArray[np.float64],
    groups: npt.NDArray[np.str_],
    thresholds: Thresholds,
) -> dict[str, float]:
    """Error rate per coarse group at each action cut-off: for ham the share flagged (false
    positives), for spam the share let through (misses); for ham groups also the share sent
    to review ([review, block): what a moderator reads)."""
    out: dict[str, float] = {}
    for group in GROUPS:
        mask = groups == group
        if not mask.any():
            continue
        group_scores = scores[mask]
        is_spam_group = bool(y_true[mask].mean() >= 0.5)
        out[f"group.{group}.count"] = float(mask.sum())
        out[f"group.{group}.mean_score"] = float(group_scores.mean())
        for name, cutoff in (("block", thresholds.block), ("review", thresholds.review)):
            flagged = float((group_scores >= cutoff).mean())
            out[f"group.{group}.error_at_{name}"] = 1.0 - flagged if is_spam_group else flagged
        negatives = group_scores[y_true[mask] == 0]
        if not is_spam_group and len(negatives):
            # over the group's negatives only: a group may mix classes (the comments hold the
            # abuse policy's insults); what the budget limits is harmless text sent to review
            in_band = (negatives >= thresholds.review) & (negatives < thresholds.block)
            out[f"group.{group}.review_share"] = float(in_band.mean())
    return out


def _email_metrics(
    y_true: npt.NDArray[np.int_], scores: npt.NDArray[np.float64], groups: npt.NDArray[np.str_]
) -> dict[str, float]:
    """Ranking on the e-mails alone: the comments are all ham, so they move PR-AUC by how
    many ham rows there are; this is the number comparable with e-mail-only runs."""
    mask = np.isin(groups, list(EMAIL_GROUPS))
    if mask.all() or len(np.unique(y_true[mask])) < 2:
        return {}
    return {
        "email.pr_auc": float(average_precision_score(y_true[mask], scores[mask])),
        "email.recall_at_p99": recall_at_precision(y_true[mask], scores[mask]),
    }


def _ham_metrics(
    y_true: npt.NDArray[np.int_], scores: npt.NDArray[np.float64], thresholds: Thresholds
) -> dict[str, float]:
    """What the gate and the canary count as harm to ham, over all ham rows: the share
    blocked and the share sent to review ([review, block): a moderator reads it)."""
    ham = scores[y_true == 0]
    if not len(ham):
        return {"ham.count": 0.0}
    blocked = ham >= thresholds.block
    return {
        "ham.count": float(len(ham)),
        "ham.error_at_block": float(blocked.mean()),
        "ham.review_share": float(((ham >= thresholds.review) & ~blocked).mean()),
    }


def evaluate_scores(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    thresholds: Thresholds,
    groups: Sequence[str] | None = None,
) -> EvaluationReport:
    """PR-AUC, ROC-AUC, recall at precision >= 0.99, precision/recall at the action cut-offs,
    F1 at 0.5, Brier score, reliability curve and per-group error rates."""
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    both_classes = len(np.unique(y)) == 2
    metrics: dict[str, float] = {
        "rows": float(len(y)),
        "spam_share": float(y.mean()) if len(y) else 0.0,
        "pr_auc": float(average_precision_score(y, s)) if both_classes else float("nan"),
        "roc_auc": float(roc_auc_score(y, s)) if both_classes else float("nan"),
        "recall_at_p99": recall_at_precision(y, s) if both_classes else 0.0,
        "brier": float(brier_score_loss(y, s)),
        "ece": expected_calibration_error(y, s),
        "f1_at_0_5": float(f1_score(y, s >= 0.5, zero_division=0.0)),
        "threshold_block": thresholds.block,
        "threshold_review": thresholds.review,
    }
    for name, cutoff in (("block", thresholds.block), ("review", thresholds.review)):
        predicted = s >= cutoff
        # nothing flagged means no false flags: precision 1 (sklearn would warn and say 0)
        metrics[f"precision_at_{name}"] = float(precision_score(y, predicted, zero_division=1.0))
        metrics[f"recall_at_{name}"] = float(recall_score(y, predicted, zero_division=0.0))
    # what the canary expects live: the share of all rows each cut-off acts on
    metrics["block_rate"] = float((s >= thresholds.block).mean()) if len(s) else 0.0
    metrics.update(_ham_metrics(y, s, thresholds))
    if groups is not None:
        coarse = np.array([coarse_group(str(g)) for g in groups])
        metrics.update(_group_metrics(y, s, coarse, thresholds))
        metrics.update(_email_metrics(y, s, coarse))
    reliability: dict[str, list[float]] = {}
    if both_classes:
        observed, predicted_mean = calibration_curve(y, s, n_bins=10, strategy="uniform")
        reliability = {"mean_predicted": predicted_mean.tolist(), "observed": observed.tolist()}
    return EvaluationReport(metrics=metrics, reliability=reliability)
