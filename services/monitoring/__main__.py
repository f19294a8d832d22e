"""`python -m services.monitoring`: serve the monitoring API with uvicorn on MONITORING_ADDR."""

from __future__ import annotations

import uvicorn

from modstack.log import configure_logging
from modstack.settings import port_of
from services.monitoring.app import create_app
from services.monitoring.settings import MonitoringSettings


def main() -> None:
    """Read settings once, build the app, serve it (one worker: windows live in-process)."""
    settings = MonitoringSettings()
    configure_logging("monitoring", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=port_of(settings.monitoring_addr),
        log_level=settings.log_level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
