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
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from modstack.events import MAX_BATCH, MessageIn, utcnow
from modstack.kafka import BrokerUnavailable, broker_reachable, ensure_topics
from modstack.message_log import MessageLog
from modstack.names import TOPIC_LABELS, TOPIC_MESSAGES
from services.ingestion.limits import RateLimiter, retry_after_header
from services.ingestion.metrics import IngestionMetrics
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
from services.ingestion.producer import EventSender, EventTooLarge, Outgoing, RecentIds
from services.ingestion.settings import IngestionSettings

log = logging.getLogger("ingestion")

# At module level: FastAPI resolves the (string) annotations of the routes against globals.
_BEARER = HTTPBearer(auto_error=False, description="a client app's key (INGESTION_CLIENT_KEYS)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


class Problem(BaseModel):
    """An error answer: `detail` says what was wrong (a list of `{loc, msg, type}` for bodies)."""

    detail: str | list[dict[str, Any]]


class Refused(Exception):
    """A request refused before anything is stored (status, detail, headers)."""

    def __init__(
        self, status_code: int, detail: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(detail))
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}


def create_app(settings: IngestionSettings | None = None) -> FastAPI:
    """Build the app; the broker is connected lazily, so the app starts even when it is down."""
    settings = settings or IngestionSettings()
    metrics = IngestionMetrics()
    sender = EventSender(settings.kafka_bootstrap_servers, settings.ingestion_produce_timeout_s)
    recent_messages = RecentIds(settings.ingestion_recent_ids)  # message_id -> sender_id
    recent_labels = RecentIds(settings.ingestion_recent_ids)
    limiter = RateLimiter(settings.ingestion_rate_per_s, settings.ingestion_rate_burst)
    message_log = MessageLog(settings.data_dir)
    keys = {
        name: key.get_secret_value().encode()
        for name, key in settings.ingestion_client_keys.items()
    }
    unavailable_after = str(settings.ingestion_unavailable_retry_after_s)

    def connect() -> None:
        try:
            created = ensure_topics(settings.kafka_bootstrap_servers)
            if created:
                log.info("created topics %s", ", ".join(created))
            sender.producer()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable yet (requests get 503 until it is): %s", exc)

    reconnecting = threading.Lock()
    last_reconnect = [0.0]

    def reconnect_soon() -> None:
        """After a failed send: create the topics again in the background (at most every 2 s).

        A broker that restarted empty (Tansu keeps topics in memory) has no topics, and the
        producer would wait for their metadata forever; this is what makes ingestion recover
        without a restart."""
        now = time.monotonic()
        if now - last_reconnect[0] < 2.0 or not reconnecting.acquire(blocking=False):
            return
        last_reconnect[0] = now

        def run() -> None:
            try:
                with contextlib.suppress(BrokerUnavailable):
                    created = ensure_topics(settings.kafka_bootstrap_servers)
                    if created:
                        log.warning("broker came back without topics; created %s", created)
                    # the broker answers, yet sends failed: start with a fresh producer
                    sender.reset()
            finally:
                reconnecting.release()

        threading.Thread(target=run, name="reconnect-broker", daemon=True).start()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Connect in the background: the API starts (and /healthz answers) without the broker.
        threading.Thread(target=connect, name="connect-broker", daemon=True).start()
        yield
        await run_in_threadpool(sender.close)

    app = FastAPI(
        title="ModStack ingestion",
        summary="Messages and user reports in over HTTP, out to Kafka.",
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

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    def client_of(
        request: Request, credentials: HTTPAuthorizationCredentials | None, required: bool
    ) -> str:
        """The client app a request comes from; raises `Refused` (401) without a valid key."""
        endpoint = request.url.path
        if credentials is not None:
            given = credentials.credentials.encode()
            # compare against every key (constant time each): which one matched must not leak
            matched = [name for name, key in keys.items() if hmac.compare_digest(given, key)]
            if matched:
                return matched[0]
        if required or credentials is not None:
            _count_rejection(metrics, endpoint, "unauthenticated")
            raise Refused(
                status.HTTP_401_UNAUTHORIZED,
                "a valid client key is required: send `Authorization: Bearer <key>` with a key "
                "from INGESTION_CLIENT_KEYS",
                {"WWW-Authenticate": "Bearer"},
            )
        host = request.client.host if request.client else "unknown"
        return f"anonymous@{host}"

    def limit(request: Request, client: str) -> None:
        wait = limiter.acquire(client)
        if wait > 0:
            _count_rejection(metrics, request.url.path, "rate_limited")
            raise Refused(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"client {client!r} is over {settings.ingestion_rate_per_s:g} requests/s "
                f"(burst {settings.ingestion_rate_burst:g}, INGESTION_RATE_PER_S); retry later",
                {"Retry-After": retry_after_header(wait)},
            )

    def store_events(
        raw: bytes,
        endpoint: str,
        topic: str,
        parse: Callable[[bytes], tuple[Sequence[Any], bool]],
        to_event: Callable[[Any, Any], Any],
        key_of: Callable[[Any], str],
        recent: RecentIds,
        check: Callable[[Sequence[Any], bool], list[dict[str, Any]]] | None = None,
    ) -> JSONResponse:
        try:
            items, batch = parse(raw)
        except InvalidBody as exc:
            _count_rejection(metrics, endpoint, "invalid")
            return JSONResponse(
                {"detail": exc.errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
            )
        if check is not None:
            errors = check(items, batch)
            if errors:
                _count_rejection(metrics, endpoint, "message_not_seen")
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
            sender.send(topic, outgoing)
        except BrokerUnavailable as exc:
            reconnect_soon()
            _count_rejection(metrics, endpoint, "broker_unavailable", outcome="unavailable")
            return JSONResponse(
                {"detail": str(exc)},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": unavailable_after},
            )
        except EventTooLarge as exc:
            _count_rejection(metrics, endpoint, "too_large")
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

    def check_reports(items: Sequence[ReportIn], batch: bool) -> list[dict[str, Any]]:
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
            senders.update(message_log.senders_of(missing))
            recent_messages.add_all(list(senders), list(senders.values()))
        return unseen_reports(items, senders, batch)

    headers_retry = {
        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
    }
    common: dict[int | str, dict[str, Any]] = {
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
            "headers": headers_retry,
        },
        503: {
            "model": Problem,
            "description": "The broker is unreachable; the detail names its address.",
            "headers": headers_retry,
        },
    }
    unauthorized: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "No or an unknown client key."}
    }
    label_responses = {
        **common,
        **unauthorized,
        404: {
            "model": Problem,
            "description": "A report names a message not received from that sender; "
            "`detail[].loc` names the item; nothing is stored.",
        },
    }
    message_responses = {**common, **(unauthorized if settings.ingestion_messages_need_key else {})}

    @app.post(
        "/v1/messages",
        status_code=status.HTTP_202_ACCEPTED,
        responses=message_responses,
        openapi_extra=_body_schema("MessagesBody"),
    )
    async def post_messages(
        request: Request,
        credentials: Credentials,
    ) -> JSONResponse:
        """Accept one message or a batch `{"messages": [...]}` (at most 500)."""
        client = client_of(request, credentials, settings.ingestion_messages_need_key)
        limit(request, client)
        raw = await request.body()
        # Parsing a batch of large bodies and waiting for acks both block: keep the loop free.
        return await run_in_threadpool(
            store_events,
            raw,
            "messages",
            TOPIC_MESSAGES,
            lambda body: (parse_messages(body), False),
            message_event,
            lambda event: event.message_id,
            recent_messages,
        )

    @app.post(
        "/v1/labels",
        status_code=status.HTTP_202_ACCEPTED,
        responses=label_responses,
        openapi_extra=_body_schema("LabelsBody"),
    )
    async def post_labels(
        request: Request,
        credentials: Credentials,
    ) -> JSONResponse:
        """Accept one user report or a batch `{"labels": [...]}` (at most 500) from a client
        app; each must name a message received from that sender."""
        client = client_of(request, credentials, True)
        limit(request, client)
        raw = await request.body()
        return await run_in_threadpool(
            store_events,
            raw,
            "labels",
            TOPIC_LABELS,
            parse_reports,
            lambda item, received_at: label_event(item, received_at, client),
            label_key,
            recent_labels,
            check_reports,
        )

    @app.get("/healthz", responses={200: {"description": "The process serves requests."}})
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        responses={
            200: {"description": "The broker answers."},
            503: {"model": Problem, "description": "The broker is unreachable."},
        },
    )
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
