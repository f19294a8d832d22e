"""Ingestion's own knobs on top of the common settings (env vars, validated once)."""

from __future__ import annotations

from pydantic import Field

from modstack.settings import CommonSettings


class IngestionSettings(CommonSettings):
    """`INGESTION_*` env vars; the listen address is `INGESTION_ADDR`."""

    # A request body larger than this gets a 413 before it is parsed. One message may carry
    # up to 200,000 characters of body; 8 MiB fits a full batch of ordinary mail.
    ingestion_max_request_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # Bound on waiting for the broker's acknowledgement of a request's events (and on
    # connecting to it); past it the request gets a 503.
    ingestion_produce_timeout_s: float = Field(default=5.0, gt=0)
    # How many recently accepted ids this process remembers to answer client retries without
    # producing again. Downstream dedupe by id is the guarantee; this only saves broker traffic.
    ingestion_recent_ids: int = Field(default=100_000, ge=0)
