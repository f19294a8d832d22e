"""A registered champion for tests that run serving as a process against an MLflow server.

A small TF-IDF + logistic regression (fits in a second on the fixture corpus) logged under the
model contract, either against the tracking URI already set (`log_small_model`) or against the
URI given, without leaving that URI set for the rest of the session (`register_model`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from modstack.names import FEATURE_SERVICE_V1
from modstack.registry.contract import (
    META_FEATURE_COLUMNS,
    META_FEATURE_SERVICE,
    META_THRESHOLDS,
    Thresholds,
)

FIXTURE_CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"


@contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """Point the mlflow client library at `uri` inside the block only.

    Restores both places MLflow keeps it: its global (unset included, so that the variable
    decides again) and MLFLOW_TRACKING_URI, which `set_tracking_uri` writes and, when given
    None, removes. Restoring `mlflow.get_tracking_uri()` instead pinned the default store
    over the session's MLFLOW_TRACKING_URI for the rest of the session."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    global_before = utils._tracking_uri
    variable_before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(global_before)  # type: ignore[arg-type]  # None unsets it
        if variable_before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = variable_before
        else:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


def training_frame(data_dir: Path, feature_columns: list[str]) -> pd.DataFrame:
    """The fixture corpus with the text features computed by the same code Feast runs; sender
    features are NaN (the model contract allows it, and serving reads them from Feast)."""
    from features.text import text_features
    from modstack.corpus import build_corpus, load_corpus

    build_corpus(FIXTURE_CORPUS, data_dir)
    corpus = load_corpus(data_dir)
    rows = corpus[~corpus["is_duplicate"]].reset_index(drop=True)
    text = pd.DataFrame([text_features(s, b) for s, b in zip(rows.subject, rows.body, strict=True)])
    frame = rows[["message_id", "sender_id", "subject", "body", "sent_at", "label", "period"]]
    frame = pd.concat([frame, text], axis=1)
    for column in feature_columns:
        if column not in frame:
            frame[column] = np.nan
    return frame


def future_messages(frame: pd.DataFrame, n: int) -> list[dict[str, str]]:
    """The first `n` messages of the frame's future period, as /v1/moderate takes them."""
    future = frame[frame["period"] == "future"].head(n)
    return [
        {
            "message_id": str(r.message_id),
            "sender_id": str(r.sender_id),
            "subject": str(r.subject),
            "body": str(r.body),
            "sent_at": r.sent_at.isoformat(),
        }
        for r in future.itertuples()
    ]


def small_pipeline(feature_columns: list[str], seed: int) -> Pipeline:
    """TF-IDF words + the feature columns -> logistic regression: the contract's input and
    output, cheap enough to fit in a second on the fixture (the LightGBM candidate takes ~15 s
    on a busy 2-core machine)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from pipelines.model import AsFloat
    from pipelines.text_cleaning import JoinText

    text = Pipeline([("join", JoinText(3_000)), ("tfidf", TfidfVectorizer(max_features=3_000))])
    numbers = Pipeline(
        [
            ("float", AsFloat()),
            ("impute", SimpleImputer(strategy="constant", fill_value=0, keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    parts: list[tuple[str, Any, list[str]]] = [("text", text, ["subject", "body"])]
    if feature_columns:
        parts.append(("numbers", numbers, feature_columns))
    features = ColumnTransformer(parts)
    return Pipeline(
        [("features", features), ("classifier", LogisticRegression(C=5.0, random_state=seed))]
    )


def log_small_model(
    model_name: str,
    frame: pd.DataFrame,
    feature_columns: list[str],
    seed: int,
    positive: pd.Series | None = None,
) -> str:
    """Fit the small pipeline on `frame` (target: `positive`, default the spam label), log it
    per the model contract and register it as `model_name` at the tracking URI set now; the
    version. With no feature columns the model reads the text alone (no feature service)."""
    import mlflow

    from pipelines.model import model_input

    pipeline = small_pipeline(feature_columns, seed)
    inputs = model_input(frame, feature_columns)
    target = positive if positive is not None else frame["label"] == "spam"
    pipeline.fit(inputs, target.to_numpy())
    scores = pipeline.predict_proba(inputs)[:, 1]
    # cut-offs at score quantiles so that the fixture produces all three actions
    thresholds = Thresholds(
        block=float(np.quantile(scores, 0.8)), review=float(np.quantile(scores, 0.4))
    )
    mlflow.set_experiment(model_name)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="cloudpickle",
            registered_model_name=model_name,
            # listed, not inferred: inference imports the model in a subprocess (~10 s)
            pip_requirements=["scikit-learn", "lightgbm", "pandas"],
            metadata={
                META_THRESHOLDS: thresholds.to_metadata(),
                META_FEATURE_SERVICE: FEATURE_SERVICE_V1 if feature_columns else "",
                META_FEATURE_COLUMNS: feature_columns,
            },
        )
    return str(info.registered_model_version)


def register_model(
    uri: str, model_name: str, frame: pd.DataFrame, feature_columns: list[str], seed: int
) -> str:
    """`log_small_model` against the tracking URI `uri`; the version."""
    with tracking_uri(uri):
        return log_small_model(model_name, frame, feature_columns, seed)
