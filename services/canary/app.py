"""Canary controller app: wires the runner (registry, metrics source, label join) to the
routes in `routes.py`. Consumes the MLflow registry (rollout tags, aliases), the serving
metrics and predictions.v1 / labels.v1; the loop in `loop.py` does the stepping.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from mlflow.exceptions import MlflowException

from modstack.http import service_app
from modstack.registry.aliases import RegistryError, get_client
from services.canary.label_feed import LabelFollower
from services.canary.loop import CanaryRunner
from services.canary.metrics import CanaryMetrics
from services.canary.routes import admin_router, probe_router
from services.canary.settings import CanarySettings
from services.canary.sources import MetricsSource, PrometheusSource, ScrapeSource
from services.canary.state_machine import RolloutConflict

log = logging.getLogger("canary")


def make_source(settings: CanarySettings) -> MetricsSource:
    """Prometheus when PROMETHEUS_URL is set, else scraping the serving replicas."""
    if settings.prometheus_url:
        return PrometheusSource(
            settings.prometheus_url, min_window_s=settings.canary_prometheus_min_window_s
        )
    return ScrapeSource(settings.metrics_urls())


def _status(code: int):
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=code, content={"detail": str(exc)})

    return handler


async def _registry_error(_: Request, exc: Exception) -> JSONResponse:
    """A version the registry does not have is a 404; any other registry failure a 503."""
    code = getattr(exc, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return JSONResponse(status_code=404, content={"detail": f"not in the registry: {exc}"})
    return JSONResponse(status_code=503, content={"detail": f"MLflow registry: {exc}"})


def create_app(settings: CanarySettings | None = None, *, run_loop: bool = True) -> FastAPI:
    """Build the app; `run_loop=False` leaves the stepping to explicit `runner.tick()` calls."""
    settings = settings or CanarySettings()
    labels = LabelFollower(settings.kafka_bootstrap_servers) if settings.canary_label_join else None
    runner = CanaryRunner(
        get_client(settings.mlflow_tracking_uri),
        make_source(settings),
        settings.policy(),
        settings.thresholds(),
        CanaryMetrics(),
        labels,
        tick_s=settings.canary_tick_s,
    )

    app = service_app(
        "ModStack canary controller",
        "Steps a challenger's traffic, analyses each step, promotes or rolls back.",
        start=runner.start if run_loop else lambda: None,
        stop=runner.stop,
    )
    app.state.runner = runner
    app.state.settings = settings
    app.add_exception_handler(RolloutConflict, _status(409))
    # RolloutPolicy refusing the overrides (decreasing steps, weights outside (0, 100])
    app.add_exception_handler(ValueError, _status(422))
    app.add_exception_handler(RegistryError, _status(409))
    app.add_exception_handler(MlflowException, _registry_error)
    app.include_router(admin_router)
    app.include_router(probe_router)
    return app
