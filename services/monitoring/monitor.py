"""The monitoring loop without HTTP: consume served predictions and labels, close windows, and
evaluate each closed window against the champion's reference on a worker thread.

Which predictions count: served ones only (a shadow prediction answered nobody), from every
variant, because feature drift is about the traffic, not the model. The score column, though,
is kept only for rows the reference's model version answered: prediction drift compares the
champion's scores with the champion's own reference scores, so a canary challenger's different
score distribution is never mistaken for drift.

Windows live in memory: after a restart the unfinished window starts over (offsets are
committed per batch). Monitoring is a statistical view of the stream, so losing part of one
window is acceptable; losing an accepted message is not, and that is the processor's job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
from kafka.consumer.fetcher import ConsumerRecord
from mlflow import MlflowClient
from pydantic import ValidationError

from modstack.events import LabelEvent, PredictionEvent
from modstack.kafka import BatchConsumerLoop, BrokerUnavailable, make_consumer
from modstack.names import GROUP_MONITORING, TOPIC_LABELS, TOPIC_PREDICTIONS
from modstack.policy import catalogue
from modstack.registry.aliases import get_client
from services.monitoring.drift.evidently_report import DriftConfig, DriftReference, DriftResult
from services.monitoring.drift.quality import RealizedQuality, realized_quality
from services.monitoring.drift.windows import (
    ClosedWindow,
    PredictionWindows,
    RetrainTrigger,
    WindowRow,
    rows_to_records,
)
from services.monitoring.metrics import MonitoringMetrics
from services.monitoring.priority import lower_this_thread
from services.monitoring.reference import (
    ReferenceUnavailable,
    champion_version,
    load_reference,
)
from services.monitoring.reports import ReportStore
from services.monitoring.retrain import Retrainer
from services.monitoring.settings import MonitoringSettings

log = logging.getLogger(__name__)

_RECONNECT_DELAY_S = 2.0


class Monitor:
    """Owns the windows (consumer thread), the reference and the evaluations (worker thread)."""

    def __init__(
        self,
        settings: MonitoringSettings,
        metrics: MonitoringMetrics | None = None,
        retrainer: Retrainer | None = None,
        client: MlflowClient | None = None,
    ) -> None:
        self.settings = settings
        policy = catalogue().get(settings.monitoring_policy)
        self.positive_label = policy.positive_label
        self.metrics = metrics or MonitoringMetrics()
        self.metrics.block_precision_target.set(policy.block_precision)
        self.client = client or get_client(settings.mlflow_tracking_uri)
        self.windows = PredictionWindows(
            settings.window_policy, keep_closed=settings.monitoring_keep_closed_windows
        )
        self.drift_config = DriftConfig(
            num_threshold=settings.monitoring_feature_drift_threshold,
            cat_threshold=settings.monitoring_feature_drift_threshold,
            score_threshold=settings.monitoring_prediction_drift_threshold,
            drift_share=settings.monitoring_drift_share,
        )
        self.trigger = RetrainTrigger(
            consecutive=settings.retrain_consecutive_windows,
            cooldown_s=settings.retrain_cooldown_seconds,
            enabled=settings.retrain_enabled,
        )
        self.retrainer = retrainer or Retrainer(settings, self.metrics)
        self.reports = ReportStore(settings.data_dir / "reports", settings.monitoring_reports_keep)
        self.reference: DriftReference | None = None
        self.last_result: DriftResult | None = None
        self.last_report: str | None = None
        self._evaluator = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="evaluate",
            initializer=lower_this_thread,
            initargs=(settings.monitoring_report_nice,),
        )
        # closed windows not yet evaluated (bounded: see MONITORING_MAX_PENDING_WINDOWS)
        self._pending: deque[tuple[ClosedWindow, RealizedQuality]] = deque()
        self._pending_lock = threading.Lock()
        self._draining = False
        self._next_report_at = 0.0  # monotonic; see MONITORING_REPORT_MAX_CPU_SHARE
        self._loop: BatchConsumerLoop | None = None
        self._consumer_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.consuming = False

    # ---- consumer side (one thread) ----

    def handle(self, records: list[ConsumerRecord]) -> None:
        """Apply one polled batch: predictions into the window, labels onto their rows."""
        for record in records:
            if record.topic == TOPIC_PREDICTIONS:
                self._on_prediction(record.value)
            elif record.topic == TOPIC_LABELS:
                self._on_label(record.value)
        self.poll()

    def poll(self) -> None:
        """Close the window by age when due (also called while the stream is idle)."""
        closed = self.windows.poll()
        if closed is not None:
            self._submit(closed)

    def _on_prediction(self, raw: bytes) -> None:
        try:
            event = PredictionEvent.model_validate_json(raw)
        except ValidationError as exc:
            self.metrics.events.labels(TOPIC_PREDICTIONS, "invalid").inc()
            log.warning("invalid prediction event skipped: %s", exc.errors()[:1])
            return
        if event.policy != self.settings.monitoring_policy:
            self.metrics.events.labels(TOPIC_PREDICTIONS, "other_policy").inc()
            return
        if not event.served:
            self.metrics.events.labels(TOPIC_PREDICTIONS, "shadow").inc()
            return
        if self.windows.seen(event.message_id):
            self.metrics.events.labels(TOPIC_PREDICTIONS, "duplicate").inc()
            return
        self.metrics.events.labels(TOPIC_PREDICTIONS, "used").inc()
        row = WindowRow(
            message_id=event.message_id,
            score=event.score,
            action=event.action,
            model_version=event.model_version,
            variant=event.variant,
            features=dict(event.features),
        )
        closed = self.windows.add(row)
        if row.label is not None:  # its label had arrived first (parked)
            self.retrainer.count_label(row.message_id, row.label == self.positive_label)
        if closed is not None:
            self._submit(closed)

    def _on_label(self, raw: bytes) -> None:
        try:
            event = LabelEvent.model_validate_json(raw)
        except ValidationError as exc:
            self.metrics.events.labels(TOPIC_LABELS, "invalid").inc()
            log.warning("invalid label event skipped: %s", exc.errors()[:1])
            return
        if event.policy != self.settings.monitoring_policy:
            self.metrics.events.labels(TOPIC_LABELS, "other_policy").inc()
            return
        matched = self.windows.add_label(event.message_id, event.label)
        self.metrics.events.labels(TOPIC_LABELS, "matched" if matched else "parked").inc()
        if matched:
            # evidence for a retrain: labels of messages serving scored (a corpus backfill's
            # labels are not traffic the next model is judged on)
            self.retrainer.count_label(event.message_id, event.label == self.positive_label)

    def _submit(self, closed: ClosedWindow) -> None:
        # realized quality is read here, on the thread that owns the rows' labels
        quality = realized_quality(self.windows.labelled_rows(), self.positive_label)
        with self._pending_lock:
            if len(self._pending) >= self.settings.monitoring_max_pending_windows:
                skipped, _ = self._pending.popleft()
                self.metrics.evaluations.labels("skipped").inc()
                log.warning(
                    "drift report of window %d skipped: %d windows already wait for theirs",
                    skipped.index,
                    self.settings.monitoring_max_pending_windows,
                )
            self._pending.append((closed, quality))
            if self._draining:
                return
            self._draining = True
        self._evaluator.submit(self._drain)

    # ---- evaluation side (one worker thread) ----

    def _drain(self) -> None:
        """Evaluate waiting windows, oldest first, until none waits; between two reports rest
        long enough that they take at most MONITORING_REPORT_MAX_CPU_SHARE of the time."""
        while True:
            rest = self._next_report_at - time.monotonic()
            if rest > 0 and self._stopping.wait(rest):
                with self._pending_lock:
                    self._draining = False
                return
            with self._pending_lock:
                if not self._pending:
                    self._draining = False
                    return
                closed, quality = self._pending.popleft()
            started = time.monotonic()
            self._evaluate_safely(closed, quality)
            took = time.monotonic() - started
            share = self.settings.monitoring_report_max_cpu_share
            self._next_report_at = time.monotonic() + took * (1.0 / share - 1.0)

    def _evaluate_safely(self, closed: ClosedWindow, quality: RealizedQuality) -> None:
        try:
            self.evaluate(closed, quality)
        except Exception:  # one bad window must not stop the next ones
            self.metrics.evaluations.labels("error").inc()
            log.exception("evaluation of window %d failed", closed.index)

    def refresh_reference(self) -> DriftReference | None:
        """Follow the `champion` alias: rebuild the reference only when the version changed."""
        try:
            version = champion_version(self.client)
        except Exception as exc:  # registry unreachable: keep the reference we have
            log.warning("cannot read the champion alias (%s); keeping the current reference", exc)
            return self.reference
        if version is None:
            return None
        if self.reference is not None and self.reference.model_version == version:
            return self.reference
        loaded = load_reference(self.client, version)
        self.reference = DriftReference(
            loaded.frame,
            feature_columns=loaded.feature_columns,
            text_descriptor_columns=loaded.text_descriptor_columns,
            config=self.drift_config,
            model_version=version,
        )
        self.metrics.set_reference(version)
        log.info(
            "drift reference: champion v%s, %d rows, %d features (%d text descriptors)",
            version,
            self.reference.rows,
            len(self.reference.feature_columns),
            len(self.reference.text_descriptor_columns),
        )
        return self.reference

    def evaluate(self, closed: ClosedWindow, quality: RealizedQuality) -> DriftResult | None:
        """Drift report of one closed window; exports gauges, saves the HTML, feeds the trigger."""
        self.metrics.export_quality(quality)
        try:
            reference = self.refresh_reference()
        except ReferenceUnavailable as exc:
            reference = None
            log.warning("%s", exc)
        if reference is None:
            self.metrics.evaluations.labels("no_reference").inc()
            log.warning(
                "window %d (%d rows) not evaluated: no champion reference yet",
                closed.index,
                len(closed.rows),
            )
            return None
        frame = pd.DataFrame(rows_to_records(closed.rows, reference.model_version))
        report = reference.evaluate(frame)
        result = report.result
        name = self.reports.save(
            report,
            closed.index,
            {
                "window_index": closed.index,
                "closed_by": closed.reason,
                "window_seconds": round(closed.closed_at - closed.opened_at, 3),
                "labelled_rows": quality.labelled_rows,
                "realized_precision": quality.precision,
                "realized_recall": quality.recall,
                "block_precision": quality.block_precision,
            },
        )
        self.metrics.export_drift(result, time.time())
        self.last_result, self.last_report = result, name
        log.info(
            "window %d: %d rows, drift share %.2f (%s), prediction drift %s, %.2f s, report %s",
            closed.index,
            result.rows,
            result.drift_share,
            "DRIFT" if result.drift_detected else "no drift",
            f"{result.prediction.score:.3f}" if result.prediction else "n/a",
            result.duration_s,
            name,
        )
        if self.trigger.observe(result.drift_detected):
            self.retrainer.mark_due(
                f"dataset drift in {self.trigger.consecutive} consecutive windows "
                f"(last: share {result.drift_share:.2f}, report {name})"
            )
        return result

    # ---- lifecycle ----

    def start(self) -> None:
        """Consume in a background thread (reconnecting while the broker is down)."""
        self._consumer_thread = threading.Thread(target=self._consume, name="consume", daemon=True)
        self._consumer_thread.start()

    def _consume(self) -> None:
        while not self._stopping.is_set():
            try:
                consumer = make_consumer(
                    [TOPIC_PREDICTIONS, TOPIC_LABELS],
                    GROUP_MONITORING,
                    self.settings.kafka_bootstrap_servers,
                )
            except BrokerUnavailable as exc:
                log.warning("%s; retrying in %.0f s", exc, _RECONNECT_DELAY_S)
                self._stopping.wait(_RECONNECT_DELAY_S)
                continue
            self._loop = BatchConsumerLoop(consumer, self.handle, on_idle=self.poll)
            if self._stopping.is_set():
                self._loop.stop()
            self.consuming = True
            log.info(
                "consuming %s and %s as group %s", TOPIC_PREDICTIONS, TOPIC_LABELS, GROUP_MONITORING
            )
            try:
                self._loop.run()
            except Exception:
                log.exception("consumer loop failed; reconnecting")
                self._stopping.wait(_RECONNECT_DELAY_S)
            finally:
                self.consuming = False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop consuming, finish the evaluation in progress, stop a training run."""
        self._stopping.set()
        if self._loop is not None:
            self._loop.stop()
        if self._consumer_thread is not None:
            self._consumer_thread.join(timeout=timeout_s)
        self._evaluator.shutdown(wait=True, cancel_futures=True)
        self.retrainer.close()

    def status(self) -> dict[str, Any]:
        """What `/v1/status` shows."""
        last = self.last_result
        return {
            "consuming": self.consuming,
            "current_window_rows": self.windows.current_rows,
            "window_policy": self.settings.window_policy.__dict__,
            "reference_model_version": self.reference.model_version if self.reference else None,
            "last_report": self.last_report,
            "last_result": last.summary() if last else None,
            "retrain": {
                "enabled": self.trigger.enabled,
                "streak": self.trigger.streak,
                "in_cooldown": self.trigger.in_cooldown(),
                "running": self.retrainer.running,
                **self.retrainer.due.status(),
                "history": self.retrainer.history[-20:],
            },
        }
