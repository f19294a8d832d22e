"""Feast objects of the `moderation` project: entity, sender views, text view, feature services.

Definitions only: the values come from features.sender (pushed by the stream processor
and the backfill) and features.text (computed on demand, in training and serving alike).
Nothing is built on import: `build_definitions(feast_data_dir, offline)` makes the objects that
name the offline rows' files for a given data folder (`offline="file"`) or their PostgreSQL
tables (`offline="postgres"`) (`features.store.apply_repo`, i.e. `modstack feast-apply`, the
supported path; tests apply into a tmp one). The plain `feast` CLI reads module attributes:
`sender_activity`, `spam_model_v1`, ... are built on first access (module `__getattr__`, from
the FEAST_* variables feature_store.yaml expands), so `feast -c features apply` still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from types import FunctionType
from typing import Any, Literal

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
from feast.data_source import DataSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, String

from features.config import feast_data_dir, offline_store_type
from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES
from features.text import TEXT_FEATURE_NAMES
from modstack import names

# No TTL: a sender's latest row stays valid until the next one, offline (point-in-time join) and
# online alike, so training sees what serving sees. Window counts carry their own time spans.
NO_TTL = timedelta(0)
OfflineKind = Literal["file", "postgres"]


def _sender_entity() -> Entity:
    return Entity(
        name=names.FEAST_ENTITY,
        join_keys=[names.FEAST_JOIN_KEY],
        value_type=ValueType.STRING,
        description="A message sender: the lower-cased From address.",
    )


def _message_request() -> RequestSource:
    return RequestSource(
        name="message_request",
        schema=[Field(name="subject", dtype=String), Field(name="body", dtype=String)],
    )


def message_text_features(inputs: dict[str, list[Any]]) -> dict[str, list[float]]:
    """Batch of (subject, body) -> text statistics (python mode: dict of columns in and out)."""
    # Imported here: Feast rebuilds this function from its source text, without module globals.
    from features.text import TEXT_FEATURE_NAMES, text_features

    rows = [text_features(s, b) for s, b in zip(inputs["subject"], inputs["body"], strict=True)]
    return {name: [row[name] for row in rows] for name in TEXT_FEATURE_NAMES}


def _message_text_view(request: RequestSource) -> OnDemandFeatureView:
    # Feast's decorator rewrites the function's __module__ to "__main__" (so dill ships it by
    # value); a fresh copy per build keeps message_text_features itself findable for the next.
    udf = FunctionType(
        message_text_features.__code__, message_text_features.__globals__, "message_text_features"
    )
    view: OnDemandFeatureView = on_demand_feature_view(
        name=names.VIEW_MESSAGE_TEXT,
        sources=[request],
        schema=[Field(name=feature, dtype=Float64) for feature in TEXT_FEATURE_NAMES],
        mode="python",
        description="Text statistics of the message itself (features.text).",
    )(udf)
    return view


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


def offline_table(view_name: str) -> str:
    """The PostgreSQL table holding a sender view's offline rows (the postgres offline store)."""
    return f"offline_{view_name}"


def _batch_source(name: str, data_dir: Path, offline: OfflineKind) -> DataSource:
    if offline == "postgres":
        # Imported only here: the contrib module needs psycopg (feast[postgres]).
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
            PostgreSQLSource,
        )

        return PostgreSQLSource(
            name=f"{name}_batch", table=offline_table(name), timestamp_field="event_timestamp"
        )
    return FileSource(
        name=f"{name}_batch",
        path=str(offline_path(data_dir, name)),
        timestamp_field="event_timestamp",
    )


def _sender_view(
    name: str,
    push_name: str,
    features: tuple[str, ...],
    entity: Entity,
    data_dir: Path,
    offline: OfflineKind,
    doc: str,
) -> tuple[PushSource, FeatureView]:
    batch = _batch_source(name, data_dir, offline)
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


def build_definitions(feast_data_dir: Path, offline: OfflineKind = "file") -> Definitions:
    """The repo's objects: offline rows in files under `feast_data_dir` or in PostgreSQL."""
    sender = _sender_entity()
    message_request = _message_request()
    message_text_view = _message_text_view(message_request)
    activity_source, sender_activity = _sender_view(
        names.VIEW_SENDER_ACTIVITY,
        names.PUSH_SENDER_ACTIVITY,
        ACTIVITY_FEATURES,
        sender,
        feast_data_dir,
        offline,
        "Message volume and content mix of a sender, updated at each message (sent_at).",
    )
    reputation_source, sender_reputation = _sender_view(
        names.VIEW_SENDER_REPUTATION,
        names.PUSH_SENDER_REPUTATION,
        REPUTATION_FEATURES,
        sender,
        feast_data_dir,
        offline,
        "Spam and ham labels a sender received in the last 30 days, updated at labeled_at.",
    )
    spam_model_v1 = FeatureService(
        name=names.FEATURE_SERVICE_V1,
        features=[sender_activity, sender_reputation, message_text_view],
        description="Exactly the feature columns spam-classifier v1 models take, in order.",
    )
    return Definitions(
        sender=sender,
        activity_source=activity_source,
        reputation_source=reputation_source,
        message_request=message_request,
        sender_activity=sender_activity,
        sender_reputation=sender_reputation,
        message_text_features=message_text_view,
        spam_model_v1=spam_model_v1,
    )


@lru_cache(maxsize=1)
def repo_definitions() -> Definitions:
    """The objects for the data folder of the environment, built once per process."""
    # The `feast` CLI imports this file: it sees the same variables feature_store.yaml expands.
    return build_definitions(feast_data_dir(), offline_store_type())


# What the `feast` CLI finds (it scans `dir(module)`): module attribute -> Definitions field.
_CLI_OBJECTS = {
    "sender": "sender",
    "message_request": "message_request",
    "message_text_view": "message_text_features",
    "sender_activity_push": "activity_source",
    "sender_reputation_push": "reputation_source",
    "sender_activity": "sender_activity",
    "sender_reputation": "sender_reputation",
    "spam_model_v1": "spam_model_v1",
}


def __getattr__(name: str) -> Any:
    if name in _CLI_OBJECTS:
        return getattr(repo_definitions(), _CLI_OBJECTS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_CLI_OBJECTS])
