"""Training-set metrics and the learning curve: what tells leakage from overfitting in MLflow.

Overfitting shows as a gap: the model ranks the rows it was fitted on far better than the
validation rows, and the gap narrows as it sees more rows. Leakage shows as no gap with
validation (and holdout) as good as the fit rows, better than the task allows. Both need the
fit-row numbers next to the validation ones, which the run did not log before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from pipelines.model import model_input
from pipelines.training_data import LABEL_COLUMN

# Shares of the fit rows the candidate is refitted on; 1.0 is the model the run ships.
LEARNING_CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def ranking_metrics(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, float]:
    """PR-AUC, ROC-AUC and log loss of `scores` (NaN for the AUCs when one class is missing)."""
    y = np.asarray(y_true, dtype=int)
    s = np.clip(np.asarray(scores, dtype=float), 1e-7, 1 - 1e-7)  # a score of 0 or 1 is finite
    both = len(np.unique(y)) == 2
    return {
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "log_loss": float(log_loss(y, s, labels=[0, 1])),
    }


@dataclass(frozen=True)
class LearningCurve:
    """PR-AUC on the rows each model was fitted on and on validation, per share of fit rows."""

    fractions: tuple[float, ...]
    rows: tuple[int, ...]
    fit_pr_auc: tuple[float, ...]
    validation_pr_auc: tuple[float, ...]
    seconds: float  # the refits and their scoring: what the curve adds to a run

    def as_metrics(self) -> dict[str, float]:
        """`learning_curve.{fit,validation}_pr_auc_<percent>` and the rows of each point."""
        metrics = {"learning_curve.seconds": self.seconds}
        for fraction, rows, fitted, validated in zip(
            self.fractions, self.rows, self.fit_pr_auc, self.validation_pr_auc, strict=True
        ):
            percent = round(fraction * 100)
            metrics[f"learning_curve.rows_{percent}"] = float(rows)
            metrics[f"learning_curve.fit_pr_auc_{percent}"] = fitted
            metrics[f"learning_curve.validation_pr_auc_{percent}"] = validated
        return metrics


def stratified_subset(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A random `fraction` of each class (the history's spam share moves from 92 % to 1 % over
    time, so a time prefix would change the class balance along the curve, not only the size)."""
    if fraction >= 1.0:
        return frame
    parts = [
        group.sample(max(1, round(len(group) * fraction)), random_state=seed)
        for _, group in frame.groupby(LABEL_COLUMN)
    ]
    return pd.concat(parts).sort_index()


def learning_curve(
    make_model: Callable[[], Any],
    fit_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    columns: Sequence[str],
    *,
    shipped_scores: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    seed: int,
    fractions: Sequence[float] = LEARNING_CURVE_FRACTIONS,
) -> LearningCurve:
    """Refit `make_model()` on stratified shares of `fit_rows` and score each on the rows it was
    fitted on and on `validation_rows`. The full share is the run's shipped model, fitted on
    all of `fit_rows`: not refitted, its scores (`shipped_scores`: on the fit rows, on
    validation) are the ones the run's `train.*` and `validation.*` come from."""
    started = time.perf_counter()
    x_val = model_input(validation_rows, columns)
    y_val = validation_rows[LABEL_COLUMN].to_numpy()
    rows, fitted, validated = [], [], []
    for fraction in fractions:
        subset = stratified_subset(fit_rows, fraction, seed)
        y_fit = subset[LABEL_COLUMN].to_numpy()
        if fraction >= 1.0:
            fit_scores, val_scores = shipped_scores
        else:
            x_fit = model_input(subset, columns)
            model = make_model().fit(x_fit, y_fit)
            fit_scores = model.predict_proba(x_fit)[:, 1]
            val_scores = model.predict_proba(x_val)[:, 1]
        rows.append(len(subset))
        fitted.append(ranking_metrics(y_fit, fit_scores)["pr_auc"])
        validated.append(ranking_metrics(y_val, val_scores)["pr_auc"])
    return LearningCurve(
        fractions=tuple(fractions),
        rows=tuple(rows),
        fit_pr_auc=tuple(fitted),
        validation_pr_auc=tuple(validated),
        seconds=time.perf_counter() - started,
    )
