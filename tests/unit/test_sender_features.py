"""Per-sender event-time features on hand-made event sequences (no Feast, no Kafka)."""

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from features.sender import (
    ACTIVITY_FEATURES,
    REPUTATION_FEATURES,
    ROW_TICK,
    SenderFeatureComputer,
    events_from_frames,
    normalize_subject,
)
from modstack.events import LabelEvent, MessageEvent

T0 = datetime(2002, 3, 1, 12, 0, tzinfo=UTC)
SENDER = "alice@example.com"


def fold_events(
    computer: SenderFeatureComputer, events: Iterable[MessageEvent | LabelEvent]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Apply events in the given order; yield (view name, row) for every row to push."""
    for event in events:
        view, row = computer.apply(event)
        if row is not None:
            yield view, row


def message(
    message_id: str,
    at: timedelta,
    subject: str = "hello",
    body: str = "plain text",
    sender: str = SENDER,
) -> MessageEvent:
    return MessageEvent(
        message_id=message_id,
        sender_id=sender,
        subject=subject,
        body=body,
        sent_at=T0 + at,
        received_at=T0 + at,
    )


def label(
    message_id: str,
    at: timedelta,
    value: str = "spam",
    source: str = "moderator",
    sender: str = SENDER,
) -> LabelEvent:
    return LabelEvent(
        message_id=message_id,
        sender_id=sender,
        label=value,
        source=source,
        labeled_at=T0 + at,
        received_at=T0 + at,
    )


H = timedelta(hours=1)
D = timedelta(days=1)


def test_activity_row_has_the_sender_a_timestamp_after_the_event_and_every_feature():
    row = SenderFeatureComputer().apply_message(message("m1", timedelta(0)))
    assert row is not None
    assert row["sender_id"] == SENDER
    assert row["event_timestamp"] == T0 + ROW_TICK
    assert set(row) == {"sender_id", "event_timestamp", *ACTIVITY_FEATURES}
    assert all(isinstance(row[f], float) for f in ACTIVITY_FEATURES)


def test_message_windows_count_messages_in_the_last_hour_day_and_week():
    computer = SenderFeatureComputer()
    last = 7 * D - 30 * timedelta(minutes=1)
    for i, at in enumerate([timedelta(0), 2 * D, 6 * D + 20 * H, last]):
        row = computer.apply_message(message(f"m{i}", at))
    # as of 7d - 30min: all four within 7 days; within 24h: the last two; within 1h: the last one
    assert row["sender_msgs_7d"] == 4.0
    assert row["sender_msgs_24h"] == 2.0
    assert row["sender_msgs_1h"] == 1.0
    assert row["sender_msgs_total"] == 4.0
    row = computer.apply_message(message("m9", 7 * D + H))
    # m0 (at 0) is now more than 7 days old
    assert row["sender_msgs_7d"] == 4.0
    assert row["sender_msgs_total"] == 5.0


def test_window_boundary_is_exclusive_at_the_start():
    computer = SenderFeatureComputer()
    computer.apply_message(message("m1", timedelta(0)))
    row = computer.apply_message(message("m2", H))
    assert row["sender_msgs_1h"] == 1.0  # m1 is exactly one hour old: outside (as_of - 1h, as_of]
    assert row["sender_msgs_24h"] == 2.0


def test_senders_are_counted_separately():
    computer = SenderFeatureComputer()
    computer.apply_message(message("a1", timedelta(0)))
    row = computer.apply_message(message("b1", timedelta(0), sender="bob@example.com"))
    assert row["sender_msgs_total"] == 1.0
    assert len(computer) == 2


def test_duplicate_message_id_is_counted_once_and_returns_none():
    computer = SenderFeatureComputer()
    first = computer.apply_message(message("m1", timedelta(0)))
    assert computer.apply_message(message("m1", timedelta(0))) is None
    assert computer.apply_message(message("m1", H)) is None  # same id, other time: still a repeat
    row = computer.apply_message(message("m2", 2 * H))
    assert first is not None and row["sender_msgs_total"] == 2.0
    assert computer.stats.duplicates == 2


def test_distinct_subjects_ignore_reply_prefixes_case_and_spacing():
    computer = SenderFeatureComputer()
    for i, subject in enumerate(["Cheap pills", "RE: cheap  PILLS", "Fwd: Re: Cheap pills", "Hi"]):
        row = computer.apply_message(message(f"m{i}", i * H, subject=subject))
    assert row["sender_distinct_subjects_recent"] == 2.0
    assert normalize_subject(" Re[2]: Fw: Hello   World ") == "hello world"


def test_link_and_html_ratios_cover_the_recent_messages_only():
    computer = SenderFeatureComputer()
    bodies = ["see http://x.com", "<html><body>hi</body></html>", "plain", "www.y.org"]
    for i, body in enumerate(bodies):
        row = computer.apply_message(message(f"m{i}", i * H, body=body))
    assert row["sender_link_ratio_recent"] == pytest.approx(2 / 4)
    assert row["sender_html_ratio_recent"] == pytest.approx(1 / 4)
    for i in range(20):  # 20 plain messages push the old ones out of the recent window
        row = computer.apply_message(message(f"p{i}", (10 + i) * H, body="plain"))
    assert row["sender_link_ratio_recent"] == 0.0
    assert row["sender_html_ratio_recent"] == 0.0


def test_seconds_since_first_seen_uses_event_time():
    computer = SenderFeatureComputer()
    assert computer.apply_message(message("m1", H))["sender_seconds_since_first_seen"] == 0.0
    row = computer.apply_message(message("m2", 3 * H))
    assert row["sender_seconds_since_first_seen"] == 2 * 3600.0


def test_labels_count_from_labeled_at_for_thirty_days():
    computer = SenderFeatureComputer()
    computer.apply_message(message("m1", timedelta(0)))
    computer.apply_message(message("m2", H))
    row = computer.apply_label(label("m1", 2 * H, "spam"))
    assert row["event_timestamp"] == T0 + 2 * H + ROW_TICK
    assert (row["sender_spam_labels_30d"], row["sender_ham_labels_30d"]) == (1.0, 0.0)
    row = computer.apply_label(label("m2", 3 * H, "ham"))
    assert (row["sender_spam_labels_30d"], row["sender_ham_labels_30d"]) == (1.0, 1.0)
    assert row["sender_label_spam_ratio_30d"] == pytest.approx(2 / 4)
    computer.apply_message(message("m3", 31 * D))
    row = computer.apply_label(label("m3", 31 * D + H, "ham"))
    # the spam label (at 2h) is older than 30 days now; the ham label at 3h as well
    assert (row["sender_spam_labels_30d"], row["sender_ham_labels_30d"]) == (0.0, 1.0)


def test_label_spam_ratio_is_smoothed_and_reads_half_without_labels():
    computer = SenderFeatureComputer()
    computer.apply_message(message("m1", timedelta(0)))
    computer.apply_message(message("m2", timedelta(0)))
    row = computer.apply_label(label("m1", H))
    assert row["sender_label_spam_ratio_30d"] == pytest.approx(2 / 3)
    row = computer.apply_label(label("m2", H))
    assert row["sender_label_spam_ratio_30d"] == pytest.approx(3 / 4)
    assert set(row) == {"sender_id", "event_timestamp", *REPUTATION_FEATURES}


def test_message_rows_do_not_change_label_counts_and_label_rows_do_not_change_activity():
    computer = SenderFeatureComputer()
    activity = computer.apply_message(message("m1", timedelta(0)))
    reputation = computer.apply_label(label("m1", H))
    assert not set(activity) & set(REPUTATION_FEATURES)
    assert not set(reputation) & set(ACTIVITY_FEATURES)


def test_repeated_label_from_the_same_source_counts_once():
    computer = SenderFeatureComputer()
    computer.apply_message(message("m1", timedelta(0)))
    assert computer.apply_label(label("m1", H, "spam", "user_report")) is not None
    assert computer.apply_label(label("m1", 2 * H, "spam", "user_report")) is None
    row = computer.apply_label(label("m2-unknown", 3 * H, "ham", "user_report"))
    assert (row["sender_spam_labels_30d"], row["sender_ham_labels_30d"]) == (1.0, 1.0)


def test_latest_label_of_a_message_wins_across_sources():
    computer = SenderFeatureComputer()
    computer.apply_message(message("m1", timedelta(0)))
    computer.apply_label(label("m1", H, "spam", "user_report"))
    row = computer.apply_label(label("m1", 2 * H, "ham", "moderator"))
    assert (row["sender_spam_labels_30d"], row["sender_ham_labels_30d"]) == (0.0, 1.0)
    # a decision stamped earlier but arriving later does not override the newer one
    computer.apply_message(message("m2", timedelta(0)))
    computer.apply_label(label("m2", 5 * H, "spam", "moderator"))
    row = computer.apply_label(label("m2", 4 * H, "ham", "user_report"))
    assert (row["sender_spam_labels_30d"], row["sender_ham_labels_30d"]) == (1.0, 1.0)


def test_out_of_order_message_counts_in_its_windows_and_its_row_is_stamped_after_the_last_row():
    computer = SenderFeatureComputer()
    computer.apply_message(message("m1", timedelta(0)))
    newest = computer.apply_message(message("m2", 10 * H))
    late = computer.apply_message(message("m3", 9.5 * H))  # arrives late, half an hour old
    assert late["event_timestamp"] > newest["event_timestamp"]
    assert late["sender_msgs_1h"] == 2.0  # windows are as of the sender's clock (10h)
    assert late["sender_msgs_total"] == 3.0
    # first seen moves back when a late message is older than anything seen
    older = computer.apply_message(message("m0", -H))
    assert older["sender_seconds_since_first_seen"] == 11 * 3600.0


def test_events_beyond_allowed_lateness_are_dropped():
    computer = SenderFeatureComputer(allowed_lateness=timedelta(days=30))
    computer.apply_message(message("m1", 40 * D))
    assert computer.apply_message(message("m0", timedelta(0))) is None
    assert computer.apply_label(label("m0", D)) is None
    assert computer.stats.too_late == 2
    with pytest.raises(ValueError, match="longest window"):
        SenderFeatureComputer(allowed_lateness=timedelta(days=1))


def test_rows_of_a_sender_have_strictly_increasing_timestamps_even_on_equal_event_times():
    computer = SenderFeatureComputer()
    rows = [
        computer.apply_message(message("m1", timedelta(0))),
        computer.apply_message(message("m2", timedelta(0))),
        computer.apply_label(label("m1", timedelta(0))),
        computer.apply_message(message("m3", timedelta(0))),
    ]
    stamps = [row["event_timestamp"] for row in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert min(stamps) > T0  # all strictly after the shared event time
    assert rows[1]["sender_msgs_1h"] == 2.0


def test_state_is_pruned_but_recent_messages_are_kept():
    computer = SenderFeatureComputer()
    for i in range(30):
        computer.apply_message(message(f"old{i}", i * timedelta(minutes=1)))
    row = computer.apply_message(message("new", 100 * D))
    state = computer._senders[SENDER]
    assert len(state.messages) == 20  # 19 old ones kept for the recent-N ratios, plus the new one
    assert row["sender_msgs_7d"] == 1.0
    assert row["sender_msgs_total"] == 31.0


def test_folding_a_log_in_seq_order_rebuilds_the_same_rows_as_the_live_computer():
    live = SenderFeatureComputer()
    events = [
        message("m1", timedelta(0)),
        message("m2", H, body="http://x.io"),
        label("m1", 2 * H),
        message("m2", H),  # redelivered
        message("m0", 30 * timedelta(minutes=1)),  # late
        label("m2", 3 * H, "ham", "user_report"),
    ]
    live_rows = list(fold_events(live, events))
    messages = pd.DataFrame(
        [{**e.model_dump(), "seq": i} for i, e in enumerate(events) if isinstance(e, MessageEvent)]
    ).drop_duplicates("message_id")
    labels = pd.DataFrame(
        [{**e.model_dump(), "seq": i} for i, e in enumerate(events) if isinstance(e, LabelEvent)]
    )
    rebuilt_rows = list(fold_events(SenderFeatureComputer(), events_from_frames(messages, labels)))
    assert rebuilt_rows == live_rows
    assert len(live_rows) == 5


def test_event_time_order_puts_messages_before_labels_on_equal_times():
    messages = pd.DataFrame(
        [{"message_id": "m2", "sender_id": SENDER, "subject": "", "body": "", "sent_at": T0 + H},
         {"message_id": "m1", "sender_id": SENDER, "subject": "", "body": "", "sent_at": T0}]
    )  # fmt: skip
    labels = pd.DataFrame(
        [{"message_id": "m1", "sender_id": SENDER, "label": "spam", "labeled_at": T0 + H}]
    )
    events = events_from_frames(messages, labels, order_by="event_time")
    assert [(type(e).__name__, e.message_id) for e in events] == [
        ("MessageEvent", "m1"),
        ("MessageEvent", "m2"),
        ("LabelEvent", "m1"),
    ]
    assert events[2].source == "corpus"


def report(message_id: str, at: timedelta, reporter: str, value: str = "spam") -> LabelEvent:
    return LabelEvent(
        message_id=message_id,
        sender_id=SENDER,
        label=value,
        source="user_report",
        reporter_id=reporter,
        labeled_at=T0 + at,
        received_at=T0 + at,
    )


def test_poisoning_1000_reports_from_one_reporter_move_reputation_by_at_most_the_cap() -> None:
    from features.sender import REPORTS_PER_REPORTER

    computer = SenderFeatureComputer()
    for i in range(1000):
        computer.apply_message(message(f"m{i}", timedelta(seconds=i)))
    before = computer.apply_label(report("m0", H, "honest-user", "ham"))
    assert before is not None
    last = before
    for i in range(1000):
        row = computer.apply_label(report(f"m{i}", H + timedelta(seconds=i + 1), "attacker"))
        assert row is not None
        last = row
    assert last["sender_spam_labels_30d"] - before["sender_spam_labels_30d"] <= REPORTS_PER_REPORTER
    assert last["sender_ham_labels_30d"] == before["sender_ham_labels_30d"]
    # with the default cap of 1 the ratio moves from 1/3 to 2/4, not to ~1
    assert last["sender_label_spam_ratio_30d"] == pytest.approx(0.5)


def test_distinct_reporters_each_count_and_a_moderator_decision_overrides_reports() -> None:
    computer = SenderFeatureComputer()
    computer.apply_message(message("m1", timedelta(0)))
    computer.apply_message(message("m2", timedelta(minutes=1)))
    for n in range(3):
        row = computer.apply_label(report("m1", H + timedelta(minutes=n), f"user-{n}"))
    assert row is not None and row["sender_spam_labels_30d"] == 3.0
    # the same reporter again on the same message is a duplicate
    assert computer.apply_label(report("m1", 2 * H, "user-0")) is None
    decided = computer.apply_label(label("m1", 3 * H, "ham"))
    assert decided is not None
    assert (decided["sender_spam_labels_30d"], decided["sender_ham_labels_30d"]) == (0.0, 1.0)


def test_the_cap_per_reporter_is_a_setting() -> None:
    computer = SenderFeatureComputer(reports_per_reporter=3)
    for i in range(10):
        computer.apply_message(message(f"m{i}", timedelta(seconds=i)))
    rows = [computer.apply_label(report(f"m{i}", H, "heavy-reporter")) for i in range(10)]
    assert rows[-1] is not None and rows[-1]["sender_spam_labels_30d"] == 3.0
    with pytest.raises(ValueError, match="reports_per_reporter"):
        SenderFeatureComputer(reports_per_reporter=0)
