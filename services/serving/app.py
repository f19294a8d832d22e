"""Serving API: POST /v1/moderate scores a message with the champion or, during a rollout, the
challenger; decisions go to predictions.v1 and `review` ones to the moderator queue.

Consumes: the MLflow registry (aliases + rollout tags, polled), the Feast online store.
Produces: predictions.v1 (every decision, shadow ones with served=false), labels.v1 (moderator
labels), /metrics for Prometheus and the canary controller.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from modstack.events import Action, Label, LabelEvent, MessageIn, PredictionEvent, Variant, utcnow
from modstack.kafka import make_producer
from modstack.log import configure_logging
from modstack.names import TOPIC_LABELS, VARIANT_CHALLENGER, VARIANT_CHAMPION
from services.serving import metrics
from services.serving.deployment import Deployment, Snapshot
from services.serving.model_store import LoadedModel, ModelCache
from services.serving.online_features import FeatureLookup, OnlineFeatures
from services.serving.predictions import PredictionPublisher
from services.serving.review_queue import AlreadyLabeled, ReviewQueue
from services.serving.routing import NoChallengerLoaded, Route, route_request
from services.serving.settings import ServingSettings, get_serving_settings

log = logging.getLogger("serving")

LABEL_SEND_TIMEOUT_S = 10.0


# -- API models --------------------------------------------------------------------------------


class ModerateRequest(MessageIn):
    """A message to moderate (the same fields and bounds as ingestion accepts)."""


class ModerateResponse(BaseModel):
    """One moderation decision."""

    message_id: str
    score: float
    action: Action
    model_version: str
    variant: Variant
    features_used: list[str]
    features: dict[str, float | None]
    missing_features: list[str]
    stale_features: list[str]
    latency_ms: float


class ReviewLabelRequest(BaseModel):
    """A moderator's decision on a queued message."""

    label: Label
    moderator: str = Field(default="moderator", min_length=1, max_length=128)


class FaultSettings(BaseModel):
    """Injected faults on the challenger's path (rollback demo); zeros switch them off."""

    error_rate: float = Field(ge=0.0, le=1.0)
    extra_latency_ms: float = Field(ge=0.0, le=60_000.0)


# -- service state -----------------------------------------------------------------------------


@dataclass
class Faults:
    """Mutable at runtime through the admin endpoint; starts from the settings."""

    error_rate: float = 0.0
    extra_latency_ms: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.error_rate > 0 or self.extra_latency_ms > 0


class InjectedFault(RuntimeError):
    """An error injected into the challenger's path on purpose."""


class Services:
    """Everything a request needs, built once at start-up."""

    def __init__(self, settings: ServingSettings) -> None:
        from modstack.registry.aliases import get_client

        self.settings = settings
        client = get_client(settings.mlflow_tracking_uri)
        self.deployment = Deployment(
            client,
            ModelCache(settings.model_cache_dir, client, settings.serving_model_name),
            settings.serving_poll_interval_s,
            settings.serving_model_name,
        )
        self.features = OnlineFeatures(settings.feast_repo_path)
        self.publisher = PredictionPublisher(
            settings.kafka_bootstrap_servers, settings.serving_prediction_queue_size
        )
        self.reviews = ReviewQueue(settings.review_db_path)
        self.faults = Faults(
            settings.serving_challenger_error_rate, settings.serving_challenger_extra_latency_ms
        )
        self._label_producer: Any = None
        self._label_lock = threading.Lock()
        self._ready_checked_at = 0.0
        self._ready: tuple[bool, str] = (False, "not checked yet")

    def start(self) -> None:
        self.publisher.start()
        self.deployment.start()

    def stop(self) -> None:
        self.deployment.stop()
        self.publisher.close()
        if self._label_producer is not None:
            self._label_producer.close(timeout=5)
        self.reviews.close()

    def label_producer(self) -> Any:
        """The producer for moderator labels, created on first use (raises BrokerUnavailable)."""
        with self._label_lock:
            if self._label_producer is None:
                self._label_producer = make_producer(self.settings.kafka_bootstrap_servers)
            return self._label_producer

    def feature_store_ready(self, feature_service: str) -> tuple[bool, str]:
        """Whether the online store answers, re-checked at most every few seconds."""
        now = time.monotonic()
        if now - self._ready_checked_at >= self.settings.serving_ready_cache_s:
            self._ready = self.features.reachable(feature_service)
            self._ready_checked_at = now
        return self._ready


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False)


def require_admin(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless `Authorization: Bearer <ADMIN_TOKEN>`."""
    expected = services.settings.admin_token.get_secret_value()
    if credentials is None or not secrets.compare_digest(
        credentials.credentials.encode(), expected.encode()
    ):
        raise HTTPException(
            status_code=401,
            detail="admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Depends(require_admin)


# -- scoring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    model: LoadedModel
    variant: Variant
    lookup: FeatureLookup
    score: float
    action: Action
    seconds: float


def _score(
    services: Services, model: LoadedModel, variant: Variant, message: ModerateRequest
) -> Decision:
    """Features + model for one variant; injected faults apply to the challenger only."""
    started = time.perf_counter()
    if variant == VARIANT_CHALLENGER and services.faults.enabled:
        if services.faults.extra_latency_ms > 0:
            time.sleep(services.faults.extra_latency_ms / 1000)
        if random.random() < services.faults.error_rate:
            raise InjectedFault("injected challenger error (SERVING_CHALLENGER_ERROR_RATE)")
    lookup = services.features.lookup(
        model.feature_service, model.feature_columns, message.sender_id, message.subject,
        message.body,
    )  # fmt: skip
    score = model.score(message.subject, message.body, lookup.values)
    action = model.thresholds.action_for(score)
    return Decision(model, variant, lookup, score, action, time.perf_counter() - started)


def _observe(decision: Decision) -> None:
    metrics.REQUESTS.labels(decision.variant, "ok").inc()
    metrics.REQUEST_DURATION.labels(decision.variant).observe(decision.seconds)
    metrics.SCORE.labels(decision.variant).observe(decision.score)
    metrics.ACTIONS.labels(decision.variant, decision.action).inc()


def _prediction_event(
    message: ModerateRequest, decision: Decision, served: bool
) -> PredictionEvent:
    return PredictionEvent(
        message_id=message.message_id,
        sender_id=message.sender_id,
        sent_at=message.sent_at,
        scored_at=utcnow(),
        score=decision.score,
        action=decision.action,
        model_version=decision.model.version,
        variant=decision.variant,
        served=served,
        features=decision.lookup.values,
        missing_features=decision.lookup.missing,
        latency_ms=round(decision.seconds * 1000, 3),
    )


def _after_response(
    services: Services,
    message: ModerateRequest,
    decision: Decision,
    snapshot: Snapshot,
    route: Route,
) -> None:
    """Work that must not delay the answer: prediction event, review queue, shadow scoring."""
    services.publisher.publish(_prediction_event(message, decision, served=True))
    if decision.action == "review":
        added = services.reviews.add(
            message_id=message.message_id,
            sender_id=message.sender_id,
            subject=message.subject,
            body=message.body,
            sent_at=message.sent_at,
            score=decision.score,
            model_version=decision.model.version,
            variant=decision.variant,
        )
        if added:
            metrics.REVIEW_QUEUE_ITEMS.inc()
    if route.shadow:
        other: Variant = (
            VARIANT_CHAMPION if decision.variant == VARIANT_CHALLENGER else VARIANT_CHALLENGER
        )
        model = snapshot.model_for(other)
        if model is not None:
            _shadow(services, message, decision, model, other)


def _shadow(
    services: Services,
    message: ModerateRequest,
    served: Decision,
    model: LoadedModel,
    variant: Variant,
) -> None:
    """Score the variant that did not answer too, log it (served=False), count disagreements."""
    try:
        shadow = _score(services, model, variant, message)
    except Exception as exc:
        metrics.REQUESTS.labels(variant, "error").inc()
        log.warning("shadow scoring failed: %s", exc)
        return
    _observe(shadow)
    services.publisher.publish(_prediction_event(message, shadow, served=False))
    metrics.SHADOW_COMPARISONS.inc()
    if shadow.action != served.action:
        metrics.SHADOW_DISAGREEMENTS.inc()


# -- app ---------------------------------------------------------------------------------------


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """The serving app; models load and the poller starts in the lifespan."""
    settings = settings or get_serving_settings()
    configure_logging("serving", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        services.start()
        snapshot = services.deployment.snapshot
        log.info(
            "serving champion=%s challenger=%s (from %s)%s",
            snapshot.champion.version if snapshot.champion else None,
            snapshot.challenger.version if snapshot.challenger else None,
            snapshot.source,
            "; FAULTS INJECTED into the challenger path" if services.faults.enabled else "",
        )
        app.state.services = services
        yield
        services.stop()

    app = FastAPI(
        title="ModStack serving",
        version="1",
        lifespan=lifespan,
        description="Spam moderation with champion/challenger canary routing.",
    )

    @app.post("/v1/moderate", response_model=ModerateResponse)
    def moderate(
        message: ModerateRequest,
        services: ServicesDep,
        background: BackgroundTasks,
        x_force_variant: Annotated[Literal["champion", "challenger"] | None, Header()] = None,
    ) -> ModerateResponse:
        """Score a message and decide allow / review / block."""
        snapshot = services.deployment.snapshot
        if snapshot.champion is None:
            raise HTTPException(503, detail="no champion model loaded yet (registry and cache)")
        challenger = snapshot.challenger.version if snapshot.challenger else None
        try:
            route = route_request(message.sender_id, snapshot.rollout, challenger, x_force_variant)
        except NoChallengerLoaded as exc:
            raise HTTPException(409, detail=f"X-Force-Variant: challenger: {exc}") from exc
        model = snapshot.model_for(route.answer)
        assert model is not None  # route_request only picks a loaded challenger
        try:
            decision = _score(services, model, route.answer, message)
        except Exception as exc:
            metrics.REQUESTS.labels(route.answer, "error").inc()
            log.warning("scoring failed (%s v%s): %s", route.answer, model.version, exc)
            raise HTTPException(
                500, detail=f"scoring failed ({route.answer} v{model.version}): {exc}"
            ) from exc
        _observe(decision)
        background.add_task(_after_response, services, message, decision, snapshot, route)
        return ModerateResponse(
            message_id=message.message_id,
            score=decision.score,
            action=decision.action,
            model_version=model.version,
            variant=route.answer,
            features_used=list(model.feature_columns),
            features=decision.lookup.values,
            missing_features=decision.lookup.missing,
            stale_features=decision.lookup.stale,
            latency_ms=round(decision.seconds * 1000, 3),
        )

    @app.get("/v1/review", dependencies=[AdminDep])
    def list_review(services: ServicesDep, limit: int | None = None) -> dict[str, Any]:
        """Messages waiting for a moderator, oldest first."""
        cap = settings.serving_review_list_limit
        items = services.reviews.pending(min(limit or cap, cap))
        return {"pending": services.reviews.pending_count(), "items": [i.to_dict() for i in items]}

    @app.post("/v1/review/{message_id}", dependencies=[AdminDep])
    def label_review(
        message_id: str, body: ReviewLabelRequest, services: ServicesDep
    ) -> dict[str, Any]:
        """Label a queued message; the label goes to labels.v1 with source `moderator`."""
        try:
            item = services.reviews.mark_labeled(message_id, body.label, body.moderator)
        except KeyError:
            raise HTTPException(
                404, detail=f"message {message_id} is not in the review queue"
            ) from None
        except AlreadyLabeled as exc:
            raise HTTPException(409, detail=str(exc)) from exc
        now = utcnow()
        event = LabelEvent(
            message_id=item.message_id,
            sender_id=item.sender_id,
            label=body.label,
            source="moderator",
            labeled_at=now,
            received_at=now,
        )
        try:
            # Wait for the broker's ack: a moderator's label must not be lost silently.
            services.label_producer().send(
                TOPIC_LABELS, key=event.sender_id, value=event.to_bytes()
            ).get(timeout=LABEL_SEND_TIMEOUT_S)
        except Exception as exc:  # BrokerUnavailable, KafkaTimeoutError, ...
            services.reviews.unmark(message_id)
            raise HTTPException(
                503, detail=f"label not published to {TOPIC_LABELS}: {exc}"
            ) from exc
        return {"message_id": message_id, "label": body.label, "topic": TOPIC_LABELS}

    @app.put("/v1/admin/faults", dependencies=[AdminDep])
    def set_faults(body: FaultSettings, services: ServicesDep) -> dict[str, Any]:
        """Inject errors or latency into this replica's challenger path (rollback demo)."""
        services.faults.error_rate = body.error_rate
        services.faults.extra_latency_ms = body.extra_latency_ms
        log.warning("challenger faults now %s", services.faults)
        return {"challenger_faults": vars(services.faults)}

    @app.get("/healthz")
    def healthz(services: ServicesDep) -> dict[str, Any]:
        """Liveness, plus what is served and whether faults are injected."""
        snapshot = services.deployment.snapshot
        rollout = snapshot.rollout
        body: dict[str, Any] = {
            "status": "ok",
            "champion": snapshot.champion.version if snapshot.champion else None,
            "challenger": snapshot.challenger.version if snapshot.challenger else None,
            "models_from": snapshot.source,
            "rollout": (
                {
                    "status": rollout.status,
                    "mode": rollout.mode,
                    "weight_percent": rollout.weight_percent,
                    "challenger_version": rollout.challenger_version,
                }
                if rollout
                else None
            ),
            "registry_error": services.deployment.last_poll_error or None,
            "predictions_producer_connected": services.publisher.connected,
        }
        if services.faults.enabled:
            body["challenger_faults"] = vars(services.faults)
        return body

    @app.get("/readyz")
    def readyz(services: ServicesDep) -> JSONResponse:
        """Ready when a champion is loaded and the feature store answers."""
        champion = services.deployment.snapshot.champion
        if champion is None:
            return JSONResponse({"ready": False, "reason": "no champion model loaded"}, 503)
        ok, why = services.feature_store_ready(champion.feature_service)
        if not ok:
            return JSONResponse({"ready": False, "reason": f"feature store: {why}"}, 503)
        return JSONResponse({"ready": True, "champion": champion.version})

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        """Prometheus exposition (all workers aggregated in multiprocess mode)."""
        data, content_type = metrics.render_latest()
        return Response(data, media_type=content_type)

    return app
