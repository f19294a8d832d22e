"""The serving API's routes: moderation (through the micro-batcher), the review queue, the
admin fault switch; health, readiness and metrics through `modstack.http.probe_router`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modstack.http import ADMIN_RESPONSES, AdminAuth, Check, Readiness, probe_router
from modstack.http_errors import Conflict, Failed, Unavailable
from modstack.names import VARIANT_CHALLENGER, VARIANT_CHAMPION
from services.serving import metrics
from services.serving.batcher import Overloaded
from services.serving.deployment import Snapshot
from services.serving.model_store import LoadedModel
from services.serving.moderation import (
    PolicyRoute,
    most_severe,
    other_variant,
    policy_body,
    prediction_event,
    review_request,
    route_policies,
)
from services.serving.routing import NoChallengerLoaded
from services.serving.schemas import (
    BAD_BODY,
    MODERATE_RESPONSES,
    FaultSettings,
    ModerateRequest,
    ModerateResponse,
)
from services.serving.scoring import Decision, ScoreItem
from services.serving.state import Services, ServicesDep, get_services

log = logging.getLogger(__name__)

router = APIRouter()


# -- moderation --------------------------------------------------------------------------------


def _observe(decision: Decision) -> None:
    policy, variant = decision.policy, decision.variant
    metrics.REQUESTS.labels(policy, variant, "ok").inc()
    metrics.REQUEST_DURATION.labels(policy, variant).observe(decision.seconds)
    metrics.SCORE.labels(policy, variant).observe(decision.score)
    metrics.ACTIONS.labels(policy, variant, decision.action).inc()


def _start_shadow(
    services: Services, message: ModerateRequest, served: Decision, model: LoadedModel
) -> None:
    """Queue the variant that did not answer in the same batcher; its result is logged by a
    callback, so nothing waits for it. A shadow row the queue cannot take is skipped (counted):
    shadow scores are a sample for the canary, the answers are what must not slow down."""
    variant = other_variant(served.variant)
    policy = served.policy
    item = ScoreItem(message, model, variant, time.perf_counter(), policy)
    try:
        future = services.batcher.submit_nowait(item)
    except Overloaded:
        metrics.SHADOW_SKIPPED.inc()
        return

    def done(fut: asyncio.Future[Decision]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            metrics.REQUESTS.labels(policy, variant, "error").inc()
            log.warning("shadow scoring failed (%s): %s", policy, exc)
            return
        shadow = fut.result()
        _observe(shadow)
        services.publisher.publish(prediction_event(message, shadow, served=False))
        metrics.SHADOW_COMPARISONS.labels(policy).inc()
        if shadow.action != served.action:
            metrics.SHADOW_DISAGREEMENTS.labels(policy).inc()

    future.add_done_callback(done)


def _after_answer(
    services: Services,
    message: ModerateRequest,
    decision: Decision,
    routed: PolicyRoute,
) -> None:
    """Work that must not delay the answer, per policy: the prediction event and, in the
    review band, the review request for the review service (non-blocking queue puts), shadow
    scoring."""
    services.publisher.publish(prediction_event(message, decision, served=True))
    if decision.action == "review":
        services.publisher.publish(review_request(message, decision))
        metrics.REVIEW_REQUESTS.labels(decision.policy).inc()
    if routed.route.shadow:
        model = routed.snapshot.model_for(other_variant(decision.variant))
        if model is not None:
            _start_shadow(services, message, decision, model)


def _header_enum(schema: dict[str, Any]) -> None:
    """Document X-Force-Variant as the two names only: an absent header is the None default,
    and a header is a string, so the `null` alternative would invite the text "null"."""
    schema.pop("anyOf", None)
    schema.update({"type": "string", "enum": [VARIANT_CHAMPION, VARIANT_CHALLENGER]})


class FastJSONResponse(JSONResponse):
    """A JSON body encoded by orjson.

    FastAPI 0.165 deprecates its ORJSONResponse in favour of serializing the response model
    with Pydantic, which would validate the answer's fields a second time on the hot path;
    these three lines keep the single orjson pass."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


async def _decide(
    services: Services, routes: list[PolicyRoute], message: ModerateRequest, started: float
) -> list[Decision]:
    """Every policy's item submitted to the batcher at once (scored in the same batches),
    then awaited; the first failure fails the request (503 when overloaded, 500 otherwise)."""
    items = [routed.item(message, started) for routed in routes]
    outcomes = await asyncio.gather(
        *(services.batcher.submit(item) for item in items), return_exceptions=True
    )
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, Overloaded):
            metrics.SHED.inc()
            raise Unavailable(
                str(outcome), headers={"Retry-After": str(outcome.retry_after_s)}
            ) from None
        if isinstance(outcome, BaseException):
            metrics.REQUESTS.labels(item.policy, item.variant, "error").inc()
            where = f"{item.policy} {item.variant} v{item.model.version}"
            log.warning("scoring failed (%s): %s", where, outcome)
            raise Failed(f"scoring failed ({where}): {outcome}") from outcome
    return [outcome for outcome in outcomes if isinstance(outcome, Decision)]


@router.post(
    "/v1/moderate",
    response_model=ModerateResponse,
    response_class=FastJSONResponse,
    responses=MODERATE_RESPONSES,
)
async def moderate(
    message: ModerateRequest,
    services: ServicesDep,
    x_force_variant: Annotated[
        Literal["champion", "challenger"] | None, Header(json_schema_extra=_header_enum)
    ] = None,
) -> Response:
    """Score a message with every policy's model and decide allow / review / block: the
    overall `action` is the most severe, `policies` holds each policy's own decision.

    Concurrent requests are scored together (micro-batching, at most
    SERVING_BATCH_MAX_WAIT_MS of waiting); beyond the latency budget the answer is 503 with
    Retry-After at once.
    """
    started = time.perf_counter()
    served = services.served()
    if not served:
        raise Unavailable("no champion model loaded yet for any policy (registry and cache)")
    try:
        routes = route_policies(message.sender_id, served, x_force_variant)
    except NoChallengerLoaded as exc:
        raise Conflict(f"X-Force-Variant: challenger: {exc}") from exc
    decisions = await _decide(services, routes, message, started)
    if services.faults.extra_latency_ms > 0 and any(
        d.variant == VARIANT_CHALLENGER for d in decisions
    ):
        # injected latency delays this answer only, not the batch it was scored in
        await asyncio.sleep(services.faults.extra_latency_ms / 1000)
        elapsed = time.perf_counter() - started
        decisions = [
            dataclasses.replace(d, seconds=elapsed) if d.variant == VARIANT_CHALLENGER else d
            for d in decisions
        ]
    for decision, routed in zip(decisions, routes, strict=True):
        _observe(decision)
        _after_answer(services, message, decision, routed)
    # built by hand and encoded by orjson: the fields are already validated, and FastAPI's
    # response_model pass would validate and serialize them a second time
    body = {
        "message_id": message.message_id,
        "action": most_severe([d.action for d in decisions]),
        "policies": {d.policy: policy_body(d) for d in decisions},
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return FastJSONResponse(body)


# -- admin, health, metrics --------------------------------------------------------------------


@router.put("/v1/admin/faults", responses={**BAD_BODY, **ADMIN_RESPONSES})
def set_faults(_admin: AdminAuth, body: FaultSettings, services: ServicesDep) -> dict[str, Any]:
    """Inject errors or latency into this worker's challenger path (rollback demo)."""
    services.faults.error_rate = body.error_rate
    services.faults.extra_latency_ms = body.extra_latency_ms
    log.warning("challenger faults now %s", services.faults)
    return {"challenger_faults": vars(services.faults)}


def _policy_health(snapshot: Snapshot, registry_error: str) -> dict[str, Any]:
    rollout = snapshot.rollout
    return {
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
        "registry_error": registry_error or None,
    }


def health_fields(request: Request) -> dict[str, Any]:
    """Per policy what is served and from where; whether faults are injected (on top of
    liveness)."""
    services = get_services(request)
    body: dict[str, Any] = {
        "policies": {
            policy: _policy_health(deployment.snapshot, deployment.last_poll_error)
            for policy, deployment in services.deployments.items()
        },
        "predictions_producer_connected": services.publisher.connected,
        "batcher": {
            "queued_rows": services.batcher.depth,
            "row_cost_ms": round(services.batcher.row_cost_s * 1000, 3),
        },
    }
    if services.faults.enabled:
        body["challenger_faults"] = vars(services.faults)
    return body


def _readiness(services: Services) -> Readiness:
    """Ready when some policy's champion is loaded; the other checks only degrade serving.

    A policy without a champion yet is left out of the answers (its check says so). A
    registry, online store or broker outage is shared by every replica: failing readiness for
    it would take them all out of rotation at once, while /v1/moderate still answers (cached
    models; features flagged missing; prediction events counted as undelivered).
    """
    served = services.served()
    champions = {p: snap.champion.version for p, snap in served.items() if snap.champion}
    checks = {
        f"champion.{policy}": Check(
            policy in champions,
            f"v{champions[policy]} (from {served[policy].source})"
            if policy in champions
            else "no champion loaded: the policy is not scored",
            required=False,
        )
        for policy in services.deployments
    }
    checks["champion"] = Check(bool(served), f"{len(served)} of {len(checks)} policies scored")
    if not served:
        return Readiness(checks, {"ready": False, "champions": champions, "degraded": {}})
    degraded: dict[str, str] = {}
    errors = services.poll_errors()
    if errors:
        degraded["registry"] = "serving the versions it holds: " + "; ".join(
            f"{p}: {e}" for p, e in errors.items()
        )
    services_read = {
        snap.champion.feature_service
        for snap in served.values()
        if snap.champion and snap.champion.feature_columns  # text-only models read nothing
    }
    for service in sorted(services_read):
        ok, why = services.feature_store_ready(service)
        if not ok:
            degraded["feature_store"] = f"features answered as missing: {why}"
    if services.publisher.last_error:
        degraded["predictions"] = f"events not delivered: {services.publisher.last_error}"
    for name in ("registry", "feature_store", "predictions"):
        checks[name] = Check(name not in degraded, degraded.get(name, "ok"), required=False)
    return Readiness(checks, {"ready": True, "champions": champions, "degraded": degraded})


async def readiness(request: Request) -> Readiness:
    # the online store check may touch the store (cached for SERVING_READY_CACHE_S)
    return await run_in_threadpool(_readiness, get_services(request))


probe_routes = probe_router(
    ready=readiness,
    # all workers aggregated in multiprocess mode
    metrics=lambda _: metrics.render_latest(),
    health=health_fields,
    ready_means=(
        "Some policy's champion is loaded; `degraded` names what serving answers without."
    ),
)
