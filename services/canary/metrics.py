"""The controller's Prometheus metrics, in a registry per app (several apps in one test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from modstack.names import CHECK_NAMES
from modstack.registry.rollout import RolloutState
from services.canary.verdict import Analysis

STATUSES = ("idle", "progressing", "paused", "promoted", "rolled_back")
VERDICTS = ("pass", "fail", "inconclusive", "skipped", "ok", "over", "n/a")


class CanaryMetrics:
    """`canary_*` metrics (names are a contract with the Prometheus rules and dashboards)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.weight = Gauge(
            "canary_weight_percent",
            "Traffic share routed to the challenger (0 when no rollout is active).",
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "canary_rollbacks",
            "Rollouts rolled back (automatic or aborted).",
            registry=self.registry,
        )
        self.promotions = Counter(
            "canary_promotions",
            "Rollouts promoted (all steps passed or manual).",
            registry=self.registry,
        )
        self.check_failures = Counter(
            "canary_check_failures",
            "Failed analysis checks by check.",
            ["check"],
            registry=self.registry,
        )
        self.status = Gauge(
            "canary_status_info",
            "1 for the rollout's current status.",
            ["status"],
            registry=self.registry,
        )
        self.analyses = Counter(
            "canary_analyses",
            "Step windows judged, by decision.",
            ["decision"],
            registry=self.registry,
        )
        self.check_value = Gauge(
            "canary_check_value",
            "Value of each check at the last judged window.",
            ["check"],
            registry=self.registry,
        )
        self.check_threshold = Gauge(
            "canary_check_threshold",
            "Threshold of each check at the last judged window.",
            ["check"],
            registry=self.registry,
        )
        self.check_verdict = Gauge(
            "canary_check_verdict",
            "1 for each check's verdict at the last judged window (pass, fail, inconclusive for "
            "decisive checks; ok, over, n/a for reported ones), with the check's kind.",
            ["check", "kind", "verdict"],
            registry=self.registry,
        )
        self.extensions = Gauge(
            "canary_step_extensions",
            "Times the current step was extended on inconclusive evidence.",
            registry=self.registry,
        )
        for check in CHECK_NAMES:
            self.check_failures.labels(check)
        for status in STATUSES:
            self.status.labels(status).set(0)

    def show_state(self, state: RolloutState) -> None:
        """Mirror the rollout state into the gauges."""
        self.weight.set(state.routed_weight())
        self.extensions.set(state.extensions)
        for status in STATUSES:
            self.status.labels(status).set(1 if status == state.status else 0)

    def show_analysis(self, analysis: Analysis) -> None:
        """Every check of the last judged window: its value, threshold and verdict."""
        for check in analysis.checks:
            if check.value is not None:
                self.check_value.labels(check.name).set(check.value)
            self.check_threshold.labels(check.name).set(check.threshold)
            for verdict in VERDICTS:
                self.check_verdict.labels(check.name, check.kind, verdict).set(
                    1 if verdict == check.verdict else 0
                )
            if check.decisive and check.passed is False:
                self.check_failures.labels(check.name).inc()
