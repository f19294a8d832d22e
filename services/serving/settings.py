"""Serving knobs on top of the common settings (env vars `SERVING_*`, unprefixed like the rest)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from modstack.names import registered_model
from modstack.policy import DEFAULT_POLICY, catalogue
from modstack.settings import CommonSettings


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
    # The policies scored on every request, comma-separated; empty: every policy under
    # modstack/policies. A policy with no registered champion yet is skipped (see /readyz).
    serving_policies: str = ""
    # Prefix of the registered models followed (`<prefix><policy>-classifier`); tests give
    # their replicas models of their own with it.
    serving_model_prefix: str = ""
    # How often every replica re-reads the aliases and the rollout state (seconds).
    serving_poll_interval_s: float = Field(default=2.0, gt=0.0, le=300.0)
    # Bounded queue in front of the Kafka producer: a slow broker drops events (counted)
    # instead of slowing answers down.
    serving_prediction_queue_size: int = Field(default=10_000, ge=10)
    # An event the broker has not acknowledged within this long (broker down) is given up and
    # counted (serving_prediction_events_total{outcome="failed"}); a shorter outage loses none.
    serving_prediction_delivery_timeout_s: float = Field(default=30.0, ge=1.0, le=600.0)
    # An online-store read not answered within this long is given up: the request is scored
    # with the sender features missing (flagged in the answer), and while that read is still
    # unanswered the next ones do not wait for the store (a hung Redis costs no latency).
    # A read of a batch of 32 takes a few ms; the p99 SLO is 100 ms.
    serving_feature_timeout_ms: float = Field(default=100.0, gt=0.0, le=60_000.0)
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
    def policies(self) -> tuple[str, ...]:
        """The policies to score, in the catalogue's order (ValueError names an unknown one)."""
        known = catalogue()
        if not self.serving_policies.strip():
            return known.names
        wanted = {p.strip() for p in self.serving_policies.split(",") if p.strip()}
        for name in wanted:
            known.get(name)
        return tuple(p for p in known.names if p in wanted)

    def model_name(self, policy: str) -> str:
        """The registered model serving follows for `policy`."""
        return f"{self.serving_model_prefix}{registered_model(policy)}"

    @property
    def serving_model_name(self) -> str:
        """The default (spam) policy's registered model: what the benchmarks compare."""
        return self.model_name(DEFAULT_POLICY)

    @property
    def model_cache_dir(self) -> Path:
        """Last known good model versions, so a restart survives a registry outage."""
        return self.data_dir / "model_cache"

    def policy_cache_dir(self, policy: str) -> Path:
        """One policy's part of the model cache (its versions and its aliases.json)."""
        return self.model_cache_dir / policy


@lru_cache
def get_serving_settings() -> ServingSettings:
    """The process-wide serving settings (read from the environment once)."""
    return ServingSettings()
