"""Cross-fitting of the abuse model: the out-of-fold scores are those of models that did not
see the row, the served model is the mean of the fold models, and `pipelines.fitting` places
the abuse cut-offs on the out-of-fold scores of every history row (inline strings, no data)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from modstack.policy import catalogue
from pipelines.addressee import (
    ABUSE_MEMBERS,
    AbuseFeatures,
    AddresseeEnsemble,
    NBScaler,
    abuse_text_pipeline,
    addressee_tokens,
)
from pipelines.fitting import (
    ABUSE_FOLDS,
    _cross_fit_and_threshold,
    fit_candidate,
    is_cross_fitted,
    out_of_fold_scores,
)
from pipelines.metrics import action_thresholds
from pipelines.model_config import ModelConfig
from pipelines.training_data import LABEL_COLUMN, LabelledSet, time_validation_split
from tests.support.abuse_texts import HARMLESS, INSULTS

TEXTS = [text for pair in zip(INSULTS, HARMLESS[: len(INSULTS)], strict=True) for text in pair]
TEXTS += HARMLESS[len(INSULTS) :]
LABELS = np.array([int(text in INSULTS) for text in TEXTS])
FOLDS = 3


def _features() -> AbuseFeatures:
    return AbuseFeatures(you_sentences=True, fuzzy_lexicon=True, min_df=1)


def _members_by_hand(
    X: object, labels: np.ndarray, features: AbuseFeatures
) -> tuple[np.ndarray, float]:
    """The ensemble's members fitted with plain scikit-learn, folded into one linear model."""
    coef = np.zeros(X.shape[1])  # type: ignore[attr-defined]
    intercept = 0.0
    for blocks, c in ABUSE_MEMBERS:
        columns = features.block_columns(blocks)
        part = X[:, columns]  # type: ignore[index]
        scaler = NBScaler().fit(part, labels)
        model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(part), labels)
        coef[columns] += scaler.ratios_ * model.coef_[0]
        intercept += float(model.intercept_[0])
    return coef / len(ABUSE_MEMBERS), intercept / len(ABUSE_MEMBERS)


def test_out_of_fold_logits_come_from_models_that_did_not_see_the_row() -> None:
    ensemble = AddresseeEnsemble(features=_features(), folds=FOLDS, random_state=3)
    ensemble.fit(TEXTS, LABELS)
    X = ensemble.features_.transform(TEXTS)
    splits = StratifiedKFold(FOLDS, shuffle=True, random_state=3).split(TEXTS, LABELS)
    coefs, intercepts = [], []
    for fit_rows, held in splits:
        coef, intercept = _members_by_hand(X[fit_rows], LABELS[fit_rows], ensemble.features_)
        # the held rows' logits are those of the model fitted without them
        np.testing.assert_allclose(
            ensemble.oof_decision_[held], X[held] @ coef + intercept, rtol=1e-6, atol=1e-6
        )
        coefs.append(coef)
        intercepts.append(intercept)
    # the served model is the mean of the fold models: one linear model over shared features
    np.testing.assert_allclose(ensemble.coef_, np.mean(coefs, axis=0), rtol=1e-6, atol=1e-9)
    assert ensemble.intercept_ == pytest.approx(np.mean(intercepts))
    fold_logits = np.mean([X @ c + b for c, b in zip(coefs, intercepts, strict=True)], axis=0)
    np.testing.assert_allclose(ensemble.decision_function(TEXTS), fold_logits, atol=1e-6)


def test_out_of_fold_scores_are_not_in_sample_scores() -> None:
    ensemble = AddresseeEnsemble(features=_features(), folds=FOLDS).fit(TEXTS, LABELS)
    in_sample = ensemble.decision_function(TEXTS)
    oof = ensemble.oof_decision_
    # the served model learnt every row: it separates its own training rows at least as well
    # as the fold models separate rows they never saw, and the scores are not the same numbers
    gap = lambda s: s[LABELS == 1].mean() - s[LABELS == 0].mean()  # noqa: E731
    assert gap(in_sample) > gap(oof) > 0
    assert not np.allclose(in_sample, oof)


def test_without_folds_nothing_is_cross_fitted() -> None:
    ensemble = AddresseeEnsemble(features=_features()).fit(TEXTS, LABELS)
    assert not ensemble.cross_fitted()
    assert not hasattr(ensemble, "oof_decision_")
    assert not is_cross_fitted(abuse_text_pipeline())
    with pytest.raises(ValueError, match="not cross-fitted"):
        out_of_fold_scores(ensemble)


def test_the_cross_fitted_pipeline_pickles_and_scores_the_same() -> None:
    pipeline = abuse_text_pipeline(seed=1, folds=FOLDS)
    assert is_cross_fitted(pipeline)
    pipeline.fit(TEXTS, LABELS)
    copy = pickle.loads(pickle.dumps(pipeline))
    probe = ["you are a total moron", "see you tomorrow"]
    np.testing.assert_allclose(copy.predict_proba(probe), pipeline.predict_proba(probe))
    assert copy.predict_proba(probe)[0, 1] > copy.predict_proba(probe)[1, 1]
    np.testing.assert_allclose(
        out_of_fold_scores(copy), expit(pipeline[-1].oof_decision_), rtol=1e-12
    )


def _history() -> LabelledSet:
    """The texts as abuse history rows, one a day, insults and harmless mixed in time."""
    rows = len(TEXTS) * 4
    texts = [f"{TEXTS[i % len(TEXTS)]} ({i // len(TEXTS)})" for i in range(rows)]
    labels = np.tile(LABELS, 4)
    frame = pd.DataFrame(
        {
            "message_id": [f"insults-train-{i:05d}" for i in range(rows)],
            "sender_id": "",
            "sent_at": pd.date_range("2012-03-20", periods=rows, freq="D", tz="UTC"),
            "label": np.where(labels == 1, "abuse", "ok"),
            "subject": "",
            "body": texts,
            "group": "comments-train",
            LABEL_COLUMN: labels,
        }
    )
    # shuffled row order: the tail is found by time, not by position
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return LabelledSet(frame, [], "none")


def test_abuse_cutoffs_sit_on_the_out_of_fold_scores_of_every_history_row() -> None:
    train = _history()
    fitted = fit_candidate(train, ModelConfig(), 0.2, 0.05, 0.05, "abuse")
    oof = out_of_fold_scores(fitted.pipeline)
    y = train.frame[LABEL_COLUMN].to_numpy()
    assert len(oof) == len(y)
    assert fitted.pipeline[-1][-1].folds == ABUSE_FOLDS
    # the cut-offs are the pipeline's rule on the out-of-fold scores of all rows
    assert fitted.thresholds == action_thresholds(y, oof, oof, 0.05, 0.05, 0.95)
    assert fitted.validation.metrics["pr_auc"] == pytest.approx(average_precision_score(y, oof))
    # `validation_scores` line up with the time-ordered tail, as pipelines.train reads them
    _, tail = time_validation_split(train.frame, 0.2)
    by_id = dict(zip(train.frame["message_id"], oof, strict=True))
    np.testing.assert_allclose(
        fitted.validation_scores, [by_id[m] for m in tail["message_id"]], rtol=1e-12
    )
    assert fitted.cutoffs is not None


def test_cross_fitting_refuses_sender_columns() -> None:
    train = _history()
    train.frame["sender_x"] = 1.0
    with_columns = LabelledSet(train.frame, ["sender_x"], "none")
    pipeline = abuse_text_pipeline(folds=FOLDS)
    with pytest.raises(ValueError, match="text-only"):
        _cross_fit_and_threshold(
            "candidate", pipeline, with_columns, 0.2, (0.05, 0.05), catalogue().get("abuse")
        )


def test_your_before_an_article_is_the_copular_frame_when_asked() -> None:
    on = addressee_tokens("Your an idiot, your car is red", your_copula=True)
    off = addressee_tokens("Your an idiot, your car is red")
    assert {"YOUARE_idiot", "YOUARE_LEX"} <= set(on)
    assert not any(token.startswith("YOUARE_") for token in off)
    # "your" before a noun stays a possessive
    assert not any(t.startswith("YOUARE_") for t in addressee_tokens("your car", your_copula=True))
