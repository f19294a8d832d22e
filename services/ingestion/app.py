"""The ingestion API: authenticate, rate-limit, validate, stamp `received_at`, produce keyed by
sender_id, answer 202 once the broker has every event.

    POST /v1/messages   one MessageIn or {"messages": [...]} (at most MAX_BATCH)
    POST /v1/labels     one user report (ReportIn) or {"labels": [...]}; a client key required
    GET  /healthz /readyz /metrics

Trust: a report comes from a client app with a key (`Authorization: Bearer <key>`, keys in
INGESTION_CLIENT_KEYS), names its reporter, and must name a message this platform received from
that sender: checked against the ids this process accepted (bounded) and, on a miss, the
durable message log; otherwise 404 and nothing is stored. Moderator and corpus labels are not
accepted here (422 on `source`).

Limits: INGESTION_MAX_REQUEST_BYTES per body (413), MAX_BATCH items per batch (422), and
INGESTION_RATE_PER_S requests per second per client (429 with Retry-After). A broker that is
down gets 503 with Retry-After; the producer reconnects by itself when it is back.

Idempotency: an id is one event downstream however often it is sent — the processor keeps
the first message per message_id (and the first label per message, source and reporter). On
top, this process remembers the last `INGESTION_RECENT_IDS` ids it stored and answers a repeat
with 202 without producing it again (listed under `duplicates`).

The routes are in routes.py, what they share (producer, limits, client keys, metrics) in
state.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from modstack.http import service_app
from services.ingestion.routes import add_body_schemas, build_router
from services.ingestion.settings import IngestionSettings
from services.ingestion.state import Services, get_services


def create_app(settings: IngestionSettings | None = None) -> FastAPI:
    """Build the app; the broker is connected lazily, so the app starts even when it is down."""
    settings = settings or IngestionSettings()
    services = Services(settings)

    app = service_app(
        "ModStack ingestion",
        "Messages and user reports in over HTTP, out to Kafka.",
        settings=settings,
        start=services.start,
        stop=services.close,
        # Starlette's limit checks Content-Length before reading and counts the streamed bytes
        # (chunked or lying clients), so an oversized body is never parsed.
        max_body_size=settings.ingestion_max_request_bytes,
    )
    app.state.services = services
    app.state.metrics = services.metrics
    app.exception_handler(HTTPException)(_explain_too_large)
    app.include_router(build_router(settings))
    add_body_schemas(app)
    return app


async def _explain_too_large(request: Request, exc: HTTPException) -> Any:
    """A 413 from the body limit, in the API's words; other HTTP errors as FastAPI answers."""
    if exc.status_code != status.HTTP_413_CONTENT_TOO_LARGE:
        return await http_exception_handler(request, exc)
    services = get_services(request)
    services.count_rejection(request.url.path, "too_large")
    detail = (
        f"request body too large: the limit is {services.settings.ingestion_max_request_bytes} "
        "bytes (INGESTION_MAX_REQUEST_BYTES); send smaller batches"
    )
    return JSONResponse({"detail": detail}, status_code=exc.status_code)
