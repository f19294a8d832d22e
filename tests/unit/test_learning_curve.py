"""The learning curve and the fit-row metrics on a small, separable-but-noisy data set: the
points are the shares asked for, each refit sees only its share, the full share is the shipped
model (not refitted), and an overfitting model shows the gap the curve is there to show."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from pipelines.learning_curve import learning_curve, ranking_metrics, stratified_subset


class _OnColumns:
    """A classifier on the frame's numeric columns that records the rows it was fitted on."""

    fitted_rows: ClassVar[list[int]] = []

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, x: pd.DataFrame, y: np.ndarray) -> _OnColumns:
        _OnColumns.fitted_rows.append(len(x))
        self.estimator.fit(x[["a", "b"]].to_numpy(dtype=float), y)
        return self

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(x[["a", "b"]].to_numpy(dtype=float))


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.3).astype(int)
    # informative but noisy: a perfect fit on the fit rows cannot carry over to new rows
    a = label + rng.normal(0, 1.0, n)
    return pd.DataFrame(
        {
            "message_id": [f"{seed}-{i}" for i in range(n)],
            "subject": "",
            "body": "",
            "a": a,
            "b": rng.normal(0, 1, n),
            "y": label,
        }
    )


def test_ranking_metrics_on_known_scores() -> None:
    metrics = ranking_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["pr_auc"] == pytest.approx(0.8333, abs=1e-4)
    expected = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert metrics["log_loss"] == pytest.approx(expected)
    # a confident wrong score of exactly 0 stays finite
    assert np.isfinite(ranking_metrics([1, 0], [0.0, 0.0])["log_loss"])


def test_a_subset_keeps_each_class_share() -> None:
    frame = _frame(400, seed=1)
    subset = stratified_subset(frame, 0.25, seed=7)
    assert len(subset) == pytest.approx(100, abs=2)
    assert subset["y"].mean() == pytest.approx(frame["y"].mean(), abs=0.01)
    assert stratified_subset(frame, 1.0, seed=7) is frame


def test_the_curve_refits_each_share_and_reuses_the_shipped_model_at_full_size() -> None:
    fit_rows, validation_rows = _frame(400, seed=1), _frame(200, seed=2)
    shipped = _OnColumns(LogisticRegression()).fit(fit_rows, fit_rows["y"].to_numpy())
    _OnColumns.fitted_rows = []

    fit_scores = shipped.predict_proba(fit_rows)[:, 1]
    validation_scores = shipped.predict_proba(validation_rows)[:, 1]

    curve = learning_curve(
        lambda: _OnColumns(LogisticRegression()),
        fit_rows,
        validation_rows,
        ["a", "b"],
        shipped_scores=(fit_scores, validation_scores),
        seed=0,
    )

    assert curve.fractions == (0.25, 0.5, 0.75, 1.0)
    assert curve.rows == (100, 200, 300, 400)
    assert _OnColumns.fitted_rows == [100, 200, 300]  # the 100 % point is the shipped model
    assert curve.fit_pr_auc[-1] == ranking_metrics(fit_rows["y"], fit_scores)["pr_auc"]
    full = ranking_metrics(validation_rows["y"], validation_scores)
    assert curve.validation_pr_auc[-1] == full["pr_auc"]
    # a smaller share ranks its own rows no worse than validation on this noisy task
    assert curve.fit_pr_auc[0] >= curve.validation_pr_auc[0] - 0.05
    metrics = curve.as_metrics()
    assert metrics["learning_curve.rows_25"] == 100.0
    assert metrics["learning_curve.validation_pr_auc_100"] == curve.validation_pr_auc[-1]
    assert curve.seconds > 0


def test_an_overfitting_model_shows_a_gap_between_fit_rows_and_validation() -> None:
    fit_rows, validation_rows = _frame(400, seed=1), _frame(200, seed=2)

    def tree() -> _OnColumns:
        return _OnColumns(DecisionTreeClassifier(random_state=0))  # grows until pure

    shipped = tree().fit(fit_rows, fit_rows["y"].to_numpy())
    scores = (shipped.predict_proba(fit_rows)[:, 1], shipped.predict_proba(validation_rows)[:, 1])
    curve = learning_curve(
        tree, fit_rows, validation_rows, ["a", "b"], shipped_scores=scores, seed=0
    )

    assert all(value == pytest.approx(1.0) for value in curve.fit_pr_auc)
    assert all(value < 0.8 for value in curve.validation_pr_auc)
