"""Request and response bodies of the serving API, and the error responses it documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from modstack.events import Action, Label, MessageIn, Variant

# The review list's hard ceiling; ServingSettings.serving_review_list_limit may lower it.
REVIEW_LIMIT_MAX = 1_000


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

    # strict: `false` is not a number (lax mode would take it as 0)
    error_rate: float = Field(ge=0.0, le=1.0, strict=True)
    extra_latency_ms: float = Field(ge=0.0, le=60_000.0, strict=True)


class ErrorBody(BaseModel):
    """What every error answer carries: what was wrong."""

    detail: Any


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description, **extra}


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
# FastAPI's own answer to a body that is not decodable JSON at all (before validation)
BAD_BODY: dict[int | str, dict[str, Any]] = {400: _error("the body could not be parsed as JSON")}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: _error("missing or wrong `Authorization: Bearer <ADMIN_TOKEN>`")
}
ADMIN_BODY_RESPONSES: dict[int | str, dict[str, Any]] = {**BAD_BODY, **UNAUTHORIZED}
MODERATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **BAD_BODY,
    409: _error("X-Force-Variant: challenger, and no challenger is loaded"),
    500: _error("the model failed on this message (it fails alone, not its batch)"),
    503: _error(
        "no champion loaded yet, or overloaded: the queue is beyond the latency budget "
        "(load shedding; retry after Retry-After seconds)",
        headers=RETRY_AFTER,
    ),
}
LABEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ADMIN_BODY_RESPONSES,
    404: _error("the message is not in the review queue"),
    409: _error("the message is already labelled"),
    503: _error("the label could not be published to labels.v1 (broker unreachable)"),
}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format", "content": {"text/plain": {}}}
}
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "not ready: no champion loaded (from the registry or the cache)"}
}
