"""The processor's Prometheus metrics (names are a contract with the Prometheus rules)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ProcessorMetrics:
    """`processor_*` metrics in one registry (the process default unless a test passes one)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.events = Counter(
            "processor_events",
            "Events consumed by topic and outcome (accepted, duplicate, too_late, deadletter).",
            ["topic", "outcome"],
            registry=registry,
        )
        self.lag = Gauge(
            "processor_consumer_lag_messages",
            "Records on the broker not yet consumed (end offset - position), by topic.",
            ["topic"],
            registry=registry,
        )
        self.push_duration = Histogram(
            "processor_push_duration_seconds",
            "Time to push one micro-batch of rows to Feast (online and offline), by view.",
            ["view"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.deadletters = Counter(
            "processor_deadletters",
            "Events sent to deadletter.v1 because they could not be parsed.",
            registry=registry,
        )
        self.batch_duration = Histogram(
            "processor_batch_duration_seconds",
            "Time to handle one micro-batch: features, push, log write, dead letters.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.log_rows = Counter(
            "processor_log_rows",
            "Rows appended to the offline message log, by kind.",
            ["kind"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "processor_assigned_partitions",
            "Partitions this consumer owns (0 until it joined the group).",
            registry=registry,
        )
        self.senders = Gauge(
            "processor_senders", "Senders with feature state in memory.", registry=registry
        )
        self.rebuild_duration = Gauge(
            "processor_rebuild_seconds",
            "Time the last state rebuild from the message log took.",
            registry=registry,
        )
