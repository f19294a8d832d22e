"""prepare_for_serving on a small fitted tree (Pipeline > ColumnTransformer > Pipeline >
FeatureUnion > SelectKBest): selectors become fixed indices, the original stays untouched,
scores are the same numbers; the batch frame has the contract's columns and NaN for None."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer

from services.serving.hot_path import (
    IndexSelector,
    model_frame,
    predict_proba_fast,
    prepare_for_serving,
    selectors_replaced,
)

WORDS = ["cheap", "pills", "meeting", "agenda", "viagra", "lunch", "offer", "report", "free"]


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    subjects = [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]
    bodies = [" ".join(rng.choice(WORDS, 12)) for _ in range(n)]
    counts = rng.integers(0, 20, n).astype(float)
    counts[rng.random(n) < 0.3] = np.nan
    frame = pd.DataFrame({"subject": subjects, "body": bodies, "sender_msgs": counts})
    y = np.array([("cheap" in b) or ("free" in s) for s, b in zip(subjects, bodies, strict=True)])
    return frame, y


def _pipeline() -> Pipeline:
    join = FunctionTransformer(lambda x: (x["subject"] + " " + x["body"]).to_numpy())
    text = Pipeline(
        [
            ("join", join),
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2))),
            ("outputs", FeatureUnion([("select", SelectKBest(chi2, k=6))])),
        ]
    )
    features = ColumnTransformer(
        [
            ("text", text, ["subject", "body"]),
            ("numbers", SimpleImputer(strategy="constant", fill_value=0), ["sender_msgs"]),
        ]
    )
    return Pipeline([("features", features), ("classifier", LogisticRegression())])


def test_selectors_become_indices_and_scores_do_not_move() -> None:
    train, y = _frame(300, seed=1)
    test, _ = _frame(80, seed=2)
    pipeline = _pipeline().fit(train, y)
    prepared = prepare_for_serving(pipeline)

    assert selectors_replaced(prepared) == 1
    assert selectors_replaced(pipeline) == 0  # the registered object is not modified
    union = prepared.named_steps["features"].named_transformers_["text"].named_steps["outputs"]
    selector = union.transformer_list[0][1]
    assert isinstance(selector, IndexSelector)
    original = (
        pipeline.named_steps["features"].named_transformers_["text"].named_steps["outputs"]
    ).transformer_list[0][1]
    assert list(selector.indices) == list(original.get_support(indices=True))

    expected = pipeline.predict_proba(test)
    np.testing.assert_allclose(predict_proba_fast(prepared, test), expected, rtol=0, atol=1e-12)


def test_the_batch_frame_has_contract_columns_and_nan_for_missing() -> None:
    frame = model_frame(
        ["s1", "s2"],
        ["b1", "b2"],
        [{"a": 1, "b": None}, {"a": None}],
        ("subject", "body"),
        ("a", "b"),
    )
    assert list(frame.columns) == ["subject", "body", "a", "b"]
    assert frame["a"].dtype == np.float64 and frame["b"].dtype == np.float64
    assert frame.loc[0, "a"] == 1.0
    assert (
        np.isnan(frame.loc[0, "b"]) and np.isnan(frame.loc[1, "a"]) and np.isnan(frame.loc[1, "b"])
    )
