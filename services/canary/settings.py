"""Canary controller knobs on top of the common settings (env vars `CANARY_*`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from modstack.paired import PAIRED_ALPHA
from modstack.policy import DEFAULT_POLICY, PolicyName
from modstack.settings import CommonSettings
from services.canary.checks import AnalysisThresholds
from services.canary.state_machine import RolloutPolicy


class CanarySettings(CommonSettings):
    """Rollout steps, the analysis thresholds and where the metrics come from."""

    # Traffic weights of the steps, in percent; env: CANARY_STEPS="5,25,50,100".
    canary_steps: str = "5,25,50,100"
    canary_interval_s: float = Field(default=60.0, gt=0.0)  # length of each step's window
    canary_failure_limit: int = Field(default=2, ge=1)
    # Inconclusive windows extend a step by one interval at most this many times; then the
    # rollout is held (paused) for a human.
    canary_max_extensions: int = Field(default=5, ge=0)
    # Share of requests both variants score (the one that does not answer in the shadow): 100
    # locally; in production a share that the serving capacity affords.
    canary_paired_percent: float = Field(default=100.0, ge=0.0, le=100.0)
    canary_mode: str = Field(default="canary", pattern="^(canary|shadow)$")
    # The policy this controller rolls out (one controller per policy: its registered model,
    # its rollout state, its serving series and labels); env CANARY_POLICY.
    canary_policy: PolicyName = DEFAULT_POLICY
    # How often the controller wakes up: re-reads the state, scrapes, judges due windows.
    canary_tick_s: float = Field(default=2.0, gt=0.0, le=60.0)

    # Analysis thresholds (see services/canary/checks.py for what each compares).
    canary_min_requests: int = Field(default=1000, ge=1)  # observations per variant and window
    canary_max_error_rate_increase: float = Field(default=0.01, ge=0.0)
    canary_max_latency_p99_ratio: float = Field(default=1.5, ge=1.0)
    # p99 of a small window is its one or two slowest requests: allow this much on top.
    canary_latency_p99_slack_s: float = Field(default=0.25, ge=0.0)
    canary_significance_z: float = Field(default=3.0, ge=0.0)
    # Exact McNemar on labelled discordant pairs: one-sided alpha (repeated at every window,
    # hence small) and the pairs needed before the last step can pass.
    canary_alpha: float = Field(default=PAIRED_ALPHA, gt=0.0, lt=0.5)
    canary_min_discordant: int = Field(default=20, ge=1)
    # ... or this many labelled pairs with the challenger's extra harm within the margin
    canary_min_labelled_pairs: int = Field(default=300, ge=1)
    canary_max_extra_harm: float = Field(default=0.01, gt=0.0, lt=1.0)
    # Guardrails against the challenger's own offline expectation (its holdout).
    canary_max_expected_block_change: float = Field(default=0.15, ge=0.0)
    canary_max_expected_psi: float = Field(default=1.0, gt=0.0)
    canary_max_collapse_share: float = Field(default=0.95, gt=0.0, le=1.0)
    # Reported only: differences from the champion.
    canary_max_score_psi: float = Field(default=1.0, gt=0.0)
    canary_max_block_rate_change: float = Field(default=0.15, ge=0.0)
    canary_max_precision_drop: float = Field(default=0.10, ge=0.0)
    canary_min_labelled_blocks: int = Field(default=20, ge=1)

    # Serving replicas to scrape when PROMETHEUS_URL is empty; comma-separated /metrics URLs.
    # Empty: SERVING_ADDR/metrics.
    canary_metrics_urls: str = ""
    # Shortest PromQL range: `increase()` needs two scrapes in it (2 x the scrape interval).
    canary_prometheus_min_window_s: float = Field(default=10.0, gt=0.0)
    # Join predictions.v1 with labels.v1 for the label checks (needs the broker).
    canary_label_join: bool = True

    @field_validator("canary_steps")
    @classmethod
    def _steps_parse(cls, value: str) -> str:
        RolloutPolicy(steps=tuple(float(s) for s in value.split(",") if s.strip()))
        return value

    def policy(self) -> RolloutPolicy:
        """The rollout policy these settings describe."""
        return RolloutPolicy(
            steps=tuple(float(s) for s in self.canary_steps.split(",") if s.strip()),
            interval_s=self.canary_interval_s,
            failure_limit=self.canary_failure_limit,
            max_extensions=self.canary_max_extensions,
            paired_percent=self.canary_paired_percent,
        )

    def thresholds(self) -> AnalysisThresholds:
        """The analysis thresholds these settings describe."""
        return AnalysisThresholds(
            min_requests=self.canary_min_requests,
            max_error_rate_increase=self.canary_max_error_rate_increase,
            max_latency_p99_ratio=self.canary_max_latency_p99_ratio,
            latency_p99_slack_seconds=self.canary_latency_p99_slack_s,
            max_score_psi=self.canary_max_score_psi,
            significance_z=self.canary_significance_z,
            alpha=self.canary_alpha,
            min_discordant=self.canary_min_discordant,
            min_labelled_pairs=self.canary_min_labelled_pairs,
            max_extra_harm=self.canary_max_extra_harm,
            max_expected_block_change=self.canary_max_expected_block_change,
            max_expected_psi=self.canary_max_expected_psi,
            max_collapse_share=self.canary_max_collapse_share,
            max_block_rate_change=self.canary_max_block_rate_change,
            max_precision_drop=self.canary_max_precision_drop,
            min_labelled_blocks=self.canary_min_labelled_blocks,
        )

    def metrics_urls(self) -> list[str]:
        """The /metrics URLs the scrape source reads."""
        urls = [u.strip() for u in self.canary_metrics_urls.split(",") if u.strip()]
        return urls or [self.serving_addr.rstrip("/") + "/metrics"]
