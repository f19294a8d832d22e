"""The Feast feature store as the rest of ModStack uses it: open, apply, push, read online.

`features/feature_store.yaml` is the one config; this module fills in the variables it expands
(`FEAST_DATA_DIR`, `FEAST_ONLINE_STORE`) from the settings when they are not set, so the same
file serves the local default (SQLite online, parquet offline) and Redis (compose, k8s) with
`FEAST_ONLINE_STORE_TYPE=redis REDIS_CONNECTION_STRING=host:6379`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import string
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from features.config import absolute_path, feast_data_dir, feature_store_settings
from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES
from modstack import names

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

FEATURE_STORE_YAML = "feature_store.yaml"
ONLINE_DB = "online.db"  # the SQLite online store's file, in the Feast data folder
VIEW_FEATURES: dict[str, tuple[str, ...]] = {
    names.VIEW_SENDER_ACTIVITY: ACTIVITY_FEATURES,
    names.VIEW_SENDER_REPUTATION: REPUTATION_FEATURES,
}
PUSH_SOURCES: dict[str, str] = {
    names.VIEW_SENDER_ACTIVITY: names.PUSH_SENDER_ACTIVITY,
    names.VIEW_SENDER_REPUTATION: names.PUSH_SENDER_REPUTATION,
}


def online_store_config(data_dir: Path) -> str:
    """The `online_store` mapping (YAML flow style) the settings ask for."""
    explicit = os.environ.get("FEAST_ONLINE_STORE")
    if explicit:
        return explicit
    settings = feature_store_settings()
    if settings.feast_online_store_type == "redis":
        return f'{{type: redis, connection_string: "{settings.redis_connection_string}"}}'
    return f'{{type: sqlite, path: "{data_dir / ONLINE_DB}"}}'


def repo_variables(data_dir: Path | None = None) -> dict[str, str]:
    """The values of the variables feature_store.yaml expands, for this process."""
    folder = feast_data_dir(data_dir)
    return {"FEAST_DATA_DIR": str(folder), "FEAST_ONLINE_STORE": online_store_config(folder)}


def load_repo_config(repo_path: Path | None = None, data_dir: Path | None = None) -> Any:
    """feature_store.yaml with `${VARS}` expanded like Feast does, with our values filled in.

    FEAST_DATA_DIR: the `data_dir` argument, else the environment, else DATA_DIR/feast;
    FEAST_ONLINE_STORE: the environment, else derived from FEAST_ONLINE_STORE_TYPE.
    """
    from feast.repo_config import RepoConfig

    repo = absolute_path(Path(repo_path or feature_store_settings().feast_repo_path))
    config_file = repo / FEATURE_STORE_YAML
    if not config_file.exists():
        raise FileNotFoundError(f"no {FEATURE_STORE_YAML} in {repo} (FEAST_REPO_PATH)")
    variables = {**os.environ, **repo_variables(data_dir)}
    raw = yaml.safe_load(string.Template(config_file.read_text()).safe_substitute(variables))
    config = RepoConfig(**raw)
    config.repo_path = repo
    return config


def get_store(repo_path: Path | str | None = None, data_dir: Path | None = None) -> FeatureStore:
    """A FeatureStore on the repo (default FEAST_REPO_PATH) and data folder (default DATA_DIR).

    Cheap after the first `import feast` (~4 s); share one per process.
    """
    from feast import FeatureStore

    # Feast warns on every apply and retrieval that on-demand views are "experimental"; the view
    # here is covered by our own tests (online equals text_features, training set equals online).
    # Set when a store is opened (not on import): every apply and read goes through one.
    warnings.filterwarnings(
        "ignore",
        message="On demand feature view is an experimental feature",
        category=RuntimeWarning,
    )
    config = load_repo_config(Path(repo_path) if repo_path else None, data_dir)
    return FeatureStore(repo_path=str(config.repo_path), config=config)


# -- apply -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyReport:
    """What `apply_repo` changed and how long it took."""

    applied: list[str]
    deleted: list[str]
    created_files: list[str]
    seconds: float


def _offline_schema(view_name: str) -> pa.Schema:
    return pa.schema(
        [
            (names.FEAST_JOIN_KEY, pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            *[(feature, pa.float64()) for feature in VIEW_FEATURES[view_name]],
        ]
    )


def _ensure_offline_files(folder: Path) -> list[str]:
    """Create each view's empty parquet file: the file offline store appends to an existing one."""
    from features.definitions import offline_path  # imports feast (~4 s): only when applying

    created = []
    for view_name in VIEW_FEATURES:
        path = offline_path(folder, view_name)
        schema = _offline_schema(view_name)
        if path.exists():
            found = pq.read_schema(path)
            if found.names != schema.names:
                raise RuntimeError(
                    f"{path} has columns {found.names}, the definitions expect {schema.names}: "
                    "move the file away and run the backfill again"
                )
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.empty_table(), path)
        created.append(str(path))
    return created


def apply_repo(repo_path: Path | str | None = None, data_dir: Path | None = None) -> ApplyReport:
    """Register the definitions (like `feast apply`, in-process and fast) and prepare the files.

    Objects that are in the registry but no longer defined are deleted, as `feast apply` would.
    """

    started = time.perf_counter()
    store = get_store(repo_path, data_dir)
    folder = feast_data_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    created = _ensure_offline_files(folder)
    from features.definitions import build_definitions  # imports feast (~4 s)

    definitions = build_definitions(folder)
    objects = definitions.objects()
    wanted = {(type(o).__name__, o.name) for o in objects}
    registered: list[Any] = [
        *store.list_feature_services(),
        *store.list_on_demand_feature_views(),
        *store.list_feature_views(),
        *store.list_entities(),
    ]
    stale = [o for o in registered if (type(o).__name__, o.name) not in wanted]
    store.apply(objects, objects_to_delete=stale, partial=False)
    report = ApplyReport(
        applied=sorted(f"{kind}:{name}" for kind, name in wanted),
        deleted=sorted(f"{type(o).__name__}:{o.name}" for o in stale),
        created_files=created,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "feast apply: %d objects, %d deleted, into %s in %.2fs",
        len(objects),
        len(stale),
        folder,
        report.seconds,
    )
    return report


# -- push --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushReport:
    """One micro-batch pushed to a view: rows offline, senders online, seconds taken."""

    view: str
    offline_rows: int
    online_rows: int
    seconds: float


def _frame(view_name: str, rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    columns = [names.FEAST_JOIN_KEY, "event_timestamp", *VIEW_FEATURES[view_name]]
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{view_name} rows lack columns {missing}")
    frame = frame[columns].copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    frame[list(VIEW_FEATURES[view_name])] = frame[list(VIEW_FEATURES[view_name])].astype("float64")
    return frame.sort_values([names.FEAST_JOIN_KEY, "event_timestamp"], kind="stable")


def push_rows(
    store: FeatureStore,
    view_name: str,
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    online: bool = True,
    offline: bool = True,
) -> PushReport:
    """Push one micro-batch of a sender view's rows (PushMode.ONLINE_AND_OFFLINE by default).

    Offline gets every row (the history point-in-time joins read). Online gets only each
    sender's newest row: the online store keeps one row per sender anyway, and Redis would drop
    older-timestamped writes that SQLite applies. The file offline store rewrites its whole
    parquet file on each push, so call this with batches, not single rows.
    """
    from feast.data_source import PushMode

    started = time.perf_counter()
    frame = _frame(view_name, rows)
    source = PUSH_SOURCES[view_name]
    latest = frame.drop_duplicates(names.FEAST_JOIN_KEY, keep="last")
    if online and not latest.empty:
        store.push(source, latest.reset_index(drop=True), to=PushMode.ONLINE)
    if offline and not frame.empty:
        _append_offline(store, view_name, frame)
    return PushReport(
        view=view_name,
        offline_rows=len(frame) if offline else 0,
        online_rows=len(latest) if online else 0,
        seconds=time.perf_counter() - started,
    )


def _append_offline(store: FeatureStore, view_name: str, frame: pd.DataFrame) -> None:
    """Append rows to a view's offline parquet: one writer at a time, atomically.

    Written by hand instead of `store.push(..., to=PushMode.OFFLINE)`, which does the same
    read-concatenate-rewrite but in place and unlocked: a crash mid-write leaves a truncated
    file, and two processor replicas lose each other's rows. Here a lock file serialises the
    writers (flock: one host or NFSv4) and the new file replaces the old one by rename.
    """
    from feast import FileSource

    source = store.get_feature_view(view_name).batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"{view_name}: offline writes need a FileSource, not {source!r}")
    path = Path(source.path)
    new_rows = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    with _offline_lock(path):
        previous = pq.read_table(path)
        table = pa.concat_tables([previous, new_rows.cast(previous.schema)])
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(table, scratch)
        os.replace(scratch, path)


@contextmanager
def _offline_lock(path: Path) -> Iterator[None]:
    """Hold the lock file of one offline parquet file (every writer of it takes this one)."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def push_activity(
    store: FeatureStore, rows: Iterable[Mapping[str, Any]] | pd.DataFrame, **where: bool
) -> PushReport:
    """Push `sender_activity` rows (from `SenderFeatureComputer.apply_message`)."""
    return push_rows(store, names.VIEW_SENDER_ACTIVITY, rows, **where)


def push_reputation(
    store: FeatureStore, rows: Iterable[Mapping[str, Any]] | pd.DataFrame, **where: bool
) -> PushReport:
    """Push `sender_reputation` rows (from `SenderFeatureComputer.apply_label`)."""
    return push_rows(store, names.VIEW_SENDER_REPUTATION, rows, **where)


# -- read --------------------------------------------------------------------------------------


# Rebuilding a FeatureService from the registry proto costs ~15 ms (typeguard checks every
# Field), 50x an online read: keep it per store for as long as the registry cache would.
SERVICE_CACHE_SECONDS = 60.0
_services: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, Any, list[str]]]] = (
    weakref.WeakKeyDictionary()
)


def _service(store: FeatureStore, name: str) -> tuple[Any, list[str]]:
    cached = _services.setdefault(store, {}).get(name)
    now = time.monotonic()
    if cached is None or now - cached[0] > SERVICE_CACHE_SECONDS:
        service = store.get_feature_service(name, allow_cache=True)
        columns = [f.name for p in service.feature_view_projections for f in p.features]
        cached = _services[store][name] = (now, service, columns)
    return cached[1], cached[2]


def feature_columns(store: FeatureStore, feature_service_name: str) -> list[str]:
    """The model's input columns, in the FeatureService's order (views, then their features)."""
    return list(_service(store, feature_service_name)[1])


def online_features(
    store: FeatureStore,
    feature_service_name: str,
    sender_id: str,
    subject: str,
    body: str,
) -> dict[str, float | None]:
    """The FeatureService's values for one message: sender views online, text on demand.

    Keys are `feature_columns(...)` in order; a feature the online store has no value for (a
    new sender, a sender never labelled) is None.
    """
    service, columns = _service(store, feature_service_name)
    response = store.get_online_features(
        features=service,
        entity_rows=[{names.FEAST_JOIN_KEY: sender_id, "subject": subject, "body": body}],
        full_feature_names=False,
    ).to_dict()
    values: dict[str, float | None] = {}
    for column in columns:
        value = response[column][0]
        values[column] = None if value is None else float(value)
    return values


# -- erase -------------------------------------------------------------------------------------


def erase_sender_offline(sender_id: str, feast_dir: Path | None = None) -> dict[str, int]:
    """Rewrite each offline parquet file without the sender's rows (under the lock the
    appenders take, so no push is lost); returns rows removed per file stem (view name).

    `feast_dir` is the Feast data folder (default: `feast_data_dir()`).
    """
    folder = feast_dir if feast_dir is not None else feast_data_dir()
    return {
        path.stem: _erase_offline_file(path, sender_id)
        for path in sorted((folder / "offline").glob("*.parquet"))
    }


def _erase_offline_file(path: Path, sender_id: str) -> int:
    with _offline_lock(path):
        table = pq.read_table(path)
        if names.FEAST_JOIN_KEY not in table.column_names:
            return 0
        keep = pc.not_equal(table[names.FEAST_JOIN_KEY], pa.scalar(sender_id))
        kept = table.filter(pc.fill_null(keep, True))
        gone = table.num_rows - kept.num_rows
        if gone:
            scratch = path.with_suffix(f".{os.getpid()}.erase.tmp")
            pq.write_table(kept, scratch)
            os.replace(scratch, path)
        return gone


def sender_entity_key(sender_id: str) -> bytes:
    """The sender's entity key as Feast stores it in the online store (serialization v3)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=[names.FEAST_JOIN_KEY], entity_values=[Value(string_val=sender_id)])
    return serialize_entity_key(key, entity_key_serialization_version=3)


def project_name(repo_path: Path | None = None) -> str:
    """The Feast project feature_store.yaml names (its online tables are `<project>_<view>`)."""
    repo = absolute_path(Path(repo_path or feature_store_settings().feast_repo_path))
    return str(yaml.safe_load((repo / FEATURE_STORE_YAML).read_text())["project"])


def erase_sender_online(
    sender_id: str, feast_dir: Path | None = None, project: str | None = None
) -> int | None:
    """Delete the sender's entity key from every table of the project in the SQLite online
    store, then compact the file so no erased row lingers in free pages; returns the rows
    deleted, or None when the folder has no SQLite online store (Redis is not erased here).
    `project` defaults to the one feature_store.yaml names.
    """
    folder = feast_dir if feast_dir is not None else feast_data_dir()
    path = folder / ONLINE_DB
    if not path.exists():
        return None
    prefix = f"{project or project_name()}_"
    key = sender_entity_key(sender_id)
    gone = 0
    with closing(sqlite3.connect(path, timeout=30)) as connection:
        with connection:  # one transaction
            tables = [
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if row[0].startswith(prefix)
            ]
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                gone += connection.execute(
                    f"DELETE FROM {quoted} WHERE entity_key = ?", (key,)
                ).rowcount
        connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return gone
