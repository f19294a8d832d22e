"""The Feast feature store as the rest of ModStack uses it: open, apply, push, read online.

`features/feature_store.yaml` is the one config; this module fills in the variables it expands
(`FEAST_REGISTRY_TYPE`, `FEAST_REGISTRY_PATH`, `FEAST_ONLINE_STORE`, `FEAST_OFFLINE_STORE`)
from the settings (features/config.py), so the same file serves the local default (file
registry, SQLite online, parquet offline) and the servers of compose and k8s (a SQL registry in
PostgreSQL, Redis online, the PostgreSQL offline store).
"""

from __future__ import annotations

import fcntl
import json
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

from features.config import (
    FeatureStoreSettings,
    absolute_path,
    feast_data_dir,
    feature_store_settings,
)
from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES
from modstack import names

if TYPE_CHECKING:
    import psycopg
    import redis
    from feast import FeatureStore

log = logging.getLogger(__name__)

FEATURE_STORE_YAML = "feature_store.yaml"
ONLINE_DB = "online.db"  # the SQLite online store's file, in the Feast data folder
REGISTRY_DB = "registry.db"  # the file registry, in the Feast data folder
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
        return f'{{type: redis, connection_string: "{redis_connection_string(settings)}"}}'
    return f'{{type: sqlite, path: "{data_dir / ONLINE_DB}"}}'


def redis_connection_string(settings: FeatureStoreSettings | None = None) -> str:
    """REDIS_CONNECTION_STRING with the socket timeouts of REDIS_TIMEOUT_S, unless it sets
    them itself (Feast passes `key=value` parts to the redis client as keyword arguments)."""
    settings = settings or feature_store_settings()
    parts = [settings.redis_connection_string]
    given = settings.redis_connection_string
    for option in ("socket_timeout", "socket_connect_timeout"):
        if f"{option}=" not in given:
            parts.append(f"{option}={settings.redis_timeout_s:g}")
    return ",".join(parts)


def offline_store_config(settings: FeatureStoreSettings | None = None) -> str:
    """The `offline_store` mapping (YAML flow style, written as JSON) the settings ask for."""
    settings = settings or feature_store_settings()
    if settings.feast_offline_store_type == "file":
        return "{type: file}"
    return json.dumps(
        {
            "type": "postgres",
            "host": settings.feast_offline_pg_host,
            "port": settings.feast_offline_pg_port,
            "database": settings.feast_offline_pg_database,
            "db_schema": settings.feast_offline_pg_schema,
            "user": settings.feast_offline_pg_user,
            "password": settings.feast_offline_pg_password.get_secret_value(),
            "sslmode": settings.feast_offline_pg_sslmode,
        }
    )


def repo_variables(data_dir: Path | None = None) -> dict[str, str]:
    """The values of the variables feature_store.yaml expands, for this process."""
    settings = feature_store_settings()
    folder = feast_data_dir(data_dir)
    registry = settings.feast_registry_path
    if settings.feast_registry_type == "file":
        explicit = registry is not None and data_dir is None
        registry = str(
            absolute_path(Path(registry)) if registry and explicit else folder / REGISTRY_DB
        )
    return {
        "FEAST_DATA_DIR": str(folder),
        "FEAST_REGISTRY_TYPE": settings.feast_registry_type,
        # quoted (JSON is YAML): a URL's password may hold characters YAML reads otherwise
        "FEAST_REGISTRY_PATH": json.dumps(str(registry)),
        "FEAST_ONLINE_STORE": online_store_config(folder),
        "FEAST_OFFLINE_STORE": offline_store_config(settings),
    }


def load_repo_config(repo_path: Path | None = None, data_dir: Path | None = None) -> Any:
    """feature_store.yaml with `${VARS}` expanded like Feast does, with our values filled in.

    FEAST_DATA_DIR: the `data_dir` argument, else the environment, else DATA_DIR/feast;
    FEAST_ONLINE_STORE: the environment, else derived from FEAST_ONLINE_STORE_TYPE; the
    registry and the offline store from FEAST_REGISTRY_* and FEAST_OFFLINE_* (repo_variables).
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
    created_files: list[str]  # offline parquet files, or `postgres:<table>` tables, made now
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


def offline_connection(store: FeatureStore | None = None) -> psycopg.Connection:
    """A connection to the PostgreSQL offline store: the one `store`'s config names, else the
    one the settings name (no FeatureStore needed, so no `import feast`)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - pinned in pyproject.toml
        raise RuntimeError(
            "the postgres offline store needs psycopg 3: pip install 'feast[postgres]'"
        ) from exc
    if store is not None:
        config = store.config.offline_store
        params = {
            key: getattr(config, key)
            for key in ("host", "port", "database", "db_schema", "user", "password", "sslmode")
        }
    else:
        params = json.loads(offline_store_config())
    return psycopg.connect(
        host=params["host"],
        port=int(params["port"]),
        dbname=params["database"],
        user=params["user"],
        password=params["password"],
        sslmode=params["sslmode"],
        options=f"-c search_path={params['db_schema']}",
        connect_timeout=10,
    )


def _offline_columns_sql(view_name: str) -> list[tuple[str, str]]:
    return [
        (names.FEAST_JOIN_KEY, "text NOT NULL"),
        ("event_timestamp", "timestamptz NOT NULL"),
        *[(feature, "double precision") for feature in VIEW_FEATURES[view_name]],
    ]


def _ensure_offline_tables(store: FeatureStore) -> list[str]:
    """Create each view's offline table (the PostgreSQLSource reads it) when it is missing."""
    from psycopg import sql

    from features.definitions import offline_table

    created = []
    with closing(offline_connection(store)) as connection, connection.transaction():
        for view_name in VIEW_FEATURES:
            table = offline_table(view_name)
            columns = _offline_columns_sql(view_name)
            found = [
                row[0]
                for row in connection.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s "
                    "ORDER BY ordinal_position",
                    (table,),
                )
            ]
            if found:
                if found != [name for name, _ in columns]:
                    raise RuntimeError(
                        f"table {table} has columns {found}, the definitions expect "
                        f"{[name for name, _ in columns]}: drop it and run the backfill again"
                    )
                continue
            # One row per (sender, event_timestamp): rows are stamped strictly increasing per
            # sender (features.sender), so a repeat is a redelivered push and is ignored.
            connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}, event_timestamp))"
                ).format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                        for name, kind in columns
                    ),
                    sql.Identifier(names.FEAST_JOIN_KEY),
                )
            )
            created.append(f"postgres:{table}")
    return created


def apply_repo(repo_path: Path | str | None = None, data_dir: Path | None = None) -> ApplyReport:
    """Register the definitions (like `feast apply`, in-process and fast) and prepare the
    offline store (the parquet files, or the PostgreSQL tables).

    Objects that are in the registry but no longer defined are deleted, as `feast apply` would.
    """

    started = time.perf_counter()
    store = get_store(repo_path, data_dir)
    folder = feast_data_dir(data_dir)
    offline = store.config.offline_store.type
    in_files = (
        store.config.registry.registry_type == "file",
        store.config.online_store.type == "sqlite",
        offline == "file",
    )
    if any(in_files):
        folder.mkdir(parents=True, exist_ok=True)
    created = (
        _ensure_offline_tables(store) if offline == "postgres" else _ensure_offline_files(folder)
    )
    from features.definitions import build_definitions  # imports feast (~4 s)

    definitions = build_definitions(folder, "postgres" if offline == "postgres" else "file")
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
        "feast apply: %d objects, %d deleted, registry %s, offline %s, in %.2fs",
        len(objects),
        len(stale),
        store.config.registry.registry_type,
        offline,
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
    """Append rows to a view's offline store: its parquet file, or its PostgreSQL table.

    Written by hand instead of `store.push(..., to=PushMode.OFFLINE)`: Feast 0.67's file store
    does a read-concatenate-rewrite in place and unlocked (a crash mid-write leaves a truncated
    file, two processor replicas lose each other's rows), and its postgres offline store has no
    `offline_write_batch` at all (the push raises NotImplementedError).
    """
    from feast import FileSource

    source = store.get_feature_view(view_name).batch_source
    if isinstance(source, FileSource):
        _append_offline_file(Path(source.path), frame)
        return
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
        PostgreSQLSource,
    )

    if isinstance(source, PostgreSQLSource):
        _append_offline_postgres(store, view_name, frame)
        return
    raise TypeError(f"{view_name}: offline writes need a FileSource or a PostgreSQLSource")


def _append_offline_file(path: Path, frame: pd.DataFrame) -> None:
    """Append to the parquet file, one writer at a time, atomically: a lock file serialises
    the writers (flock: one host or NFSv4) and the new file replaces the old one by rename."""
    new_rows = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    with _offline_lock(path):
        previous = pq.read_table(path)
        table = pa.concat_tables([previous, new_rows.cast(previous.schema)])
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(table, scratch)
        os.replace(scratch, path)


def _append_offline_postgres(store: FeatureStore, view_name: str, frame: pd.DataFrame) -> int:
    """Insert the rows in one transaction (COPY into a scratch table, then INSERT ... ON
    CONFLICT DO NOTHING: a redelivered batch adds nothing); returns the rows added."""
    from psycopg import sql

    from features.definitions import offline_table

    table = sql.Identifier(offline_table(view_name))
    columns = [names.FEAST_JOIN_KEY, "event_timestamp", *VIEW_FEATURES[view_name]]
    # NaN as NULL, like pyarrow writes it to parquet: both stores then read back missing values
    values = frame[columns].astype(object).where(frame[columns].notna(), None)
    values["event_timestamp"] = [stamp.to_pydatetime() for stamp in frame["event_timestamp"]]
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    with closing(offline_connection(store)) as connection, connection.transaction():
        cursor = connection.cursor()
        cursor.execute(
            sql.SQL(
                "CREATE TEMP TABLE push_rows ON COMMIT DROP AS SELECT {} FROM {} LIMIT 0"
            ).format(column_list, table)
        )
        copy_rows = sql.SQL("COPY push_rows ({}) FROM STDIN").format(column_list)
        with cursor.copy(copy_rows) as copy:
            for row in values.itertuples(index=False, name=None):
                copy.write_row(row)
        cursor.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM push_rows ON CONFLICT DO NOTHING").format(
                table, column_list, column_list
            )
        )
        return cursor.rowcount


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
    """Delete the sender's offline rows; returns rows removed per view.

    Parquet (the default): each offline file is rewritten without them, under the lock the
    appenders take, so no push is lost; `feast_dir` is the Feast data folder (default:
    `feast_data_dir()`). PostgreSQL (FEAST_OFFLINE_STORE_TYPE=postgres): one DELETE per view
    table, in one transaction.
    """
    if feature_store_settings().feast_offline_store_type == "postgres":
        return _erase_offline_postgres(sender_id)
    folder = feast_dir if feast_dir is not None else feast_data_dir()
    return {
        path.stem: _erase_offline_file(path, sender_id)
        for path in sorted((folder / "offline").glob("*.parquet"))
    }


def _erase_offline_postgres(sender_id: str) -> dict[str, int]:
    from psycopg import sql

    from features.definitions import offline_table

    erased = {}
    with closing(offline_connection()) as connection, connection.transaction():
        for view_name in VIEW_FEATURES:
            cursor = connection.execute(
                sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                    sql.Identifier(offline_table(view_name)), sql.Identifier(names.FEAST_JOIN_KEY)
                ),
                (sender_id,),
            )
            erased[view_name] = cursor.rowcount
    return erased


def offline_row_counts(data_dir: Path | None = None) -> dict[str, int]:
    """Rows in each sender view's offline store (0 when its file or table does not exist)."""
    if feature_store_settings().feast_offline_store_type == "postgres":
        from psycopg import sql

        from features.definitions import offline_table

        counts = {}
        with closing(offline_connection()) as connection:
            for view_name in VIEW_FEATURES:
                table = offline_table(view_name)
                exists = connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()
                if exists is None or exists[0] is None:
                    counts[view_name] = 0
                    continue
                row = connection.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                ).fetchone()
                counts[view_name] = int(row[0]) if row else 0
        return counts
    from features.definitions import offline_path

    folder = feast_data_dir(data_dir)
    paths = {view: offline_path(folder, view) for view in VIEW_FEATURES}
    return {view: pq.read_metadata(p).num_rows if p.exists() else 0 for view, p in paths.items()}


def reset_offline(data_dir: Path | None = None) -> None:
    """Delete every offline row of the sender views (the backfill's --replace): the parquet
    files go (apply_repo recreates them empty), the PostgreSQL tables are emptied."""
    if feature_store_settings().feast_offline_store_type == "postgres":
        from psycopg import sql

        from features.definitions import offline_table

        with closing(offline_connection()) as connection, connection.transaction():
            for view_name in VIEW_FEATURES:
                table = offline_table(view_name)
                if connection.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,):
                    connection.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        return
    from features.definitions import offline_path

    folder = feast_data_dir(data_dir)
    for view in VIEW_FEATURES:
        offline_path(folder, view).unlink(missing_ok=True)


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
    """Delete the sender's entity key from the online store; returns the rows deleted (one per
    feature view), or None when there is no online store to erase from.

    SQLite (the default): from every table of the project, then the file is compacted so no
    erased row lingers in free pages (None when the folder has no online.db). Redis
    (FEAST_ONLINE_STORE_TYPE=redis): the sender's one hash, which holds every view's features.
    `project` defaults to the one feature_store.yaml names.
    """
    project = project or project_name()
    settings = feature_store_settings()
    if settings.feast_online_store_type == "redis":
        return _erase_online_redis(sender_id, project, redis_connection_string(settings))
    folder = feast_dir if feast_dir is not None else feast_data_dir()
    path = folder / ONLINE_DB
    if not path.exists():
        return None
    prefix = f"{project}_"
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


def _erase_online_redis(sender_id: str, project: str, connection_string: str) -> int:
    """Delete the sender's hash from Redis, keyed as Feast's Redis online store keys it (the
    serialized entity key, then the project); returns the feature views it held."""
    key = sender_entity_key(sender_id) + project.encode("utf-8")
    with closing(online_redis_client(connection_string)) as client:
        # redis-py's stubs type keys as str; Feast's keys are bytes, which the client sends as is
        fields: list[bytes] = client.hkeys(key)  # type: ignore[arg-type,assignment]
        views = sum(1 for field in fields if field.startswith(b"_ts:"))
        client.delete(key)
    return views


def online_redis_client(connection_string: str | None = None) -> redis.Redis:
    """A client of the Redis online store (default: REDIS_CONNECTION_STRING's)."""
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore

    # Feast's own parser of its connection string ("host:port,db=N,password=..."), so this
    # client reaches the database the online store writes to.
    nodes, options = RedisOnlineStore._parse_connection_string(
        connection_string or redis_connection_string()
    )
    return redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **options)
