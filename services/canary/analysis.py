"""Canary analysis of one step window: is the challenger healthy, right, and not broken?

Framework-free orchestration. Inputs: the serving metrics of each variant over the window
(counter and histogram increases, from PromQL `increase()` or diffs of scraped snapshots,
grouped per variant by `windows_from_samples`), the labelled pairs (messages both variants
scored, whose label arrived), and the challenger's offline expectation from its gate
evaluation. `analyze` runs the nine checks (`checks.py`: health, quality, guardrail and
reported ones) in the order of `modstack.names.CHECK_NAMES` and answers an `Analysis`
(`verdict.py`).

The modules under it, one job each: `promql.py` (the compared series and PromQL's histogram
arithmetic), `stats.py` (generic statistics), `evidence.py` (what a window is judged on),
`checks.py` (the checks and their limits), `verdict.py` (what the analysis answers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from modstack.names import VARIANT_CHALLENGER, VARIANT_CHAMPION
from modstack.registry.expectation import OfflineExpectation
from services.canary.checks import (
    AnalysisThresholds,
    block_rate_check,
    collapse_check,
    error_rate_check,
    expected_block_check,
    expected_psi_check,
    label_quality_check,
    latency_check,
    precision_check,
    psi_check,
)
from services.canary.evidence import PairedLabels, VariantWindow
from services.canary.promql import ACTIONS, LATENCY_BUCKET, REQUESTS, SCORE_BUCKET, SeriesKey
from services.canary.verdict import Analysis

# The controller's entry points (other code imports them from here).
__all__ = ["Analysis", "AnalysisThresholds", "analyze", "windows_from_samples"]


def _add_sample(
    window: VariantWindow, name: str, labels: Mapping[str, str], value: float, errors: set[str]
) -> None:
    """Add one sample's window increase to its variant's window."""
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


def windows_from_samples(
    samples: Mapping[SeriesKey, float], error_outcomes: Iterable[str] = ("error",)
) -> dict[str, VariantWindow]:
    """Group flattened serving samples (window increases) into one `VariantWindow` per variant."""
    errors = set(error_outcomes)
    windows: dict[str, VariantWindow] = {}
    for (name, label_pairs), value in samples.items():
        labels = dict(label_pairs)
        variant = labels.get("variant")
        if variant is not None:
            _add_sample(windows.setdefault(variant, VariantWindow()), name, labels, value, errors)
    return windows


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
    t = thresholds
    checks = [  # in the order of CHECK_NAMES
        error_rate_check(champ, chall, t),
        latency_check(champ, chall, t),
        label_quality_check(pairs or PairedLabels(), t, final_step),
        expected_block_check(champ, chall, expectation, champion_version, t),
        expected_psi_check(chall, expectation, t),
        collapse_check(champ, chall, t),
        psi_check(champ, chall, t),
        block_rate_check(champ, chall, t),
        precision_check(champ, chall, t),
    ]
    return Analysis(enough, checks, champ.observations, chall.observations)
