"""Canary controller API routes: the rollout's status and the admin actions on it.

    GET  /v1/rollout                    state + history of every step and decision, last checks
    POST /v1/rollout/start              {"challenger_version"?, "mode"?, "steps"?, "actor"?, ...}
    POST /v1/rollout/{promote|abort|pause|resume}   {"reason"?, "actor"?}
    GET  /healthz /readyz /metrics

Every /v1/rollout endpoint needs `Authorization: Bearer <ADMIN_TOKEN>` (401 without). The
runner (`loop.CanaryRunner`) and settings live on `app.state`.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from services.canary.loop import CanaryRunner
from services.canary.settings import CanarySettings
from services.canary.state_machine import policy_of

_bearer = HTTPBearer(auto_error=False)


class StartRequest(BaseModel):
    """Start a rollout; every field is optional (the controller's CANARY_* settings apply)."""

    challenger_version: str | None = Field(default=None, pattern=r"^\d+$")
    mode: Literal["canary", "shadow"] | None = None
    # traffic weights in percent, each in (0, 100]; increasing (422 otherwise)
    steps: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        default=None, min_length=1, max_length=20
    )
    interval_s: float | None = Field(default=None, gt=0, le=86_400)
    failure_limit: int | None = Field(default=None, ge=1, le=100)
    min_requests: int | None = Field(default=None, ge=1)
    paired_percent: float | None = Field(default=None, ge=0, le=100)
    max_extensions: int | None = Field(default=None, ge=0, le=100)
    actor: str = Field(default="admin:http", min_length=1, max_length=128)


class ActionRequest(BaseModel):
    """A manual decision, with who took it and why."""

    reason: str = Field(default="", max_length=1000)
    actor: str = Field(default="admin:http", min_length=1, max_length=128)


def runner_of(request: Request) -> CanaryRunner:
    return request.app.state.runner


def settings_of(request: Request) -> CanarySettings:
    return request.app.state.settings


RunnerDep = Annotated[CanaryRunner, Depends(runner_of)]


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the admin token."""
    expected = settings_of(request).admin_token.get_secret_value().encode()
    given = (credentials.credentials if credentials else "").encode()
    if not credentials or not hmac.compare_digest(given, expected):
        raise HTTPException(
            status_code=401,
            detail="admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


def rollout_view(runner: CanaryRunner) -> dict[str, Any]:
    """The state, the policy it follows and every check of the last judged window."""
    state = runner.status()
    body = state.model_dump(mode="json")
    body["routed_weight_percent"] = state.routed_weight()
    policy = policy_of(state, runner.policy)
    body["interval_s"] = policy.interval_s
    body["failure_limit"] = policy.failure_limit
    body["max_extensions"] = policy.max_extensions
    body["paired_percent"] = policy.paired_percent
    body["metrics_source"] = type(runner.source).__name__
    if runner.last_analysis is not None:
        body["last_analysis"] = {
            "enough_data": runner.last_analysis.enough_data,
            "checks": {c.name: c.as_dict() for c in runner.last_analysis.checks},
        }
    body["controller_error"] = runner.last_error
    return body


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorBody}


class ErrorBody(BaseModel):
    """What every error answer carries: what was wrong."""

    detail: Any


BAD_BODY: dict[int | str, dict[str, Any]] = {400: _error("the body could not be parsed as JSON")}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: _error("not possible in the rollout's current state, or the registry refused")
}
admin_router = APIRouter(
    prefix="/v1/rollout",
    dependencies=[Depends(require_admin)],
    responses={
        401: _error("missing or wrong `Authorization: Bearer <ADMIN_TOKEN>`"),
        503: _error("the MLflow registry does not answer"),
    },
)
probe_router = APIRouter()


@admin_router.get("")
async def rollout_status(runner: RunnerDep) -> dict[str, Any]:
    return await run_in_threadpool(rollout_view, runner)


@admin_router.post(
    "/start",
    responses={
        **BAD_BODY,
        **CONFLICT,
        404: _error("the challenger version is not in the registry"),
        422: _error(
            "invalid body, or overrides the rollout policy refuses (e.g. steps not increasing)"
        ),
    },
)
async def rollout_start(body: StartRequest, request: Request, runner: RunnerDep) -> dict[str, Any]:
    state = await run_in_threadpool(
        runner.start_rollout,
        body.actor,
        body.challenger_version,
        body.mode or settings_of(request).canary_mode,  # type: ignore[arg-type]
        body.steps,
        body.interval_s,
        body.failure_limit,
        body.min_requests,
        body.paired_percent,
        body.max_extensions,
    )
    return state.model_dump(mode="json")


@admin_router.post(
    "/{action}",
    responses={
        **BAD_BODY,
        **CONFLICT,
        404: _error("unknown action: promote, abort, pause or resume"),
    },
)
async def rollout_action(
    action: str, runner: RunnerDep, body: ActionRequest | None = None
) -> dict[str, Any]:
    body = body or ActionRequest()
    actions = {
        "promote": lambda: runner.promote(body.actor, body.reason),
        "abort": lambda: runner.abort(body.actor, body.reason),
        "pause": lambda: runner.pause(body.actor, body.reason),
        "resume": lambda: runner.resume(body.actor),
    }
    if action not in actions:
        raise HTTPException(
            status_code=404,
            detail=f"unknown action {action!r}: use promote, abort, pause or resume",
        )
    state = await run_in_threadpool(actions[action])
    return state.model_dump(mode="json")


@probe_router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probe_router.get(
    "/readyz", responses={503: {"description": "the MLflow registry does not answer"}}
)
async def readyz(runner: RunnerDep) -> JSONResponse:
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


@probe_router.get(
    "/metrics",
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
async def prometheus_metrics(runner: RunnerDep) -> PlainTextResponse:
    return PlainTextResponse(
        generate_latest(runner.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
