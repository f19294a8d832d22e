"""THE leakage test: no training-set feature of a message sees that message, its label, or any
later event. Real Feast store (applied into a tmp DATA_DIR), real point-in-time joins."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features import store as featurestore
from features.sender import (
    ACTIVITY_FEATURES,
    LABEL_WINDOW,
    RECENT_MESSAGES,
    REPUTATION_FEATURES,
    WINDOWS,
    SenderFeatureComputer,
    normalize_subject,
)
from features.text import TEXT_FEATURE_NAMES, looks_like_html, text_features, url_count
from modstack.corpus import build_corpus, load_corpus
from modstack.events import LabelEvent, MessageEvent
from pipelines import backfill
from pipelines.dataset import build_training_set

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
T0 = datetime(2002, 5, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
SENDER_FEATURES = (*ACTIVITY_FEATURES, *REPUTATION_FEATURES)


def _message(mid: str, sender: str, at: datetime, subject: str = "hi") -> MessageEvent:
    return MessageEvent(
        message_id=mid, sender_id=sender, subject=subject, body="text", sent_at=at, received_at=at
    )


def _label(mid: str, sender: str, at: datetime, value: str) -> LabelEvent:
    return LabelEvent(
        message_id=mid,
        sender_id=sender,
        label=value,
        source="moderator",
        labeled_at=at,
        received_at=at,
    )


# -- a hand-made timeline with the cases that leak first --------------------------------------

A, B = "a@spam.example", "b@ham.example"
TIMELINE = [
    _message("a1", A, T0),
    _message("b1", B, T0),  # another sender at the same instant
    _label("a1", A, T0 + H, "spam"),  # a1's label arrives before a's next message
    _message("a2", A, T0 + 2 * H),
    _message("a3", A, T0 + 2 * H, subject="other"),  # same sent_at as a2
    _label("a2", A, T0 + 3 * H, "spam"),
    _message("a4", A, T0 + 3 * H),  # sent exactly when a2's label arrives
    _label("a4", A, T0 + 4 * H, "ham"),
    _message("a5", A, T0 + 10 * 24 * H),  # much later: must not reach back
]


@pytest.fixture(scope="module")
def timeline_set(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    data_dir = tmp_path_factory.mktemp("leakage-timeline")
    featurestore.apply_repo(data_dir=data_dir)
    store = featurestore.get_store(data_dir=data_dir)
    computer = SenderFeatureComputer()
    activity, reputation = [], []
    for event in TIMELINE:
        view, row = computer.apply(event)
        (activity if view == "sender_activity" else reputation).append(row)
    featurestore.push_activity(store, activity)
    featurestore.push_reputation(store, reputation)
    labels = {e.message_id: e.label for e in TIMELINE if isinstance(e, LabelEvent)}
    rows = pd.DataFrame(
        [
            {
                "message_id": e.message_id,
                "sender_id": e.sender_id,
                "sent_at": e.sent_at,
                "label": labels.get(e.message_id, "ham"),
                "subject": e.subject,
                "body": e.body,
            }
            for e in TIMELINE
            if isinstance(e, MessageEvent)
        ]
    ).iloc[::-1]  # reversed: the output must keep the caller's order
    return build_training_set(rows, store=store).set_index("message_id", drop=False)


def test_training_set_keeps_row_order_count_and_columns(timeline_set):
    assert list(timeline_set["message_id"]) == ["a5", "a4", "a3", "a2", "b1", "a1"]
    assert set(SENDER_FEATURES) <= set(timeline_set.columns)


def test_first_message_sees_no_sender_state_and_not_its_own_label(timeline_set):
    first = timeline_set.loc["a1"]
    assert all(math.isnan(first[f]) for f in SENDER_FEATURES)
    assert math.isnan(timeline_set.loc["b1", "sender_msgs_total"])  # a1 at the same instant


def test_a_label_that_arrived_before_the_next_message_is_seen_by_it(timeline_set):
    second = timeline_set.loc["a2"]
    assert second["sender_msgs_total"] == 1.0  # a1 only: not a2 itself
    assert second["sender_spam_labels_30d"] == 1.0  # a1's label (T0+1h < T0+2h)


def test_messages_with_equal_sent_at_do_not_see_each_other(timeline_set):
    for mid in ("a2", "a3"):
        assert timeline_set.loc[mid, "sender_msgs_total"] == 1.0
        # windows are as of the sender's last event (a1): counts do not decay between events
        assert timeline_set.loc[mid, "sender_msgs_1h"] == 1.0


def test_a_label_stamped_at_the_same_instant_as_a_message_is_not_seen_by_it(timeline_set):
    row = timeline_set.loc["a4"]
    assert row["sender_msgs_total"] == 3.0  # a1, a2, a3
    assert row["sender_spam_labels_30d"] == 1.0  # a2's label at exactly sent_at is excluded


def test_a_message_never_sees_its_own_label_or_later_events(timeline_set):
    last = timeline_set.loc["a5"]
    assert last["sender_msgs_total"] == 4.0
    assert (last["sender_spam_labels_30d"], last["sender_ham_labels_30d"]) == (2.0, 1.0)
    assert timeline_set.loc["a4", "sender_ham_labels_30d"] == 0.0  # its own ham label is later


def test_text_features_are_the_message_own_text(timeline_set):
    row = timeline_set.loc["a3"]
    assert {f: row[f] for f in TEXT_FEATURE_NAMES} == text_features("other", "text")


# -- the committed corpus fixture, against a naive reference --------------------------------


def _naive_sender_features(
    messages: pd.DataFrame, labels: pd.DataFrame, sender: str, before: pd.Timestamp
) -> dict[str, float]:
    """Features from only the events strictly before `before`, computed the slow obvious way."""
    earlier = messages[(messages["sender_id"] == sender) & (messages["sent_at"] < before)]
    earlier = earlier.sort_values(["sent_at", "message_id"])
    known = labels[(labels["sender_id"] == sender) & (labels["labeled_at"] < before)]
    values = dict.fromkeys(SENDER_FEATURES, math.nan)
    if len(earlier):
        as_of = earlier["sent_at"].max()
        for name, width in WINDOWS.items():
            values[f"sender_msgs_{name}"] = float((earlier["sent_at"] > as_of - width).sum())
        recent = earlier.tail(RECENT_MESSAGES)
        values["sender_msgs_total"] = float(len(earlier))
        values["sender_distinct_subjects_recent"] = float(
            recent["subject"].map(normalize_subject).nunique()
        )
        texts = recent["subject"] + "\n" + recent["body"]
        values["sender_link_ratio_recent"] = float(texts.map(url_count).gt(0).mean())
        values["sender_html_ratio_recent"] = float(recent["body"].map(looks_like_html).mean())
        values["sender_seconds_since_first_seen"] = (
            as_of - earlier["sent_at"].min()
        ).total_seconds()
    if len(known):
        as_of = known["labeled_at"].max()
        window = known[known["labeled_at"] > as_of - LABEL_WINDOW]
        spam, ham = (
            float((window["label"] == "spam").sum()),
            float((window["label"] == "ham").sum()),
        )
        values["sender_spam_labels_30d"] = spam
        values["sender_ham_labels_30d"] = ham
        values["sender_label_spam_ratio_30d"] = (spam + 1) / (spam + ham + 2)
    return values


def _with_edge_cases(corpus: pd.DataFrame) -> pd.DataFrame:
    """The fixture plus copies of a few mails that sit exactly on the edges a join gets wrong:
    the same sender and sent_at as another mail, and the instant another mail's label arrives."""
    repeat = corpus[corpus.duplicated("sender_id", keep=False)].sort_values("message_id").head(6)
    same_time = repeat.head(3).assign(message_id=lambda f: f["message_id"] + "-same-time")
    at_label = repeat.tail(3).assign(
        message_id=lambda f: f["message_id"] + "-at-label",
        sent_at=lambda f: f["sent_at"] + backfill.DEFAULT_LABEL_DELAY,
    )
    return pd.concat([corpus, same_time, at_label], ignore_index=True)


@pytest.fixture(scope="module")
def fixture_corpus_set(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("leakage-corpus")
    build_corpus(FIXTURE, data_dir)
    corpus = _with_edge_cases(load_corpus(data_dir))
    # the whole fixture, both periods: later events exist for every training row to leak from
    backfill.run("all", data_dir=data_dir, corpus=corpus)
    messages, labels = backfill.corpus_events(corpus, "all")
    rows = corpus[["message_id", "sender_id", "sent_at", "label", "subject", "body"]]
    built = build_training_set(rows.sample(frac=1.0, random_state=7), data_dir=data_dir)
    return built, messages, labels, data_dir


def test_fixture_training_set_has_one_row_per_message(fixture_corpus_set):
    built, messages, _, _ = fixture_corpus_set
    assert len(built) == len(messages)
    assert built["message_id"].is_unique


def test_fixture_corpus_has_the_cases_that_leak_first(fixture_corpus_set):
    _, messages, labels, _ = fixture_corpus_set
    assert messages.duplicated(["sender_id", "sent_at"]).any(), "no equal sent_at"
    at_label = messages.merge(
        labels, left_on=["sender_id", "sent_at"], right_on=["sender_id", "labeled_at"]
    )
    assert len(at_label), "no message sent at the instant a label of its sender arrives"
    with_next = messages.sort_values("sent_at").assign(
        next_sent_at=lambda m: m.groupby("sender_id")["sent_at"].shift(-1)
    )
    labelled_before_next = with_next.merge(labels, on=["message_id", "sender_id"])
    assert (labelled_before_next["labeled_at"] < labelled_before_next["next_sent_at"]).any()


def test_every_sender_feature_equals_the_naive_value_from_strictly_earlier_events(
    fixture_corpus_set,
):
    built, messages, labels, _ = fixture_corpus_set
    mismatches = []
    for row in built.itertuples(index=False):
        expected = _naive_sender_features(messages, labels, row.sender_id, row.sent_at)
        for name, value in expected.items():
            got = getattr(row, name)
            same = (math.isnan(value) and math.isnan(got)) or got == pytest.approx(value)
            if not same:
                mismatches.append((row.message_id, name, got, value))
    assert not mismatches, f"{len(mismatches)} values differ, first: {mismatches[:5]}"


def test_no_message_counts_its_own_label(fixture_corpus_set):
    built, _, labels, _ = fixture_corpus_set
    # every label arrives after its message, so the labels a row counts all came before sent_at
    counted = built["sender_spam_labels_30d"].fillna(0) + built["sender_ham_labels_30d"].fillna(0)
    earlier = [
        int(((labels["sender_id"] == s) & (labels["labeled_at"] < t)).sum())
        for s, t in zip(built["sender_id"], built["sent_at"], strict=True)
    ]
    assert (counted <= pd.Series(earlier, index=built.index)).all()


def test_backfill_refuses_to_write_the_history_twice(fixture_corpus_set):
    *_, data_dir = fixture_corpus_set
    with pytest.raises(backfill.OfflineStoreNotEmpty, match="--replace"):
        backfill.run("all", data_dir=data_dir, corpus=load_corpus(data_dir))
