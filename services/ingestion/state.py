"""What every request needs, built once per app, and the FastAPI dependencies that hand it to
the routes: the services, and the client a request comes from (key checked, rate limited)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from modstack.http import BearerCredentials, token_matches
from modstack.http_errors import TooManyRequests, Unauthorized
from modstack.kafka import BrokerUnavailable, ensure_topics
from modstack.message_log import MessageLog
from services.ingestion.limits import RateLimiter, retry_after_header
from services.ingestion.metrics import IngestionMetrics
from services.ingestion.producer import EventSender, RecentIds
from services.ingestion.settings import IngestionSettings

log = logging.getLogger(__name__)


class Services:
    """The producer, recent-id indexes, rate limiter, message log, client keys and metrics."""

    def __init__(self, settings: IngestionSettings) -> None:
        self.settings = settings
        self.metrics = IngestionMetrics()
        self.sender = EventSender(
            settings.kafka_bootstrap_servers, settings.ingestion_produce_timeout_s
        )
        self.recent_messages = RecentIds(settings.ingestion_recent_ids)  # message_id -> sender
        self.recent_labels = RecentIds(settings.ingestion_recent_ids)
        self.limiter = RateLimiter(settings.ingestion_rate_per_s, settings.ingestion_rate_burst)
        self.message_log = MessageLog(settings.data_dir)
        self.client_keys = {
            name: key.get_secret_value().encode()
            for name, key in settings.ingestion_client_keys.items()
        }
        self.unavailable_after = str(settings.ingestion_unavailable_retry_after_s)
        self._reconnecting = threading.Lock()
        self._last_reconnect = 0.0

    def start(self) -> None:
        """Connect in the background: the API starts (and /healthz answers) without the broker."""
        threading.Thread(target=self._connect, name="connect-broker", daemon=True).start()

    def close(self) -> None:
        self.sender.close()

    def _connect(self) -> None:
        try:
            created = ensure_topics(self.settings.kafka_bootstrap_servers)
            if created:
                log.info("created topics %s", ", ".join(created))
            self.sender.producer()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable yet (requests get 503 until it is): %s", exc)

    def reconnect_soon(self) -> None:
        """After a failed send: create the topics again in the background (at most every 2 s).

        A broker that restarted empty (Tansu keeps topics in memory) has no topics, and the
        producer would wait for their metadata forever; this is what makes ingestion recover
        without a restart."""
        now = time.monotonic()
        if now - self._last_reconnect < 2.0 or not self._reconnecting.acquire(blocking=False):
            return
        self._last_reconnect = now

        def run() -> None:
            try:
                with contextlib.suppress(BrokerUnavailable):
                    created = ensure_topics(self.settings.kafka_bootstrap_servers)
                    if created:
                        log.warning("broker came back without topics; created %s", created)
                    # the broker answers, yet sends failed: start with a fresh producer
                    self.sender.reset()
            finally:
                self._reconnecting.release()

        threading.Thread(target=run, name="reconnect-broker", daemon=True).start()

    def count_rejection(self, endpoint: str, reason: str, outcome: str = "rejected") -> None:
        """Count a refused request; `endpoint` is a path or its last segment."""
        endpoint = endpoint.rstrip("/").rsplit("/", 1)[-1] or "unknown"
        self.metrics.requests.labels(endpoint, outcome).inc()
        self.metrics.rejected.labels(reason).inc()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def _client_of(
    request: Request,
    services: Services,
    credentials: HTTPAuthorizationCredentials | None,
    required: bool,
) -> str:
    """The client app a request comes from; raises `Unauthorized` (401) without a valid key:
    a key not in INGESTION_CLIENT_KEYS names no client, so it is no identity (not a 403)."""
    if credentials is not None:
        given = credentials.credentials
        # compare against every key (constant time each): which one matched must not leak
        matched = [name for name, key in services.client_keys.items() if token_matches(given, key)]
        if matched:
            return matched[0]
    if required or credentials is not None:
        services.count_rejection(request.url.path, "unauthenticated")
        raise Unauthorized(
            "a valid client key is required: send `Authorization: Bearer <key>` with a key "
            "from INGESTION_CLIENT_KEYS"
        )
    host = request.client.host if request.client else "unknown"
    return f"anonymous@{host}"


def _admit(request: Request, services: Services, client: str) -> str:
    """`client`, unless it is over its rate: then raises `TooManyRequests` (Retry-After)."""
    wait = services.limiter.acquire(client)
    if wait > 0:
        settings = services.settings
        services.count_rejection(request.url.path, "rate_limited")
        raise TooManyRequests(
            f"client {client!r} is over {settings.ingestion_rate_per_s:g} requests/s "
            f"(burst {settings.ingestion_rate_burst:g}, INGESTION_RATE_PER_S); retry later",
            {"Retry-After": retry_after_header(wait)},
        )
    return client


# async: they run on the event loop, before the route reads the body (no thread-pool hop)
async def message_client(
    request: Request, services: ServicesDep, credentials: BearerCredentials
) -> str:
    """The sender of messages: a key only if INGESTION_MESSAGES_NEED_KEY; rate limited."""
    required = services.settings.ingestion_messages_need_key
    return _admit(request, services, _client_of(request, services, credentials, required))


async def report_client(
    request: Request, services: ServicesDep, credentials: BearerCredentials
) -> str:
    """The client app sending reports: a valid key always; rate limited."""
    return _admit(request, services, _client_of(request, services, credentials, True))


MessageClient = Annotated[str, Depends(message_client)]
ReportClient = Annotated[str, Depends(report_client)]
