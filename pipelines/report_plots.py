"""The training run's plots (each function writes one PNG and returns its path): precision-recall
curves, the action matrix, the reliability diagram, what carries the score; `training_plots`
writes the set `pipelines.train` logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import precision_recall_curve

from modstack.registry.contract import Thresholds
from pipelines.evaluate import HoldoutEvaluation
from pipelines.learning_curve import LearningCurve
from pipelines.metrics import EvaluationReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def training_plots(
    out: Path,
    y_true: npt.NDArray[np.int_],
    evaluation: HoldoutEvaluation,
    thresholds: Thresholds,
    weights: Mapping[str, Sequence[tuple[str, float]]],
) -> list[Path]:
    """The holdout plots of a training run in `out`: PR curves, the candidate's action matrix
    warm and cold (at its `thresholds`), reliability of every report, the candidate's top
    weights (`top_weights()`, when it has any)."""
    candidate = evaluation.candidate
    scores = {
        "candidate": candidate.warm_scores,
        "candidate cold": candidate.cold_scores,
        "baseline": evaluation.baseline.warm_scores,
    }
    plots = [
        plot_pr_curves(y_true, scores, out / "pr_curve.png"),
        plot_action_matrix(y_true, candidate.warm_scores, thresholds, out / "confusion_matrix.png"),
        plot_action_matrix(
            y_true, candidate.cold_scores, thresholds, out / "confusion_matrix_cold.png"
        ),
        plot_reliability(evaluation.reports(), out / "reliability.png"),
    ]
    if weights:  # a model that can name its heaviest n-grams
        plots.append(plot_top_weights(weights, out / "feature_importance.png"))
    return plots


def _pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend, chosen here rather than at import so
    importing this module never changes the backend of the process that imports it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curves(
    y_true: npt.NDArray[np.int_], scores_by_model: Mapping[str, npt.NDArray[np.float64]], path: Path
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
    y_true: npt.NDArray[np.int_],
    scores: npt.NDArray[np.float64],
    thresholds: Thresholds,
    path: Path,
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


def plot_learning_curve(curve: LearningCurve, path: Path) -> Path:
    """PR-AUC on the rows each model was fitted on and on validation, by fit rows: a gap that
    stays wide is overfitting; validation as high as the fit rows from the first point on,
    higher than the task allows, points at leakage."""
    fig, ax = _pyplot().subplots(figsize=(6, 4.5))
    ax.plot(curve.rows, curve.fit_pr_auc, marker="o", label="fit rows (in sample)")
    ax.plot(curve.rows, curve.validation_pr_auc, marker="o", label="validation (later rows)")
    for rows, fraction, value in zip(
        curve.rows, curve.fractions, curve.validation_pr_auc, strict=True
    ):
        ax.annotate(f"{fraction:.0%}", (rows, value), textcoords="offset points", xytext=(0, -12))
    ax.set(
        xlabel="fit rows",
        ylabel="PR-AUC",
        title=f"Learning curve ({curve.seconds:.0f} s of refits)",
    )
    ax.legend(loc="lower right")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path
