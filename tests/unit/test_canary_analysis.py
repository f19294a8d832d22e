"""Canary analysis on hand-made numbers: quantiles, PSI, and each check's verdict."""

from __future__ import annotations

import math

import pytest

from modstack.names import CHECK_NAMES
from services.canary.analysis import analyze, windows_from_samples
from services.canary.checks import AnalysisThresholds
from services.canary.evidence import VariantWindow
from services.canary.promql import (
    ACTIONS,
    LATENCY_BUCKET,
    REQUESTS,
    SCORE_BUCKET,
    bucket_counts,
    histogram_quantile,
    series_key,
)
from services.canary.stats import coarsen_bins, psi, two_proportion_z

INF = math.inf


def test_histogram_quantile_interpolates_within_the_bucket_like_promql():
    # 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.2], 10 in (0.2, 0.4]
    buckets = {0.1: 50.0, 0.2: 90.0, 0.4: 100.0, INF: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)  # 20 of 40 into (0.1, 0.2]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.2 + 0.2 * 9 / 10)


def test_histogram_quantile_in_the_inf_bucket_answers_the_highest_finite_bound():
    buckets = {0.1: 10.0, 0.5: 10.0, INF: 20.0}
    assert histogram_quantile(0.99, buckets) == 0.5


def test_histogram_quantile_of_an_empty_histogram_is_none():
    assert histogram_quantile(0.99, {0.1: 0.0, INF: 0.0}) is None


def test_histogram_quantile_needs_the_inf_bucket():
    with pytest.raises(ValueError, match="Inf"):
        histogram_quantile(0.5, {0.1: 1.0})


def test_psi_of_identical_distributions_is_zero():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_psi_matches_the_formula_on_a_known_shift():
    # shares 0.5/0.5 vs 0.9/0.1: 0.4*ln(1.8) + (-0.4)*ln(0.2)
    expected = 0.4 * math.log(0.9 / 0.5) + 0.4 * math.log(0.5 / 0.1)
    assert psi([50, 50], [90, 10]) == pytest.approx(expected)
    assert psi([50, 50], [90, 10]) == pytest.approx(0.8789, abs=1e-4)


def test_psi_is_symmetric_and_finite_with_an_empty_bin():
    assert psi([50, 50], [100, 0]) == pytest.approx(psi([100, 0], [50, 50]))
    assert math.isfinite(psi([50, 50], [100, 0]))


def test_coarsen_bins_merges_sparse_bins_to_a_minimum_pooled_share():
    expected = [50, 1, 1, 1, 2, 45]
    actual = [50, 1, 1, 1, 2, 45]
    merged_e, merged_a = coarsen_bins(expected, actual, min_share=0.10)
    assert merged_e == [50, 50] and merged_a == [50, 50]


def test_coarsen_bins_keeps_a_bin_only_the_challenger_fills():
    merged_e, merged_a = coarsen_bins([100, 0, 0], [0, 0, 40], min_share=0.10)
    assert merged_e == [100, 0] and merged_a == [0, 40]


def test_coarsen_bins_folds_a_thin_tail_into_the_last_bin():
    assert coarsen_bins([60, 38, 2], [60, 38, 2], min_share=0.3) == ([60, 40], [60, 40])


def test_bucket_counts_undoes_the_cumulation():
    assert bucket_counts({0.5: 3.0, 0.1: 1.0, INF: 4.0}) == [1.0, 2.0, 1.0]


def _window(
    requests: float,
    errors: float = 0.0,
    latency: dict[float, float] | None = None,
    scores: list[float] | None = None,
    blocks: float = 0.0,
) -> VariantWindow:
    """A window with `scores` as per-bucket counts over 4 score buckets (0.25 wide)."""
    counts = scores or [requests * 0.7, requests * 0.1, requests * 0.1, requests * 0.1]
    cumulative, total = {}, 0.0
    for bound, count in zip((0.25, 0.5, 0.75, 1.0), counts, strict=True):
        total += count
        cumulative[bound] = total
    cumulative[INF] = total
    return VariantWindow(
        requests=requests,
        errors=errors,
        latency_buckets=latency or {0.01: requests * 0.9, 0.05: requests, INF: requests},
        score_buckets=cumulative,
        actions={"allow": requests - blocks, "block": blocks},
    )


def _by_name(analysis):
    return {c.name: c for c in analysis.checks}


def test_a_challenger_like_the_champion_passes_every_check():
    result = analyze(
        {"champion": _window(1000, errors=2, blocks=100), "challenger": _window(100, blocks=11)},
        AnalysisThresholds(min_requests=50),
    )
    assert result.enough_data and result.passed
    checks = _by_name(result)
    assert checks["error_rate"].value == pytest.approx(-0.002)
    assert checks["score_psi"].value == pytest.approx(0.0, abs=1e-3)  # smoothing only
    assert checks["block_rate"].value == pytest.approx(0.01)
    assert checks["block_precision"].passed is None  # no labels yet: skipped, not failed


def test_the_checks_come_in_the_order_every_reader_shows_them():
    result = analyze({"champion": _window(1000), "challenger": _window(100)}, AnalysisThresholds())
    assert tuple(c.name for c in result.checks) == CHECK_NAMES


def test_error_rate_fails_when_the_challenger_errs_more_than_allowed():
    result = analyze(
        {"champion": _window(1000, errors=10), "challenger": _window(100, errors=10)},
        AnalysisThresholds(max_error_rate_increase=0.02),
    )
    check = _by_name(result)["error_rate"]
    assert check.passed is False
    assert check.value == pytest.approx(0.10 - 0.01)
    assert check.champion == pytest.approx(0.01) and check.challenger == pytest.approx(0.10)
    assert [c.name for c in result.failed] == ["error_rate"]


def test_latency_p99_fails_when_the_challenger_is_slower_than_ratio_and_slack_allow():
    slow = {0.01: 10.0, 0.05: 20.0, 0.5: 100.0, INF: 100.0}  # p99 ~0.4955 s
    result = analyze(
        {"champion": _window(1000), "challenger": _window(100, latency=slow)},
        AnalysisThresholds(max_latency_p99_ratio=1.5, latency_p99_slack_seconds=0.05),
    )
    check = _by_name(result)["latency_p99"]
    assert check.passed is False
    assert check.challenger == pytest.approx(0.05 + 0.45 * (99 - 20) / 80)
    assert check.champion == pytest.approx(0.01 + 0.04 * (990 - 900) / 100)


def test_latency_p99_slack_tolerates_bucket_noise_on_a_fast_champion():
    champ = {0.005: 990.0, 0.01: 1000.0, INF: 1000.0}  # p99 5 ms
    chall = {0.005: 50.0, 0.01: 90.0, 0.05: 100.0, INF: 100.0}  # p99 ~46 ms: 9x, but < 55 ms
    result = analyze(
        {"champion": _window(1000, latency=champ), "challenger": _window(100, latency=chall)},
        AnalysisThresholds(latency_p99_slack_seconds=0.05),
    )
    assert _by_name(result)["latency_p99"].passed is True


def test_score_psi_fails_on_a_collapsed_score_distribution():
    collapsed = [0.0, 100.0, 0.0, 0.0]  # every score in (0.25, 0.5]: a model trained on noise
    result = analyze(
        {"champion": _window(1000), "challenger": _window(100, scores=collapsed)},
        AnalysisThresholds(max_score_psi=0.25),
    )
    check = _by_name(result)["score_psi"]
    assert check.passed is False
    # the last two bins hold 5 % of the pooled mass each: merged; then half a count per bin
    expected = psi([700.5, 100.5, 200.5], [0.5, 100.5, 0.5])
    assert check.value == pytest.approx(expected)
    assert check.value > 2


def test_block_rate_change_fails_both_ways():
    thresholds = AnalysisThresholds(max_block_rate_change=0.05)
    more = analyze(
        {"champion": _window(1000, blocks=100), "challenger": _window(100, blocks=30)}, thresholds
    )
    none = analyze(
        {"champion": _window(1000, blocks=100), "challenger": _window(100, blocks=0)}, thresholds
    )
    assert _by_name(more)["block_rate"].value == pytest.approx(0.2)
    assert _by_name(none)["block_rate"].value == pytest.approx(0.1)
    # reported both ways, but a change against the champion is not decisive
    assert _by_name(more)["block_rate"].verdict == "over"
    assert _by_name(none)["block_rate"].verdict == "over"
    assert not more.failed and not none.failed


def test_block_precision_judged_only_with_enough_labels():
    champ, chall = _window(1000), _window(100)
    champ.labelled_blocks, champ.labelled_blocks_spam = 40, 39
    chall.labelled_blocks, chall.labelled_blocks_spam = 10, 5
    thresholds = AnalysisThresholds(min_labelled_blocks=20, max_precision_drop=0.1)
    assert (
        _by_name(analyze({"champion": champ, "challenger": chall}, thresholds))[
            "block_precision"
        ].passed
        is None
    )
    chall.labelled_blocks, chall.labelled_blocks_spam = 30, 21
    check = _by_name(analyze({"champion": champ, "challenger": chall}, thresholds))[
        "block_precision"
    ]
    assert check.passed is False
    assert check.value == pytest.approx(39 / 40 - 21 / 30)


def test_too_few_challenger_requests_is_not_enough_data():
    result = analyze(
        {"champion": _window(1000), "challenger": _window(10, errors=10)},
        AnalysisThresholds(min_requests=50),
    )
    assert not result.enough_data and not result.passed


def test_at_full_weight_the_baseline_stands_in_for_the_champion():
    baseline = _window(500, blocks=50)
    result = analyze(
        {"challenger": _window(100, blocks=10)}, AnalysisThresholds(), baseline=baseline
    )
    assert result.enough_data and result.passed
    assert result.champion_requests == 500


def test_windows_from_samples_groups_series_by_variant():
    samples = {
        series_key(REQUESTS, {"variant": "champion", "outcome": "ok"}): 90.0,
        series_key(REQUESTS, {"variant": "champion", "outcome": "error"}): 10.0,
        series_key(REQUESTS, {"variant": "challenger", "outcome": "ok"}): 20.0,
        series_key(REQUESTS, {"variant": "challenger", "outcome": "rejected"}): 3.0,
        series_key(LATENCY_BUCKET, {"variant": "champion", "le": "0.01"}): 80.0,
        series_key(LATENCY_BUCKET, {"variant": "champion", "le": "+Inf"}): 100.0,
        series_key(SCORE_BUCKET, {"variant": "challenger", "le": "0.5"}): 15.0,
        series_key(SCORE_BUCKET, {"variant": "challenger", "le": "+Inf"}): 20.0,
        series_key(ACTIONS, {"variant": "challenger", "action": "block"}): 4.0,
        series_key(ACTIONS, {"variant": "challenger", "action": "allow"}): 16.0,
    }
    windows = windows_from_samples(samples)
    assert windows["champion"].requests == 100 and windows["champion"].errors == 10
    assert windows["champion"].latency_buckets == {0.01: 80.0, INF: 100.0}
    assert windows["challenger"].requests == 23 and windows["challenger"].errors == 0
    assert windows["challenger"].score_buckets == {0.5: 15.0, INF: 20.0}
    assert windows["challenger"].block_rate == pytest.approx(0.2)


def test_summary_names_every_check_and_verdict():
    result = analyze(
        {"champion": _window(1000), "challenger": _window(100, errors=50)}, AnalysisThresholds()
    )
    text = result.summary()
    assert "error_rate=0.5 (0.01) fail" in text
    assert "block_precision=n/a (0.1) n/a" in text
    assert "expected_block_rate=n/a (0.15) skipped" in text  # no expectation logged


def test_two_proportion_z_matches_the_textbook_value():
    # 30 % vs 20 % of 100 each: pooled 25 %, se = sqrt(.25 * .75 * .02)
    se = math.sqrt(0.00375)
    assert two_proportion_z(30, 100, 20, 100, continuity=False) == pytest.approx(0.1 / se)
    assert two_proportion_z(30, 100, 20, 100) == pytest.approx((0.1 - 0.01) / se)  # Yates
    assert two_proportion_z(20, 100, 30, 100) == pytest.approx(-(0.1 - 0.01) / se)
    assert two_proportion_z(0, 100, 0, 100) == 0.0
    assert two_proportion_z(5, 0, 1, 10) == 0.0


def test_a_single_error_in_a_small_window_is_not_a_regression():
    result = analyze(
        {"champion": _window(1000), "challenger": _window(50, errors=1)},
        AnalysisThresholds(min_requests=50, max_error_rate_increase=0.01),
    )
    check = _by_name(result)["error_rate"]
    assert check.value == pytest.approx(0.02) and check.passed is True


def test_shadow_mode_is_judged_on_the_challengers_logged_scores():
    # shadow: the champion answers every request; the challenger only logs scores
    shadow = _window(100)
    shadow.requests = 0.0
    shadow.latency_buckets = {}
    result = analyze({"champion": _window(1000), "challenger": shadow}, AnalysisThresholds())
    checks = _by_name(result)
    assert result.enough_data and result.challenger_requests == 100
    assert checks["error_rate"].passed is None and checks["latency_p99"].passed is None
    assert checks["score_psi"].passed is True
