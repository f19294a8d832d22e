"""Serving API: POST /v1/moderate scores a message with every policy's champion or, during a
policy's rollout, its challenger; decisions go to predictions.v1 and `review` ones to the
review service (reviews.v1).

Consumes: the MLflow registry (each policy's aliases + rollout tags, polled), the Feast online
store. Produces: predictions.v1 (every policy's decision, shadow ones with served=false),
reviews.v1 (decisions in a review band), /metrics for Prometheus and the canary controllers.
The routes are in routes.py, the per-worker state in state.py, micro-batching in batcher.py +
scoring.py.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from modstack.http import service_app
from services.serving.routes import probe_routes, router
from services.serving.schemas import (  # noqa: F401 - the API models, re-exported
    FaultSettings,
    ModerateRequest,
    ModerateResponse,
)
from services.serving.settings import ServingSettings, get_serving_settings
from services.serving.state import Services

log = logging.getLogger(__name__)


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """The serving app; models load, the poller and the batcher start in the lifespan."""
    from modstack.log import configure_logging

    settings = settings or get_serving_settings()
    configure_logging("serving", settings.log_level)

    app: FastAPI

    def start() -> None:
        """Per worker, on its running loop: the models, the poller and the batcher."""
        services = Services(settings)
        services.start()
        models = ", ".join(
            f"{policy} champion={snap.champion.version if snap.champion else None} "
            f"challenger={snap.challenger.version if snap.challenger else None} ({snap.source})"
            for policy, snap in ((p, d.snapshot) for p, d in services.deployments.items())
        )
        log.info(
            "serving %s; batches of <= %d rows, <= %.1f ms wait%s",
            models,
            settings.serving_batch_max_rows,
            settings.serving_batch_max_wait_ms,
            "; FAULTS INJECTED into the challenger path" if services.faults.enabled else "",
        )
        app.state.services = services

    async def stop() -> None:
        await app.state.services.stop()

    app = service_app(
        "ModStack serving",
        "Moderation of every message by every policy (spam, abuse, ...), each with its own "
        "champion/challenger canary routing.",
        settings=settings,
        start=start,
        stop=stop,
    )
    app.include_router(router)
    app.include_router(probe_routes)
    return app
