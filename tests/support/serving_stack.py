"""A registered champion for tests that run serving as a process against their own MLflow.

Reuses the small TF-IDF + logistic regression of tests/integration/test_serving.py (fits in a
second on the fixture corpus) and logs it under the model contract, against the tracking URI
given, without leaving that URI set for the rest of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from modstack.names import FEATURE_SERVICE_V1
from modstack.registry.contract import (
    META_FEATURE_COLUMNS,
    META_FEATURE_SERVICE,
    META_THRESHOLDS,
    Thresholds,
)
from tests.integration.test_serving import _small_pipeline, _training_frame


@contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """Point the mlflow client library at `uri` inside the block only."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def training_frame(data_dir: Path, feature_columns: list[str]) -> pd.DataFrame:
    """The fixture corpus with text features computed as Feast does (sender features NaN)."""
    return _training_frame(data_dir, feature_columns)


def register_model(
    uri: str, model_name: str, frame: pd.DataFrame, feature_columns: list[str], seed: int
) -> str:
    """Fit the small pipeline on `frame`, log and register it as `model_name`; the version."""
    import mlflow

    from pipelines.model import model_input

    pipeline = _small_pipeline(feature_columns, seed)
    inputs = model_input(frame, feature_columns)
    pipeline.fit(inputs, (frame["label"] == "spam").to_numpy())
    scores = pipeline.predict_proba(inputs)[:, 1]
    thresholds = Thresholds(
        block=float(np.quantile(scores, 0.8)), review=float(np.quantile(scores, 0.4))
    )
    with tracking_uri(uri):
        mlflow.set_experiment(model_name)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                serialization_format="cloudpickle",
                registered_model_name=model_name,
                pip_requirements=["scikit-learn", "lightgbm", "pandas"],
                metadata={
                    META_THRESHOLDS: thresholds.to_metadata(),
                    META_FEATURE_SERVICE: FEATURE_SERVICE_V1,
                    META_FEATURE_COLUMNS: feature_columns,
                },
            )
    return str(info.registered_model_version)
