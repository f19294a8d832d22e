"""Feast objects of the `moderation` project: entity, sender views, text view, feature services.

Definitions only: the values come from features.sender (pushed by the stream processor
and the backfill) and features.text (computed on demand, in training and serving alike).
`build_definitions(feast_data_dir)` makes the objects that name files for a given data folder
(tests apply into a tmp one); the module-level objects are what the `feast` CLI finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, String

from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES
from features.text import TEXT_FEATURE_NAMES
from modstack import names

# No TTL: a sender's latest row stays valid until the next one, offline (point-in-time join) and
# online alike, so training sees what serving sees. Window counts carry their own time spans.
NO_TTL = timedelta(0)


sender = Entity(
    name=names.FEAST_ENTITY,
    join_keys=[names.FEAST_JOIN_KEY],
    value_type=ValueType.STRING,
    description="A message sender: the lower-cased From address.",
)

message_request = RequestSource(
    name="message_request",
    schema=[Field(name="subject", dtype=String), Field(name="body", dtype=String)],
)


@on_demand_feature_view(
    name=names.VIEW_MESSAGE_TEXT,
    sources=[message_request],
    schema=[Field(name=feature, dtype=Float64) for feature in TEXT_FEATURE_NAMES],
    mode="python",
    description="Text statistics of the message itself (features.text).",
)
def message_text_features(inputs: dict[str, list[Any]]) -> dict[str, list[float]]:
    """Batch of (subject, body) -> text statistics (python mode: dict of columns in and out)."""
    # Imported here: Feast rebuilds this function from its source text, without module globals.
    from features.text import TEXT_FEATURE_NAMES, text_features

    rows = [text_features(s, b) for s, b in zip(inputs["subject"], inputs["body"], strict=True)]
    return {name: [row[name] for row in rows] for name in TEXT_FEATURE_NAMES}


@dataclass(frozen=True)
class Definitions:
    """Every Feast object of the repo, for `FeatureStore.apply`."""

    sender: Entity
    activity_source: PushSource
    reputation_source: PushSource
    message_request: RequestSource
    sender_activity: FeatureView
    sender_reputation: FeatureView
    message_text_features: OnDemandFeatureView
    spam_model_v1: FeatureService

    def objects(self) -> list[Any]:
        """All objects, data sources included (the push sources carry their batch sources)."""
        return [
            self.sender,
            self.activity_source.batch_source,
            self.reputation_source.batch_source,
            self.activity_source,
            self.reputation_source,
            self.message_request,
            self.sender_activity,
            self.sender_reputation,
            self.message_text_features,
            self.spam_model_v1,
        ]


def offline_path(feast_data_dir: Path, view_name: str) -> Path:
    """The parquet file holding a sender view's offline rows (its push source's batch source)."""
    return feast_data_dir / "offline" / f"{view_name}.parquet"


def _sender_view(
    name: str, push_name: str, features: tuple[str, ...], entity: Entity, data_dir: Path, doc: str
) -> tuple[PushSource, FeatureView]:
    batch = FileSource(
        name=f"{name}_batch",
        path=str(offline_path(data_dir, name)),
        timestamp_field="event_timestamp",
    )
    push = PushSource(name=push_name, batch_source=batch)
    view = FeatureView(
        name=name,
        entities=[entity],
        ttl=NO_TTL,
        schema=[Field(name=names.FEAST_JOIN_KEY, dtype=String)]
        + [Field(name=feature, dtype=Float64) for feature in features],
        source=push,
        online=True,
        description=doc,
    )
    return push, view


def build_definitions(feast_data_dir: Path) -> Definitions:
    """The repo's objects, with offline files under `feast_data_dir`."""
    activity_source, sender_activity = _sender_view(
        names.VIEW_SENDER_ACTIVITY,
        names.PUSH_SENDER_ACTIVITY,
        ACTIVITY_FEATURES,
        sender,
        feast_data_dir,
        "Message volume and content mix of a sender, updated at each message (sent_at).",
    )
    reputation_source, sender_reputation = _sender_view(
        names.VIEW_SENDER_REPUTATION,
        names.PUSH_SENDER_REPUTATION,
        REPUTATION_FEATURES,
        sender,
        feast_data_dir,
        "Spam and ham labels a sender received in the last 30 days, updated at labeled_at.",
    )
    spam_model_v1 = FeatureService(
        name=names.FEATURE_SERVICE_V1,
        features=[sender_activity, sender_reputation, message_text_features],
        description="Exactly the feature columns spam-classifier v1 models take, in order.",
    )
    return Definitions(
        sender=sender,
        activity_source=activity_source,
        reputation_source=reputation_source,
        message_request=message_request,
        sender_activity=sender_activity,
        sender_reputation=sender_reputation,
        message_text_features=message_text_features,
        spam_model_v1=spam_model_v1,
    )


def _data_dir_from_environment() -> Path:
    # The `feast` CLI imports this file: it sees the same variables feature_store.yaml expands.
    from features.store import feast_data_dir

    return feast_data_dir()


_repo = build_definitions(_data_dir_from_environment())
sender_activity_push = _repo.activity_source
sender_reputation_push = _repo.reputation_source
sender_activity = _repo.sender_activity
sender_reputation = _repo.sender_reputation
spam_model_v1 = _repo.spam_model_v1
