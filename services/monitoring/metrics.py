"""Monitoring's Prometheus metrics, in a registry per service instance.

Gauge values are copied from a `DriftResult` (the Evidently report's own numbers), never
recomputed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.monitoring.drift.quality import RealizedQuality

if TYPE_CHECKING:  # importing Evidently costs seconds; the training process must not pay it
    from services.monitoring.drift.evidently_report import DriftResult


class MonitoringMetrics:
    """`monitoring_*` metrics (names are a contract with the Prometheus rules and the demo)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._feature_labels: set[tuple[str, str]] = set()
        self._reference_labels: set[tuple[str]] = set()
        self.drift_share = Gauge(
            "monitoring_dataset_drift_share",
            "Share of monitored feature columns drifted in the last evaluated window.",
            registry=r,
        )
        self.drift_detected = Gauge(
            "monitoring_dataset_drift_detected",
            "1 when the last window's drift share reached the dataset-drift threshold.",
            registry=r,
        )
        self.feature_drift = Gauge(
            "monitoring_feature_drift_score",
            "Drift score of one feature in the last window (method: wasserstein or "
            "jensenshannon distances, higher means more drift).",
            ["feature", "method"],
            registry=r,
        )
        self.prediction_drift = Gauge(
            "monitoring_prediction_drift_score",
            "Drift score of the champion's spam score in the last window against its reference.",
            registry=r,
        )
        self.text_drift_share = Gauge(
            "monitoring_text_drift_share",
            "Share of the text-descriptor features (lengths, URL counts...) drifted.",
            registry=r,
        )
        self.window_rows = Gauge(
            "monitoring_window_rows", "Rows in the last evaluated window.", registry=r
        )
        self.last_evaluation = Gauge(
            "monitoring_last_evaluation_timestamp_seconds",
            "Unix time of the last window evaluation.",
            registry=r,
        )
        self.evaluation_duration = Histogram(
            "monitoring_evaluation_duration_seconds",
            "Time to build one window's drift report (Evidently run).",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.evaluations = Counter(
            "monitoring_evaluations",
            "Window evaluations by outcome (ok, no_reference, error, skipped).",
            ["outcome"],
            registry=r,
        )
        self.reference_info = Gauge(
            "monitoring_reference_info",
            "1 for the model version whose reference sample windows are compared with.",
            ["model_version"],
            registry=r,
        )
        self.precision = Gauge(
            "monitoring_realized_precision",
            "Spam among flagged (review or block) served messages with labels, recent windows.",
            registry=r,
        )
        self.recall = Gauge(
            "monitoring_realized_recall",
            "Flagged among labelled spam, recent windows.",
            registry=r,
        )
        self.block_precision = Gauge(
            "monitoring_block_precision",
            "Spam among blocked served messages with labels, recent windows.",
            registry=r,
        )
        self.labelled_rows = Gauge(
            "monitoring_labelled_rows",
            "Labelled rows behind the realized-quality gauges.",
            registry=r,
        )
        # the alert on realized block precision needs its denominator (not to fire on 3 rows)
        # and the policy's target (one rule for every policy)
        self.labelled_blocked_rows = Gauge(
            "monitoring_labelled_blocked_rows",
            "Labelled rows served with `block`, behind monitoring_block_precision.",
            registry=r,
        )
        self.block_precision_target = Gauge(
            "monitoring_block_precision_target",
            "The policy's block precision target (the cut-off is chosen for it on validation).",
            registry=r,
        )
        self.events = Counter(
            "monitoring_events",
            "Consumed events by topic and outcome (used, duplicate, shadow, invalid).",
            ["topic", "outcome"],
            registry=r,
        )
        self.retrain_triggers = Counter(
            "monitoring_retrain_triggers",
            "Times persistent drift triggered a retraining run.",
            registry=r,
        )
        self.retrain_runs = Counter(
            "monitoring_retrain_runs",
            "Finished retraining runs by outcome (challenger, gate_failed, waiting, error, "
            "rollout_started, rollout_failed).",
            ["outcome"],
            registry=r,
        )
        self.retrain_due = Gauge(
            "monitoring_retrain_due",
            "1 while persistent drift has made a retrain due and it has not settled.",
            registry=r,
        )
        self.retrain_labels_missing = Gauge(
            "monitoring_retrain_labels_missing",
            "Labels per class still to arrive before a due retrain can start.",
            ["label_class"],
            registry=r,
        )

    def export_drift(self, result: DriftResult, evaluated_at: float) -> None:
        """Copy one window's report values into the gauges."""
        self.drift_share.set(result.drift_share)
        self.drift_detected.set(1.0 if result.drift_detected else 0.0)
        # Label sets change when a feature is skipped or a new champion brings new columns:
        # drop the ones this window has no value for, so no stale score lingers.
        current = {(c.column, c.method) for c in result.features}
        for stale in self._feature_labels - current:
            self.feature_drift.remove(*stale)
        self._feature_labels = current
        for column in result.features:
            self.feature_drift.labels(column.column, column.method).set(column.score)
        # NaN (not the previous window's value) when this window could not measure it
        nan = float("nan")
        self.prediction_drift.set(result.prediction.score if result.prediction else nan)
        self.text_drift_share.set(
            nan if result.text_drift_share is None else result.text_drift_share
        )
        self.window_rows.set(result.rows)
        self.evaluation_duration.observe(result.duration_s)
        self.last_evaluation.set(evaluated_at)
        self.evaluations.labels("ok").inc()

    def export_quality(self, quality: RealizedQuality) -> None:
        """Realized-quality gauges; a ratio without a denominator keeps its last value."""
        self.labelled_rows.set(quality.labelled_rows)
        self.labelled_blocked_rows.set(quality.blocked_rows)
        for gauge, value in (
            (self.precision, quality.precision),
            (self.recall, quality.recall),
            (self.block_precision, quality.block_precision),
        ):
            if value is not None:
                gauge.set(value)

    def set_reference(self, model_version: str) -> None:
        """Mark the model version whose reference is in use."""
        for (version,) in list(self._reference_labels):
            self.reference_info.remove(version)
        self._reference_labels = {(model_version,)}
        self.reference_info.labels(model_version).set(1)
