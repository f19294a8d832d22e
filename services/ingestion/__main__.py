"""`python -m services.ingestion`: serve the ingestion API with uvicorn on INGESTION_ADDR."""

from __future__ import annotations

import logging

import uvicorn

from modstack.log import configure_logging
from modstack.settings import port_of
from services.ingestion.app import create_app
from services.ingestion.settings import IngestionSettings


def main() -> None:
    """Read settings once, build the app, serve it on BIND_HOST and the port of INGESTION_ADDR
    (one worker: metrics live in-process)."""
    settings = IngestionSettings()
    configure_logging("ingestion", settings.log_level)
    # kafka-python logs each failed reconnect at ERROR; the 503s and /readyz already say it.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=port_of(settings.ingestion_addr),
        log_level=settings.log_level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
