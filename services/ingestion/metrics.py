"""Ingestion's Prometheus metrics, in a registry per app (several apps can live in one test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class IngestionMetrics:
    """`ingestion_*` metrics (names are a contract with the Prometheus rules)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ingestion_requests",
            "Requests by endpoint and outcome (accepted, rejected, unavailable).",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "ingestion_rejected",
            "Rejected requests by reason (invalid, too_large, broker_unavailable).",
            ["reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "ingestion_events",
            "Events in accepted requests by topic and outcome (produced, duplicate).",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.produce_duration = Histogram(
            "ingestion_produce_duration_seconds",
            "Time from the first send of a request's events to the last broker acknowledgement.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
