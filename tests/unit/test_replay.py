"""The replay's ordering and batching: event-time order, labels after their delay, slices that
respect the batch size and request size, and 422 answers mapped back to the refused items."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from pipelines.backfill import corpus_events
from pipelines.demo.replay import MAX_REQUEST_BYTES, _refused_indexes, chunks, timeline


def corpus(n: int, body: str = "hi", minutes: int = 30) -> pd.DataFrame:
    start = pd.Timestamp("2002-05-01", tz="UTC")
    return pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(n)],
            "sender_id": [f"s{i % 2}@x" for i in range(n)],
            "subject": ["s"] * n,
            "body": [body] * n,
            "sent_at": [start + timedelta(minutes=minutes * i) for i in range(n)],
            "label": ["spam", "ham"] * (n // 2) + ["spam"] * (n % 2),
            "period": ["history"] * n,
        }
    )


def test_labels_follow_their_message_by_the_delay_in_event_time_order() -> None:
    messages, labels = corpus_events(corpus(4), "history", timedelta(hours=1))
    events = timeline(messages, labels)
    kinds, payloads = events["kind"], events["payload"]
    order = [(kind, p["message_id"]) for kind, p in zip(kinds, payloads, strict=True)]
    # m0 at 0:00, m1 0:30, m2 1:00 = label of m0 (message first), m3 1:30 = label of m1, ...
    assert order == [
        ("message", "m0"),
        ("message", "m1"),
        ("message", "m2"),
        ("label", "m0"),
        ("message", "m3"),
        ("label", "m1"),
        ("label", "m2"),
        ("label", "m3"),
    ]
    assert events["time"].is_monotonic_increasing
    first_label = events[events["kind"] == "label"]["payload"].iloc[0]
    assert first_label["labeled_at"] == "2002-05-01T01:00:00+00:00"


def test_slices_respect_the_batch_size_and_keep_every_event_once() -> None:
    messages, labels = corpus_events(corpus(25), "history", timedelta(hours=6))
    events = timeline(messages, labels)
    slices = list(chunks(events, batch_size=7))
    assert all(len(s) <= 7 for s in slices)
    assert pd.concat(slices).index.tolist() == events.index.tolist()


def test_slices_stay_under_the_request_size_with_large_bodies() -> None:
    big = "x" * (MAX_REQUEST_BYTES // 4)
    messages, labels = corpus_events(corpus(10, body=big), "history", timedelta(hours=6))
    slices = list(chunks(timeline(messages, labels), batch_size=100))
    assert len(slices) > 1
    assert sum(len(s) for s in slices) == 20


def test_a_422_on_a_batch_names_the_items_to_drop() -> None:
    answer = {
        "detail": [
            {"loc": ["body", "messages", 3, "sent_at"], "msg": "in the future"},
            {"loc": ["body", "messages", 3, "subject"], "msg": "too long"},
            {"loc": ["body", "messages", 0, "body"], "msg": "too long"},
        ]
    }
    assert _refused_indexes(answer, "messages") == {
        3: ["sent_at: in the future", "subject: too long"],
        0: ["body: too long"],
    }
    assert (
        _refused_indexes({"detail": [{"loc": ["body", "messages"], "msg": "x"}]}, "messages") == {}
    )
