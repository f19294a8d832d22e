"""Evaluate: score a model on a labelled slice (with sender history and as cold senders),
write the report, print the comparison. The plots are in `pipelines.report_plots`.

`python -m pipelines.evaluate [--model champion] [--start ISO] [--end ISO]` scores a registered
version on corpus mails sent in [start, end) (default: the future period), with sender history
and as cold senders (sender columns blank), and prints the metrics; `pipelines.train` calls the
same functions and logs the results to MLflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.table import Table

from modstack.registry.contract import Thresholds
from pipelines.metrics import EvaluationReport, bootstrap_pr_auc_difference, evaluate_scores
from pipelines.model import model_input
from pipelines.model_frames import cold_start
from pipelines.training_data import LabelledSet

SUMMARY_METRICS = (
    "pr_auc",
    "roc_auc",
    "recall_at_p99",
    "f1_at_0_5",
    "brier",
    "ece",
    "precision_at_block",
    "recall_at_block",
    "precision_at_review",
    "recall_at_review",
    "threshold_block",
    "threshold_review",
)


def spam_scores(
    model: Any, labelled: LabelledSet, feature_columns: Sequence[str]
) -> npt.NDArray[np.float64]:
    """P(spam) for every row, through the model-contract input."""
    scores: npt.NDArray[np.float64] = model.predict_proba(
        model_input(labelled.frame, feature_columns)
    )[:, 1]
    return scores


def evaluate_model(
    model: Any, thresholds: Thresholds, labelled: LabelledSet, feature_columns: Sequence[str]
) -> tuple[EvaluationReport, npt.NDArray[np.float64]]:
    """Score `labelled` and measure; returns the report and the scores."""
    scores = spam_scores(model, labelled, feature_columns)
    report = evaluate_scores(labelled.y, scores, thresholds, labelled.frame["group"].to_numpy())
    return report, scores


@dataclass
class WarmCold:
    """One model on one slice, scored with the senders' history (warm) and as unknown senders
    (cold: every sender column blank)."""

    warm: EvaluationReport
    warm_scores: npt.NDArray[np.float64]
    cold: EvaluationReport
    cold_scores: npt.NDArray[np.float64]


def evaluate_warm_and_cold(
    model: Any, thresholds: Thresholds, labelled: LabelledSet, feature_columns: Sequence[str]
) -> WarmCold:
    """`evaluate_model` on `labelled` as it is and as cold senders get it."""
    warm, warm_scores = evaluate_model(model, thresholds, labelled, feature_columns)
    cold_set = replace(labelled, frame=cold_start(labelled.frame))
    cold, cold_scores = evaluate_model(model, thresholds, cold_set, feature_columns)
    return WarmCold(warm, warm_scores, cold, cold_scores)


def add_pr_auc_difference(
    ours: WarmCold, theirs: WarmCold, y_true: npt.ArrayLike, seed: int
) -> None:
    """Add PR-AUC(ours) - PR-AUC(theirs) and its paired bootstrap SE to `ours`' warm and cold
    metrics (`pr_auc_minus_baseline`, `pr_auc_minus_baseline_se`)."""
    for report, own, other in (
        (ours.warm, ours.warm_scores, theirs.warm_scores),
        (ours.cold, ours.cold_scores, theirs.cold_scores),
    ):
        diff, se = bootstrap_pr_auc_difference(y_true, own, other, seed=seed)
        report.metrics.update({"pr_auc_minus_baseline": diff, "pr_auc_minus_baseline_se": se})


@dataclass
class HoldoutEvaluation:
    """The candidate and the baseline on the same holdout, warm and cold."""

    candidate: WarmCold
    baseline: WarmCold

    def reports(self) -> dict[str, EvaluationReport]:
        """The four reports by display name (the comparison table's and result's columns)."""
        return {
            "candidate": self.candidate.warm,
            "candidate cold": self.candidate.cold,
            "baseline": self.baseline.warm,
            "baseline cold": self.baseline.cold,
        }


def compare_on_holdout(
    candidate: tuple[Any, Thresholds],
    baseline: tuple[Any, Thresholds],
    holdout: LabelledSet,
    feature_columns: Sequence[str],
    seed: int,
) -> HoldoutEvaluation:
    """Both models (model, thresholds) warm and cold on `holdout`; the candidate's metrics get
    its PR-AUC difference from the baseline with the bootstrap SE (`add_pr_auc_difference`)."""
    theirs = evaluate_warm_and_cold(*baseline, holdout, feature_columns)
    ours = evaluate_warm_and_cold(*candidate, holdout, feature_columns)
    add_pr_auc_difference(ours, theirs, holdout.y, seed)
    return HoldoutEvaluation(candidate=ours, baseline=theirs)


def write_report(reports: Mapping[str, EvaluationReport], path: Path) -> Path:
    """All metrics (per model) and reliability tables as JSON."""
    payload = {
        name: {"metrics": report.metrics, "reliability": report.reliability}
        for name, report in reports.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


def comparison_table(rows: Mapping[str, Mapping[str, float]], title: str) -> Table:
    """A rich table: one row per summary metric, one column per model (fits 80 columns)."""
    table = Table(title=title)
    table.add_column("metric")
    for model_name in rows:
        table.add_column(model_name, justify="right")
    for name in SUMMARY_METRICS:
        values = (f"{metrics.get(name, float('nan')):.4f}" for metrics in rows.values())
        table.add_row(name, *values)
    return table


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    model: Annotated[str, typer.Option(help="alias or version number")] = "champion",
    start: Annotated[
        datetime | None, typer.Option(help="first sent_at, inclusive (default: the future)")
    ] = None,
    end: Annotated[datetime | None, typer.Option(help="sent_at, exclusive (default: none)")] = None,
    features: Annotated[
        str, typer.Option(help="feast: features as the stream serves them; text: text only")
    ] = "feast",
) -> None:
    """Evaluate a registered version on corpus mails sent in [start, end), warm and cold."""
    from modstack.corpus import FUTURE_START
    from modstack.registry import aliases as registry
    from modstack.registry.contract import META_FEATURE_COLUMNS, META_FEATURE_SERVICE
    from pipelines.training_data import corpus_rows, with_features, with_replayed_features

    if features not in ("feast", "text"):
        raise typer.BadParameter("--features must be 'feast' or 'text'")
    first = start or FUTURE_START
    loaded, metadata = registry.load_model(model)
    columns = list(metadata[META_FEATURE_COLUMNS])
    rows = corpus_rows(start=first, end=end)
    service = metadata[META_FEATURE_SERVICE]
    if features == "feast":
        # features as the stream serves them (see pipelines.training_data.with_replayed_features)
        labelled = with_replayed_features(rows, service)
    else:
        labelled = with_features(rows, service, "text")
    thresholds = Thresholds.from_metadata(metadata)
    scored = evaluate_warm_and_cold(loaded, thresholds, labelled, columns)
    name = f"{model} (v{metadata['model_version']})"
    Console().print(
        comparison_table(
            {name: scored.warm.metrics, f"{name} cold": scored.cold.metrics},
            f"{len(rows)} mails from {first.isoformat()} (cold: sender columns blank)",
        )
    )


if __name__ == "__main__":
    cli()
