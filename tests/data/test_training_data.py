"""Expectations on the training data the pipeline builds from the corpus fixture: schema,
no leakage across the time splits, label balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.text import TEXT_FEATURE_NAMES
from modstack.corpus import FUTURE_START
from modstack.registry.contract import TEXT_COLUMNS
from pipelines.training_data import LABEL_COLUMN, LabelledSet, content_hash, time_validation_split
from tests.training_fixtures import fixture_data_dir, future_set, history_set  # noqa: F401


def test_training_set_has_text_label_and_float_feature_columns(history_set: LabelledSet) -> None:  # noqa: F811
    frame = history_set.frame
    assert set(TEXT_COLUMNS) <= set(frame.columns)
    assert set(TEXT_FEATURE_NAMES) <= set(history_set.feature_columns)
    assert any(c.startswith("sender_") for c in history_set.feature_columns)
    assert all(frame[c].dtype == np.float64 for c in history_set.feature_columns)
    assert set(frame[LABEL_COLUMN].unique()) == {0, 1}
    assert ((frame["label"] == "spam") == (frame[LABEL_COLUMN] == 1)).all()
    assert frame["message_id"].is_unique
    assert frame["sent_at"].dt.tz is not None


def test_text_features_are_never_missing_and_sender_features_only_for_first_messages(
    history_set: LabelledSet,  # noqa: F811
) -> None:
    frame = history_set.frame
    assert not frame[list(TEXT_FEATURE_NAMES)].isna().any().any()
    # a sender's first message has no state: NaN, not 0 (the model tells the two apart)
    first_of_sender = ~frame.sort_values("sent_at")["sender_id"].duplicated()
    assert frame.loc[first_of_sender[first_of_sender].index, "sender_msgs_total"].isna().all()


def test_history_ends_before_the_future_begins(
    history_set: LabelledSet,  # noqa: F811
    future_set: LabelledSet,  # noqa: F811
) -> None:
    assert history_set.frame["sent_at"].max() < pd.Timestamp(FUTURE_START)
    assert future_set.frame["sent_at"].min() >= pd.Timestamp(FUTURE_START)
    assert not set(history_set.frame["message_id"]) & set(future_set.frame["message_id"])


def test_no_mail_text_is_on_both_sides_of_the_split(
    history_set: LabelledSet,  # noqa: F811
    future_set: LabelledSet,  # noqa: F811
) -> None:
    def texts(labelled: LabelledSet) -> set[str]:
        frame = labelled.frame
        return set(frame["subject"].fillna("") + "\x00" + frame["body"].fillna(""))

    assert not texts(history_set) & texts(future_set)


def test_validation_rows_are_later_than_the_fit_rows_of_their_class(
    history_set: LabelledSet,  # noqa: F811
) -> None:
    fit, validation = time_validation_split(history_set.frame, 0.2)
    assert len(fit) + len(validation) == len(history_set.frame)
    for label in (0, 1):
        fit_times = fit.loc[fit[LABEL_COLUMN] == label, "sent_at"]
        val_times = validation.loc[validation[LABEL_COLUMN] == label, "sent_at"]
        assert len(val_times) > 0
        assert fit_times.max() <= val_times.min()


def test_plain_time_split_puts_every_validation_row_after_every_fit_row(
    history_set: LabelledSet,  # noqa: F811
) -> None:
    fit, validation = time_validation_split(history_set.frame, 0.3, per_label=False)
    assert fit["sent_at"].max() <= validation["sent_at"].min()
    assert len(validation) == pytest.approx(0.3 * len(history_set.frame), abs=1)


def test_label_balance_shifts_from_history_to_future_as_in_the_corpus(
    history_set: LabelledSet,  # noqa: F811
    future_set: LabelledSet,  # noqa: F811
) -> None:
    # full corpus: 45% spam in history, 17% in the future (the fixture samples every cell)
    assert 0.30 <= history_set.y.mean() <= 0.60
    assert 0.08 <= future_set.y.mean() <= 0.30
    assert future_set.y.sum() >= 5  # enough spam for a precision-recall curve


def test_content_hash_is_stable_and_sees_a_changed_label(history_set: LabelledSet) -> None:  # noqa: F811
    frame, columns = history_set.frame, history_set.feature_columns
    assert content_hash(frame, columns) == content_hash(frame.copy(), columns)
    flipped = frame.copy()
    flipped.loc[0, LABEL_COLUMN] = 1 - flipped.loc[0, LABEL_COLUMN]
    assert content_hash(flipped, columns) != content_hash(frame, columns)
