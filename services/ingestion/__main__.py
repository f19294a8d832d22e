"""`python -m services.ingestion`: serve the ingestion API with uvicorn on INGESTION_ADDR."""

from __future__ import annotations

import logging

from modstack.http import serve
from modstack.log import configure_logging
from services.ingestion.app import create_app
from services.ingestion.settings import IngestionSettings


def main() -> None:
    """Read settings once, build the app, serve it on BIND_HOST and the port of INGESTION_ADDR
    (one worker: metrics live in-process)."""
    settings = IngestionSettings()
    configure_logging("ingestion", settings.log_level)
    # kafka-python logs each failed reconnect at ERROR; the 503s and /readyz already say it.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    serve(create_app(settings), settings, settings.ingestion_addr)


if __name__ == "__main__":
    main()
