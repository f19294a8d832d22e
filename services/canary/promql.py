"""The serving series the canary compares, as Prometheus has them, and PromQL's arithmetic.

Both metric sources (`sources.py`) answer with flat `Samples` keyed by sample name and labels;
the window increase of each compared series is what PromQL's `increase()` returns (or the sum
of the scraped growth, computed the same way). `histogram_quantile` and `bucket_counts` read
Prometheus histograms (cumulative counts by upper bound `le`) the way PromQL does, so the
scrape path and the Prometheus path agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from modstack.names import (
    SERVING_ACTIONS_TOTAL,
    SERVING_REQUEST_DURATION_SECONDS,
    SERVING_REQUESTS_TOTAL,
    SERVING_SCORE,
)

# The sample names the analysis reads (a histogram's buckets are its `<name>_bucket` samples).
REQUESTS = SERVING_REQUESTS_TOTAL
LATENCY_BUCKET = f"{SERVING_REQUEST_DURATION_SECONDS}_bucket"
SCORE_BUCKET = f"{SERVING_SCORE}_bucket"
ACTIONS = SERVING_ACTIONS_TOTAL
COMPARED_SAMPLES: frozenset[str] = frozenset({REQUESTS, LATENCY_BUCKET, SCORE_BUCKET, ACTIONS})

# What each compared sample is split by, besides the variant.
_SPLIT_BY = {REQUESTS: "outcome", LATENCY_BUCKET: "le", SCORE_BUCKET: "le", ACTIONS: "action"}
WINDOW = "$window"  # replaced by the range (e.g. 60s) when a query is run


def increase_queries(policy: str) -> dict[str, str]:
    """One PromQL query per compared sample of one policy: the window's increase (`WINDOW`
    stands for the range), summed over replicas, split by the labels the analysis needs."""
    return {
        name: f'sum by (variant, {split}) (increase({name}{{policy="{policy}"}}[{WINDOW}]))'
        for name, split in _SPLIT_BY.items()
    }


# A flattened series: (sample name, sorted label pairs) -> value.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[SeriesKey, float]


def series_key(name: str, labels: Mapping[str, str]) -> SeriesKey:
    """The hashable key of one series."""
    return name, tuple(sorted(labels.items()))


def _histogram_bounds(q: float, cumulative: Mapping[float, float]) -> list[float]:
    """The sorted upper bounds of a valid histogram (ValueError for a bad `q` or no +Inf)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    bounds = sorted(cumulative)
    if not bounds or not math.isinf(bounds[-1]):
        raise ValueError("a histogram needs its +Inf bucket")
    return bounds


def histogram_quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """The q-quantile of a Prometheus histogram given as {upper bound `le`: cumulative count}.

    Same interpolation as PromQL's `histogram_quantile` (linear within the bucket, the lower
    bound of the first bucket is 0, a quantile in the +Inf bucket answers the highest finite
    bound), so the scrape path and the Prometheus path agree. prometheus_client has no
    quantile function for its histograms, hence this one. None when the histogram is empty.
    """
    bounds = _histogram_bounds(q, cumulative)
    highest_finite = bounds[-2] if len(bounds) > 1 else None
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return highest_finite
            in_bucket = count - lower_count
            if in_bucket <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
        lower_bound, lower_count = bound, count
    return highest_finite


def bucket_counts(cumulative: Mapping[float, float]) -> list[float]:
    """Per-bucket counts (ordered by upper bound) from cumulative histogram counts."""
    counts, previous = [], 0.0
    for bound in sorted(cumulative):
        counts.append(max(cumulative[bound] - previous, 0.0))
        previous = cumulative[bound]
    return counts
