"""Behavioural tests of the candidate trained on the corpus fixture: minimum
functionality (obvious spam high, an ordinary mail low), invariance (extra whitespace),
direction (more spammy phrases never lower the score), and the model contract."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from features.text import text_features
from modstack.registry.contract import TEXT_COLUMNS
from pipelines.fitting import FittedModel, fit_baseline, fit_candidate
from pipelines.model import model_input
from pipelines.model_config import ModelConfig
from pipelines.training_data import LabelledSet
from tests.training_fixtures import fixture_data_dir, future_set, history_set  # noqa: F401

SPAM = (
    "FREE money!!! Act now, limited offer",
    "Dear friend, you have been selected to receive $1,000,000 CASH. Click here to claim your "
    "prize now: http://www.win-big-cash-now.biz/claim  Make money fast from home, no credit "
    "check, guaranteed income. Order now while supplies last! To be removed from our mailing "
    "list reply REMOVE.",
)
HAM = (
    "Re: patch for the build script",
    "Hi Tom,\n\nthanks for the review. I moved the config parsing into its own function and "
    "added a test for the empty file case. The build passes on my machine now; could you "
    "have another look when you get a chance?\n\nCheers,\nAnna\n\n> Tom wrote:\n> looks good "
    "overall, a few nits inline.",
)
# on its own line: appended to the body's last line it would sit inside the quoted reply,
# which the candidate's cleaning removes
SPAMMY_PHRASE = "\nClick here to claim your FREE cash prize now!"


@pytest.fixture(scope="module")
def candidate(history_set: LabelledSet, future_set: LabelledSet) -> FittedModel:  # noqa: F811
    """The candidate fitted on the whole fixture (history + future: as much data as it has)."""
    frame = pd.concat([history_set.frame, future_set.frame], ignore_index=True)
    everything = LabelledSet(frame, history_set.feature_columns, history_set.feature_service)
    return fit_candidate(everything, ModelConfig(), validation_fraction=0.2)


def score(model: FittedModel, columns: list[str], subject: str, body: str) -> float:
    """P(spam) for a mail from a sender the store has never seen (sender features NaN), with
    the text features computed as the Feast on-demand view computes them."""
    row = {"subject": subject, "body": body, **dict.fromkeys(columns, np.nan)}
    row.update({k: v for k, v in text_features(subject, body).items() if k in columns})
    frame = pd.DataFrame([row])
    return float(model.pipeline.predict_proba(model_input(frame, columns))[0, 1])


def test_obvious_spam_scores_high(candidate: FittedModel, history_set: LabelledSet) -> None:  # noqa: F811
    assert score(candidate, history_set.feature_columns, *SPAM) > 0.8


def test_ordinary_mail_scores_low(candidate: FittedModel, history_set: LabelledSet) -> None:  # noqa: F811
    assert score(candidate, history_set.feature_columns, *HAM) < 0.2


@pytest.mark.parametrize("mail", [SPAM, HAM], ids=["spam", "ham"])
def test_score_is_invariant_to_extra_whitespace(
    candidate: FittedModel,
    history_set: LabelledSet,  # noqa: F811
    mail: tuple[str, str],
) -> None:
    subject, body = mail
    padded_body = "\n\n  " + body.replace(" ", "   ").replace("\n", "\n\n") + "   \n"
    columns = history_set.feature_columns
    assert score(candidate, columns, "  " + subject + " ", padded_body) == pytest.approx(
        score(candidate, columns, subject, body), abs=0.02
    )


def test_more_spammy_phrases_never_lower_the_score(
    candidate: FittedModel,
    history_set: LabelledSet,  # noqa: F811
) -> None:
    subject, body = HAM
    columns = history_set.feature_columns
    scores = [score(candidate, columns, subject, body + SPAMMY_PHRASE * n) for n in range(4)]
    # near 1 the score saturates: TF-IDF re-normalisation may move it by a hair either way
    assert all(later >= earlier - 0.01 for earlier, later in itertools.pairwise(scores))
    assert scores[1] > scores[0] + 0.1


def test_scores_are_probabilities_in_the_contract_shape(
    candidate: FittedModel,
    future_set: LabelledSet,  # noqa: F811
) -> None:
    columns = future_set.feature_columns
    proba = candidate.pipeline.predict_proba(model_input(future_set.frame, columns))
    assert proba.shape == (len(future_set.frame), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(model_input(future_set.frame, columns).columns[:2]) == list(TEXT_COLUMNS)


def test_same_data_and_seed_give_the_same_scores(
    history_set: LabelledSet,  # noqa: F811
    future_set: LabelledSet,  # noqa: F811
) -> None:
    columns = history_set.feature_columns
    first, second = (fit_candidate(history_set, ModelConfig(), 0.2) for _ in range(2))
    holdout = model_input(future_set.frame, columns)
    np.testing.assert_array_equal(
        first.pipeline.predict_proba(holdout), second.pipeline.predict_proba(holdout)
    )
    assert first.thresholds == second.thresholds


def test_the_candidate_ranks_the_fixture_holdout_at_least_as_well_as_chance_by_far(
    history_set: LabelledSet,  # noqa: F811
    future_set: LabelledSet,  # noqa: F811
) -> None:
    from pipelines.evaluate import evaluate_model

    for fitted in (
        fit_candidate(history_set, ModelConfig(), 0.2),
        fit_baseline(history_set, ModelConfig(), 0.2),
    ):
        report, _ = evaluate_model(
            fitted.pipeline, fitted.thresholds, future_set, history_set.feature_columns
        )
        assert report.metrics["roc_auc"] > 0.85, fitted.name


def _known_word_ngrams(model: FittedModel, subject: str, body: str) -> int:
    pipeline = model.pipeline
    frame = pd.DataFrame([{"subject": subject, "body": body}])
    return int(pipeline.word_.transform(list(pipeline.cleaner_.transform(frame))).nnz)


def test_text_with_little_known_evidence_stays_below_block(
    candidate: FittedModel,
    history_set: LabelledSet,  # noqa: F811
) -> None:
    # short spammy texts: the cap keeps each in the review band whatever its log-odds
    short = ("", "FREE cash prize, claim now!!!"), ("WIN", "win money now"), ("", "click here")
    low = candidate.pipeline.config.abstain_min_known
    for subject, body in short:
        assert _known_word_ngrams(candidate, subject, body) < low
        assert score(candidate, history_set.feature_columns, subject, body) < (
            candidate.thresholds.block
        )
    # the cap sits below block, so it never moves a score that was already below it
    cap = 1 / (1 + np.exp(-candidate.pipeline.abstain_logit_))
    assert candidate.thresholds.review < cap < candidate.thresholds.block


def test_long_text_is_scored_by_the_long_text_model_alone(
    candidate: FittedModel,
) -> None:
    pipeline = candidate.pipeline
    subject, body = SPAM[1][:40], SPAM[1] + " " + HAM[1]
    known = _known_word_ngrams(candidate, subject, body)
    assert known >= pipeline.config.blend_max_known
    text = list(pipeline.cleaner_.transform(pd.DataFrame([{"subject": subject, "body": body}])))
    w, c = pipeline.word_.transform(text), pipeline.char_.transform(text)
    n = pipeline.n_word_
    long = w @ pipeline.coef_long_[:n] + c @ pipeline.coef_long_[n:] + pipeline.intercept_long_
    short = w @ pipeline.coef_[:n] + c @ pipeline.coef_[n:] + pipeline.intercept_
    assert abs(float(long[0] - short[0])) > 1e-3  # two different models
    expected = pipeline._capped(np.asarray(long, dtype=np.float64), np.array([known]))
    np.testing.assert_allclose(pipeline.text_logit(text), expected, rtol=0, atol=1e-12)
