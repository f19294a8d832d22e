"""The ingestion API's routes: messages and reports in, health, readiness and metrics.

The routes are module-level functions; `build_router` registers them with the responses they
document, which name settings (the body limit, whether messages need a key)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool

from modstack.events import MAX_BATCH, MessageIn, utcnow
from modstack.kafka import BrokerUnavailable, broker_reachable
from modstack.names import TOPIC_LABELS, TOPIC_MESSAGES
from services.ingestion.payloads import (
    Accepted,
    InvalidBody,
    LabelBatch,
    MessageBatch,
    ReportIn,
    label_event,
    label_key,
    message_event,
    parse_messages,
    parse_reports,
    unseen_reports,
)
from services.ingestion.producer import EventTooLarge, Outgoing, RecentIds
from services.ingestion.settings import IngestionSettings
from services.ingestion.state import MessageClient, ReportClient, Services, ServicesDep


class Problem(BaseModel):
    """An error answer: `detail` says what was wrong (a list of `{loc, msg, type}` for bodies)."""

    detail: str | list[dict[str, Any]]


# -- messages and reports ----------------------------------------------------------------------


def _store_events(
    services: Services,
    raw: bytes,
    endpoint: str,
    topic: str,
    parse: Callable[[bytes], tuple[Sequence[Any], bool]],
    to_event: Callable[[Any, Any], Any],
    key_of: Callable[[Any], str],
    recent: RecentIds,
    check: Callable[[Sequence[Any], bool], list[dict[str, Any]]] | None = None,
) -> JSONResponse:
    """Parse, check, drop repeats, produce and wait for the acks; the answer for each case."""
    metrics = services.metrics
    try:
        items, batch = parse(raw)
    except InvalidBody as exc:
        services.count_rejection(endpoint, "invalid")
        return JSONResponse(
            {"detail": exc.errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    if check is not None:
        errors = check(items, batch)
        if errors:
            services.count_rejection(endpoint, "message_not_seen")
            return JSONResponse({"detail": errors}, status_code=status.HTTP_404_NOT_FOUND)
    received_at = utcnow()
    outgoing: list[Outgoing] = []
    duplicates: list[str] = []
    seen_here: set[str] = set()
    for item in items:
        event = to_event(item, received_at)
        key = key_of(event)
        if key in recent or key in seen_here:
            duplicates.append(item.message_id)
            continue
        seen_here.add(key)
        outgoing.append(Outgoing(key=event.sender_id, value=event.to_bytes(), event_id=key))
    started = time.perf_counter()
    try:
        services.sender.send(topic, outgoing)
    except BrokerUnavailable as exc:
        services.reconnect_soon()
        services.count_rejection(endpoint, "broker_unavailable", outcome="unavailable")
        return JSONResponse(
            {"detail": str(exc)},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": services.unavailable_after},
        )
    except EventTooLarge as exc:
        services.count_rejection(endpoint, "too_large")
        return JSONResponse(
            {"detail": f"an event is larger than the broker accepts: {exc}"},
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        )
    if outgoing:
        metrics.produce_duration.observe(time.perf_counter() - started)
    recent.add_all([o.event_id for o in outgoing], [o.key for o in outgoing])
    metrics.requests.labels(endpoint, "accepted").inc()
    metrics.events.labels(topic, "produced").inc(len(outgoing))
    metrics.events.labels(topic, "duplicate").inc(len(duplicates))
    answer = Accepted(accepted=[item.message_id for item in items], duplicates=duplicates)
    return JSONResponse(jsonable_encoder(answer), status_code=status.HTTP_202_ACCEPTED)


def _check_reports(
    services: Services, items: Sequence[ReportIn], batch: bool
) -> list[dict[str, Any]]:
    """The errors (404) for reports on messages not received from that sender."""
    recent_messages = services.recent_messages
    senders: dict[str, str] = {}
    missing: list[str] = []
    for item in items:
        known = recent_messages.get(item.message_id)
        if known is None:
            missing.append(item.message_id)
        else:
            senders[item.message_id] = known
    if missing:
        # not accepted by this process lately (evicted, restarted, another replica): the log
        senders.update(services.message_log.senders_of(missing))
        recent_messages.add_all(list(senders), list(senders.values()))
    return unseen_reports(items, senders, batch)


async def post_messages(
    request: Request, services: ServicesDep, client: MessageClient
) -> JSONResponse:
    """Accept one message or a batch `{"messages": [...]}` (at most 500)."""
    # `client` is resolved before the body is read: its key checked, its rate limit applied
    raw = await request.body()
    # Parsing a batch of large bodies and waiting for acks both block: keep the loop free.
    return await run_in_threadpool(
        _store_events,
        services,
        raw,
        "messages",
        TOPIC_MESSAGES,
        lambda body: (parse_messages(body), False),
        message_event,
        lambda event: event.message_id,
        services.recent_messages,
    )


async def post_labels(
    request: Request, services: ServicesDep, client: ReportClient
) -> JSONResponse:
    """Accept one user report or a batch `{"labels": [...]}` (at most 500) from a client
    app; each must name a message received from that sender."""
    raw = await request.body()
    return await run_in_threadpool(
        _store_events,
        services,
        raw,
        "labels",
        TOPIC_LABELS,
        parse_reports,
        lambda item, received_at: label_event(item, received_at, client),
        label_key,
        services.recent_labels,
        partial(_check_reports, services),
    )


# -- health, readiness, metrics ----------------------------------------------------------------


async def healthz() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: the broker answers a metadata request."""
    bootstrap = services.settings.kafka_bootstrap_servers
    if await run_in_threadpool(broker_reachable, bootstrap, 2.0):
        return JSONResponse({"status": "ready", "broker": bootstrap})
    return JSONResponse(
        {"status": "unavailable", "detail": str(BrokerUnavailable(bootstrap))},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


async def metrics_endpoint(services: ServicesDep) -> PlainTextResponse:
    registry = services.metrics.registry
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


# -- the router and its OpenAPI document -------------------------------------------------------

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No or an unknown client key."}
}
_NOT_SEEN: dict[int | str, dict[str, Any]] = {
    404: {
        "model": Problem,
        "description": "A report names a message not received from that sender; "
        "`detail[].loc` names the item; nothing is stored.",
    },
}
_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The broker answers."},
    503: {"model": Problem, "description": "The broker is unreachable."},
}


def _store_responses(settings: IngestionSettings) -> dict[int | str, dict[str, Any]]:
    """What both POST endpoints answer (the 413 names this deployment's body limit)."""
    return {
        202: {"model": Accepted, "description": "Every accepted id is stored in the broker."},
        413: {
            "model": Problem,
            "description": f"Body over INGESTION_MAX_REQUEST_BYTES "
            f"({settings.ingestion_max_request_bytes} bytes here).",
        },
        422: {
            "model": Problem,
            "description": f"Invalid body (at most {MAX_BATCH} items a batch); "
            "`detail[].loc` names the field.",
        },
        429: {
            "model": Problem,
            "description": "This client is over its rate limit (INGESTION_RATE_PER_S).",
            "headers": _RETRY_AFTER,
        },
        503: {
            "model": Problem,
            "description": "The broker is unreachable; the detail names its address.",
            "headers": _RETRY_AFTER,
        },
    }


def build_router(settings: IngestionSettings) -> APIRouter:
    """The routes, documenting the responses these settings give."""
    common = _store_responses(settings)
    message_responses = {
        **common,
        **(_UNAUTHORIZED if settings.ingestion_messages_need_key else {}),
    }
    router = APIRouter()
    router.add_api_route(
        "/v1/messages",
        post_messages,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        responses=message_responses,
        openapi_extra=_body_schema("MessagesBody"),
    )
    router.add_api_route(
        "/v1/labels",
        post_labels,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        responses={**common, **_UNAUTHORIZED, **_NOT_SEEN},
        openapi_extra=_body_schema("LabelsBody"),
    )
    router.add_api_route(
        "/healthz",
        healthz,
        methods=["GET"],
        responses={200: {"description": "The process serves requests."}},
    )
    router.add_api_route("/readyz", readyz, methods=["GET"], responses=_READY_RESPONSES)
    router.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    return router


_BODY_TYPES: dict[str, Any] = {
    "MessagesBody": MessageIn | MessageBatch,
    "LabelsBody": ReportIn | LabelBatch,
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


def add_body_schemas(app: FastAPI) -> None:
    """Make `app.openapi()` include the body schemas the routes refer to."""

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
