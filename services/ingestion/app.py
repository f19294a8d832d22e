"""The ingestion API: validate, stamp `received_at`, produce keyed by sender_id, answer 202
once the broker has every event.

    POST /v1/messages   one MessageIn or {"messages": [...]} (at most MAX_BATCH)
    POST /v1/labels     one LabelIn or {"labels": [...]}
    GET  /healthz /readyz /metrics

Idempotency: an id is one event downstream however often it is sent — the processor keeps
the first message per message_id (and the first label per message_id and source). On top,
this process remembers the last `INGESTION_RECENT_IDS` ids it stored and answers a repeat
with 202 without producing it again (listed under `duplicates`); that saves broker traffic on
client retries but is per process and bounded, so it is an optimisation, not the guarantee.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from modstack.events import LabelIn, MessageIn, utcnow
from modstack.kafka import BrokerUnavailable, broker_reachable, ensure_topics
from modstack.names import TOPIC_LABELS, TOPIC_MESSAGES
from services.ingestion.metrics import IngestionMetrics
from services.ingestion.payloads import (
    Accepted,
    InvalidBody,
    LabelBatch,
    MessageBatch,
    label_event,
    label_key,
    message_event,
    message_key,
    parse_labels,
    parse_messages,
)
from services.ingestion.producer import EventSender, EventTooLarge, Outgoing, RecentIds
from services.ingestion.settings import IngestionSettings

log = logging.getLogger("ingestion")


def create_app(settings: IngestionSettings | None = None) -> FastAPI:
    """Build the app; the broker is connected lazily, so the app starts even when it is down."""
    settings = settings or IngestionSettings()
    metrics = IngestionMetrics()
    sender = EventSender(settings.kafka_bootstrap_servers, settings.ingestion_produce_timeout_s)
    recent = RecentIds(settings.ingestion_recent_ids)

    def connect() -> None:
        try:
            created = ensure_topics(settings.kafka_bootstrap_servers)
            if created:
                log.info("created topics %s", ", ".join(created))
            sender.producer()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable yet (requests get 503 until it is): %s", exc)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Connect in the background: the API starts (and /healthz answers) without the broker.
        threading.Thread(target=connect, name="connect-broker", daemon=True).start()
        yield
        await run_in_threadpool(sender.close)

    app = FastAPI(
        title="ModStack ingestion",
        summary="Messages and labels in over HTTP, out to Kafka.",
        version="1",
        lifespan=lifespan,
        # Starlette's limit checks Content-Length before reading and counts the streamed bytes
        # (chunked or lying clients), so an oversized body is never parsed.
        max_body_size=settings.ingestion_max_request_bytes,
    )
    app.state.settings = settings
    app.state.metrics = metrics

    @app.exception_handler(HTTPException)
    async def explain_too_large(request: Request, exc: HTTPException) -> Any:
        if exc.status_code != status.HTTP_413_CONTENT_TOO_LARGE:
            return await http_exception_handler(request, exc)
        _count_rejection(metrics, request.url.path, "too_large")
        detail = (
            f"request body too large: the limit is {settings.ingestion_max_request_bytes} "
            "bytes (INGESTION_MAX_REQUEST_BYTES); send smaller batches"
        )
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    async def ingest(
        request: Request,
        endpoint: str,
        topic: str,
        parse: Callable[[bytes], Sequence[Any]],
        to_event: Callable[[Any, Any], Any],
        key_of: Callable[[Any], str],
    ) -> JSONResponse:
        raw = await request.body()
        # Parsing a batch of large bodies and waiting for acks both block: keep the loop free.
        return await run_in_threadpool(store_events, raw, endpoint, topic, parse, to_event, key_of)

    def store_events(
        raw: bytes,
        endpoint: str,
        topic: str,
        parse: Callable[[bytes], Sequence[Any]],
        to_event: Callable[[Any, Any], Any],
        key_of: Callable[[Any], str],
    ) -> JSONResponse:
        try:
            items = parse(raw)
        except InvalidBody as exc:
            _count_rejection(metrics, endpoint, "invalid")
            return JSONResponse(
                {"detail": exc.errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
            )
        received_at = utcnow()
        outgoing: list[Outgoing] = []
        duplicates: list[str] = []
        seen_here: set[str] = set()
        for item in items:
            key = key_of(item)
            if key in recent or key in seen_here:
                duplicates.append(item.message_id)
                continue
            seen_here.add(key)
            event = to_event(item, received_at)
            outgoing.append(Outgoing(key=event.sender_id, value=event.to_bytes(), event_id=key))
        started = time.perf_counter()
        try:
            sender.send(topic, outgoing)
        except BrokerUnavailable as exc:
            _count_rejection(metrics, endpoint, "broker_unavailable", outcome="unavailable")
            return JSONResponse(
                {"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE
            )
        except EventTooLarge as exc:
            _count_rejection(metrics, endpoint, "too_large")
            return JSONResponse(
                {"detail": f"an event is larger than the broker accepts: {exc}"},
                status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            )
        if outgoing:
            metrics.produce_duration.observe(time.perf_counter() - started)
        recent.add_all([o.event_id for o in outgoing])
        metrics.requests.labels(endpoint, "accepted").inc()
        metrics.events.labels(topic, "produced").inc(len(outgoing))
        metrics.events.labels(topic, "duplicate").inc(len(duplicates))
        answer = Accepted(accepted=[item.message_id for item in items], duplicates=duplicates)
        return JSONResponse(jsonable_encoder(answer), status_code=status.HTTP_202_ACCEPTED)

    responses: dict[int | str, dict[str, Any]] = {
        202: {"model": Accepted, "description": "Every accepted id is stored in the broker."},
        413: {"description": "Request body over INGESTION_MAX_REQUEST_BYTES."},
        422: {"description": "Invalid body; `detail[].loc` names the field."},
        503: {"description": "The broker is unreachable; the detail names its address."},
    }

    @app.post(
        "/v1/messages",
        status_code=status.HTTP_202_ACCEPTED,
        responses=responses,
        openapi_extra=_body_schema("MessagesBody"),
    )
    async def post_messages(request: Request) -> JSONResponse:
        """Accept one message or a batch `{"messages": [...]}`."""
        return await ingest(
            request, "messages", TOPIC_MESSAGES, parse_messages, message_event, message_key
        )

    @app.post(
        "/v1/labels",
        status_code=status.HTTP_202_ACCEPTED,
        responses=responses,
        openapi_extra=_body_schema("LabelsBody"),
    )
    async def post_labels(request: Request) -> JSONResponse:
        """Accept one label (user report or moderator decision) or a batch `{"labels": [...]}`."""
        return await ingest(request, "labels", TOPIC_LABELS, parse_labels, label_event, label_key)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the broker answers a metadata request."""
        bootstrap = settings.kafka_bootstrap_servers
        if await run_in_threadpool(broker_reachable, bootstrap, 2.0):
            return JSONResponse({"status": "ready", "broker": bootstrap})
        return JSONResponse(
            {"status": "unavailable", "detail": str(BrokerUnavailable(bootstrap))},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    _add_body_schemas(app)
    return app


def _count_rejection(
    metrics: IngestionMetrics, endpoint: str, reason: str, outcome: str = "rejected"
) -> None:
    endpoint = endpoint.rstrip("/").rsplit("/", 1)[-1] or "unknown"
    metrics.requests.labels(endpoint, outcome).inc()
    metrics.rejected.labels(reason).inc()


_BODY_TYPES: dict[str, Any] = {
    "MessagesBody": MessageIn | MessageBatch,
    "LabelsBody": LabelIn | LabelBatch,
}
_REF = "#/components/schemas/{model}"


def _body_schema(name: str) -> dict[str, Any]:
    """The request body in the OpenAPI document (the endpoints parse the body themselves, to
    tell a single item from a batch and keep error locations short)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
        }
    }


def _add_body_schemas(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, body_type in _BODY_TYPES.items():
                schema = TypeAdapter(body_type).json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
