"""The monitoring app factory (port 8002): the routes of `services.monitoring.routes` on one
`Monitor`, whose Kafka consumer the lifespan starts and stops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.monitoring.monitor import Monitor
from services.monitoring.routes import router
from services.monitoring.settings import MonitoringSettings


def create_app(
    settings: MonitoringSettings | None = None, monitor: Monitor | None = None
) -> FastAPI:
    """Build the app; the lifespan starts and stops the monitor's consumer."""
    monitor = monitor or Monitor(settings or MonitoringSettings())

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
    app.include_router(router)
    return app
