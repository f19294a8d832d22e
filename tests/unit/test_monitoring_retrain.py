"""The retraining loop's follow-up: a passed gate starts a rollout, a refused one does not,
a failing run is counted, and a second trigger while one runs starts nothing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from modstack.waits import wait_until
from services.monitoring.metrics import MonitoringMetrics
from services.monitoring.retrain import Retrainer, TrainingOutcome
from services.monitoring.settings import MonitoringSettings


def train_passes(end: datetime | None = None) -> TrainingOutcome:
    """Runs in the spawned training process."""
    return TrainingOutcome(passed_gate=True, version="5", detail="gate passed against v4")


def train_refused(end: datetime | None = None) -> TrainingOutcome:
    return TrainingOutcome(passed_gate=False, version=None, detail="gate refused")


def train_fails(end: datetime | None = None) -> TrainingOutcome:
    raise FileNotFoundError("no labelled data")


def train_slowly(end: datetime | None = None) -> TrainingOutcome:
    time.sleep(3)
    return train_refused()


class Rollouts:
    """Records the rollouts the retrainer asks for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.done = threading.Event()

    def __call__(self, settings: MonitoringSettings, version: str, reason: str) -> None:
        self.calls.append((version, reason))
        self.done.set()


def runs(metrics: MonitoringMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("monitoring_retrain_runs_total", {"outcome": outcome})
    return value or 0.0


def make(train, rollouts=None) -> tuple[Retrainer, MonitoringMetrics]:
    metrics = MonitoringMetrics()
    retrainer = Retrainer(
        MonitoringSettings(), metrics, train=train, rollout=rollouts or Rollouts()
    )
    return retrainer, metrics


def test_a_challenger_that_passed_the_gate_is_rolled_out() -> None:
    rollouts = Rollouts()
    retrainer, metrics = make(train_passes, rollouts)
    try:
        assert retrainer.trigger("drift in 3 windows")
        wait_until(lambda: runs(metrics, "rollout_started") == 1, 60, "rollout started")
    finally:
        retrainer.close()
    assert rollouts.calls == [("5", "retrained on drift: drift in 3 windows")]
    assert metrics.registry.get_sample_value("monitoring_retrain_triggers_total") == 1
    assert runs(metrics, "challenger") == 1


def test_a_refused_challenger_is_not_rolled_out() -> None:
    rollouts = Rollouts()
    retrainer, metrics = make(train_refused, rollouts)
    try:
        retrainer.trigger("drift")
        wait_until(lambda: runs(metrics, "gate_failed") == 1, 60, "gate refusal recorded")
    finally:
        retrainer.close()
    assert rollouts.calls == []


def test_a_failing_training_run_is_counted_not_raised() -> None:
    retrainer, metrics = make(train_fails)
    try:
        retrainer.trigger("drift")
        wait_until(lambda: runs(metrics, "error") == 1, 60, "training error recorded")
    finally:
        retrainer.close()
    assert "no labelled data" in retrainer.history[-1]["detail"]


def test_no_second_run_starts_while_one_is_running() -> None:
    retrainer, metrics = make(train_slowly)
    try:
        assert retrainer.trigger("first")
        assert not retrainer.trigger("second")
        assert metrics.registry.get_sample_value("monitoring_retrain_triggers_total") == 1
    finally:
        retrainer.close()
    # the run close() abandoned is not a failed training run
    assert runs(metrics, "error") == 0
    assert [e["event"] for e in retrainer.history] == ["triggered"]


def test_a_due_retrain_waits_for_the_labels_its_gate_needs_then_starts() -> None:
    rollouts = Rollouts()
    retrainer, metrics = make(train_passes, rollouts)
    needed = retrainer.due.evidence.needed
    retrainer.mark_due("dataset drift in 3 consecutive windows")
    assert not retrainer.running and not rollouts.calls
    assert retrainer.history[-1]["event"] == "due"
    assert (
        f"waiting for {needed['spam']} more spam and {needed['ham']} more ham labels"
        in (retrainer.history[-1]["detail"])
    )
    missing = metrics.registry.get_sample_value(
        "monitoring_retrain_labels_missing", {"label_class": "spam"}
    )
    assert missing == needed["spam"]
    for i in range(needed["ham"]):
        retrainer.count_label(f"ham-{i}", is_spam=False)
    for i in range(needed["spam"] - 1):
        retrainer.count_label(f"spam-{i}", is_spam=True)
    retrainer.count_label("spam-0", is_spam=True)  # a second report on one message: one row
    assert not retrainer.running and not rollouts.calls
    retrainer.count_label("spam-last", is_spam=True)
    assert rollouts.done.wait(10), retrainer.history
    assert [e["event"] for e in retrainer.history][-3:] == [
        "triggered",
        "challenger",
        "rollout_started",
    ]
    assert not retrainer.due.due  # settled: the next retrain needs fresh drift and labels
    retrainer.close()


def waits_for_labels(end: datetime | None = None) -> TrainingOutcome:
    return TrainingOutcome(
        passed_gate=False, version=None, detail="holdout too small", missing={"spam": 6}
    )


def test_a_retrain_whose_holdout_came_up_short_stays_due_for_more_labels() -> None:
    retrainer, metrics = make(waits_for_labels)
    retrainer.due.evidence.needed.update({"spam": 1, "ham": 1})
    retrainer.mark_due("drift")
    retrainer.count_label("h", is_spam=False)
    retrainer.count_label("s", is_spam=True)
    wait_until(lambda: runs(metrics, "waiting") == 1, 10, "the waiting outcome")
    assert retrainer.due.due
    # 6 holdout rows short at a 30 % holdout: 20 more spam labels
    assert retrainer.due.evidence.missing() == {"spam": 20, "ham": 0}
    assert not retrainer.start_when_ready()
    retrainer.close()


def test_the_retrain_reads_what_had_arrived_when_its_evidence_was_complete() -> None:
    # on a busy machine the training process starts late: it must not read the labels that
    # arrived meanwhile (they would make another model than the same story on a quiet machine)
    started_with: list[datetime | None] = []

    def records(logged_before: datetime | None = None) -> TrainingOutcome:
        started_with.append(logged_before)
        return train_refused()

    retrainer, metrics = make(records)
    now = [1_000.0]
    retrainer.due.clock = lambda: now[0]
    retrainer.due.evidence.needed.update({"spam": 1, "ham": 1})
    retrainer.mark_due("drift")
    retrainer.count_label("ham-0", is_spam=False)
    now[0] = 1_060.0
    retrainer.count_label("spam-0", is_spam=True)  # the evidence is complete here
    wait_until(lambda: runs(metrics, "gate_failed") == 1, 10, "the run's verdict")
    assert started_with == [datetime.fromtimestamp(1_060.0, UTC)]
    assert "training on what had arrived by 00:17:40 UTC" in str(retrainer.history[-2]["reason"])
    # settled: the next retrain's moment is set by its own evidence
    assert retrainer.due.evidence_complete_at is None
    retrainer.close()
