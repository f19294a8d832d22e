"""Where the feature store lives and which online store it uses: the settings the Feast
definitions and the store access share."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from modstack.settings import CommonSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class FeatureStoreSettings(CommonSettings):
    """Where the store lives and which online store it uses (env vars, validated once)."""

    feast_data_dir: Path | None = None  # default: DATA_DIR/feast
    feast_online_store_type: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: str = "127.0.0.1:6379"


def feature_store_settings() -> FeatureStoreSettings:
    """The settings, read from the environment on each call (tests switch stores)."""
    return FeatureStoreSettings()


def absolute_path(path: Path) -> Path:
    """`path`, relative to the project root when it is not absolute."""
    # Relative paths are relative to the project root, wherever the process was started
    # (the `feast` CLI changes into the repo folder).
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


def feast_data_dir(data_dir: Path | None = None) -> Path:
    """Absolute folder of the registry, SQLite online store and offline parquet files."""
    if data_dir is not None:
        return absolute_path(Path(data_dir)) / "feast"
    settings = feature_store_settings()
    if settings.feast_data_dir is not None:
        return absolute_path(settings.feast_data_dir)
    return absolute_path(settings.data_dir) / "feast"
