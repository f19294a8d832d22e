"""Serving knobs on top of the common settings (env vars `SERVING_*`, unprefixed like the rest)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from modstack.names import REGISTERED_MODEL
from modstack.settings import CommonSettings
from services.serving.review_queue import review_db_path


class ServingSettings(CommonSettings):
    """What the serving process needs beyond where the other parts live."""

    # uvicorn worker processes (each loads the models, follows the registry and batches on its
    # own); 2 on this 2-core machine, chosen by measurement (docs/serving.md)
    serving_workers: int = Field(default=2, ge=1, le=16)
    # Micro-batching: concurrent requests wait at most this long to be scored together.
    serving_batch_max_rows: int = Field(default=32, ge=1, le=1_024)
    serving_batch_max_wait_ms: float = Field(default=5.0, ge=0.0, le=1_000.0)
    # Load shedding: a request whose estimated wait exceeds this budget gets 503 + Retry-After
    # at once instead of queueing; 0 switches shedding off. Twice the p99 SLO: a closed loop of
    # `make loadtest`'s 20 users never reaches it, a queue of seconds is refused.
    serving_latency_budget_ms: float = Field(default=200.0, ge=0.0, le=60_000.0)
    # The registered model to follow; tests point replicas at their own model.
    serving_model_name: str = REGISTERED_MODEL
    # How often every replica re-reads the aliases and the rollout state (seconds).
    serving_poll_interval_s: float = Field(default=2.0, gt=0.0, le=300.0)
    # Bounded queue in front of the Kafka producer: a slow broker drops events (counted)
    # instead of slowing answers down.
    serving_prediction_queue_size: int = Field(default=10_000, ge=10)
    # An event the broker has not acknowledged within this long (broker down) is given up and
    # counted (serving_prediction_events_total{outcome="failed"}); a shorter outage loses none.
    serving_prediction_delivery_timeout_s: float = Field(default=30.0, ge=1.0, le=600.0)
    serving_review_list_limit: int = Field(default=100, ge=1, le=1_000)
    # /readyz re-checks the feature store at most this often, not on every probe.
    serving_ready_cache_s: float = Field(default=5.0, ge=0.0)

    # Fault injection into the challenger's path, for the rollback demo. Off by default;
    # /healthz shows it when on.
    serving_challenger_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    serving_challenger_extra_latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)

    # The service-level objective `make loadtest` checks (loadtests/slo.py); the Prometheus
    # alert ServingLatencyP99High (deploy/prometheus/rules/serving.yml) uses the same bound.
    serving_slo_p99_ms: float = Field(default=100.0, gt=0.0)
    serving_slo_max_failure_ratio: float = Field(default=0.0, ge=0.0, le=1.0)

    @property
    def model_cache_dir(self) -> Path:
        """Last known good model versions, so a restart survives a registry outage."""
        return self.data_dir / "model_cache"

    @property
    def review_db_path(self) -> Path:
        """SQLite file of the moderator review queue."""
        return review_db_path(self.data_dir)


@lru_cache
def get_serving_settings() -> ServingSettings:
    """The process-wide serving settings (read from the environment once)."""
    return ServingSettings()
