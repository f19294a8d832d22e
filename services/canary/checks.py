"""The nine checks of a step window and their limits (`AnalysisThresholds`).

- health: error rate and p99 latency against the champion's (same messages when paired);
- quality: an exact McNemar test on the labelled messages where the two variants' block
  decisions differ (the labels say which of the two differences are right);
- guardrail: the challenger's live block rate and score distribution against its OWN offline
  expectation (the block rate as a shift against the champion on the same messages, when the
  gate scored that champion on the same holdout), and a collapse check (scores piling into one
  narrow band);
- report (never decisive): score PSI and block-rate change against the champion, block
  precision per variant. A retrained model is meant to behave differently from the champion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from modstack.names import (
    CHECK_BLOCK_PRECISION,
    CHECK_BLOCK_RATE,
    CHECK_ERROR_RATE,
    CHECK_EXPECTED_BLOCK_RATE,
    CHECK_EXPECTED_SCORE_PSI,
    CHECK_LABEL_MCNEMAR,
    CHECK_LATENCY_P99,
    CHECK_SCORE_COLLAPSE,
    CHECK_SCORE_PSI,
)
from modstack.paired import McNemar, mcnemar_exact
from modstack.registry.expectation import OfflineExpectation
from services.canary.evidence import PairedLabels, VariantWindow
from services.canary.promql import bucket_counts
from services.canary.stats import (
    coarsen_bins,
    densest_band_share,
    extra_harm_upper_bound,
    smoothed_psi,
    two_proportion_z,
)
from services.canary.verdict import CheckResult

MakeResult = Callable[..., CheckResult]


@dataclass(frozen=True)
class AnalysisThresholds:
    """Limits of each check (from the controller's settings)."""

    # Observations per variant before the window is judged (with pairing both variants score
    # every paired message, so this is also the number of paired messages).
    min_requests: int = 50
    # Rate checks (errors, blocks) fail only when the change is past its limit AND beyond
    # sampling noise (two-proportion z-test).
    significance_z: float = 3.0
    max_error_rate_increase: float = 0.01  # challenger error rate - champion's
    max_latency_p99_ratio: float = 1.5  # challenger p99 / champion p99 ...
    latency_p99_slack_seconds: float = 0.25  # ... or champion p99 + this, whichever is larger
    # Quality on labels (exact McNemar on the discordant labelled pairs).
    alpha: float = 0.01  # one-sided; small because the test is repeated at every window
    min_discordant: int = 20  # labelled discordant pairs needed to pass the last step ...
    # ... or, when the variants rarely disagree in harm, enough labelled pairs that the
    # challenger's extra harm (upper end of c/n's exact 95 % interval, minus b/n) stays within
    # the margin
    min_labelled_pairs: int = 300
    max_extra_harm: float = 0.01
    # Guardrails against the challenger's own offline expectation.
    # |live block-rate shift vs champion - holdout shift| (or |live - holdout block rate|)
    max_expected_block_change: float = 0.15
    max_expected_psi: float = 1.0  # PSI of live scores against the holdout's
    psi_min_bin_share: float = 0.10  # merge score buckets to >= this pooled share
    max_collapse_share: float = 0.95  # share of scores inside any 0.1-wide score band
    # Reported only (not decisive): differences from the champion.
    max_score_psi: float = 1.0
    max_block_rate_change: float = 0.15
    max_precision_drop: float = 0.10
    min_labelled_blocks: int = 20


# How much more piled up than the champion's scores a collapsed challenger's must be.
COLLAPSE_MARGIN = 0.10


# -- health ----------------------------------------------------------------------------------


def error_rate_check(
    champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds
) -> CheckResult:
    a, b = champ.error_rate, chall.error_rate
    if b is None:
        return CheckResult(
            CHECK_ERROR_RATE, None, None, t.max_error_rate_increase, a, b, "no requests", "health"
        )
    increase = b - (a or 0.0)
    z = two_proportion_z(chall.errors, chall.requests, champ.errors, champ.requests)
    return CheckResult(
        CHECK_ERROR_RATE,
        increase <= t.max_error_rate_increase or z < t.significance_z,
        increase,
        t.max_error_rate_increase,
        a,
        b,
        f"challenger error rate minus champion's (z={z:.2f})",
        "health",
    )


def latency_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds) -> CheckResult:
    a, b = champ.latency_p99, chall.latency_p99
    if a is None or b is None:
        return CheckResult(
            CHECK_LATENCY_P99, None, None, t.max_latency_p99_ratio, a, b, "no latency", "health"
        )
    limit = max(a * t.max_latency_p99_ratio, a + t.latency_p99_slack_seconds)
    ratio = b / a if a > 0 else math.inf
    # Report the ratio against the effective ratio limit (which includes the slack).
    effective_ratio = limit / a if a > 0 else math.inf
    return CheckResult(
        CHECK_LATENCY_P99,
        b <= limit,
        ratio,
        effective_ratio,
        a,
        b,
        f"challenger p99 {b * 1000:.1f} ms vs limit {limit * 1000:.1f} ms",
        "health",
    )


# -- quality on labels -----------------------------------------------------------------------


def label_quality_check(
    pairs: PairedLabels, t: AnalysisThresholds, final_step: bool
) -> CheckResult:
    """Exact McNemar on the labelled discordant pairs.

    Fails at any step when the labels side with the champion beyond chance (one-sided
    p < alpha). Passes an intermediate step when it does not fail (the step only moves more
    traffic, the last one needs evidence). Passes the last step only with evidence that the
    challenger is not worse, in one of two ways:

    - at least `min_discordant` labelled discordant pairs and b >= c: on the only messages
      where the swap changes a decision, it makes no more labelled mistakes;
    - non-inferiority within a margin, when the variants rarely disagree: at least
      `min_labelled_pairs` labelled pairs, and the challenger's extra harm per labelled
      message (upper end of the exact 95 % interval of c / labelled, minus b / labelled) at
      most `max_extra_harm`. Two models that agree on nearly everything never reach
      `min_discordant` discordant pairs (the demo saw 0 among 4,505 labelled pairs), so b >= c
      alone would hold such a rollout forever although the evidence bounds what the swap can
      cost; the margin accepts a challenger that may be worse by at most that much.

    Otherwise inconclusive.
    """
    test = mcnemar_exact(pairs.challenger_right, pairs.champion_right)
    counts = _mcnemar_counts(test, pairs)
    make = partial(
        CheckResult,
        CHECK_LABEL_MCNEMAR,
        value=test.p_worse,
        threshold=t.alpha,
        champion=float(test.c),
        challenger=float(test.b),
        kind="quality",
    )
    if test.n > 0 and test.p_worse < t.alpha:
        return make(passed=False, detail=f"labels side with the champion: {counts}")
    if not final_step:
        return make(passed=True, detail=f"no evidence against the challenger: {counts}")
    if test.n >= t.min_discordant and test.b >= test.c:
        return make(passed=True, detail=f"labels side with the challenger: {counts}")
    labelled = test.n + pairs.concordant
    extra = _extra_harm_within_margin(test.b, test.c, labelled, t)
    if extra is not None:
        return make(
            passed=True,
            detail=(
                f"non-inferior: at most {extra:.2%} more harmful decisions than the "
                f"champion (95 % bound, margin {t.max_extra_harm:.0%}): {counts}"
            ),
        )
    return make(passed=None, detail=f"{_evidence_needed(test, t)}: {counts}")


def _mcnemar_counts(test: McNemar, pairs: PairedLabels) -> str:
    """The labelled pairs and the test's p-values, for the check's detail."""
    return (
        f"b={test.b} challenger right, c={test.c} champion right among {test.n} labelled "
        f"discordant pairs ({pairs.concordant} concordant, {pairs.paired} pairs scored); "
        f"p_worse={test.p_worse:.3g}, p_better={test.p_better:.3g}"
    )


def _evidence_needed(test: McNemar, t: AnalysisThresholds) -> str:
    """What the last step still lacks to pass."""
    if test.n < t.min_discordant:
        return (
            f"need >= {t.min_discordant} labelled discordant pairs with b >= c, or "
            f">= {t.min_labelled_pairs} labelled pairs within the harm margin"
        )
    return "need b >= c"


def _extra_harm_within_margin(b: int, c: int, labelled: int, t: AnalysisThresholds) -> float | None:
    """The challenger's extra-harm bound when enough pairs are labelled and it is within the
    margin, else None."""
    if labelled < t.min_labelled_pairs:
        return None
    extra = extra_harm_upper_bound(b, c, labelled)
    return extra if extra <= t.max_extra_harm else None


# -- broken-model guardrails -----------------------------------------------------------------


def live_score_counts(score_buckets: Mapping[float, float], edges: list[float]) -> list[float]:
    """Per-bin counts of a live score histogram on the expectation's bins (`edges`: bin edges
    from 0 to 1; serving's buckets are the upper edges, its +Inf bucket joins the last bin)."""
    counts = bucket_counts(score_buckets)
    bounds = sorted(score_buckets)
    by_bound = dict(zip(bounds, counts, strict=True))
    finite = [b for b in bounds if not math.isinf(b)]
    uppers = [round(e, 6) for e in edges[1:]]
    if [round(b, 6) for b in finite] != uppers:
        raise ValueError(f"score buckets {finite} do not match the expectation's edges {edges}")
    binned = [by_bound[b] for b in finite]
    binned[-1] += by_bound.get(math.inf, 0.0)
    return binned


def expected_block_check(
    champ: VariantWindow,
    chall: VariantWindow,
    expectation: OfflineExpectation | None,
    champion_version: str | None,
    t: AnalysisThresholds,
) -> CheckResult:
    """Does the challenger act on live traffic as its gate evaluation said it would?

    When the gate scored the live champion on the same holdout, the compared quantity is the
    block-rate shift against the champion: live (both variants on the same messages) minus
    offline (both on the holdout). A traffic mix that moves the spam share moves both models'
    block rates alike and cancels out; a challenger whose live behaviour departs from its
    holdout (train/serve skew, a broken feature) does not. Otherwise, the bare live block
    rate against the holdout's, which the traffic mix moves too."""
    make = partial(
        CheckResult,
        CHECK_EXPECTED_BLOCK_RATE,
        threshold=t.max_expected_block_change,
        kind="guardrail",
    )
    if expectation is None:
        return make(passed=None, value=None, detail="no offline expectation logged", required=False)
    if chall.block_rate is None:
        return make(passed=None, value=None, detail="no challenger actions yet")
    if _gated_against_live_champion(champ, expectation, champion_version):
        return _block_shift_check(make, champ, chall, expectation, str(champion_version), t)
    return _bare_block_rate_check(make, chall, expectation, t)


def _gated_against_live_champion(
    champ: VariantWindow, expectation: OfflineExpectation, champion_version: str | None
) -> bool:
    """Whether the gate scored the live champion on the holdout (and it acted in the window)."""
    return (
        expectation.champion_block_rate is not None
        and champion_version is not None
        and expectation.champion_version == str(champion_version)
        and champ.block_rate is not None
    )


def _bare_block_rate_check(
    make: MakeResult, chall: VariantWindow, expectation: OfflineExpectation, t: AnalysisThresholds
) -> CheckResult:
    """The challenger's live block rate against its holdout's."""
    live = chall.block_rate
    assert live is not None
    blocks = chall.actions.get("block", 0.0)
    offline_blocks = expectation.block_rate * expectation.rows
    z = abs(two_proportion_z(blocks, chall.decided, offline_blocks, expectation.rows))
    change = abs(live - expectation.block_rate)
    return make(
        passed=change <= t.max_expected_block_change or z < t.significance_z,
        value=change,
        champion=expectation.block_rate,
        challenger=live,
        detail=f"live block rate vs the holdout's ({expectation.rows} rows; z={z:.2f})",
    )


def _block_shift_check(
    make: MakeResult,
    champ: VariantWindow,
    chall: VariantWindow,
    expectation: OfflineExpectation,
    champion_version: str,
    t: AnalysisThresholds,
) -> CheckResult:
    """The challenger's block-rate shift against the champion: live against the holdout's."""
    live, champion_live = chall.block_rate, champ.block_rate
    offline, champion_offline = expectation.block_rate, expectation.champion_block_rate
    assert live is not None and champion_live is not None and champion_offline is not None
    live_shift = live - champion_live
    offline_shift = offline - champion_offline
    change = abs(live_shift - offline_shift)
    # standard error of the difference of two shifts, each from two rates (treated as
    # independent: conservative for the live pair, which shares its messages)
    variance = sum(
        p * (1.0 - p) / n
        for p, n in (
            (live, chall.decided),
            (champion_live, champ.decided),
            (offline, expectation.rows),
            (champion_offline, expectation.rows),
        )
        if n > 0
    )
    z = change / math.sqrt(variance) if variance > 0 else 0.0
    return make(
        passed=change <= t.max_expected_block_change or z < t.significance_z,
        value=change,
        champion=offline_shift,
        challenger=live_shift,
        detail=(
            f"block-rate shift against champion v{champion_version}: {live_shift:+.3f} live on "
            f"the same messages vs {offline_shift:+.3f} on the gate's holdout "
            f"({expectation.rows} rows; z={z:.2f})"
        ),
    )


def expected_psi_check(
    chall: VariantWindow, expectation: OfflineExpectation | None, t: AnalysisThresholds
) -> CheckResult:
    """PSI of the challenger's live scores against its holdout's."""
    make = partial(
        CheckResult, CHECK_EXPECTED_SCORE_PSI, threshold=t.max_expected_psi, kind="guardrail"
    )
    if expectation is None:
        return make(passed=None, value=None, detail="no offline expectation logged", required=False)
    if not chall.scored:
        return make(passed=None, value=None, detail="no challenger scores yet")
    try:
        live = live_score_counts(chall.score_buckets, expectation.edges)
    except ValueError as exc:
        return make(passed=None, value=None, detail=str(exc), required=False)
    expected, actual = coarsen_bins(
        [float(c) for c in expectation.counts], live, t.psi_min_bin_share
    )
    value = smoothed_psi(expected, actual)
    return make(
        passed=value <= t.max_expected_psi,
        value=value,
        detail=f"PSI of live scores against the holdout's over {len(expected)} bins",
    )


def collapse_check(
    champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds
) -> CheckResult:
    """Do the challenger's scores pile up in one narrow band, beyond the champion's?"""
    make = partial(
        CheckResult, CHECK_SCORE_COLLAPSE, threshold=t.max_collapse_share, kind="guardrail"
    )
    if not chall.scored:
        return make(passed=None, value=None, detail="no challenger scores yet")
    share = densest_band_share(bucket_counts(chall.score_buckets))
    reference = (
        densest_band_share(bucket_counts(champ.score_buckets)) if champ.score_buckets else 0.0
    )
    # Not against the expectation (a model trained on noise expects its own collapse), but
    # against the champion on the same messages: a window of almost only ham piles a good
    # model's scores near 0 too, and then the champion's pile up as well.
    collapsed = share > t.max_collapse_share and share - reference >= COLLAPSE_MARGIN
    return make(
        passed=not collapsed,
        value=share,
        champion=reference,
        challenger=share,
        detail=(
            "largest share of scores inside one 0.1-wide band (fails above the limit when "
            f"{COLLAPSE_MARGIN:g} over the champion's on the same messages)"
        ),
    )


# -- reported, not decisive ------------------------------------------------------------------


def psi_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds) -> CheckResult:
    """PSI of the challenger's scores against the champion's (reported)."""
    make = partial(CheckResult, CHECK_SCORE_PSI, threshold=t.max_score_psi)
    if not champ.score_buckets or not chall.score_buckets:
        return make(passed=None, value=None, detail="no scores")
    if set(champ.score_buckets) != set(chall.score_buckets):
        return make(passed=None, value=None, detail="bucket mismatch")
    expected = bucket_counts(champ.score_buckets)
    actual = bucket_counts(chall.score_buckets)
    if sum(expected) <= 0 or sum(actual) <= 0:
        return make(passed=None, value=None, detail="no scores")
    expected, actual = coarsen_bins(expected, actual, t.psi_min_bin_share)
    value = smoothed_psi(expected, actual)
    return make(
        passed=value <= t.max_score_psi,
        value=value,
        detail=f"reported: PSI of challenger scores against champion scores, {len(expected)} bins",
    )


def block_rate_check(
    champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds
) -> CheckResult:
    """Absolute change of the block rate against the champion's (reported)."""
    a, b = champ.block_rate, chall.block_rate
    make = partial(
        CheckResult, CHECK_BLOCK_RATE, threshold=t.max_block_rate_change, champion=a, challenger=b
    )
    if a is None or b is None:
        return make(passed=None, value=None, detail="no actions")
    change = abs(b - a)
    return make(
        passed=change <= t.max_block_rate_change,
        value=change,
        detail="reported: absolute change of the block rate against the champion",
    )


def precision_check(
    champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds
) -> CheckResult:
    """Champion block precision minus the challenger's, on labelled blocks (reported)."""
    a, b = champ.block_precision, chall.block_precision
    make = partial(
        CheckResult,
        CHECK_BLOCK_PRECISION,
        threshold=t.max_precision_drop,
        champion=a,
        challenger=b,
    )
    enough = min(champ.labelled_blocks, chall.labelled_blocks) >= t.min_labelled_blocks
    if a is None or b is None or not enough:
        detail = (
            f"reported: labelled blocks champion {champ.labelled_blocks:g}, challenger "
            f"{chall.labelled_blocks:g}, need {t.min_labelled_blocks} each"
        )
        return make(passed=None, value=None, detail=detail)
    drop = a - b
    return make(
        passed=drop <= t.max_precision_drop,
        value=drop,
        detail="reported: champion block precision minus challenger's",
    )
