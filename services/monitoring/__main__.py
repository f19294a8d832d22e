"""`python -m services.monitoring`: serve the monitoring API with uvicorn on MONITORING_ADDR."""

from __future__ import annotations

from modstack.http import serve
from modstack.log import configure_logging
from services.monitoring.app import create_app
from services.monitoring.settings import MonitoringSettings


def main() -> None:
    """Read settings once, build the app, serve it (one worker: windows live in-process)."""
    settings = MonitoringSettings()
    configure_logging("monitoring", settings.log_level)
    serve(create_app(settings), settings, settings.monitoring_addr)


if __name__ == "__main__":
    main()
