"""The controller's Prometheus metrics, in a registry per app (several apps in one test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from modstack.registry.rollout import RolloutState

STATUSES = ("idle", "progressing", "paused", "promoted", "rolled_back")
CHECKS = ("error_rate", "latency_p99", "score_psi", "block_rate", "block_precision")


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
        for check in CHECKS:
            self.check_failures.labels(check)
        for status in STATUSES:
            self.status.labels(status).set(0)

    def show_state(self, state: RolloutState) -> None:
        """Mirror the rollout state into the gauges."""
        self.weight.set(state.routed_weight())
        for status in STATUSES:
            self.status.labels(status).set(1 if status == state.status else 0)
