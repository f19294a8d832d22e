"""Settings shared by every component: env vars only, validated once at start-up.

Each service extends `CommonSettings` with its own knobs in its own folder. Library-owned
variables keep the library's name (`MLFLOW_TRACKING_URI`); the rest are unprefixed
(`KAFKA_BOOTSTRAP_SERVERS`, `SERVING_ADDR`), the same keys as in `.env.example`, compose and k8s.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ADMIN_TOKEN = "dev-admin-token"


class CommonSettings(BaseSettings):
    """What every component needs: where things are and how to reach each other."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    # json: one JSON object per line (containers, supervisord's log files); text: a line for a
    # person; auto: text on a terminal, json otherwise
    log_format: Literal["auto", "json", "text"] = "auto"

    # Local state: the corpus cache, offline store, message log, MLflow store, run logs.
    data_dir: Path = Path("var/data")
    run_dir: Path = Path("var/run")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    feast_repo_path: Path = Path("features")

    # Addresses of the other services (microservices-demo style `<NAME>_ADDR`).
    serving_addr: str = "http://127.0.0.1:8000"
    ingestion_addr: str = "http://127.0.0.1:8001"
    monitoring_addr: str = "http://127.0.0.1:8002"
    canary_addr: str = "http://127.0.0.1:8003"
    review_addr: str = "http://127.0.0.1:8005"
    # Empty means "no Prometheus": the canary controller then scrapes serving /metrics itself.
    prometheus_url: str = ""
    # Interface a service binds to; its port is the one in its own `<NAME>_ADDR`. Loopback by
    # default; 0.0.0.0 in containers, where `<NAME>_ADDR` holds the address others dial.
    bind_host: str = "127.0.0.1"

    admin_token: SecretStr = Field(default=SecretStr(DEV_ADMIN_TOKEN))

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> CommonSettings:
        if self.environment == "production" and self.admin_token.get_secret_value() in (
            "",
            DEV_ADMIN_TOKEN,
        ):
            raise ValueError("ADMIN_TOKEN must be set to a real secret when ENVIRONMENT=production")
        return self

    @property
    def kafka_address(self) -> tuple[str, int]:
        """First bootstrap server as (host, port)."""
        host, _, port = self.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
        return host or "127.0.0.1", int(port)


def port_of(addr: str) -> int:
    """Port of an `http://host:port` address (the port a local service listens on)."""
    parsed = urlparse(addr)
    if parsed.port is None:
        raise ValueError(f"address {addr!r} has no port")
    return parsed.port


@lru_cache
def get_settings() -> CommonSettings:
    """The process-wide common settings (read from the environment once)."""
    return CommonSettings()
