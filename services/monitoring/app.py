"""The monitoring app factory (port 8002): the routes of `services.monitoring.routes` on one
`Monitor`, whose Kafka consumer the lifespan starts and stops."""

from __future__ import annotations

from fastapi import FastAPI

from modstack.http import service_app
from services.monitoring.monitor import Monitor
from services.monitoring.routes import router
from services.monitoring.settings import MonitoringSettings


def create_app(
    settings: MonitoringSettings | None = None, monitor: Monitor | None = None
) -> FastAPI:
    """Build the app; the lifespan starts and stops the monitor's consumer."""
    monitor = monitor or Monitor(settings or MonitoringSettings())

    app = service_app(
        "ModStack monitoring",
        "Drift of served traffic against the champion's reference, as Prometheus gauges "
        "and Evidently reports.",
        settings=monitor.settings,
        start=monitor.start,
        stop=monitor.stop,
    )
    app.state.monitor = monitor
    app.include_router(router)
    return app
