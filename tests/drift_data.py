"""Real corpus-derived rows for the drift tests: the committed fixture corpus (or the full one),
its text features, and spam scores from a small model trained on history rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.text import TEXT_FEATURE_NAMES, text_features
from modstack.corpus import build_corpus, load_corpus, messages_path
from modstack.corpus.comments import from_sources
from modstack.settings import get_settings

FIXTURE_CORPUS = Path(__file__).resolve().parent / "fixtures" / "corpus"
FEATURES = list(TEXT_FEATURE_NAMES)


@dataclass
class PeriodRows:
    """Feature rows (+ `score`, `label`, ids) split into reference, held-out history, future."""

    reference: pd.DataFrame
    held_out: pd.DataFrame
    future: pd.DataFrame


def corpus_with_features(corpus: pd.DataFrame) -> pd.DataFrame:
    """Deduplicated corpus rows with the model's text features added."""
    corpus = corpus[~corpus["is_duplicate"]].reset_index(drop=True)
    features = pd.DataFrame(
        [text_features(s, b) for s, b in zip(corpus["subject"], corpus["body"], strict=True)]
    )
    return pd.concat([corpus, features], axis=1)


def fixture_corpus(data_dir: Path) -> pd.DataFrame:
    """The committed fixture corpus, built into `data_dir`."""
    build_corpus(FIXTURE_CORPUS, data_dir)
    return load_corpus(data_dir)


def split_periods(rows: pd.DataFrame, reference_share: float = 0.5, seed: int = 0) -> PeriodRows:
    """Reference = a random part of history, held out = the rest of history, future = future;
    `score` comes from a model trained on the reference rows only."""
    history = rows[rows["period"] == "history"]
    reference = history.sample(frac=reference_share, random_state=seed)
    held_out = history.drop(reference.index)
    future = rows[rows["period"] == "future"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(reference[FEATURES], reference["label"] == "spam")
    scored = [
        frame.assign(score=model.predict_proba(frame[FEATURES])[:, 1]).reset_index(drop=True)
        for frame in (reference, held_out, future)
    ]
    return PeriodRows(*scored)


def full_corpus_periods() -> PeriodRows:
    """`split_periods` of the full corpus in DATA_DIR; skips the test when it is not built (the
    committed fixture is too small to show "no drift": see test_drift_period_shift.py)."""
    data_dir = get_settings().data_dir
    if not messages_path(data_dir).exists():
        pytest.skip(f"full corpus not built at {messages_path(data_dir)}: python -m pipelines.data")
    # the e-mails: the spam model's traffic (the comments are the abuse policy's data and
    # are not replayed as the spam demo's traffic, modstack/policies/spam/policy.yaml)
    return split_periods(corpus_with_features(from_sources(load_corpus(data_dir), ("email",))))
