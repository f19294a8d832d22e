"""The processor's own knobs on top of the common settings (env vars, validated once)."""

from __future__ import annotations

from pydantic import Field

from modstack.settings import CommonSettings


class ProcessorSettings(CommonSettings):
    """`PROCESSOR_*` env vars."""

    # Prometheus metrics are served on BIND_HOST at this port; 0 turns the endpoint off.
    processor_metrics_port: int = Field(default=8004, ge=0, le=65535)
    # At most this many records per micro-batch (one push per view and one log file per batch).
    processor_max_batch: int = Field(default=500, gt=0)
    # How long a poll waits for records: the floor on feature freshness when traffic is low.
    processor_poll_timeout_ms: int = Field(default=100, gt=0)
    # Merge the message log's files when a kind has more than this many (checked when idle).
    processor_compact_after_files: int = Field(default=64, gt=1)
    # Bound on waiting for the broker to acknowledge dead letters.
    processor_deadletter_timeout_s: float = Field(default=10.0, gt=0)
    # Personal data: message log partitions logged longer ago than this are deleted (0: kept
    # forever). Training reads a year of history at most.
    processor_log_retention_days: int = Field(default=365, ge=0)
    # Dead letters (raw bytes of what could not be used) kept this long (0: forever), in the
    # store of `modstack.deadletter_store` (DEADLETTER_DATABASE_URL, else a file in DATA_DIR).
    processor_deadletter_retention_days: int = Field(default=14, ge=0)
