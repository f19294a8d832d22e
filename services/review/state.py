"""What every request needs, built once per app: the database, queue, accounts, metrics and
the background worker."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request

from services.review.accounts import Accounts
from services.review.db import make_engine
from services.review.metrics import ReviewMetrics
from services.review.queue import ReviewQueue
from services.review.settings import ReviewSettings
from services.review.worker import Worker

log = logging.getLogger(__name__)


class Services:
    """The queue and accounts on one engine, the metrics, the consumer and publisher."""

    def __init__(self, settings: ReviewSettings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url())
        self.queue = ReviewQueue(
            self.engine,
            lease_s=settings.review_lease_s,
            age_floor_s=settings.review_age_floor_s,
            cutoff=settings.cutoff,
        )
        self.accounts = Accounts(
            self.engine,
            lockout_failures=settings.review_lockout_failures,
            lockout_window_s=settings.review_lockout_window_s,
        )
        self.metrics = ReviewMetrics()
        self.worker = Worker(settings, self.queue, self.metrics)
        self.appeal_keys = {
            client: key.get_secret_value()
            for client, key in settings.review_appeal_client_keys.items()
        }

    def start(self) -> None:
        self.accounts.seed(self.settings.review_accounts)
        self.worker.start()
        log.info(
            "review service on %s (database %s), lease %.0f s",
            self.settings.review_addr,
            self.engine.url.render_as_string(hide_password=True),
            self.settings.review_lease_s,
        )

    def close(self) -> None:
        self.worker.stop()
        self.engine.dispose()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
