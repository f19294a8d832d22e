"""`python -m services.canary`: serve the canary controller on CANARY_ADDR."""

from __future__ import annotations

import os

from modstack.http import serve
from modstack.log import configure_logging
from services.canary.app import create_app
from services.canary.settings import CanarySettings


def main() -> None:
    """Read settings once, build the app, serve it (one process: the controller is the single
    writer of the rollout state)."""
    # Fail fast when the registry is down (MLflow's default: 7 retries with exponential
    # back-off, minutes): /readyz must answer 503 at once and a tick must fail, not hang.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    settings = CanarySettings()
    configure_logging("canary", settings.log_level)
    serve(create_app(settings), settings, settings.canary_addr)


if __name__ == "__main__":
    main()
