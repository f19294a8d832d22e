"""Scoring without per-call waste, for whatever fitted scikit-learn pipeline a version holds.

`prepare_for_serving(pipeline)` runs once when a version loads. It walks the fitted
Pipeline / ColumnTransformer / FeatureUnion tree and replaces every feature selector
(SelectKBest and any other `SelectorMixin`) with `IndexSelector`, which holds the selected
column indices computed once: `SelectKBest.transform` re-derives its mask from the scores on
every call (it re-sorts all 50,000 chi2 scores) and re-validates its input. Every fitted text
vectorizer it finds, as a step or as an attribute of a hand-written estimator (the candidate's
`word_` and `char_`), becomes a `fast_text.cached_vectorizer`: the same matrix without
re-deriving each word's n-grams on every call. Everything else is kept as fitted
(vocabularies, column order, coefficients), so the scores are the same numbers.

`model_frame(rows, columns)` builds the contract DataFrame for a batch column-wise (no
per-row dicts, no pandas apply): feature values arrive as floats or None from Feast, and
`np.array(..., dtype=float64)` turns None into NaN exactly as the model contract asks.

`predict_proba_fast` scores under `sklearn.config_context(assume_finite=True,
skip_parameter_validation=True)`: the request schema and `model_frame` already fixed the
types, and NaN is the contract's "missing" (estimators that accept NaN check it themselves).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import SelectorMixin
from sklearn.pipeline import FeatureUnion, Pipeline

from services.serving.fast_text import CachedVectorizer, cached_vectorizer, supports


class IndexSelector(TransformerMixin, BaseEstimator):
    """A fitted selector reduced to its column indices: `X[:, indices]`."""

    def __init__(self, indices: np.ndarray, n_features_in: int) -> None:
        self.indices = indices
        self.n_features_in = n_features_in

    def fit(self, X: Any, y: Any = None) -> IndexSelector:
        return self

    def __sklearn_is_fitted__(self) -> bool:
        # built from a fitted selector: Pipeline.transform checks its last step is fitted
        return True

    def transform(self, X: Any) -> Any:
        if X.shape[1] != self.n_features_in:
            raise ValueError(f"selector expects {self.n_features_in} columns, got {X.shape[1]}")
        if hasattr(X, "iloc"):
            return X.iloc[:, self.indices]
        return X[:, self.indices]


def _prepared(step: Any) -> Any:
    """One fitted step with its precomputable work done (recursing into composites)."""
    if isinstance(step, Pipeline):
        step.steps = [(name, _prepared(inner)) for name, inner in step.steps]
        return step
    if isinstance(step, ColumnTransformer):
        step.transformers_ = [
            (name, _prepared(inner), columns) for name, inner, columns in step.transformers_
        ]
        return step
    if isinstance(step, FeatureUnion):
        step.transformer_list = [(name, _prepared(inner)) for name, inner in step.transformer_list]
        return step
    if isinstance(step, SelectorMixin):
        mask = step.get_support()
        if not mask.any():
            return step  # keep sklearn's own empty-selection behaviour (a warning, 0 columns)
        return IndexSelector(np.flatnonzero(mask), int(mask.shape[0]))
    if supports(step):
        return cached_vectorizer(step)
    if isinstance(step, BaseEstimator):
        # a hand-written estimator's fitted parts (see `_inner`)
        for name, value in list(vars(step).items()):
            if name.endswith("_") and supports(value):
                setattr(step, name, cached_vectorizer(value))
    return step


def prepare_for_serving(pipeline: Any) -> Any:
    """A copy of a fitted model with model-only work precomputed (see the module docstring)."""
    return _prepared(copy.deepcopy(pipeline))


def selectors_replaced(pipeline: Any) -> int:
    """How many IndexSelector steps a prepared pipeline holds (for the load log)."""
    return _count_prepared(pipeline, IndexSelector)


def vectorizers_cached(pipeline: Any) -> int:
    """How many CachedVectorizer a prepared pipeline holds, as steps or attributes."""
    return _count_prepared(pipeline, CachedVectorizer)


def _count_prepared(step: Any, kind: type) -> int:
    """Instances of `kind` in the tree `_prepared` walks (steps and fitted attributes)."""
    return isinstance(step, kind) + sum(_count_prepared(inner, kind) for inner in _inner(step))


def _inner(step: Any) -> list[Any]:
    """The steps of a composite, or a hand-written estimator's fitted parts (attributes
    ending in "_", sklearn's rule)."""
    if isinstance(step, Pipeline):
        return [inner for _, inner in step.steps]
    if isinstance(step, ColumnTransformer):
        return [inner for _, inner, _ in step.transformers_]
    if isinstance(step, FeatureUnion):
        return [inner for _, inner in step.transformer_list]
    if isinstance(step, BaseEstimator):
        return [value for name, value in vars(step).items() if name.endswith("_")]
    return []


def model_frame(
    subjects: Sequence[str],
    bodies: Sequence[str],
    features: Sequence[Mapping[str, float | None]],
    text_columns: Sequence[str],
    feature_columns: Sequence[str],
) -> pd.DataFrame:
    """The contract DataFrame for a batch: text columns, then the features as float64/NaN."""
    subject_col, body_col = text_columns
    data: dict[str, Any] = {
        subject_col: np.array(subjects, dtype=object),
        body_col: np.array(bodies, dtype=object),
    }
    for name in feature_columns:
        data[name] = np.array([row.get(name) for row in features], dtype=np.float64)
    return pd.DataFrame(data, columns=[*text_columns, *feature_columns], copy=False)


def predict_proba_fast(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """`model.predict_proba(frame)` without sklearn's repeated finiteness and parameter checks."""
    with config_context(assume_finite=True, skip_parameter_validation=True):
        return np.asarray(model.predict_proba(frame))
