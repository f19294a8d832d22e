"""The real Feast repo applied into a tmp DATA_DIR: apply, push, online reads, Redis by config."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features import store as featurestore
from features.config import feature_store_settings
from features.definitions import offline_path, offline_table
from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES, SenderFeatureComputer
from features.text import TEXT_FEATURE_NAMES, text_features
from modstack import names
from modstack.events import LabelEvent, MessageEvent
from tests.support.redis import redis_or

pytestmark = pytest.mark.integration

T0 = datetime(2002, 6, 1, 8, 0, tzinfo=UTC)
SUBJECT, BODY = "URGENT: free money!!", "Claim $1,000 now at http://win.example <b>today</b>"


def missing(values: dict[str, float | None]) -> list[str]:
    """Names of the features an online read had no value for."""
    return [name for name, value in values.items() if value is None]


def _events() -> list[MessageEvent | LabelEvent]:
    events: list[MessageEvent | LabelEvent] = []
    for i in range(6):
        sender = "spammer@x.example" if i % 2 else "friend@y.example"
        at = T0 + timedelta(minutes=20 * i)
        events.append(
            MessageEvent(
                message_id=f"m{i}",
                sender_id=sender,
                subject=f"offer {i % 3}",
                body="see http://x.example" if i % 2 else "lunch?",
                sent_at=at,
                received_at=at,
            )
        )
    events.append(
        LabelEvent(
            message_id="m1",
            sender_id="spammer@x.example",
            label="spam",
            source="user_report",
            labeled_at=T0 + timedelta(hours=3),
            received_at=T0 + timedelta(hours=3),
        )
    )
    return events


def _computed_rows() -> tuple[list[dict], list[dict]]:
    computer = SenderFeatureComputer()
    activity, reputation = [], []
    for event in _events():
        view, row = computer.apply(event)
        (activity if view == names.VIEW_SENDER_ACTIVITY else reputation).append(row)
    return activity, reputation


def _latest(rows: list[dict], sender: str) -> dict:
    return [r for r in rows if r["sender_id"] == sender][-1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("feast")
    featurestore.apply_repo(data_dir=folder)
    return folder


@pytest.fixture(scope="module")
def pushed_store(data_dir: Path):
    store = featurestore.get_store(data_dir=data_dir)
    activity, reputation = _computed_rows()
    featurestore.push_activity(store, activity)
    featurestore.push_reputation(store, reputation)
    return store


def _offline_store_exists(data_dir: Path, view: str) -> bool:
    """The view's offline parquet file, or its PostgreSQL table (scale profile), exists."""
    if feature_store_settings().feast_offline_store_type == "postgres":
        from contextlib import closing

        with closing(featurestore.offline_connection()) as connection:
            found = connection.execute("SELECT to_regclass(%s)", (offline_table(view),))
            return found.fetchone() not in (None, (None,))
    return offline_path(featurestore.feast_data_dir(data_dir), view).exists()


def test_apply_is_idempotent_and_creates_the_offline_stores(data_dir: Path):
    report = featurestore.apply_repo(data_dir=data_dir)
    assert report.deleted == []
    assert report.created_files == []  # made by the first apply
    assert "FeatureService:spam_model_v1" in report.applied
    assert "OnDemandFeatureView:message_text_features" in report.applied
    for view in (names.VIEW_SENDER_ACTIVITY, names.VIEW_SENDER_REPUTATION):
        assert _offline_store_exists(data_dir, view)


def test_apply_deletes_objects_no_longer_defined(tmp_path: Path):
    from feast import FeatureService

    featurestore.apply_repo(data_dir=tmp_path)
    store = featurestore.get_store(data_dir=tmp_path)
    store.apply(
        [
            FeatureService(
                name="spam_model_old", features=[store.get_feature_view(names.VIEW_SENDER_ACTIVITY)]
            )
        ]
    )
    report = featurestore.apply_repo(data_dir=tmp_path)
    assert report.deleted == ["FeatureService:spam_model_old"]


def test_feature_service_names_exactly_the_model_columns_in_order(pushed_store):
    columns = featurestore.feature_columns(pushed_store, names.FEATURE_SERVICE_V1)
    assert columns == [*ACTIVITY_FEATURES, *REPUTATION_FEATURES, *TEXT_FEATURE_NAMES]


def test_online_features_equal_the_computer_values(pushed_store):
    activity, reputation = _computed_rows()
    for sender in ("spammer@x.example", "friend@y.example"):
        values = featurestore.online_features(
            pushed_store, names.FEATURE_SERVICE_V1, sender, SUBJECT, BODY
        )
        expected = _latest(activity, sender)
        assert {f: values[f] for f in ACTIVITY_FEATURES} == {
            f: expected[f] for f in ACTIVITY_FEATURES
        }
    spammer = featurestore.online_features(
        pushed_store, names.FEATURE_SERVICE_V1, "spammer@x.example", SUBJECT, BODY
    )
    assert {f: spammer[f] for f in REPUTATION_FEATURES} == {
        f: reputation[-1][f] for f in REPUTATION_FEATURES
    }


def test_on_demand_text_features_online_equal_text_features(pushed_store):
    values = featurestore.online_features(
        pushed_store, names.FEATURE_SERVICE_V1, "spammer@x.example", SUBJECT, BODY
    )
    assert {f: values[f] for f in TEXT_FEATURE_NAMES} == text_features(SUBJECT, BODY)


def test_unknown_sender_reads_missing_sender_features_but_has_text_features(pushed_store):
    values = featurestore.online_features(
        pushed_store, names.FEATURE_SERVICE_V1, "nobody@new.example", SUBJECT, BODY
    )
    assert missing(values) == [*ACTIVITY_FEATURES, *REPUTATION_FEATURES]
    assert values["url_count"] == 1.0


def test_a_sender_without_labels_misses_only_reputation(pushed_store):
    values = featurestore.online_features(
        pushed_store, names.FEATURE_SERVICE_V1, "friend@y.example", "", ""
    )
    assert missing(values) == list(REPUTATION_FEATURES)


def test_offline_push_appends_every_row_and_online_only_push_skips_it(data_dir: Path, pushed_store):
    activity, _ = _computed_rows()

    def offline_rows() -> int:
        return featurestore.offline_row_counts(data_dir)[names.VIEW_SENDER_ACTIVITY]

    assert offline_rows() == len(activity)
    newcomer = {**activity[0], "sender_id": "carol@z.example", "sender_msgs_total": 99.0}
    report = featurestore.push_activity(pushed_store, [newcomer], offline=False)
    assert (report.online_rows, report.offline_rows) == (1, 0)
    values = featurestore.online_features(
        pushed_store, names.FEATURE_SERVICE_V1, "carol@z.example", "", ""
    )
    assert values["sender_msgs_total"] == 99.0
    assert offline_rows() == len(activity)


def test_push_rejects_rows_without_the_view_columns(pushed_store):
    with pytest.raises(ValueError, match="lack columns"):
        featurestore.push_activity(pushed_store, [{"sender_id": "x", "event_timestamp": T0}])


# -- Redis as online store, by configuration only ------------------------------------------------


@pytest.fixture(scope="module")
def redis_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_or(tmp_path_factory.mktemp("redis"), pytest.skip) as address:
        yield address


def test_redis_online_store_by_environment_serves_the_same_values(
    redis_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("FEAST_ONLINE_STORE", raising=False)
    monkeypatch.setenv("FEAST_ONLINE_STORE_TYPE", "redis")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", redis_address)
    featurestore.apply_repo(data_dir=tmp_path)
    store = featurestore.get_store(data_dir=tmp_path)
    assert store.config.online_store.type == "redis"
    activity, reputation = _computed_rows()
    featurestore.push_activity(store, activity)
    featurestore.push_reputation(store, reputation)
    values = featurestore.online_features(
        store, names.FEATURE_SERVICE_V1, "spammer@x.example", SUBJECT, BODY
    )
    expected = {**_latest(activity, "spammer@x.example"), **reputation[-1]}
    assert {f: values[f] for f in (*ACTIVITY_FEATURES, *REPUTATION_FEATURES)} == {
        f: expected[f] for f in (*ACTIVITY_FEATURES, *REPUTATION_FEATURES)
    }
    assert {f: values[f] for f in TEXT_FEATURE_NAMES} == text_features(SUBJECT, BODY)


def test_training_row_after_the_last_event_equals_the_online_read(pushed_store):
    from pipelines.dataset import build_training_set

    later = T0 + timedelta(days=2)
    rows = pd.DataFrame(
        {
            "message_id": ["n1", "n2"],
            "sender_id": ["spammer@x.example", "friend@y.example"],
            "sent_at": [later, later],
            "label": ["spam", "ham"],
            "subject": [SUBJECT, ""],
            "body": [BODY, "hi"],
        }
    )
    built = build_training_set(rows, store=pushed_store)
    for row in built.to_dict("records"):
        online = featurestore.online_features(
            pushed_store, names.FEATURE_SERVICE_V1, row["sender_id"], row["subject"], row["body"]
        )
        offline = {c: row[c] for c in online}
        assert {c: v for c, v in offline.items() if not pd.isna(v)} == {
            c: v for c, v in online.items() if v is not None
        }
        missing_offline = [c for c, v in offline.items() if pd.isna(v)]
        assert missing_offline == missing(online)


def test_training_set_from_an_empty_offline_store_has_no_sender_state(tmp_path: Path):
    from pipelines.dataset import build_training_set

    featurestore.apply_repo(data_dir=tmp_path)
    rows = pd.DataFrame(
        {
            "message_id": ["a", "b"],
            "sender_id": ["x@y.z", "x@y.z"],
            "sent_at": [T0, T0],
            "label": ["spam", "spam"],
            "subject": ["Hi", "Hi!"],
            "body": ["", ""],
        }
    )
    built = build_training_set(rows, data_dir=tmp_path)
    assert list(built["message_id"]) == ["a", "b"]
    assert built[[*ACTIVITY_FEATURES, *REPUTATION_FEATURES]].isna().all().all()
    assert list(built["exclamations"]) == [0.0, 1.0]
