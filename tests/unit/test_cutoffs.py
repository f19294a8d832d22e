"""Cut-offs come with bootstrap intervals, and one too uncertain for its purpose is refused."""

from __future__ import annotations

import numpy as np

from modstack.registry.contract import Thresholds
from pipelines.cutoffs import bootstrap_thresholds, judge_cutoffs, traffic_share_in_band
from pipelines.metrics import action_thresholds


def _choose(y: np.ndarray, scores: np.ndarray):  # type: ignore[no-untyped-def]
    def choose(rows: np.ndarray, _short: np.ndarray | None) -> Thresholds:
        return action_thresholds(y[rows], scores[rows], None, 0.05, 0.05)

    return choose


def _validation(
    spam: int, ham: int, seed: int, overlap: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Spam scores near 1, ham near 0; a larger `overlap` brings ham up towards spam."""
    rng = np.random.default_rng(seed)
    y = np.array([1] * spam + [0] * ham)
    scores = np.concatenate([rng.beta(9, 1.5, spam), rng.beta(overlap, 9 - overlap, ham)])
    return y, scores


def test_many_validation_rows_give_cut_offs_that_do_their_job() -> None:
    y, scores = _validation(spam=300, ham=700, seed=1)
    choose = _choose(y, scores)
    chosen = choose(np.arange(len(y)), None)
    samples = bootstrap_thresholds(choose, len(y), resamples=100)
    judged = judge_cutoffs(y, scores, chosen, samples, 0.05, 0.05)
    assert judged.failures == ()
    assert judged.block.low <= judged.block.value <= judged.block.high
    assert judged.review.low <= judged.review.value <= judged.review.high
    assert set(judged.as_metrics()) >= {"threshold_block_low", "threshold_review_high"}


def test_a_thin_validation_gets_its_review_cut_off_refused_with_the_reason() -> None:
    # 8 spam and 60 ham: a budget of 5 % of traffic is three ham, and which three depends on
    # the resample; at the interval's low end the band holds twice the budget
    y, scores = _validation(spam=8, ham=60, seed=1, overlap=3.0)
    choose = _choose(y, scores)
    chosen = choose(np.arange(len(y)), None)
    judged = judge_cutoffs(
        y, scores, chosen, bootstrap_thresholds(choose, len(y), resamples=100), 0.05, 0.05
    )
    assert len(judged.failures) == 1
    assert judged.failures[0].startswith("review cut-off too uncertain: 0.731 [0.586, 0.794]")


def test_the_share_of_traffic_in_the_band_is_reweighted_to_the_traffic_mix() -> None:
    y = np.array([1, 1, 0, 0])
    scores = np.array([0.6, 0.9, 0.6, 0.1])
    band = traffic_share_in_band(y, scores, Thresholds(block=0.8, review=0.5), 0.1)
    # half the spam and half the ham in [0.5, 0.8): 0.1 * 0.5 + 0.9 * 0.5
    assert band == 0.5
