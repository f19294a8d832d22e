"""Monitoring's own knobs on top of the common settings (env vars, validated once)."""

from __future__ import annotations

from pydantic import Field, model_validator

from modstack.policy import DEFAULT_POLICY, PolicyName
from modstack.settings import CommonSettings
from services.monitoring.drift.windows import WindowPolicy


class MonitoringSettings(CommonSettings):
    """`MONITORING_*` and `RETRAIN_*` env vars; the listen address is `MONITORING_ADDR`."""

    # The policy whose predictions and labels this monitor follows (its drift, its realized
    # quality, its retraining); the other policies' events are skipped (counted as "other").
    monitoring_policy: PolicyName = DEFAULT_POLICY

    # A window closes at this many served predictions...
    monitoring_window_max_rows: int = Field(default=1_000, ge=1)
    # ...or this many seconds after its first row, if it holds at least MIN_ROWS by then.
    monitoring_window_max_seconds: float = Field(default=300.0, gt=0)
    monitoring_window_min_rows: int = Field(default=200, ge=1)
    # Closed windows kept for labels that arrive after the window closed.
    monitoring_keep_closed_windows: int = Field(default=3, ge=1)
    # Closed windows waiting for their drift report, at most; beyond it the oldest waiting one
    # is skipped (counted as monitoring_evaluations_total{outcome="skipped"}). A burst of
    # traffic (a benchmark: ~57,000 predictions in 6 min, ~57 windows, ~1.5 s of report each)
    # otherwise leaves minutes of report work behind, on the cores serving shares.
    monitoring_max_pending_windows: int = Field(default=4, ge=1)
    # Drift reports take at most this share of one core's time under sustained traffic: after
    # a report of d seconds the next starts no sooner than d x (1/share - 1) later; windows
    # closing faster wait (see above). At 160 req/s a 1,000-row window closes every ~6 s and
    # the report thread never rested (99 % of a core), on a machine serving shares; 1 turns
    # it off.
    monitoring_report_max_cpu_share: float = Field(default=0.25, gt=0, le=1)
    # Dataset drift: share of feature columns drifted (each at its pinned method's threshold).
    monitoring_drift_share: float = Field(default=0.5, gt=0, le=1)
    monitoring_feature_drift_threshold: float = Field(default=0.1, gt=0)
    monitoring_prediction_drift_threshold: float = Field(default=0.1, gt=0)
    # HTML reports kept under {DATA_DIR}/reports (oldest deleted first).
    monitoring_reports_keep: int = Field(default=500, ge=1)

    # Retraining: N drifted windows in a row start one training run, then a cooldown.
    retrain_enabled: bool = True
    retrain_consecutive_windows: int = Field(default=3, ge=1)
    retrain_cooldown_seconds: float = Field(default=3_600.0, ge=0)
    # a due retrain starts when the labels its gate needs have arrived, and no sooner than
    # this after it became due (whichever is later)
    retrain_min_wait_seconds: float = Field(default=0.0, ge=0)
    # Bound on one training run; a run past it is reported as failed.
    retrain_timeout_seconds: float = Field(default=1_800.0, gt=0)
    # Roll a challenger that passed the gate out through the canary controller.
    retrain_start_rollout: bool = True
    # CPU priority of the training process (nice value, 0-19). 10 lets serving keep the CPU
    # on a shared machine, but `make demo`'s retrain then took 13 min instead of 5 (the demo's
    # own traffic keeps both cores busy), so the default is 0; in Kubernetes training is a Job
    # on its own requests/limits.
    retrain_nice: int = Field(default=0, ge=0, le=19)
    # CPU priority of the thread that builds the drift reports (nice increment, 0-19; the
    # consumer and API threads keep theirs). A report is ~1.5 s of CPU per 1,000-row window:
    # at 258 req/s the monitoring process took 39 % of a core on the 2 cores serving shares.
    monitoring_report_nice: int = Field(default=10, ge=0, le=19)

    @model_validator(mode="after")
    def _min_rows_fit_the_window(self) -> MonitoringSettings:
        if self.monitoring_window_min_rows > self.monitoring_window_max_rows:
            raise ValueError(
                "MONITORING_WINDOW_MIN_ROWS must not exceed MONITORING_WINDOW_MAX_ROWS"
            )
        return self

    @property
    def window_policy(self) -> WindowPolicy:
        """The window policy these settings describe."""
        return WindowPolicy(
            max_rows=self.monitoring_window_max_rows,
            max_age_s=self.monitoring_window_max_seconds,
            min_rows=self.monitoring_window_min_rows,
        )
