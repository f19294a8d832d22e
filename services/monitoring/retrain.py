"""The retraining loop: persistent drift makes a retrain due -> it starts once the labels its
gate needs have arrived (`retrain_due`) -> train a challenger on the freshest labelled data
-> if it passed the gate, ask the canary controller to roll it out.

Training runs as its own process, `python -m pipelines.train --retrain`, as a Kubernetes Job
would: it is CPU-heavy and must neither hold this process's GIL nor block consumption, a crash
there cannot take monitoring down, and monitoring never imports the training code.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from modstack.evidence import CLASSES
from services.monitoring.metrics import MonitoringMetrics
from services.monitoring.retrain_due import DueRetrain
from services.monitoring.settings import MonitoringSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    """What monitoring needs from a training run (the JSON `pipelines.train --outcome-json`
    writes)."""

    passed_gate: bool
    version: str | None
    detail: str
    # holdout rows per class the retrain still lacked (it trained nothing): still due
    missing: dict[str, int] | None = None


class TrainingJob:
    """`python -m pipelines.train --retrain` in a child process; its outcome read from JSON."""

    def __init__(self, command: list[str] | None = None, nice: int = 0) -> None:
        self.command = command or [sys.executable, "-m", "pipelines.train", "--retrain"]
        self.nice = nice
        self._process: subprocess.Popen[bytes] | None = None

    def _lower_priority(self) -> None:
        # runs in the child between fork and exec: only the training process is niced
        os.nice(self.nice)

    def __call__(self, logged_before: datetime | None = None) -> TrainingOutcome:
        """Run the retrain on what was logged before `logged_before` (None: all of it)."""
        until = ["--logged-before", logged_before.isoformat()] if logged_before else []
        with tempfile.TemporaryDirectory(prefix="modstack-retrain-") as scratch:
            outcome_path = Path(scratch) / "outcome.json"
            stderr_path = Path(scratch) / "stderr.log"
            with stderr_path.open("wb") as stderr:
                self._process = subprocess.Popen(
                    [*self.command, *until, "--outcome-json", str(outcome_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    preexec_fn=self._lower_priority if self.nice else None,
                )
                code = self._process.wait()
            if code != 0 or not outcome_path.exists():
                tail = stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(
                    f"{' '.join(self.command)} exited with code {code}: " + " | ".join(tail)
                )
            return TrainingOutcome(**json.loads(outcome_path.read_text()))

    def terminate(self) -> None:
        """Stop a run in flight (monitoring is shutting down)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()


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
        train: Callable[[datetime | None], TrainingOutcome] | None = None,
        rollout: Callable[[MonitoringSettings, str, str], None] = start_rollout,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.train = train or TrainingJob(nice=settings.retrain_nice)
        self.rollout = rollout
        # The training thread is started here, by the thread that builds the monitor: threads
        # and processes inherit their creator's nice value on Linux, and the drift-report
        # thread that triggers retraining runs niced (MONITORING_REPORT_NICE).
        # One thread waits on the training process: at most one run at a time.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrain")
        self._pool.submit(lambda: None).result()
        self._running: Future[TrainingOutcome] | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._follower: threading.Thread | None = None
        self.history: list[dict[str, Any]] = []
        self.due = DueRetrain(min_wait_s=settings.retrain_min_wait_seconds)
        self._export_due()

    @property
    def running(self) -> bool:
        """True while a training run is in flight."""
        return self._running is not None and not self._running.done()

    def mark_due(self, reason: str) -> None:
        """Persistent drift: a retrain is due; it starts when its evidence is there."""
        with self._lock:
            if not self.due.mark_due(reason):
                return
            waiting = self.due.waiting_for() or "evidence there"
            self.history.append(
                {"event": "due", "detail": f"{waiting}: {self.due.evidence_line()}; {reason}"}
            )
            log.warning("retraining due: %s; %s", reason, waiting)
            self._export_due()
        self.start_when_ready()

    def count_label(self, message_id: str, is_spam: bool) -> None:
        """A label on a served message arrived (evidence for the next retrain)."""
        with self._lock:
            self.due.count_label(message_id, is_spam)
            self._export_due()
        self.start_when_ready()

    def start_when_ready(self) -> bool:
        """Start the due retrain once its evidence is there; True when it started."""
        with self._lock:
            if not self.due.ready() or self.running:
                return False
            reason = f"evidence there: {self.due.evidence_line()}; {self.due.reason}"
            until = self.due.evidence_complete_at
        if until is not None:
            reason += f"; training on what had arrived by {until:%H:%M:%S} UTC"
        return self.trigger(reason, until)

    def _export_due(self) -> None:
        self.metrics.retrain_due.set(1.0 if self.due.due else 0.0)
        missing = self.due.evidence.missing() if self.due.due else {}
        for label_class in CLASSES:
            self.metrics.retrain_labels_missing.labels(label_class).set(missing.get(label_class, 0))

    def trigger(self, reason: str, logged_before: datetime | None = None) -> bool:
        """Start a training run (on what was logged before `logged_before`) unless one is
        running; returns whether it started."""
        with self._lock:
            if self.running:
                log.info("retraining already running; drift trigger noted (%s)", reason)
                return False
            self.metrics.retrain_triggers.inc()
            log.warning("RETRAIN TRIGGERED: %s; training a challenger on fresh labels", reason)
            self.history.append({"event": "triggered", "reason": reason})
            future = self._pool.submit(self.train, logged_before)
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
            self._settle("error", f"training ran past {self.settings.retrain_timeout_seconds} s")
            return
        except Exception as exc:  # the training process failed
            if self._closing.is_set():  # close() ended the run: not a training failure
                log.info("retraining abandoned at shutdown (%s)", reason)
                return
            self._settle("error", f"training failed: {type(exc).__name__}: {exc}")
            return
        if self._closing.is_set():
            log.info("retraining abandoned at shutdown (%s)", reason)
            return
        if outcome.missing:
            with self._lock:
                self.due.holdout_short({c: outcome.missing.get(c, 0) for c in CLASSES})
                self._export_due()
            self._record("waiting", f"{outcome.detail}; still due: {self.due.waiting_for()}")
            return
        if not outcome.passed_gate or outcome.version is None:
            self._settle("gate_failed", f"challenger not registered: {outcome.detail}")
            return
        self._settle("challenger", f"v{outcome.version} passed the gate: {outcome.detail}")
        if not self.settings.retrain_start_rollout:
            return
        try:
            self.rollout(self.settings, outcome.version, f"retrained on drift: {reason}")
        except (httpx.HTTPError, RuntimeError) as exc:
            self._record("rollout_failed", str(exc))
            return
        self._record("rollout_started", f"canary rollout of v{outcome.version} started")

    def _settle(self, outcome: str, detail: str) -> None:
        """A run ended with a verdict or failed: no longer due; the next one needs fresh
        drift and fresh labels (a failing run is not retried in a loop)."""
        with self._lock:
            self.due.settled()
            self._export_due()
        self._record(outcome, detail)

    def _record(self, outcome: str, detail: str) -> None:
        self.metrics.retrain_runs.labels(outcome).inc()
        self.history.append({"event": outcome, "detail": detail})
        level = logging.INFO if outcome in ("challenger", "rollout_started") else logging.WARNING
        log.log(level, "retraining %s: %s", outcome, detail)

    def close(self) -> None:
        """Stop the training process (a run in flight is abandoned)."""
        if self._closing.is_set():
            return
        self._closing.set()
        # a training run must not outlive the service
        if isinstance(self.train, TrainingJob):
            self.train.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._follower is not None:
            self._follower.join(timeout=10)
