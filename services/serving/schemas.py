"""Request and response bodies of the serving API, and the error responses it documents."""

from __future__ import annotations

from pydantic import BaseModel, Field

from modstack.events import Action, MessageIn, Variant
from modstack.http_errors import (
    RETRY_AFTER,
    BadRequest,
    Conflict,
    Failed,
    Responses,
    Unavailable,
    error_response,
)


class ModerateRequest(MessageIn):
    """A message to moderate (the same fields and bounds as ingestion accepts)."""


class PolicyDecision(BaseModel):
    """One policy's decision on the message: its model's score and the action it implies."""

    score: float
    action: Action
    model_version: str
    variant: Variant
    features_used: list[str]
    features: dict[str, float | None]
    missing_features: list[str]
    stale_features: list[str]


class ModerateResponse(BaseModel):
    """The decision on one message: the most severe action over every policy scored, and
    each policy's own decision (a policy with no champion yet is absent)."""

    message_id: str
    action: Action
    policies: dict[str, PolicyDecision]
    latency_ms: float


class FaultSettings(BaseModel):
    """Injected faults on the challenger's path (rollback demo); zeros switch them off."""

    # strict: `false` is not a number (lax mode would take it as 0)
    error_rate: float = Field(ge=0.0, le=1.0, strict=True)
    extra_latency_ms: float = Field(ge=0.0, le=60_000.0, strict=True)


# FastAPI's own answer to a body that is not decodable JSON at all (before validation)
BAD_BODY = error_response(BadRequest, "the body could not be parsed as JSON")
MODERATE_RESPONSES: Responses = {
    **BAD_BODY,
    **error_response(
        Conflict, "X-Force-Variant: challenger, and no policy has a challenger loaded"
    ),
    **error_response(Failed, "the model failed on this message (it fails alone, not its batch)"),
    **error_response(
        Unavailable,
        "no champion loaded yet for any policy, or overloaded: the queue is beyond the "
        "latency budget (load shedding; retry after Retry-After seconds)",
        headers=RETRY_AFTER,
    ),
}
