"""What a request body may hold, and how it becomes events: no HTTP, no Kafka here.

A body is either one item or a batch `{"messages": [...]}` / `{"labels": [...]}`. Validation
errors keep pydantic's location, so a 422 names the field (`messages.3.sent_at`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modstack.events import MAX_BATCH, LabelEvent, LabelIn, MessageEvent, MessageIn

Item = TypeVar("Item", MessageIn, LabelIn)


class MessageBatch(BaseModel):
    """`POST /v1/messages` with several messages."""

    model_config = ConfigDict(extra="forbid")
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


class LabelBatch(BaseModel):
    """`POST /v1/labels` with several labels."""

    model_config = ConfigDict(extra="forbid")
    labels: list[LabelIn] = Field(min_length=1, max_length=MAX_BATCH)


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
    return list(getattr(parsed, field)) if is_batch else [parsed]  # type: ignore[list-item]


def parse_messages(raw: bytes) -> list[MessageIn]:
    """One `MessageIn` or a `MessageBatch` from JSON bytes; raises `InvalidBody`."""
    return _parse(raw, MessageIn, MessageBatch, "messages")


def parse_labels(raw: bytes) -> list[LabelIn]:
    """One `LabelIn` or a `LabelBatch` from JSON bytes; raises `InvalidBody`."""
    return _parse(raw, LabelIn, LabelBatch, "labels")


def message_event(item: MessageIn, received_at: datetime) -> MessageEvent:
    """The event produced to `messages.v1` for an accepted message."""
    return MessageEvent(**item.model_dump(), received_at=received_at)


def label_event(item: LabelIn, received_at: datetime) -> LabelEvent:
    """The event produced to `labels.v1` for an accepted label."""
    return LabelEvent(**item.model_dump(), received_at=received_at)


def message_key(item: MessageIn | MessageEvent) -> str:
    """Identity of a message (what dedupe is by)."""
    return item.message_id


def label_key(item: LabelIn | LabelEvent) -> str:
    """Identity of a label: one per message and source (see modstack.message_log)."""
    return f"{item.message_id}\x1f{item.source}"
