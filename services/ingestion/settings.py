"""Ingestion's own knobs on top of the common settings (env vars, validated once)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from modstack.http import DEV_CLIENT, DEV_CLIENT_KEY
from modstack.settings import CommonSettings


class IngestionSettings(CommonSettings):
    """`INGESTION_*` env vars; the listen address is `INGESTION_ADDR`."""

    # A request body larger than this gets a 413 before it is parsed. One message may carry
    # up to 200,000 characters of body; 8 MiB fits a full batch of ordinary mail.
    ingestion_max_request_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # Bound on waiting for the broker's acknowledgement of a request's events (and on
    # connecting to it); past it the request gets a 503.
    ingestion_produce_timeout_s: float = Field(default=5.0, gt=0)
    # How many recently accepted ids this process remembers: to answer client retries without
    # producing again, and to check that a report names a message this sender sent (misses
    # are looked up in the message log).
    ingestion_recent_ids: int = Field(default=100_000, ge=0)
    # Client apps and their keys, as JSON {"client": "key"}; a request sends
    # `Authorization: Bearer <key>`. Reports (POST /v1/labels) always need one.
    ingestion_client_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {DEV_CLIENT: SecretStr(DEV_CLIENT_KEY)}
    )
    # Whether POST /v1/messages needs a client key too (true in production deployments).
    ingestion_messages_need_key: bool = False
    # Per-client rate limit: requests per second and burst (0 turns the limit off).
    ingestion_rate_per_s: float = Field(default=100.0, ge=0)
    ingestion_rate_burst: float = Field(default=200.0, ge=1)
    # Seconds a client is told to wait (Retry-After) when the broker is unreachable.
    ingestion_unavailable_retry_after_s: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _refuse_dev_keys_in_production(self) -> IngestionSettings:
        if self.environment == "production":
            for client, key in self.ingestion_client_keys.items():
                if key.get_secret_value() in ("", DEV_CLIENT_KEY):
                    raise ValueError(
                        f"INGESTION_CLIENT_KEYS: client {client!r} has the development key; "
                        "set real keys when ENVIRONMENT=production"
                    )
        return self
