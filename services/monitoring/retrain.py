"""The retraining loop: persistent drift -> train a challenger on the freshest labelled data
-> if it passed the gate, ask the canary controller to roll it out.

Training runs in a separate process (spawned, one at a time): it is CPU-heavy and must neither
hold this process's GIL nor block consumption; a crash there cannot take monitoring down.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from services.monitoring.metrics import MonitoringMetrics
from services.monitoring.settings import MonitoringSettings

if TYPE_CHECKING:  # the training stack is imported only in the training process
    from pipelines.train import TrainResult

log = logging.getLogger("monitoring")


@dataclass(frozen=True)
class TrainingOutcome:
    """What monitoring needs from a training run (picklable across the process boundary)."""

    passed_gate: bool
    version: str | None
    detail: str


def train_in_child() -> TrainingOutcome:
    """Entry point of the training process: the training helper's `train_challenger` on all
    labelled data up to now (its time-based split validates on the freshest part)."""
    from pipelines.train import train_challenger

    result = train_challenger()
    return outcome_of(result)


def outcome_of(result: TrainResult) -> TrainingOutcome:
    """The part of a `TrainResult` monitoring acts on: did a version become the challenger."""
    gate = result.gate
    if gate is None:
        detail = "no gate verdict"
    elif gate.passed:
        detail = f"gate passed against {gate.compared_with}"
    else:
        detail = f"gate refused against {gate.compared_with}: " + "; ".join(gate.failures)
    return TrainingOutcome(
        passed_gate=result.challenger_set,
        version=result.version,
        detail=f"{detail} (run {result.run_id})",
    )


ROLLOUT_ACTOR = "monitoring:drift-retrain"


def start_rollout(settings: MonitoringSettings, version: str, reason: str) -> None:
    """Ask the canary controller (`POST /v1/rollout/start`) to roll `version` out; its
    rollout history records the start with this service as the actor. Raises on refusal."""
    response = httpx.post(
        f"{settings.canary_addr.rstrip('/')}/v1/rollout/start",
        # `reason` is kept by controllers that record it; the actor always is
        json={"challenger_version": version, "actor": ROLLOUT_ACTOR, "reason": reason},
        headers={"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"},
        timeout=30.0,
    )
    if response.is_error:
        raise RuntimeError(
            f"canary controller at {settings.canary_addr} refused the rollout of v{version}: "
            f"HTTP {response.status_code} {response.text[:300]}"
        )


class Retrainer:
    """Starts at most one training run at a time and follows it up when it ends."""

    def __init__(
        self,
        settings: MonitoringSettings,
        metrics: MonitoringMetrics,
        train: Callable[[], TrainingOutcome] = train_in_child,
        rollout: Callable[[MonitoringSettings, str, str], None] = start_rollout,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.train = train
        self.rollout = rollout
        self._pool: ProcessPoolExecutor | None = None
        self._running: Future[TrainingOutcome] | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._follower: threading.Thread | None = None
        self.history: list[dict[str, Any]] = []

    @property
    def running(self) -> bool:
        """True while a training run is in flight."""
        return self._running is not None and not self._running.done()

    def trigger(self, reason: str) -> bool:
        """Start a training run unless one is running; returns whether it started."""
        with self._lock:
            if self.running:
                log.info("retraining already running; drift trigger noted (%s)", reason)
                return False
            if self._pool is None:
                # spawn: a fresh interpreter, no copy of this process's threads and sockets
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn")
                )
            self.metrics.retrain_triggers.inc()
            log.warning("RETRAIN TRIGGERED: %s; training a challenger on fresh labels", reason)
            self.history.append({"event": "triggered", "reason": reason})
            future = self._pool.submit(self.train)
            self._running = future
            self._follower = threading.Thread(
                target=self._follow, args=(future, reason), name="retrain-follow", daemon=True
            )
            self._follower.start()
            return True

    def _follow(self, future: Future[TrainingOutcome], reason: str) -> None:
        try:
            outcome = future.result(timeout=self.settings.retrain_timeout_seconds)
        except FutureTimeout:
            self._record("error", f"training ran past {self.settings.retrain_timeout_seconds} s")
            return
        except Exception as exc:  # the child's exception, re-raised here
            if self._closing.is_set():  # close() ended the run: not a training failure
                log.info("retraining abandoned at shutdown (%s)", reason)
                return
            self._record("error", f"training failed: {type(exc).__name__}: {exc}")
            return
        if not outcome.passed_gate or outcome.version is None:
            self._record("gate_failed", f"challenger not registered: {outcome.detail}")
            return
        self._record("challenger", f"v{outcome.version} passed the gate: {outcome.detail}")
        if not self.settings.retrain_start_rollout:
            return
        try:
            self.rollout(self.settings, outcome.version, f"retrained on drift: {reason}")
        except (httpx.HTTPError, RuntimeError) as exc:
            self._record("rollout_failed", str(exc))
            return
        self._record("rollout_started", f"canary rollout of v{outcome.version} started")

    def _record(self, outcome: str, detail: str) -> None:
        self.metrics.retrain_runs.labels(outcome).inc()
        self.history.append({"event": outcome, "detail": detail})
        level = logging.INFO if outcome in ("challenger", "rollout_started") else logging.WARNING
        log.log(level, "retraining %s: %s", outcome, detail)

    def close(self) -> None:
        """Stop the training process (a run in flight is abandoned)."""
        if self._pool is None:
            return
        self._closing.set()
        # ProcessPoolExecutor has no public way to stop a busy worker before Python 3.14
        # (`terminate_workers`); a training run must not outlive the service.
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._follower is not None:
            self._follower.join(timeout=10)
