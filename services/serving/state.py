"""What every request needs, built once per worker at start-up, and the FastAPI dependencies
that hand it to the routes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from services.serving import metrics
from services.serving.batcher import MicroBatcher
from services.serving.deployment import Deployment, Snapshot
from services.serving.model_store import ModelCache
from services.serving.online_features import OnlineFeatures
from services.serving.predictions import PredictionPublisher
from services.serving.scoring import BatchScorer, Decision, ScoreItem
from services.serving.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Mutable at runtime through the admin endpoint; starts from the settings."""

    error_rate: float = 0.0
    extra_latency_ms: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.error_rate > 0 or self.extra_latency_ms > 0


def _observe_batch(rows: int, seconds: float) -> None:
    metrics.BATCH_ROWS.observe(rows)
    metrics.BATCH_DURATION.observe(seconds)


class Services:
    """Everything a request needs, built once per worker at start-up."""

    def __init__(self, settings: ServingSettings) -> None:
        from modstack.registry.aliases import get_client

        self.settings = settings
        client = get_client(settings.mlflow_tracking_uri)
        # every worker follows the registry itself: the same aliases and rollout state within
        # one poll interval, and the same sticky routing (a hash, not per-process state); one
        # Deployment per policy, each with its own registered model, cache and rollout
        self.deployments: dict[str, Deployment] = {
            policy: Deployment(
                client,
                ModelCache(settings.policy_cache_dir(policy), client, settings.model_name(policy)),
                settings.serving_poll_interval_s,
                settings.model_name(policy),
                policy,
            )
            for policy in settings.policies
        }
        self.features = OnlineFeatures(
            settings.feast_repo_path, settings.serving_feature_timeout_ms / 1000
        )
        self.publisher = PredictionPublisher(
            settings.kafka_bootstrap_servers,
            settings.serving_prediction_queue_size,
            settings.serving_prediction_delivery_timeout_s,
        )
        self.faults = Faults(
            settings.serving_challenger_error_rate, settings.serving_challenger_extra_latency_ms
        )
        self.batcher: MicroBatcher[ScoreItem, Decision] = MicroBatcher(
            BatchScorer(self.features, lambda: self.faults.error_rate),
            max_batch=settings.serving_batch_max_rows,
            max_wait_s=settings.serving_batch_max_wait_ms / 1000,
            budget_s=settings.serving_latency_budget_ms / 1000,
            on_batch=_observe_batch,
            name="scoring",
        )
        self._ready_checked_at = 0.0
        self._ready: tuple[bool, str] = (False, "not checked yet")

    def start(self) -> None:
        """Publisher thread, registry poller, batch collector (needs the running loop)."""
        self.publisher.start()
        for deployment in self.deployments.values():
            deployment.start()
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        for deployment in self.deployments.values():
            deployment.stop()
        self.publisher.close()

    def served(self) -> dict[str, Snapshot]:
        """The snapshot of every policy with a champion loaded, in the catalogue's order."""
        return {
            policy: deployment.snapshot
            for policy, deployment in self.deployments.items()
            if deployment.snapshot.champion is not None
        }

    def poll_errors(self) -> dict[str, str]:
        """The last registry error per policy (only policies whose last poll failed)."""
        return {p: d.last_poll_error for p, d in self.deployments.items() if d.last_poll_error}

    def feature_store_ready(self, feature_service: str) -> tuple[bool, str]:
        """Whether the online store answers, re-checked at most every few seconds."""
        now = time.monotonic()
        if now - self._ready_checked_at >= self.settings.serving_ready_cache_s:
            self._ready = self.features.reachable(feature_service)
            self._ready_checked_at = now
        return self._ready


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
