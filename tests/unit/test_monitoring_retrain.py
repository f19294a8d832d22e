"""The retraining loop's follow-up: a passed gate starts a rollout, a refused one does not,
a failing run is counted, and a second trigger while one runs starts nothing."""

from __future__ import annotations

import threading
import time

from modstack.waits import wait_until
from services.monitoring.metrics import MonitoringMetrics
from services.monitoring.retrain import Retrainer, TrainingOutcome
from services.monitoring.settings import MonitoringSettings


def train_passes() -> TrainingOutcome:
    """Runs in the spawned training process."""
    return TrainingOutcome(passed_gate=True, version="5", detail="gate passed against v4")


def train_refused() -> TrainingOutcome:
    return TrainingOutcome(passed_gate=False, version=None, detail="gate refused")


def train_fails() -> TrainingOutcome:
    raise FileNotFoundError("no labelled data")


def train_slowly() -> TrainingOutcome:
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
