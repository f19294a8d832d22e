"""Canary analysis of one step window: does the challenger behave like the champion?

Framework-free. Input: the serving metrics of each variant over the window (counter and
histogram increases, however they were obtained: PromQL `increase()` or diffs of scraped
snapshots) plus the block labels that arrived. Output: one result per check with the values
on both sides, the threshold and pass / fail / skipped (not enough data to judge).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from modstack.names import VARIANT_CHALLENGER, VARIANT_CHAMPION

# Serving metric names (INTERFACES.md: a contract with serving, monitoring and Prometheus rules).
REQUESTS = "serving_requests_total"
LATENCY_BUCKET = "serving_request_duration_seconds_bucket"
SCORE_BUCKET = "serving_score_bucket"
ACTIONS = "serving_actions_total"

# A flattened series: (sample name, sorted label pairs) -> value.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[SeriesKey, float]


def series_key(name: str, labels: Mapping[str, str]) -> SeriesKey:
    """The hashable key of one series."""
    return name, tuple(sorted(labels.items()))


def histogram_quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """The q-quantile of a Prometheus histogram given as {upper bound `le`: cumulative count}.

    Same interpolation as PromQL's `histogram_quantile` (linear within the bucket, the lower
    bound of the first bucket is 0, a quantile in the +Inf bucket answers the highest finite
    bound), so the scrape path and the Prometheus path agree. prometheus_client has no
    quantile function for its histograms, hence this one. None when the histogram is empty.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    bounds = sorted(cumulative)
    if not bounds or not math.isinf(bounds[-1]):
        raise ValueError("a histogram needs its +Inf bucket")
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return bounds[-2] if len(bounds) > 1 else None
            in_bucket = count - lower_count
            if in_bucket <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
        lower_bound, lower_count = bound, count
    return bounds[-2] if len(bounds) > 1 else None


def bucket_counts(cumulative: Mapping[float, float]) -> list[float]:
    """Per-bucket counts (ordered by upper bound) from cumulative histogram counts."""
    counts, previous = [], 0.0
    for bound in sorted(cumulative):
        counts.append(max(cumulative[bound] - previous, 0.0))
        previous = cumulative[bound]
    return counts


def psi(expected: Iterable[float], actual: Iterable[float], epsilon: float = 1e-4) -> float:
    """Population stability index between two binned distributions (counts or shares).

    PSI = sum((a - e) * ln(a / e)) over bins of shares; an empty bin gets `epsilon` so the
    log stays finite. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large.
    """
    expected, actual = list(expected), list(actual)
    if len(expected) != len(actual) or not expected:
        raise ValueError("PSI needs two distributions over the same, non-empty set of bins")
    e_total, a_total = sum(expected), sum(actual)
    if e_total <= 0 or a_total <= 0:
        raise ValueError("PSI needs two non-empty distributions")
    value = 0.0
    for e_count, a_count in zip(expected, actual, strict=True):
        e_share = max(e_count / e_total, epsilon)
        a_share = max(a_count / a_total, epsilon)
        value += (a_share - e_share) * math.log(a_share / e_share)
    return value


def coarsen_bins(
    expected: list[float], actual: list[float], min_share: float
) -> tuple[list[float], list[float]]:
    """Merge adjacent bins until each holds at least `min_share` of the pooled mass (the mean
    of the two distributions' shares).

    The serving histogram has 20 score buckets, most of them nearly empty (scores pile up
    near 0 and 1); PSI over sparse bins measures sampling noise (about (bins - 1) / n), so the
    bins are first merged into roughly equal-mass ones, like the quantile bins PSI is usually
    computed on, at the histogram's resolution. Pooling both sides keeps a bin that only the
    challenger fills (a collapsed score distribution) separate.
    """
    e_total, a_total = sum(expected), sum(actual)
    merged_e: list[float] = []
    merged_a: list[float] = []
    acc_e = acc_a = 0.0
    for e_count, a_count in zip(expected, actual, strict=True):
        acc_e += e_count
        acc_a += a_count
        pooled = (acc_e / e_total if e_total else 0.0) + (acc_a / a_total if a_total else 0.0)
        if pooled / 2 >= min_share:
            merged_e.append(acc_e)
            merged_a.append(acc_a)
            acc_e = acc_a = 0.0
    if acc_e or acc_a or not merged_e:
        if merged_e:  # the tail below min_share joins the last bin
            merged_e[-1] += acc_e
            merged_a[-1] += acc_a
        else:
            merged_e, merged_a = [acc_e], [acc_a]
    return merged_e, merged_a


def two_proportion_z(x1: float, n1: float, x2: float, n2: float, continuity: bool = True) -> float:
    """z statistic of p1 - p2 for two observed proportions x1/n1 and x2/n2 (pooled variance).

    With `continuity` (Yates' correction) the difference shrinks by (1/n1 + 1/n2) / 2, which
    keeps rare events honest: 1 error in 50 requests against 0 in 1,000 is not a regression.
    0 when either side has no observations or the pooled rate is 0 or 1 (no variance).
    """
    if n1 <= 0 or n2 <= 0:
        return 0.0
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 0.0
    diff = x1 / n1 - x2 / n2
    if continuity:
        shrunk = max(abs(diff) - (1 / n1 + 1 / n2) / 2, 0.0)
        diff = math.copysign(shrunk, diff)
    return diff / math.sqrt(variance)


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
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def block_rate(self) -> float | None:
        decided = sum(self.actions.values())
        return self.actions.get("block", 0.0) / decided if decided > 0 else None

    @property
    def latency_p99(self) -> float | None:
        return histogram_quantile(0.99, self.latency_buckets) if self.latency_buckets else None

    @property
    def block_precision(self) -> float | None:
        if self.labelled_blocks <= 0:
            return None
        return self.labelled_blocks_spam / self.labelled_blocks


def windows_from_samples(
    samples: Mapping[SeriesKey, float], error_outcomes: Iterable[str] = ("error",)
) -> dict[str, VariantWindow]:
    """Group flattened serving samples (window increases) into one `VariantWindow` per variant."""
    errors = set(error_outcomes)
    windows: dict[str, VariantWindow] = {}
    for (name, label_pairs), value in samples.items():
        labels = dict(label_pairs)
        variant = labels.get("variant")
        if variant is None:
            continue
        window = windows.setdefault(variant, VariantWindow())
        if name == REQUESTS:
            window.requests += value
            if labels.get("outcome") in errors:
                window.errors += value
        elif name in (LATENCY_BUCKET, SCORE_BUCKET):
            target = window.latency_buckets if name == LATENCY_BUCKET else window.score_buckets
            bound = float(labels["le"])
            target[bound] = target.get(bound, 0.0) + value
        elif name == ACTIONS:
            action = labels.get("action", "")
            window.actions[action] = window.actions.get(action, 0.0) + value
    return windows


@dataclass(frozen=True)
class AnalysisThresholds:
    """Limits of each check (from the controller's settings)."""

    min_requests: int = 50  # challenger requests needed before the window is judged
    # Rate checks (errors, blocks) fail only when the change is past its limit AND beyond
    # sampling noise (two-proportion z-test): 50 requests at a 20 % block rate move by +-6
    # points on their own, which must not roll a good model back.
    significance_z: float = 3.0
    max_error_rate_increase: float = 0.01  # challenger error rate - champion's
    max_latency_p99_ratio: float = 1.5  # challenger p99 / champion p99 ...
    latency_p99_slack_seconds: float = 0.25  # ... or champion p99 + this, whichever is larger
    # PSI between the variants' score histograms. Not the 0.25 "population shift" rule of
    # thumb: a retrained model legitimately scores differently from a stale champion (up to
    # ~0.45 measured); a broken one (collapsed scores) lands far above 1.
    max_score_psi: float = 1.0
    psi_min_bin_share: float = 0.10  # merge score buckets to >= this share of champion scores
    max_block_rate_change: float = 0.15  # |challenger block rate - champion's|
    max_precision_drop: float = 0.10  # champion block precision - challenger's
    min_labelled_blocks: int = 20  # labelled blocks per variant before precision is judged


@dataclass
class CheckResult:
    """One check: `passed` is None when there was not enough data to judge."""

    name: str
    passed: bool | None
    value: float | None  # the compared quantity (difference, ratio, PSI ...)
    threshold: float
    champion: float | None = None
    challenger: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "name"}


@dataclass
class Analysis:
    """The verdict on one window."""

    enough_data: bool
    checks: list[CheckResult]
    champion_requests: float
    challenger_requests: float

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.passed is False]

    @property
    def passed(self) -> bool:
        """Judged and no check failed (skipped checks do not fail a window)."""
        return self.enough_data and not self.failed

    def summary(self) -> str:
        """One line: each check as name=value (threshold) and its verdict."""
        parts = []
        for c in self.checks:
            mark = {True: "ok", False: "FAIL", None: "skip"}[c.passed]
            value = "n/a" if c.value is None else f"{c.value:.4g}"
            parts.append(f"{c.name}={value} (<= {c.threshold:g}) {mark}")
        return "; ".join(parts)

    def metrics(self) -> dict[str, float | None]:
        """Raw values, flat, for the rollout history."""
        values: dict[str, float | None] = {
            "champion_requests": self.champion_requests,
            "challenger_requests": self.challenger_requests,
        }
        for c in self.checks:
            values[f"{c.name}.champion"] = c.champion
            values[f"{c.name}.challenger"] = c.challenger
        return values


def _error_rate_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.error_rate, chall.error_rate
    if b is None:
        return CheckResult("error_rate", None, None, t.max_error_rate_increase, a, b, "no requests")
    increase = b - (a or 0.0)
    z = two_proportion_z(chall.errors, chall.requests, champ.errors, champ.requests)
    return CheckResult(
        "error_rate",
        increase <= t.max_error_rate_increase or z < t.significance_z,
        increase,
        t.max_error_rate_increase,
        a,
        b,
        f"challenger error rate minus champion's (z={z:.2f})",
    )


def _latency_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.latency_p99, chall.latency_p99
    if a is None or b is None:
        return CheckResult("latency_p99", None, None, t.max_latency_p99_ratio, a, b, "no latency")
    limit = max(a * t.max_latency_p99_ratio, a + t.latency_p99_slack_seconds)
    ratio = b / a if a > 0 else math.inf
    # Report the ratio against the effective ratio limit (which includes the slack).
    effective_ratio = limit / a if a > 0 else math.inf
    return CheckResult(
        "latency_p99",
        b <= limit,
        ratio,
        effective_ratio,
        a,
        b,
        f"challenger p99 {b * 1000:.1f} ms vs limit {limit * 1000:.1f} ms",
    )


def _psi_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    if not champ.score_buckets or not chall.score_buckets:
        return CheckResult("score_psi", None, None, t.max_score_psi, detail="no scores")
    bounds = sorted(set(champ.score_buckets) | set(chall.score_buckets))
    if set(champ.score_buckets) != set(chall.score_buckets):
        return CheckResult("score_psi", None, None, t.max_score_psi, detail="bucket mismatch")
    expected = bucket_counts({b: champ.score_buckets[b] for b in bounds})
    actual = bucket_counts({b: chall.score_buckets[b] for b in bounds})
    if sum(expected) <= 0 or sum(actual) <= 0:
        return CheckResult("score_psi", None, None, t.max_score_psi, detail="no scores")
    expected, actual = coarsen_bins(expected, actual, t.psi_min_bin_share)
    # Half a count per bin (Laplace-style smoothing): an empty bin in a small window is
    # sampling noise, not an infinitely surprising distribution.
    value = psi([e + 0.5 for e in expected], [a + 0.5 for a in actual])
    return CheckResult(
        "score_psi",
        value <= t.max_score_psi,
        value,
        t.max_score_psi,
        detail=f"PSI of challenger scores against champion scores over {len(expected)} bins",
    )


def _block_rate_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.block_rate, chall.block_rate
    if a is None or b is None:
        return CheckResult("block_rate", None, None, t.max_block_rate_change, a, b, "no actions")
    change = abs(b - a)
    z = abs(
        two_proportion_z(
            chall.actions.get("block", 0.0),
            sum(chall.actions.values()),
            champ.actions.get("block", 0.0),
            sum(champ.actions.values()),
        )
    )
    return CheckResult(
        "block_rate",
        change <= t.max_block_rate_change or z < t.significance_z,
        change,
        t.max_block_rate_change,
        a,
        b,
        f"absolute change of the block rate (z={z:.2f})",
    )


def _precision_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.block_precision, chall.block_precision
    enough = min(champ.labelled_blocks, chall.labelled_blocks) >= t.min_labelled_blocks
    if a is None or b is None or not enough:
        detail = (
            f"labelled blocks: champion {champ.labelled_blocks:g}, challenger "
            f"{chall.labelled_blocks:g}, need {t.min_labelled_blocks} each"
        )
        return CheckResult("block_precision", None, None, t.max_precision_drop, a, b, detail)
    drop = a - b
    return CheckResult(
        "block_precision",
        drop <= t.max_precision_drop,
        drop,
        t.max_precision_drop,
        a,
        b,
        "champion block precision minus challenger's",
    )


def analyze(
    windows: Mapping[str, VariantWindow],
    thresholds: AnalysisThresholds,
    baseline: VariantWindow | None = None,
) -> Analysis:
    """Judge one window: every check compares the challenger with the champion.

    At 100 % the champion gets no traffic: `baseline` (the champion's last window with
    traffic, kept by the controller) then stands in for it.
    """
    champ = windows.get(VARIANT_CHAMPION, VariantWindow())
    chall = windows.get(VARIANT_CHALLENGER, VariantWindow())
    if champ.requests <= 0 and baseline is not None:
        champ = baseline
    enough = chall.observations >= thresholds.min_requests and champ.observations > 0
    checks = [
        check(champ, chall, thresholds)
        for check in (
            _error_rate_check,
            _latency_check,
            _psi_check,
            _block_rate_check,
            _precision_check,
        )
    ]
    return Analysis(enough, checks, champ.observations, chall.observations)
