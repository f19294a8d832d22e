"""Canary analysis of one step window: is the challenger healthy, right, and not broken?

Framework-free. Inputs: the serving metrics of each variant over the window (counter and
histogram increases, from PromQL `increase()` or diffs of scraped snapshots), the labelled
pairs (messages both variants scored, whose label arrived), and the challenger's offline
expectation from its gate evaluation. Checks come in three decisive kinds plus reports:

- health: error rate and p99 latency against the champion's (same messages when paired);
- quality: an exact McNemar test on the labelled messages where the two variants' block
  decisions differ (the labels say which of the two differences are right);
- guardrail: the challenger's live block rate and score distribution against its OWN offline
  expectation (the block rate as a shift against the champion on the same messages, when the
  gate scored that champion on the same holdout), and a collapse check (scores piling into one
  narrow band);
- report (never decisive): score PSI and block-rate change against the champion, block
  precision per variant. A retrained model is meant to behave differently from the champion.

Each check says pass / fail / inconclusive (None); an inconclusive decisive check extends the
step (see `state_machine.judge`), it neither passes nor fails the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Literal

from scipy.stats import binomtest

from modstack.names import VARIANT_CHALLENGER, VARIANT_CHAMPION
from modstack.registry.expectation import OfflineExpectation

# Serving metric names: a contract with serving (services/serving/metrics.py), monitoring and
# the Prometheus rules.
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

CheckKind = Literal["health", "quality", "guardrail", "report"]
DECISIVE_KINDS: frozenset[str] = frozenset({"health", "quality", "guardrail"})


@dataclass
class CheckResult:
    """One check: `passed` is None when the evidence does not decide it (inconclusive)."""

    name: str
    passed: bool | None
    value: float | None  # the compared quantity (difference, ratio, PSI, p-value ...)
    threshold: float
    champion: float | None = None
    challenger: float | None = None
    detail: str = ""
    kind: CheckKind = "report"
    # False for a decisive kind that cannot be judged at all here (no expectation logged):
    # it is reported as skipped instead of holding the step forever.
    required: bool = True

    @property
    def decisive(self) -> bool:
        return self.kind in DECISIVE_KINDS and self.required

    @property
    def verdict(self) -> str:
        """pass / fail / inconclusive (decisive) or ok / over / n/a (reported)."""
        if not self.decisive:
            if self.kind != "report":
                return "skipped"
            return {True: "ok", False: "over", None: "n/a"}[self.passed]
        return {True: "pass", False: "fail", None: "inconclusive"}[self.passed]

    def as_dict(self) -> dict[str, Any]:
        body = {k: v for k, v in asdict(self).items() if k not in ("name", "required")}
        body["verdict"] = self.verdict
        return body


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

    @property
    def discordant(self) -> int:
        return self.challenger_right + self.champion_right


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: under H0 (equally good) each discordant pair is a fair coin."""

    b: int  # challenger right, champion wrong
    c: int  # champion right, challenger wrong
    p_worse: float  # one-sided P(X <= b), X ~ Bin(b + c, 1/2): small = labels side with champion
    p_better: float  # one-sided P(X >= b): small = labels side with the challenger

    @property
    def n(self) -> int:
        return self.b + self.c


def mcnemar_exact(b: int, c: int) -> McNemar:
    """The exact (binomial) McNemar test on discordant counts b and c (scipy's binomtest;
    exact rather than the chi-square form because early windows hold a handful of pairs)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return McNemar(0, 0, 1.0, 1.0)
    worse = binomtest(b, n, 0.5, alternative="less").pvalue
    better = binomtest(b, n, 0.5, alternative="greater").pvalue
    return McNemar(b, c, float(worse), float(better))


@dataclass
class Analysis:
    """The verdict on one window."""

    enough_data: bool
    checks: list[CheckResult]
    champion_requests: float
    challenger_requests: float

    @property
    def failed(self) -> list[CheckResult]:
        """Decisive checks that failed."""
        return [c for c in self.checks if c.decisive and c.passed is False]

    @property
    def inconclusive(self) -> list[CheckResult]:
        """Decisive checks the evidence does not decide yet."""
        return [c for c in self.checks if c.decisive and c.passed is None]

    @property
    def passed(self) -> bool:
        """Enough traffic, every decisive check passed."""
        return self.enough_data and not self.failed and not self.inconclusive

    def summary(self) -> str:
        """One line: each check as name=value (threshold) and its verdict."""
        parts = []
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.4g}"
            parts.append(f"{c.name}={value} ({c.threshold:g}) {c.verdict}")
        return "; ".join(parts)

    def metrics(self) -> dict[str, float | None]:
        """Raw values, flat, for the rollout history."""
        values: dict[str, float | None] = {
            "champion_requests": self.champion_requests,
            "challenger_requests": self.challenger_requests,
        }
        for c in self.checks:
            if c.champion is not None or c.challenger is not None:
                values[f"{c.name}.champion"] = c.champion
                values[f"{c.name}.challenger"] = c.challenger
        return values


# -- health --------------------------------------------------------------------------------------


def _error_rate_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.error_rate, chall.error_rate
    if b is None:
        return CheckResult(
            "error_rate", None, None, t.max_error_rate_increase, a, b, "no requests", "health"
        )
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
        "health",
    )


def _latency_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.latency_p99, chall.latency_p99
    if a is None or b is None:
        return CheckResult(
            "latency_p99", None, None, t.max_latency_p99_ratio, a, b, "no latency", "health"
        )
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
        "health",
    )


# -- quality on labels -----------------------------------------------------------------------


def extra_harm_upper_bound(b: int, c: int, labelled: int, confidence: float = 0.95) -> float:
    """How many more harmful decisions per labelled message the challenger may make, at most:
    the upper end of the exact (Clopper-Pearson) 95 % interval of c / labelled, minus
    b / labelled.

    The pass path for two models that rarely disagree: 0 discordant pairs among 4,500 labelled
    ones is strong evidence of "no worse", though McNemar alone has nothing to count."""
    if labelled <= 0:
        return 1.0
    upper = binomtest(c, labelled, 0.5).proportion_ci(confidence, method="exact").high
    if c == labelled:
        upper = 1.0
    return float(upper - b / labelled)


def label_quality_check(
    pairs: PairedLabels, t: AnalysisThresholds, final_step: bool
) -> CheckResult:
    """Exact McNemar on the labelled discordant pairs.

    Fails at any step when the labels side with the champion beyond chance (one-sided
    p < alpha). Passes an intermediate step when it does not fail (the step only moves more
    traffic, the last one needs evidence). Passes the last step only with evidence for the
    challenger: at least `min_discordant` labelled discordant pairs and b >= c (it is right at
    least as often as the champion where they disagree). Why this and not a non-inferiority
    margin: the decision is "replace the champion", and on discordant pairs b >= c is exactly
    "the swap does not make more labelled mistakes"; a margin would knowingly accept a worse
    model on the only messages where the swap changes anything. Otherwise inconclusive.
    """
    test = mcnemar_exact(pairs.challenger_right, pairs.champion_right)
    counts = (
        f"b={test.b} challenger right, c={test.c} champion right among {test.n} labelled "
        f"discordant pairs ({pairs.concordant} concordant, {pairs.paired} pairs scored); "
        f"p_worse={test.p_worse:.3g}, p_better={test.p_better:.3g}"
    )
    make = partial(
        CheckResult,
        "label_mcnemar",
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
    if labelled >= t.min_labelled_pairs:
        extra = extra_harm_upper_bound(test.b, test.c, labelled)
        if extra <= t.max_extra_harm:
            return make(
                passed=True,
                detail=(
                    f"non-inferior: at most {extra:.2%} more harmful decisions than the "
                    f"champion (95 % bound, margin {t.max_extra_harm:.0%}): {counts}"
                ),
            )
    need = (
        f"need >= {t.min_discordant} labelled discordant pairs with b >= c, or "
        f">= {t.min_labelled_pairs} labelled pairs within the harm margin"
        if test.n < t.min_discordant
        else "need b >= c"
    )
    return make(passed=None, detail=f"{need}: {counts}")


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


def _expected_block_check(
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
        CheckResult, "expected_block_rate", threshold=t.max_expected_block_change, kind="guardrail"
    )
    if expectation is None:
        return make(passed=None, value=None, detail="no offline expectation logged", required=False)
    live = chall.block_rate
    if live is None:
        return make(passed=None, value=None, detail="no challenger actions yet")
    decided = sum(chall.actions.values())
    blocks = chall.actions.get("block", 0.0)
    paired = (
        expectation.champion_block_rate is not None
        and champion_version is not None
        and expectation.champion_version == str(champion_version)
        and champ.block_rate is not None
    )
    if not paired:
        z = abs(
            two_proportion_z(
                blocks, decided, expectation.block_rate * expectation.rows, expectation.rows
            )
        )
        change = abs(live - expectation.block_rate)
        return make(
            passed=change <= t.max_expected_block_change or z < t.significance_z,
            value=change,
            champion=expectation.block_rate,
            challenger=live,
            detail=f"live block rate vs the holdout's ({expectation.rows} rows; z={z:.2f})",
        )
    assert champ.block_rate is not None and expectation.champion_block_rate is not None
    live_shift = live - champ.block_rate
    offline_shift = expectation.block_rate - expectation.champion_block_rate
    change = abs(live_shift - offline_shift)
    # standard error of the difference of two shifts, each from two rates (treated as
    # independent: conservative for the live pair, which shares its messages)
    variance = sum(
        p * (1.0 - p) / n
        for p, n in (
            (live, decided),
            (champ.block_rate, sum(champ.actions.values())),
            (expectation.block_rate, expectation.rows),
            (expectation.champion_block_rate, expectation.rows),
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


def _expected_psi_check(
    chall: VariantWindow, expectation: OfflineExpectation | None, t: AnalysisThresholds
) -> CheckResult:
    make = partial(
        CheckResult, "expected_score_psi", threshold=t.max_expected_psi, kind="guardrail"
    )
    if expectation is None:
        return make(passed=None, value=None, detail="no offline expectation logged", required=False)
    if not chall.score_buckets or chall.score_buckets.get(math.inf, 0.0) <= 0:
        return make(passed=None, value=None, detail="no challenger scores yet")
    try:
        live = live_score_counts(chall.score_buckets, expectation.edges)
    except ValueError as exc:
        return make(passed=None, value=None, detail=str(exc), required=False)
    expected, actual = coarsen_bins(
        [float(c) for c in expectation.counts], live, t.psi_min_bin_share
    )
    value = psi([e + 0.5 for e in expected], [a + 0.5 for a in actual])
    return make(
        passed=value <= t.max_expected_psi,
        value=value,
        detail=f"PSI of live scores against the holdout's over {len(expected)} bins",
    )


def densest_band_share(counts: list[float], width_bins: int = 2) -> float:
    """The largest share of the mass inside `width_bins` adjacent bins (0 when empty)."""
    total = sum(counts)
    if total <= 0:
        return 0.0
    width = min(width_bins, len(counts))
    return max(sum(counts[i : i + width]) for i in range(len(counts) - width + 1)) / total


def _collapse_check(
    champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds
) -> CheckResult:
    make = partial(CheckResult, "score_collapse", threshold=t.max_collapse_share, kind="guardrail")
    if not chall.score_buckets or chall.score_buckets.get(math.inf, 0.0) <= 0:
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


def _psi_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    make = partial(CheckResult, "score_psi", threshold=t.max_score_psi)
    if not champ.score_buckets or not chall.score_buckets:
        return make(passed=None, value=None, detail="no scores")
    bounds = sorted(set(champ.score_buckets) | set(chall.score_buckets))
    if set(champ.score_buckets) != set(chall.score_buckets):
        return make(passed=None, value=None, detail="bucket mismatch")
    expected = bucket_counts({b: champ.score_buckets[b] for b in bounds})
    actual = bucket_counts({b: chall.score_buckets[b] for b in bounds})
    if sum(expected) <= 0 or sum(actual) <= 0:
        return make(passed=None, value=None, detail="no scores")
    expected, actual = coarsen_bins(expected, actual, t.psi_min_bin_share)
    # Half a count per bin (Laplace-style smoothing): an empty bin in a small window is
    # sampling noise, not an infinitely surprising distribution.
    value = psi([e + 0.5 for e in expected], [a + 0.5 for a in actual])
    return make(
        passed=value <= t.max_score_psi,
        value=value,
        detail=f"reported: PSI of challenger scores against champion scores, {len(expected)} bins",
    )


def _block_rate_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.block_rate, chall.block_rate
    make = partial(
        CheckResult, "block_rate", threshold=t.max_block_rate_change, champion=a, challenger=b
    )
    if a is None or b is None:
        return make(passed=None, value=None, detail="no actions")
    change = abs(b - a)
    return make(
        passed=change <= t.max_block_rate_change,
        value=change,
        detail="reported: absolute change of the block rate against the champion",
    )


def _precision_check(champ: VariantWindow, chall: VariantWindow, t: AnalysisThresholds):
    a, b = champ.block_precision, chall.block_precision
    make = partial(
        CheckResult, "block_precision", threshold=t.max_precision_drop, champion=a, challenger=b
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


def analyze(
    windows: Mapping[str, VariantWindow],
    thresholds: AnalysisThresholds,
    baseline: VariantWindow | None = None,
    *,
    pairs: PairedLabels | None = None,
    expectation: OfflineExpectation | None = None,
    champion_version: str | None = None,
    final_step: bool = False,
) -> Analysis:
    """Judge one window.

    Args:
        windows: each variant's serving metrics over the window.
        baseline: the champion's last window with traffic, standing in for a champion that
            scored nothing in this one (a rollout without pairing at 100 %).
        pairs: labelled pairs since the rollout started (the evidence accumulates across steps:
            it is the same challenger against the same champion).
        expectation: the challenger's offline expectation (None: those guardrails are skipped).
        champion_version: the live champion (the block-rate guardrail compares shifts against
            it when the expectation was gated against the same version).
        final_step: the last step, where the quality check needs evidence to pass.
    """
    champ = windows.get(VARIANT_CHAMPION, VariantWindow())
    chall = windows.get(VARIANT_CHALLENGER, VariantWindow())
    if champ.observations <= 0 and baseline is not None:
        champ = baseline
    enough = chall.observations >= thresholds.min_requests and champ.observations > 0
    checks = [
        _error_rate_check(champ, chall, thresholds),
        _latency_check(champ, chall, thresholds),
        label_quality_check(pairs or PairedLabels(), thresholds, final_step),
        _expected_block_check(champ, chall, expectation, champion_version, thresholds),
        _expected_psi_check(chall, expectation, thresholds),
        _collapse_check(champ, chall, thresholds),
        _psi_check(champ, chall, thresholds),
        _block_rate_check(champ, chall, thresholds),
        _precision_check(champ, chall, thresholds),
    ]
    return Analysis(enough, checks, champ.observations, chall.observations)
