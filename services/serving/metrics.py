"""Serving metrics. The names and labels are a contract with the canary controller, monitoring
and the Prometheus rules (deploy/prometheus/rules/): change them everywhere at once or not at all
(the ones the canary compares are named in `modstack.names`).

With several uvicorn workers, PROMETHEUS_MULTIPROC_DIR must be set before this module is
imported; `/metrics` then aggregates every worker's files (`render_latest`).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from modstack.names import (
    SERVING_ACTIONS_TOTAL,
    SERVING_REQUEST_DURATION_SECONDS,
    SERVING_REQUESTS_TOTAL,
    SERVING_SCORE,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Latency buckets from 1 ms to 10 s: the model alone is ~3 ms, the SLO is a few hundred ms.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# 0.05-wide score buckets: the canary compares the variants' score distributions (PSI) on them.
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))

REQUESTS = Counter(
    SERVING_REQUESTS_TOTAL,
    "Moderation decisions by policy, the variant that answered (or shadow-scored) and outcome "
    "(ok, error)",
    ["policy", "variant", "outcome"],
)
REQUEST_DURATION = Histogram(
    SERVING_REQUEST_DURATION_SECONDS,
    "Time to a policy's decision (routing, queueing, features, model), by policy and variant",
    ["policy", "variant"],
    buckets=LATENCY_BUCKETS,
)
SCORE = Histogram(
    SERVING_SCORE,
    "Scores by policy and variant (shadow scores included, with their variant)",
    ["policy", "variant"],
    buckets=SCORE_BUCKETS,
)
ACTIONS = Counter(
    SERVING_ACTIONS_TOTAL,
    "Moderation actions by policy and variant",
    ["policy", "variant", "action"],
)
SHADOW_COMPARISONS = Counter(
    "serving_shadow_comparisons_total",
    "Requests scored by both variants of a policy in the shadow",
    ["policy"],
)
SHADOW_DISAGREEMENTS = Counter(
    "serving_shadow_disagreements_total",
    "Shadow comparisons where the challenger's action differs from the champion's",
    ["policy"],
)
MODEL_INFO = Gauge(
    "serving_model_info",
    "1 for the model version each policy's variant serves",
    ["policy", "variant", "model_version"],
    multiprocess_mode="livemax",
)

# Serving-internal health, not compared by the canary.
PREDICTION_EVENTS = Counter(
    "serving_prediction_events_total",
    "Events for predictions.v1 and reviews.v1 by outcome (sent, failed, dropped) and topic",
    ["outcome", "topic"],
)
PRODUCER_REPLACEMENTS = Counter(
    "serving_prediction_producer_replacements_total",
    "Prediction producers replaced after a non-retriable error (e.g. a restarted broker)",
)
MISSING_FEATURES = Counter(
    "serving_missing_features_total",
    "Features the model needed but the online store did not have, by feature",
    ["feature"],
)
MODEL_SWAPS = Counter(
    "serving_model_swaps_total",
    "Model versions loaded and swapped in, by policy and variant",
    ["policy", "variant"],
)
REGISTRY_POLL_FAILURES = Counter(
    "serving_registry_poll_failures_total",
    "Polls of the registry (aliases, rollout state) that failed; serving keeps its models",
)
REVIEW_REQUESTS = Counter(
    "serving_review_requests_total",
    "Decisions in a policy's review band, sent to the review service (reviews.v1)",
    ["policy"],
)
BATCH_ROWS = Histogram(
    "serving_batch_rows",
    "Rows per micro-batch scored together (one feature read, one model call per version)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_DURATION = Histogram(
    "serving_batch_duration_seconds",
    "Time to score one micro-batch (features + model)",
    buckets=LATENCY_BUCKETS,
)
SHED = Counter(
    "serving_shed_requests_total",
    "Moderation requests answered 503 at once: the queue was beyond the latency budget",
)
SHADOW_SKIPPED = Counter(
    "serving_shadow_skipped_total",
    "Shadow scorings skipped because the batcher's queue was beyond the latency budget",
)


def set_model_info(
    policy: str, variant: str, old_version: str | None, new_version: str | None
) -> None:
    """Point `serving_model_info{policy, variant}` at the new version (None: not loaded)."""
    if old_version is not None and old_version != new_version:
        if MULTIPROCESS:
            # multiprocess gauges cannot drop a series; 0 marks the version as no longer served
            MODEL_INFO.labels(policy, variant, old_version).set(0)
        else:
            MODEL_INFO.remove(policy, variant, old_version)
    if new_version is not None:
        MODEL_INFO.labels(policy, variant, new_version).set(1)


def render_latest() -> tuple[bytes, str]:
    """The exposition text for `/metrics`, aggregated over workers in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
