"""The serving hot path is exact: models trained by the real training code on the fixture corpus
(the candidate and the TF-IDF + logistic-regression baseline), prepared for serving
(selectors as fixed column indices, text vectorizers with a per-word cache, sklearn's per-call
checks off) and scored in batches from
per-message feature dicts, give the same scores as `pipeline.predict_proba` on the whole
future holdout within 1e-9, and so the same actions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modstack.registry.contract import TEXT_COLUMNS
from pipelines.fitting import fit_baseline, fit_candidate
from pipelines.model import model_input
from pipelines.model_config import ModelConfig
from pipelines.training_data import LabelledSet
from services.serving.hot_path import prepare_for_serving, selectors_replaced, vectorizers_cached
from services.serving.model_store import LoadedModel
from tests.training_fixtures import fixture_data_dir, future_set, history_set  # noqa: F401

pytestmark = pytest.mark.integration

BATCH = 32


def _feature_dicts(frame: Any, columns: list[str]) -> list[dict[str, float | None]]:
    """What serving gets from Feast per message: floats, None where there is no value."""
    values = frame[columns].to_numpy(dtype=np.float64)
    return [
        {c: (None if math.isnan(v) else float(v)) for c, v in zip(columns, row, strict=True)}
        for row in values
    ]


def _served_scores(loaded: LoadedModel, holdout: LabelledSet) -> np.ndarray:
    frame = holdout.frame
    features = _feature_dicts(frame, holdout.feature_columns)
    subjects, bodies = list(frame["subject"]), list(frame["body"])
    scores: list[float] = []
    for start in range(0, len(frame), BATCH):
        end = start + BATCH
        scores += loaded.score_batch(subjects[start:end], bodies[start:end], features[start:end])
    # one-row calls too (a lone request): the first rows
    for i in range(5):
        assert loaded.score(subjects[i], bodies[i], features[i]) == pytest.approx(
            scores[i], abs=1e-12
        )
    return np.asarray(scores)


@pytest.mark.parametrize("kind", ["candidate", "baseline"])
def test_served_scores_equal_predict_proba_on_the_holdout(
    kind: str,
    history_set: LabelledSet,  # noqa: F811
    future_set: LabelledSet,  # noqa: F811
) -> None:
    config = ModelConfig()
    fit = fit_candidate if kind == "candidate" else fit_baseline
    fitted = fit(history_set, config, 0.2)
    pipeline = fitted.pipeline
    columns = tuple(future_set.feature_columns)
    prepared = prepare_for_serving(pipeline)
    # neither model holds a feature selector (the candidate's predict_proba is its fast path)
    assert selectors_replaced(prepared) == 0
    # the text vectorizers are the per-word-cached ones (word + char_wb; the baseline's word)
    assert vectorizers_cached(prepared) == (2 if kind == "candidate" else 1)
    loaded = LoadedModel(
        "1", pipeline, fitted.thresholds, future_set.feature_service, columns, "cache", prepared
    )

    expected = pipeline.predict_proba(model_input(future_set.frame, list(columns)))[:, 1]
    served = _served_scores(loaded, future_set)

    assert len(served) == len(future_set.frame) > 50
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)
    actions = [fitted.thresholds.action_for(s) for s in served]
    assert actions == [fitted.thresholds.action_for(float(s)) for s in expected]
    assert set(TEXT_COLUMNS) <= set(future_set.frame.columns)
