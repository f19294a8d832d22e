"""The monitoring HTTP API (port 8002): health, metrics, and the drift reports.

GET /healthz /readyz /metrics
GET /v1/status                 window, reference, last result, retraining state
GET /v1/reports?limit=50       saved window reports, newest first
GET /v1/reports/{name}         one report (Evidently HTML)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from services.monitoring.monitor import Monitor
from services.monitoring.settings import MonitoringSettings

log = logging.getLogger("monitoring")


def create_app(
    settings: MonitoringSettings | None = None, monitor: Monitor | None = None
) -> FastAPI:
    """Build the app; the lifespan starts and stops the monitor's consumer."""
    settings = settings or MonitoringSettings()
    monitor = monitor or Monitor(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        monitor.start()
        yield
        await run_in_threadpool(monitor.stop)

    app = FastAPI(
        title="ModStack monitoring",
        summary="Drift of served traffic against the champion's reference, as Prometheus gauges "
        "and Evidently reports.",
        version="1",
        lifespan=lifespan,
    )
    app.state.monitor = monitor

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if monitor.consuming:
            return JSONResponse({"status": "ready"})
        return JSONResponse(
            {
                "status": "not ready",
                "reason": "not consuming yet: broker unreachable or joining "
                f"the group ({settings.kafka_bootstrap_servers})",
            },
            status_code=503,
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(monitor.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        return monitor.status()

    @app.get("/v1/reports")
    def list_reports(
        limit: Annotated[int, Query(ge=1, le=1000, description="How many, newest first")] = 50,
    ) -> dict[str, Any]:
        items = monitor.reports.listing(limit)
        for item in items:
            item["url"] = f"/v1/reports/{item['name']}"
        return {"directory": str(monitor.reports.directory.resolve()), "reports": items}

    @app.get("/v1/reports/{name}")
    def get_report(name: str) -> FileResponse:
        path = monitor.reports.path(name)
        if path is None:
            raise HTTPException(
                status_code=404, detail=f"no report named {name!r}; GET /v1/reports lists them"
            )
        return FileResponse(path, media_type="text/html")

    return app
