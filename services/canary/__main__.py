"""`python -m services.canary`: serve the canary controller on CANARY_ADDR."""

from __future__ import annotations

import uvicorn

from modstack.log import configure_logging
from modstack.settings import port_of
from services.canary.app import create_app
from services.canary.settings import CanarySettings


def main() -> None:
    """Read settings once, build the app, serve it (one process: the controller is the single
    writer of the rollout state)."""
    settings = CanarySettings()
    configure_logging("canary", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=port_of(settings.canary_addr),
        log_level=settings.log_level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
