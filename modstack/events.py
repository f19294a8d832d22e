"""Event schemas on the wire (JSON). One module, versioned by `schema_version`.

Bounds here are the ingestion contract: a request outside them gets a 422 naming the field.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from modstack.policy import (
    DEFAULT_POLICY,
    LabelName,
    PolicyName,
    label_matches_policy,
    policy_of_label,
)

SCHEMA_VERSION: Literal[1] = 1
MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 200_000
MAX_BATCH = 500
EARLIEST_SANE_TIME = datetime(1990, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)

Label = LabelName  # one of a policy's two labels ("spam"/"ham", "abuse"/"ok", ...)
LabelSource = Literal["user_report", "moderator", "corpus"]
Action = Literal["allow", "review", "block"]
Variant = Literal["champion", "challenger"]

# No control characters, no leading or trailing space: refused rather than stripped, so the
# schema states exactly what is accepted (a stripped " " would pass `minLength: 1`, then fail).
# ASCII classes only, so JSON Schema, Python and pydantic's Rust regex agree on every string.
ID_PATTERN = r"^[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ID_PATTERN)]


def _sane_utc(value: datetime) -> datetime:
    """Timestamps are stored in UTC; naive ones are taken as UTC; absurd ones are refused."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value < EARLIEST_SANE_TIME:
        raise ValueError(f"timestamp {value.isoformat()} is before {EARLIEST_SANE_TIME.date()}")
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError(f"timestamp {value.isoformat()} is in the future")
    return value


UtcTime = Annotated[datetime, AfterValidator(_sane_utc)]


def utcnow() -> datetime:
    """Aware current time in UTC."""
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        """The event as JSON bytes, as produced to Kafka."""
        return self.model_dump_json().encode()


class MessageIn(BaseModel):
    """A message as a client submits it to ingestion."""

    model_config = ConfigDict(extra="forbid")

    message_id: Id
    sender_id: Id
    subject: str = Field(default="", max_length=MAX_SUBJECT_CHARS)
    body: str = Field(default="", max_length=MAX_BODY_CHARS)
    sent_at: UtcTime


class MessageEvent(_Event):
    """`messages.v1`, keyed by sender_id: an accepted message, stamped by ingestion."""

    message_id: Id
    sender_id: Id
    subject: str = Field(default="", max_length=MAX_SUBJECT_CHARS)
    body: str = Field(default="", max_length=MAX_BODY_CHARS)
    sent_at: UtcTime
    received_at: UtcTime


class LabelEvent(_Event):
    """`labels.v1`, keyed by sender_id.

    `policy` is the harm the label is about; `label` is one of that policy's two labels.
    `reporter_id` names who reported a `user_report` ("<client app>/<reporter>", set by
    ingestion from the authenticated client); `moderator_id` the signed-in moderator who
    decided a `moderator` label (set by the review service from the session); both None for
    corpus labels.
    """

    message_id: Id
    sender_id: Id
    label: Label
    source: LabelSource
    labeled_at: UtcTime
    received_at: UtcTime
    reporter_id: Id | None = None
    moderator_id: Id | None = None
    policy: PolicyName = DEFAULT_POLICY

    @model_validator(mode="before")
    @classmethod
    def _policy_from_label(cls, data: Any) -> Any:
        """A label without a policy is about the one policy that has that label."""
        if isinstance(data, dict) and data.get("policy") is None and "label" in data:
            with suppress(ValueError):  # an unknown label is reported by the field itself
                data = {**data, "policy": policy_of_label(data["label"])}
        return data

    @model_validator(mode="after")
    def _label_of_its_policy(self) -> LabelEvent:
        label_matches_policy(self.label, self.policy)
        return self


class PredictionEvent(_Event):
    """`predictions.v1`, keyed by message_id: one policy's decision and what its model saw."""

    message_id: Id
    policy: PolicyName = DEFAULT_POLICY
    sender_id: Id
    sent_at: datetime
    scored_at: datetime
    score: float = Field(ge=0.0, le=1.0)
    action: Action
    model_version: str
    variant: Variant
    served: bool = True  # False for a shadow prediction that did not answer the request
    features: dict[str, float | None] = Field(default_factory=dict)
    missing_features: list[str] = Field(default_factory=list)
    latency_ms: float = 0.0


class ReviewRequest(_Event):
    """`reviews.v1`, keyed by message_id: a message one policy's model was unsure of.

    Serving publishes one per (message, policy) whose action is `review`; the review service
    queues it with what a moderator needs to decide: the text, who sent it, and the model's view.
    """

    message_id: Id
    sender_id: Id
    policy: PolicyName
    subject: str = Field(default="", max_length=MAX_SUBJECT_CHARS)
    body: str = Field(default="", max_length=MAX_BODY_CHARS)
    sent_at: datetime
    score: float = Field(ge=0.0, le=1.0)
    model_version: str
    variant: Variant
    requested_at: datetime = Field(default_factory=utcnow)
    # the cut-offs that put it in the band [review, block), and the features the model saw
    review_cutoff: float | None = Field(default=None, ge=0.0, le=1.0)
    block_cutoff: float | None = Field(default=None, ge=0.0, le=1.0)
    features: dict[str, float | None] = Field(default_factory=dict)


class DeadLetter(_Event):
    """`deadletter.v1`: bytes that could not be used, with why and where they came from."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    original: str  # the original bytes, decoded as latin-1 so any byte sequence round-trips
    error: str
    failed_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def of(cls, source_topic: str, raw: bytes, error: str, **where: Any) -> DeadLetter:
        """Wrap raw bytes that failed with `error`."""
        return cls(source_topic=source_topic, original=raw.decode("latin-1"), error=error, **where)
