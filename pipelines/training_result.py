"""var/run/results/train-<kind>.json: what one training run measured, as the tables
docs/training.md quotes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modstack.registry.contract import Thresholds
from modstack.results import Result, ResultTable, write_result
from pipelines.behaviour import SuiteResult
from pipelines.fitting import FittedModel
from pipelines.metrics import EvaluationReport
from pipelines.training_data import LabelledSet

RESULT_METRICS = (
    "pr_auc",
    "pr_auc_minus_baseline",
    "pr_auc_minus_baseline_se",
    "recall_at_p99",
    "precision_at_block",
    "recall_at_block",
    "ece",
    "brier",
)


def write_training_result(
    kind: str,
    reports: dict[str, EvaluationReport],
    candidate: FittedModel,
    baseline: FittedModel,
    behaviour: SuiteResult,
    budget: tuple[float, float],
    holdout: LabelledSet,
) -> Path:
    """var/run/results/train-<kind>.json: holdout warm/cold vs baseline, validation, thresholds
    (`budget`: review budget and the traffic spam share it is counted at) and the behavioural
    suite of this run (what docs/training.md quotes)."""
    validation = {
        "candidate": candidate.validation.metrics,
        "candidate cold": candidate.params["validation_cold"],
        "baseline": baseline.validation.metrics,
    }
    return write_result(
        Result(
            name=f"train-{kind}",
            title="Training run: candidate vs baseline, future holdout warm and cold",
            command="make train",
            tables=[
                _holdout_table(reports, holdout),
                _validation_table(validation),
                _thresholds_table(candidate.thresholds, baseline.thresholds, budget),
                _behaviour_table(behaviour),
            ],
            data={
                "holdout": {name: r.metrics for name, r in reports.items()},
                "validation": validation,
                "behaviour_failures": behaviour.failures_table(),
            },
        )
    )


def _cell(metrics: dict[str, float], key: str) -> Any:
    value = metrics.get(key, float("nan"))
    return round(float(value), 4) if np.isfinite(value) else "-"


def _holdout_table(reports: dict[str, EvaluationReport], holdout: LabelledSet) -> ResultTable:
    rows = [[key, *(_cell(r.metrics, key) for r in reports.values())] for key in RESULT_METRICS]
    return ResultTable(
        f"Holdout ({len(holdout.frame)} mails, spam share {holdout.y.mean():.3f}); cold = "
        "sender columns blank; SE = paired bootstrap (200 resamples)",
        ["metric", *reports],
        rows,
    )


def _validation_table(validation: dict[str, dict[str, float]]) -> ResultTable:
    rows = [
        [key, *(_cell(m, key) for m in validation.values())]
        for key in ("pr_auc", "recall_at_p99", "ece")
    ]
    return ResultTable(
        "Validation (time-split tail of the training data)", ["metric", *validation], rows
    )


def _thresholds_table(
    candidate: Thresholds, baseline: Thresholds, budget: tuple[float, float]
) -> ResultTable:
    review_budget, traffic_spam_share = budget
    return ResultTable(
        f"Thresholds (review budget {review_budget:g} of traffic at {traffic_spam_share:g} spam)",
        ["model", "block", "review"],
        [
            ["candidate", round(candidate.block, 4), round(candidate.review, 4)],
            ["baseline", round(baseline.block, 4), round(baseline.review, 4)],
        ],
    )


def _behaviour_table(behaviour: SuiteResult) -> ResultTable:
    rows = [
        [test, r.total, r.failure_count, round(r.review_share, 3)]
        for test, r in behaviour.results.items()
    ]
    return ResultTable(
        "Behavioural suite on the candidate as new senders",
        ["test", "cases", "failures", "review share"],
        rows,
    )
