"""A due retrain starts when the labels its gate needs are there and the minimum wait is over."""

from __future__ import annotations

from modstack.evidence import EvidenceNeed
from services.monitoring.retrain_due import DueRetrain
from tests.support.clock import ManualClock


def test_due_then_ready_when_the_labels_and_the_minimum_wait_are_there() -> None:
    clock = ManualClock(1000.0)
    due = DueRetrain(need=EvidenceNeed(), min_wait_s=60, clock=clock)
    assert not due.ready() and due.waiting_for() == ""
    assert due.mark_due("drift") and not due.mark_due("drift again")
    needed = due.evidence.needed
    assert due.waiting_for() == (
        f"waiting for {needed['spam']} more spam and {needed['ham']} more ham labels"
    )
    for i in range(needed["spam"]):
        due.count_label(f"s{i}", True)
    for i in range(needed["ham"]):
        due.count_label(f"h{i}", False)
    assert not due.ready()  # evidence there, 60 s not yet over
    assert "waiting 60 s more" in due.waiting_for()
    clock.now += 60
    assert due.ready()


def test_settled_needs_fresh_drift_and_fresh_labels() -> None:
    due = DueRetrain()
    due.mark_due("drift")
    due.count_label("m1", True)
    due.settled()
    assert not due.due and due.evidence.counts == {"spam": 0, "ham": 0}
    due.count_label("m1", True)  # the id set was cleared with the counts
    assert due.evidence.counts["spam"] == 1


def test_counting_stops_once_every_class_has_enough_and_resumes_when_more_are_needed() -> None:
    due = DueRetrain(need=EvidenceNeed(spam_noise=0.5, ham_noise=0.5))
    needed = dict(due.evidence.needed)
    for i in range(needed["spam"] + 5):
        due.count_label(f"s{i}", True)
    for i in range(needed["ham"]):
        due.count_label(f"h{i}", False)
    assert due.evidence.enough()
    kept = len(due._labelled)
    due.count_label("late", True)
    assert len(due._labelled) == kept  # no id kept once enough have arrived
    due.holdout_short({"spam": 3, "ham": 0})  # the retrain found its holdout 3 spam short
    before = due.evidence.counts["spam"]
    due.count_label("late", True)
    assert due.evidence.counts["spam"] == before + 1
