"""Canary controller API routes: the rollout's status and the admin actions on it.

    GET  /v1/rollout                    state + history of every step and decision, last checks
    POST /v1/rollout/start              {"challenger_version"?, "mode"?, "steps"?, "actor"?, ...}
    POST /v1/rollout/{promote|abort|pause|resume}   {"reason"?, "actor"?}
    GET  /healthz /readyz /metrics

Every /v1/rollout endpoint needs `Authorization: Bearer <ADMIN_TOKEN>` (401 without, 403 with
a wrong token). The runner (`loop.CanaryRunner`) and settings live on `app.state`; errors
answer through `modstack.http_errors` (the app adds the controller's domain exceptions).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from modstack.http import ADMIN_RESPONSES, Check, Readiness, probe_router, require_admin
from modstack.http_errors import (
    BadRequest,
    Conflict,
    NotFound,
    Unavailable,
    Unprocessable,
    error_response,
)
from services.canary.loop import CanaryRunner
from services.canary.settings import CanarySettings
from services.canary.state_machine import policy_of


class StartRequest(BaseModel):
    """Start a rollout; every field is optional (the controller's CANARY_* settings apply)."""

    challenger_version: str | None = Field(default=None, pattern=r"^\d+$")
    mode: Literal["canary", "shadow"] | None = None
    steps: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="traffic weights in percent, each in (0, 100], in increasing order",
    )
    interval_s: float | None = Field(default=None, gt=0, le=86_400)
    failure_limit: int | None = Field(default=None, ge=1, le=100)
    min_requests: int | None = Field(default=None, ge=1)
    paired_percent: float | None = Field(default=None, ge=0, le=100)
    max_extensions: int | None = Field(default=None, ge=0, le=100)
    actor: str = Field(default="admin:http", min_length=1, max_length=128)

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: list[float] | None) -> list[float] | None:
        # the rule RolloutPolicy enforces, checked before the rollout touches the registry
        if steps is not None and steps != sorted(steps):
            raise ValueError(f"steps must increase, got {steps}")
        return steps


class ActionRequest(BaseModel):
    """A manual decision, with who took it and why."""

    reason: str = Field(default="", max_length=1000)
    actor: str = Field(default="admin:http", min_length=1, max_length=128)


def runner_of(request: Request) -> CanaryRunner:
    return request.app.state.runner


def settings_of(request: Request) -> CanarySettings:
    return request.app.state.settings


RunnerDep = Annotated[CanaryRunner, Depends(runner_of)]


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


BAD_BODY = error_response(BadRequest, "the body could not be parsed as JSON")
CONFLICT = error_response(
    Conflict, "not possible in the rollout's current state, or the registry refused"
)
admin_router = APIRouter(
    prefix="/v1/rollout",
    dependencies=[Depends(require_admin)],
    responses={
        **ADMIN_RESPONSES,
        **error_response(Unavailable, "the MLflow registry does not answer"),
    },
)


@admin_router.get("")
async def rollout_status(runner: RunnerDep) -> dict[str, Any]:
    return await run_in_threadpool(rollout_view, runner)


@admin_router.post(
    "/start",
    responses={
        **BAD_BODY,
        **CONFLICT,
        **error_response(NotFound, "the challenger version is not in the registry"),
        **error_response(Unprocessable, "invalid body (e.g. steps not increasing)"),
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
        **error_response(NotFound, "unknown action: promote, abort, pause or resume"),
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
        raise NotFound(f"unknown action {action!r}: use promote, abort, pause or resume")
    state = await run_in_threadpool(actions[action])
    return state.model_dump(mode="json")


async def readiness(request: Request) -> Readiness:
    """Ready when the MLflow registry (the controller's only hard dependency) answers."""
    runner = runner_of(request)
    try:
        state = await run_in_threadpool(runner.store.load, False)
    except Exception as exc:  # any failure to read the state is the registry's
        registry = Check(False, f"MLflow registry: {exc}")
    else:
        registry = Check(True, f"MLflow registry answers; rollout {state.status}")
    error = runner.last_error
    controller = Check(not error, error or "ticking", required=False)
    return Readiness({"registry": registry, "controller": controller})


probe_routes = probe_router(
    ready=readiness,
    metrics=lambda request: runner_of(request).metrics.registry,
    ready_means="The MLflow registry answers.",
)
