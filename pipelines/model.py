"""The two model definitions: the candidate (TF-IDF word + char n-grams and the Feast feature
columns -> LightGBM) and the baseline (TF-IDF 1-2-grams -> logistic regression).

Both are plain scikit-learn Pipelines whose `predict_proba` takes the model-contract DataFrame
(subject, body, feature columns; NaN where a feature is missing) and returns [P(ham), P(spam)].
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from modstack.model_contract import TEXT_COLUMNS

_WHITESPACE = re.compile(r"\s+")


class JoinText(TransformerMixin, BaseEstimator):
    """subject + body as one whitespace-normalised string per row, the body cut at `max_chars`.

    The cut bounds TF-IDF cost (a few corpus bodies are >100 kB) for training and serving alike.
    """

    def __init__(self, max_chars: int = 20_000) -> None:
        self.max_chars = max_chars

    def fit(self, X: pd.DataFrame, y: Any = None) -> JoinText:
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        subject = X["subject"].fillna("").astype(str)
        body = X["body"].fillna("").astype(str).str.slice(0, self.max_chars)
        joined = (subject + " \n " + body).map(lambda text: _WHITESPACE.sub(" ", text).strip())
        return joined.to_numpy(dtype=object)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array(["text"], dtype=object)


class AsFloat(TransformerMixin, BaseEstimator):
    """Feature columns as float64 with NaN for missing (Feast returns None for unknown senders);
    LightGBM routes NaN down its learned missing-value branch."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> AsFloat:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return X.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_in_


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the candidate and the baseline (logged as run params)."""

    seed: int = 42
    max_body_chars: int = 20_000
    word_max_features: int = 50_000
    word_min_df: int = 2
    char_ngram_min: int = 2
    char_ngram_max: int = 5
    char_max_features: int = 50_000
    char_min_df: int = 3
    lgbm_n_estimators: int = 2_000
    lgbm_learning_rate: float = 0.05
    lgbm_num_leaves: int = 15
    lgbm_min_child_samples: int = 10
    lgbm_colsample_bytree: float = 0.3
    lgbm_reg_lambda: float = 1.0
    early_stopping_rounds: int = 100
    baseline_c: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_params(self) -> dict[str, Any]:
        """Flat dict for `mlflow.log_params`."""
        params = asdict(self)
        params.update(params.pop("extra"))
        return params


def _text_pipeline(vectorizer: TfidfVectorizer, config: ModelConfig) -> Pipeline:
    return Pipeline([("join", JoinText(config.max_body_chars)), ("tfidf", vectorizer)])


def build_preprocessor(feature_columns: Sequence[str], config: ModelConfig) -> ColumnTransformer:
    """Text (word 1-2-grams, char_wb n-grams) + the Feast feature columns, as one sparse matrix."""
    word = TfidfVectorizer(
        ngram_range=(1, 2),
        min_df=config.word_min_df,
        max_features=config.word_max_features,
        sublinear_tf=True,
        dtype=np.float32,
    )
    # char_wb builds n-grams inside word boundaries only: robust to obfuscation ("v1agra"),
    # and blind to runs of whitespace, so padding a mail does not move its score.
    char = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(config.char_ngram_min, config.char_ngram_max),
        min_df=config.char_min_df,
        max_features=config.char_max_features,
        sublinear_tf=True,
        dtype=np.float32,
    )
    transformers: list[tuple[str, Any, list[str]]] = [
        ("word", _text_pipeline(word, config), list(TEXT_COLUMNS)),
        ("char", _text_pipeline(char, config), list(TEXT_COLUMNS)),
    ]
    if feature_columns:
        transformers.append(("features", AsFloat(), list(feature_columns)))
    return ColumnTransformer(transformers, sparse_threshold=1.0)


def build_classifier(config: ModelConfig, n_estimators: int | None = None) -> LGBMClassifier:
    """The LightGBM classifier; deterministic for a given seed and data."""
    return LGBMClassifier(
        n_estimators=n_estimators or config.lgbm_n_estimators,
        learning_rate=config.lgbm_learning_rate,
        num_leaves=config.lgbm_num_leaves,
        min_child_samples=config.lgbm_min_child_samples,
        colsample_bytree=config.lgbm_colsample_bytree,
        reg_lambda=config.lgbm_reg_lambda,
        random_state=config.seed,
        deterministic=True,
        force_col_wise=True,
        n_jobs=2,
        verbose=-1,
    )


def build_lightgbm_pipeline(
    feature_columns: Sequence[str], config: ModelConfig, n_estimators: int | None = None
) -> Pipeline:
    """The candidate model: preprocessor -> LightGBM."""
    return Pipeline(
        [
            ("features", build_preprocessor(feature_columns, config)),
            ("classifier", build_classifier(config, n_estimators)),
        ]
    )


def build_baseline_pipeline(config: ModelConfig) -> Pipeline:
    """The baseline: TF-IDF word 1-2-grams over subject + body -> logistic regression."""
    return Pipeline(
        [
            ("join", JoinText(config.max_body_chars)),
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
            (
                "classifier",
                LogisticRegression(C=config.baseline_c, max_iter=2_000, random_state=config.seed),
            ),
        ]
    )


def model_input(frame: pd.DataFrame, feature_columns: Sequence[str]) -> pd.DataFrame:
    """The columns a model version takes, in contract order (text first, then features)."""
    return frame[[*TEXT_COLUMNS, *feature_columns]]
