"""Canary controller API: the rollout's status and the admin actions on it.

    GET  /v1/rollout                    state + history of every step and decision
    POST /v1/rollout/start              {"challenger_version"?, "mode"?, "steps"?, "actor"?}
    POST /v1/rollout/{promote|abort|pause|resume}   {"reason"?, "actor"?}
    GET  /healthz /readyz /metrics

Every /v1/rollout endpoint needs `Authorization: Bearer <ADMIN_TOKEN>` (401 without).
Consumes the MLflow registry (rollout tags, aliases) and the serving metrics; the loop in
`runner.py` does the stepping.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modstack.registry.aliases import RegistryError, get_client
from services.canary.label_feed import LabelFollower
from services.canary.loop import CanaryRunner
from services.canary.metrics import CanaryMetrics
from services.canary.settings import CanarySettings
from services.canary.sources import MetricsSource, PrometheusSource, ScrapeSource
from services.canary.state_machine import RolloutConflict, policy_of

log = logging.getLogger("canary")
# Module level: FastAPI resolves the dependency from this module's globals (string annotations).
_bearer = HTTPBearer(auto_error=False)


class StartRequest(BaseModel):
    """Start a rollout; every field is optional."""

    challenger_version: str | None = Field(default=None, pattern=r"^\d+$")
    mode: Literal["canary", "shadow"] | None = None
    steps: list[float] | None = Field(default=None, min_length=1, max_length=20)
    interval_s: float | None = Field(default=None, gt=0, le=86_400)
    failure_limit: int | None = Field(default=None, ge=1, le=100)
    min_requests: int | None = Field(default=None, ge=1)
    actor: str = Field(default="admin:http", min_length=1, max_length=128)


class ActionRequest(BaseModel):
    """A manual decision, with who took it and why."""

    reason: str = Field(default="", max_length=1000)
    actor: str = Field(default="admin:http", min_length=1, max_length=128)


def make_source(settings: CanarySettings) -> MetricsSource:
    """Prometheus when PROMETHEUS_URL is set, else scraping the serving replicas."""
    if settings.prometheus_url:
        return PrometheusSource(
            settings.prometheus_url, min_window_s=settings.canary_prometheus_min_window_s
        )
    return ScrapeSource(settings.metrics_urls())


def create_app(settings: CanarySettings | None = None, *, run_loop: bool = True) -> FastAPI:
    """Build the app; `run_loop=False` leaves the stepping to explicit `runner.tick()` calls."""
    settings = settings or CanarySettings()
    metrics = CanaryMetrics()
    labels = LabelFollower(settings.kafka_bootstrap_servers) if settings.canary_label_join else None
    runner = CanaryRunner(
        get_client(settings.mlflow_tracking_uri),
        make_source(settings),
        settings.policy(),
        settings.thresholds(),
        metrics,
        labels,
        tick_s=settings.canary_tick_s,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_loop:
            runner.start()
        yield
        await run_in_threadpool(runner.stop)

    app = FastAPI(
        title="ModStack canary controller",
        summary="Steps a challenger's traffic, analyses each step, promotes or rolls back.",
        version="1",
        lifespan=lifespan,
    )
    app.state.runner = runner
    app.state.settings = settings

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        expected = settings.admin_token.get_secret_value().encode()
        given = (credentials.credentials if credentials else "").encode()
        if not credentials or not hmac.compare_digest(given, expected):
            raise HTTPException(
                status_code=401,
                detail="admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    admin = [Depends(require_admin)]

    @app.exception_handler(RolloutConflict)
    async def _conflict(_: Request, exc: RolloutConflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(ValueError)
    async def _invalid(_: Request, exc: ValueError) -> JSONResponse:
        # RolloutPolicy refusing the overrides (decreasing steps, weights outside (0, 100])
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RegistryError)
    async def _registry(_: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    def _view() -> dict[str, Any]:
        state = runner.status()
        body = state.model_dump(mode="json")
        body["routed_weight_percent"] = state.routed_weight()
        policy = policy_of(state, runner.policy)
        body["interval_s"] = policy.interval_s
        body["failure_limit"] = policy.failure_limit
        body["metrics_source"] = type(runner.source).__name__
        if runner.last_analysis is not None:
            body["last_analysis"] = {
                "enough_data": runner.last_analysis.enough_data,
                "checks": {c.name: c.as_dict() for c in runner.last_analysis.checks},
            }
        body["controller_error"] = runner.last_error
        return body

    @app.get("/v1/rollout", dependencies=admin)
    async def rollout_status() -> dict[str, Any]:
        return await run_in_threadpool(_view)

    @app.post("/v1/rollout/start", dependencies=admin)
    async def rollout_start(request: StartRequest) -> dict[str, Any]:
        state = await run_in_threadpool(
            runner.start_rollout,
            request.actor,
            request.challenger_version,
            request.mode or settings.canary_mode,  # type: ignore[arg-type]
            request.steps,
            request.interval_s,
            request.failure_limit,
            request.min_requests,
        )
        return state.model_dump(mode="json")

    @app.post("/v1/rollout/{action}", dependencies=admin)
    async def rollout_action(action: str, request: ActionRequest | None = None) -> dict[str, Any]:
        request = request or ActionRequest()
        if action == "promote":
            state = await run_in_threadpool(runner.promote, request.actor, request.reason)
        elif action == "abort":
            state = await run_in_threadpool(runner.abort, request.actor, request.reason)
        elif action == "pause":
            state = await run_in_threadpool(runner.pause, request.actor, request.reason)
        elif action == "resume":
            state = await run_in_threadpool(runner.resume, request.actor)
        else:
            raise HTTPException(
                status_code=404,
                detail=f"unknown action {action!r}: use promote, abort, pause or resume",
            )
        return state.model_dump(mode="json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            state = await run_in_threadpool(runner.store.load, False)
        except Exception as exc:  # the registry is the controller's only hard dependency
            return JSONResponse(
                status_code=503,
                content={"status": "unavailable", "reason": f"MLflow registry: {exc}"},
            )
        return JSONResponse(
            {"status": "ready", "rollout": state.status, "controller_error": runner.last_error}
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
