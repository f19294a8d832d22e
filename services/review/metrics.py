"""The review service's Prometheus metrics (`review_<noun>_<unit>`), in a registry per app.

Queue depth and the oldest item's age are read from the database at scrape time (the truth,
whichever replica decided); counters count what this process did.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from modstack.policy import catalogue


class ReviewMetrics:
    """`review_*` metrics (names are a contract with deploy/prometheus/rules/review.yml)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.queue_depth = Gauge(
            "review_queue_depth_items",
            "Items pending a moderator's decision, per policy.",
            ["policy"],
            registry=r,
        )
        self.oldest_age = Gauge(
            "review_oldest_pending_age_seconds",
            "Age of the oldest pending item, per policy (0 when none is pending).",
            ["policy"],
            registry=r,
        )
        self.decisions = Counter(
            "review_decisions_total",
            "Decisions by moderator, policy and decision (harm, ok, escalate, skip).",
            ["moderator", "policy", "decision"],
            registry=r,
        )
        self.agreement = Counter(
            "review_model_agreement_total",
            "Labelling decisions on review items by model version and whether the moderator "
            "agreed with the side of the cut-off the model's score was on.",
            ["model_version", "policy", "agreed"],
            registry=r,
        )
        self.requests = Counter(
            "review_requests_total",
            "ReviewRequest events consumed, by outcome (queued, duplicate, invalid).",
            ["outcome"],
            registry=r,
        )
        self.labels_published = Counter(
            "review_labels_published_total",
            "Moderator labels published to labels.v1.",
            registry=r,
        )
        self.publish_failures = Counter(
            "review_label_publish_failures_total",
            "Failed attempts to publish outbox labels (retried).",
            registry=r,
        )
        for policy in catalogue().names:
            self.queue_depth.labels(policy).set(0)
            self.oldest_age.labels(policy).set(0)

    def observe_depth(
        self, depth: Mapping[str, tuple[int, float | None]], now: float | None = None
    ) -> None:
        """Set the gauges from the queue's per-policy (count, oldest enqueue time)."""
        now = time.time() if now is None else now
        for policy in set(catalogue().names) | set(depth):
            count, oldest = depth.get(policy, (0, None))
            self.queue_depth.labels(policy).set(count)
            self.oldest_age.labels(policy).set(max(0.0, now - oldest) if oldest else 0.0)
