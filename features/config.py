"""Where the feature store lives: the registry, the online and the offline store, chosen by env
vars (the settings the Feast definitions and the store access share).

One laptop (the default): a file registry, SQLite online, parquet files offline, all under
FEAST_DATA_DIR. Several machines: `FEAST_REGISTRY_TYPE=sql` with `FEAST_REGISTRY_PATH` a
SQLAlchemy URL to PostgreSQL, `FEAST_ONLINE_STORE_TYPE=redis`, and
`FEAST_OFFLINE_STORE_TYPE=postgres` with `FEAST_OFFLINE_PG_*`: nothing on a shared disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator

from modstack.settings import CommonSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class FeatureStoreSettings(CommonSettings):
    """Which registry, online and offline store (env vars, validated once)."""

    feast_data_dir: Path | None = None  # default: DATA_DIR/feast
    feast_online_store_type: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: str = "127.0.0.1:6379"
    # A Redis call not answered within this long fails (socket and connect timeouts, added to
    # the connection string unless it sets them): without it a hung server blocks a reader
    # forever. Serving's own, shorter deadline is SERVING_FEATURE_TIMEOUT_MS.
    redis_timeout_s: float = 5.0
    feast_registry_type: Literal["file", "sql"] = "file"
    # file: default FEAST_DATA_DIR/registry.db; sql: postgresql+psycopg://user:pw@host:port/db
    feast_registry_path: str | None = None
    feast_offline_store_type: Literal["file", "postgres"] = "file"
    feast_offline_pg_host: str = "127.0.0.1"
    feast_offline_pg_port: int = 5432
    feast_offline_pg_database: str = "feast"
    feast_offline_pg_user: str = "feast"
    feast_offline_pg_password: SecretStr = SecretStr("")
    feast_offline_pg_schema: str = "public"
    # libpq's sslmode; Feast's own default ("require") refuses a server without TLS
    feast_offline_pg_sslmode: str = "prefer"

    @model_validator(mode="after")
    def _sql_registry_needs_a_url(self) -> FeatureStoreSettings:
        if self.feast_registry_type == "sql" and not self.feast_registry_path:
            raise ValueError(
                "FEAST_REGISTRY_TYPE=sql needs FEAST_REGISTRY_PATH, a SQLAlchemy URL such as "
                "postgresql+psycopg://user:password@host:5432/feast"
            )
        return self


def feature_store_settings() -> FeatureStoreSettings:
    """The settings, read from the environment on each call (tests switch stores)."""
    return FeatureStoreSettings()


def absolute_path(path: Path) -> Path:
    """`path`, relative to the project root when it is not absolute."""
    # Relative paths are relative to the project root, wherever the process was started
    # (the `feast` CLI changes into the repo folder).
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


def feast_data_dir(data_dir: Path | None = None) -> Path:
    """Absolute folder of the file registry, SQLite online store and offline parquet files."""
    if data_dir is not None:
        return absolute_path(Path(data_dir)) / "feast"
    settings = feature_store_settings()
    if settings.feast_data_dir is not None:
        return absolute_path(settings.feast_data_dir)
    return absolute_path(settings.data_dir) / "feast"


def offline_store_type() -> Literal["file", "postgres"]:
    """The offline store the environment asks for."""
    return feature_store_settings().feast_offline_store_type
