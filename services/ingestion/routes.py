"""The ingestion API's routes: messages and reports in; health, readiness and metrics through
`modstack.http.probe_router`.

The routes are module-level functions; `build_router` registers them with the responses they
document, which name settings (the body limit, whether messages need a key). Errors are raised
as `modstack.http_errors` exceptions; the app answers them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool

from modstack.events import MAX_BATCH, MessageIn, utcnow
from modstack.http import ADMIN_RESPONSES, AdminAuth, Check, Readiness, probe_router
from modstack.http_errors import (
    RETRY_AFTER,
    ContentTooLarge,
    NotFound,
    Responses,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    error_response,
)
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
from services.ingestion.state import (
    MessageClient,
    ReportClient,
    Services,
    ServicesDep,
    get_services,
)


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
    """Parse, check, drop repeats, produce and wait for the acks: the 202 answer, or raises
    the error (422, 404, 503, 413)."""
    metrics = services.metrics
    try:
        items, batch = parse(raw)
    except InvalidBody as exc:
        services.count_rejection(endpoint, "invalid")
        raise Unprocessable(exc.errors) from None
    if check is not None:
        errors = check(items, batch)
        if errors:
            services.count_rejection(endpoint, "message_not_seen")
            raise NotFound(errors)
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
        raise Unavailable(str(exc), {"Retry-After": services.unavailable_after}) from None
    except EventTooLarge as exc:
        services.count_rejection(endpoint, "too_large")
        raise ContentTooLarge(f"an event is larger than the broker accepts: {exc}") from None
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


# -- readiness ---------------------------------------------------------------------------------


class SenderErased(BaseModel):
    """What ingestion held about one sender in memory, now dropped."""

    sender_id: str
    recent_message_ids: int


def erase_sender(sender_id: str, services: ServicesDep, _admin: AdminAuth) -> SenderErased:
    """Drop the sender's recent message ids (kept to check reports against), for erasure
    (`modstack forget`); the durable stores are erased by their owners."""
    return SenderErased(
        sender_id=sender_id, recent_message_ids=services.recent_messages.erase_sender(sender_id)
    )


async def readiness(request: Request) -> Readiness:
    """Ready when the broker answers a metadata request."""
    bootstrap = get_services(request).settings.kafka_bootstrap_servers
    if await run_in_threadpool(broker_reachable, bootstrap, 2.0):
        broker = Check(True, f"{bootstrap} answers")
    else:
        broker = Check(False, str(BrokerUnavailable(bootstrap)))
    return Readiness({"broker": broker})


# -- the router and its OpenAPI document -------------------------------------------------------

_UNAUTHORIZED = error_response(Unauthorized, "No or an unknown client key.", Problem)
_NOT_SEEN = error_response(
    NotFound,
    "A report names a message not received from that sender; "
    "`detail[].loc` names the item; nothing is stored.",
    Problem,
)


def _store_responses(settings: IngestionSettings) -> Responses:
    """What both POST endpoints answer (the 413 names this deployment's body limit)."""
    return {
        202: {"model": Accepted, "description": "Every accepted id is stored in the broker."},
        **error_response(
            ContentTooLarge,
            f"Body over INGESTION_MAX_REQUEST_BYTES "
            f"({settings.ingestion_max_request_bytes} bytes here).",
            Problem,
        ),
        **error_response(
            Unprocessable,
            f"Invalid body (at most {MAX_BATCH} items a batch); `detail[].loc` names the field.",
            Problem,
        ),
        **error_response(
            TooManyRequests,
            "This client is over its rate limit (INGESTION_RATE_PER_S).",
            Problem,
            headers=RETRY_AFTER,
        ),
        **error_response(
            Unavailable,
            "The broker is unreachable; the detail names its address.",
            Problem,
            headers=RETRY_AFTER,
        ),
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
        "/v1/admin/senders/{sender_id}",
        erase_sender,
        methods=["DELETE"],
        responses=ADMIN_RESPONSES,
    )
    router.include_router(
        probe_router(
            ready=readiness,
            metrics=lambda request: get_services(request).metrics.registry,
            ready_means="The broker answers.",
        )
    )
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
