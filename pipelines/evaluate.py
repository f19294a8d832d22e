"""Evaluate: score a model on a labelled slice, write the report and its plots.

`python -m pipelines.evaluate [--model champion] [--start ISO] [--end ISO]` scores a registered
version on corpus mails sent in [start, end) (default: the future period), with sender history
and as cold senders (sender columns blank), and prints the metrics; `pipelines.train` calls the
same functions and logs the results to MLflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from sklearn.metrics import precision_recall_curve

from modstack.registry.contract import Thresholds
from pipelines.metrics import EvaluationReport, evaluate_scores
from pipelines.model import cold_start, model_input
from pipelines.training_data import LabelledSet

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def spam_scores(model: Any, labelled: LabelledSet, feature_columns: Sequence[str]) -> np.ndarray:
    """P(spam) for every row, through the model-contract input."""
    return model.predict_proba(model_input(labelled.frame, feature_columns))[:, 1]


def evaluate_model(
    model: Any, thresholds: Thresholds, labelled: LabelledSet, feature_columns: Sequence[str]
) -> tuple[EvaluationReport, np.ndarray]:
    """Score `labelled` and measure; returns the report and the scores."""
    scores = spam_scores(model, labelled, feature_columns)
    report = evaluate_scores(labelled.y, scores, thresholds, labelled.frame["group"].to_numpy())
    return report, scores


# ---- plots (each returns the written file) ----------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend, chosen here rather than at import so
    importing this module never changes the backend of the process that imports it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curves(
    y_true: np.ndarray, scores_by_model: Mapping[str, np.ndarray], path: Path
) -> Path:
    """Precision-recall curves of several models on the same rows, the 0.99 line marked."""
    fig, ax = _pyplot().subplots(figsize=(6, 5))
    for name, scores in scores_by_model.items():
        precision, recall, _ = precision_recall_curve(y_true, scores)
        ax.plot(recall, precision, label=name)
    ax.axhline(0.99, color="grey", linestyle=":", label="precision 0.99")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the holdout")
    ax.set_ylim(0.5, 1.01)
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_action_matrix(
    y_true: np.ndarray, scores: np.ndarray, thresholds: Thresholds, path: Path
) -> Path:
    """Confusion matrix of true label x action (allow / review / block) at the cut-offs."""
    actions = ("allow", "review", "block")
    predicted = [thresholds.action_for(float(s)) for s in scores]
    counts = np.zeros((2, 3), dtype=int)
    for label, action in zip(y_true, predicted, strict=True):
        counts[int(label), actions.index(action)] += 1
    fig, ax = _pyplot().subplots(figsize=(5, 3.5))
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        ax.text(col, row, str(value), ha="center", va="center")
    ax.set_xticks(range(3), actions)
    ax.set_yticks(range(2), ["ham", "spam"])
    ax.set(
        xlabel="action",
        ylabel="true label",
        title=f"Actions (block >= {thresholds.block:.3f}, review >= {thresholds.review:.3f})",
    )
    return _save(fig, path)


def plot_reliability(reports: Mapping[str, EvaluationReport], path: Path) -> Path:
    """Reliability diagram: mean predicted score vs observed spam share per score bin."""
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, report in reports.items():
        if report.reliability:
            ax.plot(
                report.reliability["mean_predicted"],
                report.reliability["observed"],
                marker="o",
                label=f"{name} (ECE {report.metrics['ece']:.3f})",
            )
    ax.set(xlabel="mean predicted P(spam)", ylabel="observed spam share", title="Reliability")
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_top_weights(weights: Mapping[str, Sequence[tuple[str, float]]], path: Path) -> Path:
    """One horizontal bar chart per part of the model (`top_weights()`): what carries the score."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(weights), figsize=(5 * len(weights), 7), squeeze=False)
    for ax, (name, pairs) in zip(axes[0], weights.items(), strict=True):
        labels = [label for label, _ in pairs]
        values = [value for _, value in pairs]
        colors = ["tab:red" if value > 0 else "tab:blue" for value in values]
        ax.barh(range(len(pairs)), values, color=colors)
        ax.set_yticks(range(len(pairs)), labels, fontsize=7)
        ax.set_title(name)
    fig.suptitle("What carries the score (red: towards spam)")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


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
    warm, _ = evaluate_model(loaded, thresholds, labelled, columns)
    cold_set = replace(labelled, frame=cold_start(labelled.frame))
    cold, _ = evaluate_model(loaded, thresholds, cold_set, columns)
    name = f"{model} (v{metadata['model_version']})"
    Console().print(
        comparison_table(
            {name: warm.metrics, f"{name} cold": cold.metrics},
            f"{len(rows)} mails from {first.isoformat()} (cold: sender columns blank)",
        )
    )


if __name__ == "__main__":
    cli()
