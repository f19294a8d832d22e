"""The seed-averaged LightGBM: the average of its members, deterministic, seeds that differ."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipelines.model import ModelConfig, build_classifier


def _data(rows: int = 400) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 12))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    return sp.csr_matrix(x), y


def test_probabilities_are_the_mean_of_the_members_wrapper_probabilities() -> None:
    x, y = _data()
    model = build_classifier(ModelConfig(lgbm_n_estimators=40, lgbm_seeds=3)).fit(x, y)
    members = np.mean([m.predict_proba(x) for m in model.members_], axis=0)
    np.testing.assert_allclose(model.predict_proba(x), members, atol=1e-12)
    assert [m.random_state for m in model.members_] == [42, 43, 44]
    assert set(model.predict(x)) <= {0, 1}


def test_the_same_data_and_seed_give_the_same_scores() -> None:
    x, y = _data()
    config = ModelConfig(lgbm_n_estimators=40, lgbm_seeds=2)
    first, second = (build_classifier(config).fit(x, y).predict_proba(x) for _ in range(2))
    np.testing.assert_array_equal(first, second)
