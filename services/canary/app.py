"""Canary controller app: wires the runner (registry, metrics source, label join) to the
routes in `routes.py`. Consumes the MLflow registry (rollout tags, aliases), the serving
metrics and predictions.v1 / labels.v1; the loop in `loop.py` does the stepping.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from mlflow.exceptions import MlflowException

from modstack.http import service_app
from modstack.http_errors import Conflict, HTTPError, NotFound, Translation, Unavailable
from modstack.names import registered_model
from modstack.registry.aliases import RegistryError, get_client
from services.canary.label_feed import LabelFollower
from services.canary.loop import CanaryRunner
from services.canary.metrics import CanaryMetrics
from services.canary.routes import admin_router, probe_routes
from services.canary.settings import CanarySettings
from services.canary.sources import MetricsSource, PrometheusSource, ScrapeSource
from services.canary.state_machine import RolloutConflict

log = logging.getLogger(__name__)


def make_source(settings: CanarySettings) -> MetricsSource:
    """Prometheus when PROMETHEUS_URL is set, else scraping the serving replicas."""
    if settings.prometheus_url:
        return PrometheusSource(
            settings.prometheus_url,
            min_window_s=settings.canary_prometheus_min_window_s,
            policy=settings.canary_policy,
        )
    return ScrapeSource(settings.metrics_urls(), policy=settings.canary_policy)


def _registry_error(exc: Exception) -> HTTPError:
    """A version the registry does not have is a 404; any other registry failure a 503."""
    if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
        return NotFound(f"not in the registry: {exc}")
    return Unavailable(f"MLflow registry: {exc}")


# The controller's domain exceptions and their answers; anything else (a bare ValueError
# included) is a 500.
DOMAIN_ERRORS: dict[type[Exception], Translation] = {
    RolloutConflict: Conflict,  # the action does not apply to the rollout's status
    RegistryError: Conflict,  # e.g. promoting the version that is already the champion
    MlflowException: _registry_error,
}


def create_app(settings: CanarySettings | None = None, *, run_loop: bool = True) -> FastAPI:
    """Build the app; `run_loop=False` leaves the stepping to explicit `runner.tick()` calls."""
    settings = settings or CanarySettings()
    labels = (
        LabelFollower(settings.kafka_bootstrap_servers, settings.canary_policy)
        if settings.canary_label_join
        else None
    )
    runner = CanaryRunner(
        get_client(settings.mlflow_tracking_uri),
        make_source(settings),
        settings.policy(),
        settings.thresholds(),
        CanaryMetrics(),
        labels,
        tick_s=settings.canary_tick_s,
        model_name=registered_model(settings.canary_policy),
    )

    app = service_app(
        "ModStack canary controller",
        "Steps a challenger's traffic, analyses each step, promotes or rolls back.",
        settings=settings,
        start=runner.start if run_loop else lambda: None,
        stop=runner.stop,
        domain_errors=DOMAIN_ERRORS,
    )
    app.state.runner = runner
    app.include_router(admin_router)
    app.include_router(probe_routes)
    return app
