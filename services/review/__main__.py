"""`python -m services.review`: serve the review service with uvicorn on REVIEW_ADDR."""

from __future__ import annotations

import logging

from modstack.http import serve
from modstack.log import configure_logging
from services.review.app import create_app
from services.review.settings import ReviewSettings


def main() -> None:
    """Read settings once (placeholder secrets refused outside development), build the app,
    serve it on BIND_HOST and the port of REVIEW_ADDR (one worker: metrics live in-process)."""
    settings = ReviewSettings()
    configure_logging("review", settings.log_level)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    serve(create_app(settings), settings, settings.review_addr)


if __name__ == "__main__":
    main()
