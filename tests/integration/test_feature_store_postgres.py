"""Feast on servers: the SQL registry and the offline store in PostgreSQL, Redis online, chosen
by env vars only; the same pushes as into the file store (file registry, parquet, SQLite) give
the same offline rows, the same online values and the same point-in-time training set.

A real PostgreSQL 15 and a real Redis are started as plain processes on free loopback ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.engine import make_url

from features import store as featurestore
from features.definitions import offline_path, offline_table
from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES
from modstack import names
from modstack.corpus import build_corpus, load_corpus
from pipelines import backfill
from pipelines.dataset import ROW_COLUMNS, build_training_set
from tests.support.postgres import running_postgres
from tests.support.redis import redis_or

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
PUSH_BATCH = 100  # rows per offline push, like a processor micro-batch
FEAST_ENV = (
    "FEAST_DATA_DIR",
    "FEAST_ONLINE_STORE",
    "FEAST_ONLINE_STORE_TYPE",
    "FEAST_REGISTRY_TYPE",
    "FEAST_REGISTRY_PATH",
    "FEAST_OFFLINE_STORE_TYPE",
    "FEAST_OFFLINE_PG_HOST",
    "FEAST_OFFLINE_PG_PORT",
    "FEAST_OFFLINE_PG_DATABASE",
    "FEAST_OFFLINE_PG_USER",
    "FEAST_OFFLINE_PG_PASSWORD",
    "FEAST_OFFLINE_PG_SCHEMA",
    "REDIS_CONNECTION_STRING",
)


@pytest.fixture(scope="module")
def redis_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_or(tmp_path_factory.mktemp("redis"), pytest.fail) as address:
        yield address


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


def server_env(postgres_url: str, redis_address: str) -> dict[str, str]:
    """The variables that move Feast onto the servers (the names compose and k8s set)."""
    url = make_url(postgres_url)
    return {
        "FEAST_REGISTRY_TYPE": "sql",
        "FEAST_REGISTRY_PATH": url.set(drivername="postgresql+psycopg").render_as_string(
            hide_password=False
        ),
        "FEAST_OFFLINE_STORE_TYPE": "postgres",
        "FEAST_OFFLINE_PG_HOST": str(url.host),
        "FEAST_OFFLINE_PG_PORT": str(url.port),
        "FEAST_OFFLINE_PG_DATABASE": str(url.database),
        "FEAST_OFFLINE_PG_USER": str(url.username),
        "FEAST_OFFLINE_PG_PASSWORD": url.password or "",
        "FEAST_ONLINE_STORE_TYPE": "redis",
        "REDIS_CONNECTION_STRING": redis_address,
    }


@dataclass
class Stores:
    """The same pushes in both configurations."""

    file: Any  # FeatureStore: file registry, parquet offline, SQLite online
    server: Any  # FeatureStore: SQL registry, PostgreSQL offline, Redis online
    file_dir: Path
    activity: list[dict]
    reputation: list[dict]
    rows: pd.DataFrame  # labelled messages to build a training set for
    apply_report: featurestore.ApplyReport


def _with_edge_cases(corpus: pd.DataFrame) -> pd.DataFrame:
    """The fixture plus copies that share a sender and sent_at with another mail (Feast
    collapses entity rows sharing (entity, timestamp) unless they are spread apart)."""
    repeat = corpus[corpus.duplicated("sender_id", keep=False)].sort_values("message_id").head(4)
    return pd.concat(
        [corpus, repeat.assign(message_id=lambda f: f["message_id"] + "-same-time")],
        ignore_index=True,
    )


def _push_in_batches(store: Any, activity: list[dict], reputation: list[dict]) -> None:
    for push, rows in (
        (featurestore.push_activity, activity),
        (featurestore.push_reputation, reputation),
    ):
        for start in range(0, len(rows), PUSH_BATCH):
            push(store, rows[start : start + PUSH_BATCH])


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_address: str
) -> Iterator[Stores]:
    data_dir = tmp_path_factory.mktemp("corpus")
    build_corpus(FIXTURE, data_dir)
    corpus = _with_edge_cases(load_corpus(data_dir))
    messages, labels = backfill.corpus_events(corpus, "all")
    activity, reputation, _ = backfill.replay(messages, labels)
    rows = corpus[list(ROW_COLUMNS)].sample(frac=1.0, random_state=3).reset_index(drop=True)
    with pytest.MonkeyPatch.context() as env:
        for name in FEAST_ENV:
            env.delenv(name, raising=False)
        file_dir = tmp_path_factory.mktemp("feast-file")
        featurestore.apply_repo(data_dir=file_dir)
        file_store = featurestore.get_store(data_dir=file_dir)
        _push_in_batches(file_store, activity, reputation)

        for name, value in server_env(postgres_url, redis_address).items():
            env.setenv(name, value)
        # a data folder that is never created: nothing of the server configuration is a file
        no_files = tmp_path_factory.mktemp("feast-server") / "absent"
        report = featurestore.apply_repo(data_dir=no_files)
        server_store = featurestore.get_store(data_dir=no_files)
        _push_in_batches(server_store, activity, reputation)
        assert not no_files.exists()
        yield Stores(file_store, server_store, file_dir, activity, reputation, rows, report)


def _postgres_rows(store: Any, view: str) -> pd.DataFrame:
    with featurestore.offline_connection(store) as connection:
        cursor = connection.execute(f'SELECT * FROM "{offline_table(view)}"')
        columns = [c.name for c in cursor.description or ()]
        frame = pd.DataFrame(cursor.fetchall(), columns=columns)
    return _normalised(frame)


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    for column in frame.columns[2:]:
        frame[column] = frame[column].astype("float64")
    ordered = frame.sort_values([names.FEAST_JOIN_KEY, "event_timestamp"], kind="stable")
    return ordered.reset_index(drop=True)


def test_the_registry_and_the_offline_tables_live_in_postgresql(stores: Stores):
    config = stores.server.config
    assert (config.registry.registry_type, config.offline_store.type) == ("sql", "postgres")
    assert config.online_store.type == "redis"
    assert stores.apply_report.created_files == [
        f"postgres:{offline_table(names.VIEW_SENDER_ACTIVITY)}",
        f"postgres:{offline_table(names.VIEW_SENDER_REPUTATION)}",
    ]
    assert "FeatureService:spam_model_v1" in stores.apply_report.applied
    # a second process sees the definitions through the database alone, and a re-apply is a no-op
    again = featurestore.apply_repo()
    assert (again.created_files, again.deleted) == ([], [])
    fresh = featurestore.get_store()
    assert {v.name for v in fresh.list_feature_views()} == {
        names.VIEW_SENDER_ACTIVITY,
        names.VIEW_SENDER_REPUTATION,
    }


def test_postgres_offline_tables_hold_exactly_the_parquet_rows(stores: Stores):
    folder = featurestore.feast_data_dir(stores.file_dir)
    for view, pushed in (
        (names.VIEW_SENDER_ACTIVITY, stores.activity),
        (names.VIEW_SENDER_REPUTATION, stores.reputation),
    ):
        from_parquet = _normalised(pd.read_parquet(offline_path(folder, view)))
        from_postgres = _postgres_rows(stores.server, view)
        assert len(from_postgres) == len(pushed) > 0
        pd.testing.assert_frame_equal(from_postgres, from_parquet)
    assert featurestore.offline_row_counts() == {
        names.VIEW_SENDER_ACTIVITY: len(stores.activity),
        names.VIEW_SENDER_REPUTATION: len(stores.reputation),
    }


def test_a_redelivered_push_adds_no_row(stores: Stores):
    before = featurestore.offline_row_counts()
    report = featurestore.push_activity(stores.server, stores.activity[:PUSH_BATCH], online=False)
    assert report.offline_rows == PUSH_BATCH
    assert featurestore.offline_row_counts() == before


def test_redis_online_values_equal_the_sqlite_ones(stores: Stores):
    senders = sorted({row["sender_id"] for row in stores.reputation})[:5]
    senders += sorted({row["sender_id"] for row in stores.activity})[-5:]
    for sender in senders:
        on_server = featurestore.online_features(
            stores.server, names.FEATURE_SERVICE_V1, sender, "Re: hello", "see you at 5"
        )
        on_files = featurestore.online_features(
            stores.file, names.FEATURE_SERVICE_V1, sender, "Re: hello", "see you at 5"
        )
        assert on_server == on_files
        for features, pushed in (
            (ACTIVITY_FEATURES, stores.activity),
            (REPUTATION_FEATURES, stores.reputation),
        ):
            latest = [r for r in pushed if r["sender_id"] == sender]
            expected = {f: latest[-1][f] if latest else None for f in features}
            assert {f: on_server[f] for f in features} == expected


def test_point_in_time_training_sets_are_equal_on_both_stores(stores: Stores):
    from_files = build_training_set(stores.rows, store=stores.file)
    from_postgres = build_training_set(stores.rows, store=stores.server)
    pd.testing.assert_frame_equal(from_postgres, from_files)
    # not equal by being empty: rows with sender state, rows without, labels seen
    has_state = from_postgres["sender_msgs_total"].notna()
    assert 0 < has_state.sum() < len(from_postgres) == len(stores.rows)
    assert (from_postgres["sender_spam_labels_30d"] > 0).any()
    same_time = from_postgres[from_postgres["message_id"].str.endswith("-same-time")]
    assert len(same_time) == 4
    originals = from_postgres.set_index("message_id").loc[
        same_time["message_id"].str.removesuffix("-same-time")
    ]
    # a copy with the same sender and sent_at sees exactly what its original sees
    assert (
        same_time[list(ACTIVITY_FEATURES)].to_numpy(na_value=-1.0)
        == originals[list(ACTIVITY_FEATURES)].to_numpy(na_value=-1.0)
    ).all()


def test_erase_count_and_reset_on_postgres(stores: Stores, postgres_url: str):
    # in a schema of its own, so the rows the other tests compare stay as pushed
    with featurestore.offline_connection(stores.server) as connection:
        connection.execute("CREATE SCHEMA scratch")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FEAST_OFFLINE_PG_SCHEMA", "scratch")
        featurestore.apply_repo()
        store = featurestore.get_store()
        gone, kept = "gone@x.example", "kept@x.example"
        rows = [
            {**stores.activity[0], "sender_id": sender, "event_timestamp": stamp}
            for sender in (gone, kept)
            for stamp in (
                stores.activity[0]["event_timestamp"],
                stores.activity[0]["event_timestamp"] + timedelta(seconds=1),
            )
        ]
        featurestore.push_activity(store, rows, online=False)
        featurestore.push_reputation(store, [{**stores.reputation[0], "sender_id": gone}])
        assert featurestore.offline_row_counts() == {
            names.VIEW_SENDER_ACTIVITY: 4,
            names.VIEW_SENDER_REPUTATION: 1,
        }
        assert featurestore.erase_sender_offline(gone) == {
            names.VIEW_SENDER_ACTIVITY: 2,
            names.VIEW_SENDER_REPUTATION: 1,
        }
        remaining = _postgres_rows(store, names.VIEW_SENDER_ACTIVITY)
        assert set(remaining[names.FEAST_JOIN_KEY]) == {kept}
        featurestore.reset_offline()
        assert featurestore.offline_row_counts() == {
            names.VIEW_SENDER_ACTIVITY: 0,
            names.VIEW_SENDER_REPUTATION: 0,
        }
    # the shared schema was not touched
    assert featurestore.offline_row_counts()[names.VIEW_SENDER_ACTIVITY] == len(stores.activity)
