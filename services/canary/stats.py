"""Generic statistics of the canary checks: distribution shift (PSI), proportions and a
non-inferiority bound (the exact McNemar test is `modstack.paired`, shared with the gate).
Nothing here knows about serving or variants."""

from __future__ import annotations

import math
from collections.abc import Iterable

from scipy.stats import binomtest


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


def smoothed_psi(expected: list[float], actual: list[float]) -> float:
    """PSI with half a count added to every bin (Laplace-style smoothing): an empty bin in a
    small window is sampling noise, not an infinitely surprising distribution."""
    return psi([e + 0.5 for e in expected], [a + 0.5 for a in actual])


def densest_band_share(counts: list[float], width_bins: int = 2) -> float:
    """The largest share of the mass inside `width_bins` adjacent bins (0 when empty)."""
    total = sum(counts)
    if total <= 0:
        return 0.0
    width = min(width_bins, len(counts))
    return max(sum(counts[i : i + width]) for i in range(len(counts) - width + 1)) / total


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
