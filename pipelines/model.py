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
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline

from modstack.registry.contract import TEXT_COLUMNS

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


class OutOfFoldTextScore(TransformerMixin, BaseEstimator):
    """A logistic regression's log-odds over the word n-grams, as one input column for LightGBM
    (stacking). Trees split on a handful of n-grams at a time; the linear score sums the
    evidence of all of them.

    `fit_transform` returns out-of-fold scores (cross-fitting, as sklearn's TargetEncoder does),
    so LightGBM learns how far to trust the score on mails the regression has not seen.
    `transform` averages the fold models rather than refitting one on all rows: a regression
    fitted on more rows is more confident, and LightGBM's splits on the score would then sit
    at the wrong places.
    """

    def __init__(self, c: float = 10.0, folds: int = 5, seed: int = 42) -> None:
        self.c = c
        self.folds = folds
        self.seed = seed

    def fit(self, X: Any, y: Any) -> OutOfFoldTextScore:
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: Any, y: Any = None, **_: Any) -> np.ndarray:
        labels = np.asarray(y)
        scores = np.zeros(X.shape[0], dtype=np.float64)
        self.models_: list[LogisticRegression] = []
        folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        for fit_rows, held_out in folds.split(np.zeros(len(labels)), labels):
            model = LogisticRegression(C=self.c, max_iter=2_000, random_state=self.seed)
            model.fit(X[fit_rows], labels[fit_rows])
            scores[held_out] = model.decision_function(X[held_out])
            self.models_.append(model)
        return scores.reshape(-1, 1)

    def transform(self, X: Any) -> np.ndarray:
        scores = np.mean([model.decision_function(X) for model in self.models_], axis=0)
        return scores.reshape(-1, 1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array(["text_lr_logit"], dtype=object)


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the candidate and the baseline (logged as run params)."""

    seed: int = 42
    max_body_chars: int = 10_000
    word_max_features: int = 50_000
    word_min_df: int = 2
    word_selected: int = 4_000
    # char n-grams are the slow part (pure-Python n-gram extraction): the first chars suffice
    char_max_chars: int = 2_000
    char_ngram_min: int = 3
    char_ngram_max: int = 5
    char_max_features: int = 50_000
    char_min_df: int = 3
    char_selected: int = 4_000
    lgbm_n_estimators: int = 1_000
    lgbm_learning_rate: float = 0.1
    # chosen on the validation tail: the best recall at precision >= 0.99 averaged over seeds,
    # and the smallest spread between seeds (see docs/training.md)
    lgbm_num_leaves: int = 3
    lgbm_min_child_samples: int = 40
    lgbm_colsample_bytree: float = 0.3
    lgbm_reg_lambda: float = 1.0
    lgbm_max_bin: int = 63
    lgbm_n_jobs: int = 1
    # members of the seed-averaged ensemble (SeedAveragedLGBM); 1 = a single LightGBM
    lgbm_seeds: int = 5
    text_score: bool = True  # stack the out-of-fold logistic-regression score
    monotone: bool = True  # see MONOTONE_INPUTS
    early_stopping_rounds: int = 50
    baseline_c: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_params(self) -> dict[str, Any]:
        """Flat dict for `mlflow.log_params`."""
        params = asdict(self)
        params.update(params.pop("extra"))
        return params


def _text_pipeline(
    vectorizer: TfidfVectorizer, max_chars: int, selected: int, score: OutOfFoldTextScore | None
) -> Pipeline:
    # chi2 keeps the n-grams most associated with the label (fitted on training rows only):
    # LightGBM's cost grows with the non-zeros it bins, and most n-grams are noise
    select = SelectKBest(chi2, k=selected)
    outputs: Any = select if score is None else FeatureUnion([("select", select), ("score", score)])
    return Pipeline([("join", JoinText(max_chars)), ("tfidf", vectorizer), ("outputs", outputs)])


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
    text = list(TEXT_COLUMNS)
    score = OutOfFoldTextScore(c=config.baseline_c, seed=config.seed) if config.text_score else None
    transformers: list[tuple[str, Any, list[str]]] = [
        ("word", _text_pipeline(word, config.max_body_chars, config.word_selected, score), text),
        ("char", _text_pipeline(char, config.char_max_chars, config.char_selected, None), text),
    ]
    if feature_columns:
        transformers.append(("features", AsFloat(), list(feature_columns)))
    return ColumnTransformer(transformers, sparse_threshold=1.0)


# Inputs whose effect on P(spam) has a known direction. Constraining LightGBM to it keeps the
# trees from learning bumps that hold only in the training period (e.g. a higher text score
# lowering P(spam) in some corner), which matters when the traffic drifts.
MONOTONE_INPUTS: dict[str, int] = {
    "text_lr_logit": 1,
    "sender_spam_labels_30d": 1,
    "sender_label_spam_ratio_30d": 1,
    "sender_ham_labels_30d": -1,
}


def monotone_constraints(input_names: Sequence[str]) -> list[int]:
    """LightGBM's per-input constraint list (+1 up, -1 down, 0 free) for the preprocessor's
    output names ("word__text_lr_logit", "features__sender_ham_labels_30d", ...)."""
    return [MONOTONE_INPUTS.get(str(name).split("__", 1)[-1], 0) for name in input_names]


class SeedAveragedLGBM(ClassifierMixin, BaseEstimator):
    """Copies of one LightGBM classifier that differ only in their seed, probabilities averaged.

    Column sampling makes single models vary a lot in the score tail: on the history
    validation tail recall at precision >= 0.99 spread over 0.92-0.95 between seeds, and on the
    future over 0.63-0.83. Averaging seeds keeps the mean and cuts that variance.
    Hand-written rather than sklearn's VotingClassifier: every member needs LightGBM's own
    fit arguments (eval set, early-stopping callback), which VotingClassifier routes only with
    sklearn's global metadata routing switched on.
    """

    def __init__(self, base: LGBMClassifier, seeds: Sequence[int] = (42,)) -> None:
        self.base = base
        self.seeds = seeds

    def fit(self, X: Any, y: Any, **fit_params: Any) -> SeedAveragedLGBM:
        """Fit one member per seed with the same data and LightGBM fit arguments."""
        self.members_ = [
            clone(self.base).set_params(random_state=seed).fit(X, y, **fit_params)
            for seed in self.seeds
        ]
        self.classes_ = self.members_[0].classes_
        iterations = [m.best_iteration_ or m.n_estimators for m in self.members_]
        self.best_iteration_ = round(float(np.mean(iterations)))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the members' class probabilities.

        Straight from each member's booster: LGBMClassifier.predict_proba re-validates the
        input on every call, ~15 ms for one 8,000-column sparse row against 0.2 ms for the
        booster itself (measured), and serving scores one row at a time.
        """
        spam = np.mean(
            [m.booster_.predict(X, num_iteration=m.best_iteration_) for m in self.members_],
            axis=0,
        )
        return np.column_stack([1.0 - spam, spam])

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def gain_importances(self) -> np.ndarray:
        """Total split gain per input column, summed over the members."""
        return np.sum(
            [m.booster_.feature_importance(importance_type="gain") for m in self.members_], axis=0
        )


def build_classifier(config: ModelConfig, n_estimators: int | None = None) -> SeedAveragedLGBM:
    """The LightGBM ensemble; deterministic for a given seed and data."""
    base = LGBMClassifier(
        n_estimators=n_estimators or config.lgbm_n_estimators,
        learning_rate=config.lgbm_learning_rate,
        num_leaves=config.lgbm_num_leaves,
        min_child_samples=config.lgbm_min_child_samples,
        colsample_bytree=config.lgbm_colsample_bytree,
        reg_lambda=config.lgbm_reg_lambda,
        max_bin=config.lgbm_max_bin,
        random_state=config.seed,
        deterministic=True,
        force_col_wise=True,
        # one thread: OpenMP threads spin-wait, and on a shared 2-core machine two of them
        # made training ~7x slower (measured), not faster
        n_jobs=config.lgbm_n_jobs,
        verbose=-1,
    )
    return SeedAveragedLGBM(base, seeds=[config.seed + i for i in range(config.lgbm_seeds)])


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
