"""What a request body may hold, and how it becomes events: no HTTP, no Kafka here.

A body is either one item or a batch `{"messages": [...]}` / `{"labels": [...]}`. Validation
errors keep pydantic's location, so a 422 names the field (`messages.3.sent_at`).

The public label endpoint takes user reports only (`ReportIn`): moderator decisions come
through serving's review API, corpus labels through the backfill pipeline, never over here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from modstack.events import (
    ID_PATTERN,
    MAX_BATCH,
    Id,
    Label,
    LabelEvent,
    MessageEvent,
    MessageIn,
    UtcTime,
)

MAX_REPORTER_CHARS = 128
ReporterId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_REPORTER_CHARS, pattern=ID_PATTERN)
]


class ReportIn(BaseModel):
    """A user's report on a message, as an authenticated client app submits it."""

    model_config = ConfigDict(extra="forbid")

    message_id: Id = Field(description="a message this platform received from `sender_id`")
    sender_id: Id
    label: Label
    source: Literal["user_report"] = Field(
        default="user_report",
        description="only user reports: moderator labels come through serving's review API",
    )
    reporter_id: ReporterId = Field(
        description="the reporting user, as the client app knows them (counted once per sender)"
    )
    labeled_at: UtcTime


Item = TypeVar("Item", MessageIn, ReportIn)


class MessageBatch(BaseModel):
    """`POST /v1/messages` with several messages."""

    model_config = ConfigDict(extra="forbid")
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


class LabelBatch(BaseModel):
    """`POST /v1/labels` with several labels."""

    model_config = ConfigDict(extra="forbid")
    labels: list[ReportIn] = Field(min_length=1, max_length=MAX_BATCH)


class Accepted(BaseModel):
    """The 202 answer: every id in `accepted` is stored in the broker."""

    accepted: list[str] = Field(description="ids of the events now stored, in request order")
    duplicates: list[str] = Field(
        default_factory=list,
        description="ids among `accepted` that this service had already stored (not sent again)",
    )


class InvalidBody(ValueError):
    """The body is not valid; `errors` are pydantic-style dicts with a `loc` naming the field."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{_dotted(e['loc'])}: {e['msg']}" for e in errors))
        self.errors = list(errors)


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _body_errors(invalid: ValidationError) -> list[dict[str, Any]]:
    # `input` is dropped: echoing a 200 kB body back helps no one.
    found: list[dict[str, Any]] = []
    for error in invalid.errors(include_url=False, include_input=False):
        found.append({"loc": ("body", *error["loc"]), "msg": error["msg"], "type": error["type"]})
    return found


def _parse(raw: bytes, single: type[Item], batch: type[BaseModel], field: str) -> list[Item]:
    return _parse_any(raw, single, batch, field)[0]


def _parse_any(
    raw: bytes, single: type[Item], batch: type[BaseModel], field: str
) -> tuple[list[Item], bool]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidBody(
            [{"loc": ("body",), "msg": f"body is not valid JSON: {exc}", "type": "json_invalid"}]
        ) from None
    is_batch = isinstance(document, dict) and field in document
    model = batch if is_batch else single
    try:
        parsed = model.model_validate(document)
    except ValidationError as invalid:
        raise InvalidBody(_body_errors(invalid)) from None
    if is_batch:
        return list(getattr(parsed, field)), True
    return [parsed], False  # type: ignore[list-item]


def parse_messages(raw: bytes) -> list[MessageIn]:
    """One `MessageIn` or a `MessageBatch` from JSON bytes; raises `InvalidBody`."""
    return _parse(raw, MessageIn, MessageBatch, "messages")


def parse_reports(raw: bytes) -> tuple[list[ReportIn], bool]:
    """One `ReportIn` or a `LabelBatch` from JSON bytes (raises `InvalidBody`), and whether
    the body was a batch (for error locations)."""
    return _parse_any(raw, ReportIn, LabelBatch, "labels")


def message_event(item: MessageIn, received_at: datetime) -> MessageEvent:
    """The event produced to `messages.v1` for an accepted message."""
    return MessageEvent(**item.model_dump(), received_at=received_at)


def label_event(item: ReportIn, received_at: datetime, client: str) -> LabelEvent:
    """The event produced to `labels.v1` for an accepted report; the reporter is namespaced
    by the client app, so two apps' user "42" are two reporters."""
    fields = item.model_dump()
    fields["reporter_id"] = reporter_of(client, item.reporter_id)
    return LabelEvent(**fields, received_at=received_at)


def reporter_of(client: str, reporter_id: str) -> str:
    """The reporter id on the event: `<client app>/<reporter>`."""
    return f"{client}/{reporter_id}"


def label_key(item: LabelEvent) -> str:
    """Identity of a label: one per message, source and reporter (see modstack.message_log)."""
    return f"{item.message_id}\x1f{item.source}\x1f{item.reporter_id or ''}"


def unseen_reports(
    items: Sequence[ReportIn], senders: dict[str, str], batch: bool
) -> list[dict[str, Any]]:
    """Errors (pydantic-style, `loc` naming the item) for reports whose message was not seen
    from the sender they name; `senders` maps known message ids to their sender."""
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        sender = senders.get(item.message_id)
        if sender == item.sender_id:
            continue
        loc = ("body", "labels", index, "message_id") if batch else ("body", "message_id")
        errors.append(
            {
                "loc": loc,
                "msg": f"no message {item.message_id!r} from sender {item.sender_id!r} was "
                "received: a report must name a message this platform received from that sender",
                "type": "message_not_seen",
            }
        )
    return errors
