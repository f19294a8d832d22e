"""The JSON API: the moderator API (session or personal token), the public appeal API (a
client app's key) and the admin erasure endpoint (ADMIN_TOKEN).

    GET  /v1/me                          who the credentials are
    POST /v1/me/token                    a new personal API token (shown once)
    GET  /v1/queue?policy=&limit=        pending items in the order to take them
    GET  /v1/items/{id}                  one item, the sender's history here, its wave
    POST /v1/items/{id}/claim            hold it for the lease (409: claimed by someone else)
    POST /v1/items/{id}/release          give the claim back
    POST /v1/items/{id}/decision         harm | ok | escalate | skip, optionally its wave
    GET  /v1/audit, /v1/audit.csv        every decision (admins)
    GET  /v1/stats                       per moderator, handling time, oldest pending
    POST /v1/appeals                     a client app files its user's appeal
    GET  /v1/appeals/{appeal_id}         the appeal's outcome (released or not)
    DELETE /v1/admin/senders/{sender_id} erasure (ADMIN_TOKEN)
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from modstack.events import Id, UtcTime
from modstack.http import ADMIN_RESPONSES, AdminAuth, BearerCredentials, token_matches
from modstack.http_errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Responses,
    Unauthorized,
    error_response,
)
from modstack.policy import PolicyName, catalogue
from services.review.auth import ApiActor, ApiAdmin
from services.review.queue import Actor, Decided, Decision, iso
from services.review.state import Services, ServicesDep

LIST_PREVIEW_CHARS = 280
MAX_ITEM_ID = 2**31 - 1
ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID)]

AUTH_RESPONSES: Responses = {
    **error_response(Unauthorized, "No session, or an unknown personal token."),
    **error_response(Forbidden, "A missing CSRF token, or a role that may not do this."),
}
ITEM_RESPONSES: Responses = {
    **AUTH_RESPONSES,
    **error_response(NotFound, "No item with this id."),
}
NOT_JSON = error_response(BadRequest, "The body is not JSON.")
CSV_AUTH: Responses = {
    **error_response(Unauthorized, "No session, or an unknown personal token.", inline_json=True),
    **error_response(Forbidden, "Not an admin.", inline_json=True),
}
CONFLICT = error_response(
    Conflict, "Claimed by another moderator (named), decided already, or your claim expired."
)


class Me(BaseModel):
    username: str
    role: Literal["moderator", "admin"]


class NewToken(BaseModel):
    username: str
    token: str = Field(description="the new personal API token; the old one no longer works")


class Item(BaseModel):
    """An item of the queue (a review request, or an appeal)."""

    id: int
    kind: Literal["review", "appeal"]
    message_id: str
    policy: str
    policy_title: str
    positive_label: str
    negative_label: str
    sender_id: str
    subject: str
    body: str
    sent_at: str
    score: float
    other_score: float | None
    review_cutoff: float | None = Field(
        default=None, description="the cut-off the score passed to be sent to review"
    )
    block_cutoff: float | None = Field(default=None, description="the score it stayed under")
    features: dict[str, float | None] = Field(
        default_factory=dict, description="the features the model saw (sender history, text)"
    )
    model_version: str
    variant: str
    priority: float
    enqueued_at: str
    age_s: float
    status: Literal["pending", "decided"]
    escalated: bool
    claimed_by: str | None
    claim_expires_at: str | None
    decision: str | None
    label: str | None
    decided_by: str | None
    decided_at: str | None
    appeal_reason: str | None
    released_at: str | None


class QueuePage(BaseModel):
    pending: int = Field(description="pending items you may see (all policies)")
    items: list[Item]


class ItemDetail(BaseModel):
    item: Item
    history: list[Item] = Field(description="the sender's other items here, newest first")
    wave: list[int] = Field(description="ids of pending items with the same normalised text")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision = Field(
        description="harm: the policy's positive label (uphold, for an appeal); ok: its "
        "negative label (overturn and release, for an appeal); escalate: to the admins; "
        "skip: give the item back"
    )
    wave: StrictBool = Field(
        default=False,
        description="decide the item's wave the same way (harm and ok; "
        "ignored for escalate and skip)",
    )


class DecisionOut(BaseModel):
    decided: list[int]
    decision: Decision
    label: str | None
    released: bool
    next_item_id: int | None = Field(description="the next item to take, if any")


class AuditRow(BaseModel):
    id: int
    item_id: int
    kind: str
    message_id: str
    policy: str
    sender_id: str
    decision: str
    label: str | None
    moderator_id: str
    decided_at: str
    handling_s: float | None
    model_version: str
    variant: str
    score: float
    sent_at: str
    wave_of: int | None
    released: bool


class ModeratorStats(BaseModel):
    moderator: str
    decided: int
    median_handling_s: float | None


class Stats(BaseModel):
    moderators: list[ModeratorStats]
    pending: dict[str, int]
    oldest_pending_age_s: dict[str, float]


class AppealIn(BaseModel):
    """A sender's appeal against a block, as the client app that blocked it files it."""

    model_config = ConfigDict(extra="forbid")

    message_id: Id
    sender_id: Id
    policy: PolicyName
    subject: str = Field(default="", max_length=1_000)
    body: str = Field(default="", max_length=200_000)
    sent_at: UtcTime
    reason: str = Field(default="", max_length=2_000, description="the sender's own words")
    model_version: str = Field(default="", max_length=128)
    score: float = Field(default=1.0, ge=0.0, le=1.0)


class AppealOut(BaseModel):
    appeal_id: str
    message_id: str
    policy: str
    status: Literal["pending", "upheld", "overturned"]
    released: bool
    released_at: str | None
    decided_at: str | None


class Erased(BaseModel):
    sender_id: str
    items: int


# -- conversions -------------------------------------------------------------------------------


def item_out(row: dict[str, Any], now: float, preview: bool = False) -> Item:
    definition = catalogue().get(row["policy"])
    body = row["body"][:LIST_PREVIEW_CHARS] if preview else row["body"]
    fields = {k: row[k] for k in Item.model_fields if k in row}
    return Item(
        **{
            **fields,
            "features": json.loads(row["features"]) if row.get("features") else {},
            "policy_title": definition.title,
            "positive_label": definition.positive_label,
            "negative_label": definition.negative_label,
            "body": body,
            "enqueued_at": iso(row["enqueued_at"]),
            "age_s": round(max(0.0, now - row["enqueued_at"]), 3),
            "escalated": bool(row["escalated"]),
            "claim_expires_at": iso(row["claim_expires_at"]),
            "decided_at": iso(row["decided_at"]),
            "released_at": iso(row["released_at"]),
        }
    )


def live_claim(row: dict[str, Any], now: float) -> str | None:
    """Who holds the item now (None when unclaimed or the lease ran out)."""
    if row["claimed_by"] and (row["claim_expires_at"] or 0) > now:
        return str(row["claimed_by"])
    return None


def appeal_out(row: dict[str, Any]) -> AppealOut:
    outcome = {None: "pending", "harm": "upheld", "ok": "overturned"}
    return AppealOut(
        appeal_id=row["appeal_id"],
        message_id=row["message_id"],
        policy=row["policy"],
        status=outcome.get(row["decision"], "pending"),  # type: ignore[arg-type]
        released=row["released_at"] is not None,
        released_at=iso(row["released_at"]),
        decided_at=iso(row["decided_at"]),
    )


def next_item(services: Services, actor: Actor, policy: str | None) -> int | None:
    """The first pending item `actor` could claim now."""
    now = services.queue.clock()
    for row in services.queue.pending(actor, policy, limit=50):
        if live_claim(row, now) in (None, actor.username):
            return int(row["id"])
    return None


def count_decision(services: Services, actor: Actor, decided: Decided) -> None:
    metrics = services.metrics
    for item_id in decided.item_ids:
        row = services.queue.get(item_id)
        metrics.decisions.labels(actor.username, row["policy"], decided.decision).inc()
        if decided.label is None or row["kind"] != "review":
            continue
        leaned_harm = row["score"] >= services.settings.cutoff(row["policy"])
        agreed = leaned_harm == (decided.decision == "harm")
        metrics.agreement.labels(row["model_version"], row["policy"], str(agreed).lower()).inc()


def appeal_client(request: Request, credentials: BearerCredentials) -> str:
    """The client app filing or reading an appeal (its key from REVIEW_APPEAL_CLIENT_KEYS)."""
    services: Services = request.app.state.services
    if credentials is not None:
        given = credentials.credentials
        matched = [c for c, key in services.appeal_keys.items() if token_matches(given, key)]
        if matched:
            return matched[0]
    raise Unauthorized(
        "appeals come from a client app: send `Authorization: Bearer <key>` with a key from "
        "REVIEW_APPEAL_CLIENT_KEYS"
    )


AppealClient = Annotated[str, Depends(appeal_client)]


# -- routes ------------------------------------------------------------------------------------

router = APIRouter()


@router.get("/v1/me", responses=AUTH_RESPONSES)
def me(actor: ApiActor) -> Me:
    """The account the credentials belong to."""
    return Me(username=actor.username, role=actor.role)


@router.post("/v1/me/token", responses=AUTH_RESPONSES)
def rotate_token(actor: ApiActor, services: ServicesDep) -> NewToken:
    """Replace your personal API token; the new one is shown this once."""
    return NewToken(username=actor.username, token=services.accounts.new_token(actor.username))


@router.get("/v1/queue", responses=AUTH_RESPONSES)
def list_queue(
    actor: ApiActor,
    services: ServicesDep,
    policy: Annotated[PolicyName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> QueuePage:
    """Pending items in the order to take them (age floor, then priority), bodies shortened."""
    now = services.queue.clock()
    limit = min(limit, services.settings.review_list_limit)
    rows = services.queue.pending(actor, policy, limit)
    total = sum(count for count, _ in services.queue.depth().values())
    return QueuePage(pending=total, items=[item_out(r, now, preview=True) for r in rows])


@router.get("/v1/items/{item_id}", responses=ITEM_RESPONSES)
def get_item(item_id: ItemId, actor: ApiActor, services: ServicesDep) -> ItemDetail:
    """One item, the sender's other items in this queue, and its wave."""
    now = services.queue.clock()
    row = services.queue.get(item_id)
    history = services.queue.history(row)
    wave = services.queue.wave(row, actor) if row["status"] == "pending" else []
    return ItemDetail(
        item=item_out(row, now),
        history=[item_out(h, now, preview=True) for h in history],
        wave=[w["id"] for w in wave],
    )


@router.post("/v1/items/{item_id}/claim", responses={**ITEM_RESPONSES, **CONFLICT})
def claim_item(item_id: ItemId, actor: ApiActor, services: ServicesDep) -> Item:
    """Hold the item for REVIEW_LEASE_S seconds (claiming again renews your lease)."""
    return item_out(services.queue.claim(item_id, actor), services.queue.clock())


@router.post("/v1/items/{item_id}/release", responses={**ITEM_RESPONSES, **CONFLICT})
def release_item(item_id: ItemId, actor: ApiActor, services: ServicesDep) -> Item:
    """Give your claim back (an admin may release anyone's)."""
    return item_out(services.queue.release(item_id, actor), services.queue.clock())


@router.post("/v1/items/{item_id}/decision", responses={**ITEM_RESPONSES, **CONFLICT, **NOT_JSON})
def decide_item(
    item_id: ItemId, body: DecisionIn, actor: ApiActor, services: ServicesDep
) -> DecisionOut:
    """Decide an item you hold a live claim on; harm and ok publish a moderator label to
    labels.v1 (each item of a wave its own, each audited)."""
    policy = services.queue.get(item_id)["policy"]
    wave = body.wave and body.decision in ("harm", "ok")
    decided = services.queue.decide(item_id, actor, body.decision, wave=wave)
    count_decision(services, actor, decided)
    if decided.label is not None:
        services.worker.publish_soon()
    return DecisionOut(
        decided=decided.item_ids,
        decision=decided.decision,
        label=decided.label,
        released=decided.released,
        next_item_id=next_item(services, actor, policy),
    )


def audit_rows(services: Services, limit: int, offset: int) -> list[AuditRow]:
    rows = services.queue.audit(limit, offset)
    return [
        AuditRow(**{**r, "decided_at": iso(r["decided_at"]), "released": bool(r["released"])})
        for r in rows
    ]


@router.get("/v1/audit", responses=AUTH_RESPONSES)
def audit(
    _admin: ApiAdmin,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=MAX_ITEM_ID)] = 0,
) -> list[AuditRow]:
    """Every decision, newest first: who, what, when, on which model version (admins)."""
    return audit_rows(services, limit, offset)


@router.get(
    "/v1/audit.csv",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "The audit log as CSV.", "content": {"text/csv": {}}},
        **CSV_AUTH,
    },
)
def audit_csv(_admin: ApiAdmin, services: ServicesDep) -> Response:
    """The audit log as CSV (the newest 100,000 decisions)."""
    return csv_response(audit_rows(services, 100_000, 0))


def csv_response(rows: list[AuditRow]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(AuditRow.model_fields))
    writer.writeheader()
    for row in rows:
        writer.writerow(row.model_dump())
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="review-audit.csv"'},
    )


def stats_of(services: Services) -> Stats:
    now = services.queue.clock()
    moderators = [
        ModeratorStats(
            moderator=name,
            decided=len(times),
            median_handling_s=round(statistics.median(times), 3) if times else None,
        )
        for name, times in sorted(services.queue.handling_times().items())
    ]
    depth = services.queue.depth()
    return Stats(
        moderators=moderators,
        pending={policy: count for policy, (count, _) in depth.items()},
        oldest_pending_age_s={
            policy: round(now - oldest, 3) for policy, (_, oldest) in depth.items() if oldest
        },
    )


@router.get("/v1/stats", responses=AUTH_RESPONSES)
def stats(_actor: ApiActor, services: ServicesDep) -> Stats:
    """Labelling decisions and median handling time (claim to decision) per moderator, and
    the pending count and oldest pending item's age per policy."""
    return stats_of(services)


# -- appeals (public: a client app's key) -------------------------------------------------------

APPEAL_AUTH = error_response(Unauthorized, "No or an unknown client key.")


@router.post(
    "/v1/appeals",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **APPEAL_AUTH,
        **NOT_JSON,
        200: {"model": AppealOut, "description": "Filed before."},
    },
)
def file_appeal(
    body: AppealIn, client: AppealClient, services: ServicesDep, response: Response
) -> AppealOut:
    """File a sender's appeal against a blocked message: it becomes a queue item that a
    moderator upholds or overturns (overturned: the message is released, and its negative
    label published). One appeal per message and policy: filing again returns the first."""
    row, created = services.queue.add_appeal(
        client=client,
        message_id=body.message_id,
        sender_id=body.sender_id,
        policy=body.policy,
        subject=body.subject,
        body=body.body,
        sent_at=body.sent_at,
        reason=body.reason,
        model_version=body.model_version,
        score=body.score,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return appeal_out(row)


@router.get(
    "/v1/appeals/{appeal_id}",
    responses={**APPEAL_AUTH, **error_response(NotFound, "No such appeal from this client.")},
)
def get_appeal(
    appeal_id: Annotated[str, Path(min_length=1, max_length=64)],
    client: AppealClient,
    services: ServicesDep,
) -> AppealOut:
    """An appeal's outcome: pending, upheld, or overturned (and then released)."""
    return appeal_out(services.queue.appeal(appeal_id, client))


# -- erasure -----------------------------------------------------------------------------------


@router.delete("/v1/admin/senders/{sender_id}", responses=ADMIN_RESPONSES)
def erase_sender(sender_id: Id, _admin: AdminAuth, services: ServicesDep) -> Erased:
    """Delete a sender's items, their audit rows and unpublished labels (`modstack forget`)."""
    return Erased(sender_id=sender_id, items=services.queue.erase_sender(sender_id))
