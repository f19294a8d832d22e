"""Comments re-timed onto the e-mail timeline (modstack/corpus/comments.py), on inline rows."""

from __future__ import annotations

import pandas as pd

from modstack.corpus.comments import COMMENT_SENDER_DOMAIN, comment_messages, retime


def _times(*stamps: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(stamps), utc=True))


def test_quantile_mapping_keeps_the_order_and_follows_the_mails_density() -> None:
    # three mails bunched in August, one in December: comments follow the bunch
    period = _times("2002-08-22", "2002-08-23", "2002-08-24", "2002-12-01")
    sent = _times("2012-03-01", "2012-03-02", "2012-06-01")
    ids = pd.Series(["a", "b", "c"])
    out = retime(sent, ids, period)
    assert list(out) == sorted(out)
    assert out.iloc[0] < pd.Timestamp("2002-08-25", tz="UTC")
    assert pd.Timestamp("2002-08-22", tz="UTC") <= out.min() <= out.max() <= period.max()


def test_undated_comments_get_a_stable_time_inside_the_period() -> None:
    period = _times("2002-01-01", "2002-08-21")
    sent = pd.Series([pd.NaT, pd.NaT], dtype="datetime64[ns, UTC]")
    ids = pd.Series(["x-1", "x-2"])
    first, again = retime(sent, ids, period), retime(sent, ids, period)
    assert list(first) == list(again)
    assert (first >= period.min()).all() and (first <= period.max()).all()


def test_comments_become_ham_for_spam_with_their_own_abuse_label() -> None:
    comments = pd.DataFrame(
        {
            "comment_id": ["insults-train-00001", "insults-test-00001"],
            "split": ["train", "test"],
            "sent_at": pd.to_datetime(["2012-03-01", None], utc=True),
            "text": ["you are an idiot", "nice goal"],
            "insult": [1, 0],
        }
    )
    periods = {"train": _times("2002-05-01", "2002-06-01"), "test": _times("2002-09-01")}
    rows = comment_messages(comments, periods).set_index("message_id")
    assert (rows["label"] == "ham").all()
    assert rows.loc["insults-train-00001", "label_abuse"] == "abuse"
    assert rows.loc["insults-test-00001", "label_abuse"] == "ok"
    assert rows.loc["insults-test-00001", "repaired"] == "retimed,undated"
    assert rows["sender_id"].str.endswith("@" + COMMENT_SENDER_DOMAIN).all()
    assert rows.loc["insults-test-00001", "group"] == "comments-test"


def test_a_comments_abuse_label_is_not_a_spam_reputation() -> None:
    from datetime import UTC, datetime

    from features.sender import SenderFeatureComputer, events_from_frames

    at = datetime(2002, 9, 1, tzinfo=UTC)
    messages = pd.DataFrame(
        {
            "message_id": ["c1"],
            "sender_id": ["c1@comments.invalid"],
            "subject": [""],
            "body": ["you are an idiot"],
            "sent_at": [at],
            "received_at": [at],
        }
    )
    labels = pd.DataFrame(
        {
            "message_id": ["c1", "c1"],
            "sender_id": ["c1@comments.invalid"] * 2,
            "label": ["abuse", "ham"],  # the abuse label first: it must not shadow the spam one
            "source": ["corpus", "corpus"],
            "labeled_at": [at, at],
            "received_at": [at, at],
        }
    )
    computer = SenderFeatureComputer()
    rows = [computer.apply(e)[1] for e in events_from_frames(messages, labels, "event_time")]
    assert computer.stats.other_policy == 1 and computer.stats.duplicates == 0
    assert rows[-1] is not None and rows[-1]["sender_ham_labels_30d"] == 1.0
