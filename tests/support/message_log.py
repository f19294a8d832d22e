"""The message log's stored rows as written, not deduplicated on read: what a test of "written
once" counts, in the parquet files (local profile) or the database (scale profile)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import sqlalchemy as sa

from modstack.message_log import LOG_DIRNAME, MessageLogSettings
from modstack.sql import engine_for


def stored_message_ids(data_dir: Path) -> list[str]:
    """Every stored row's message id, repeats included (a database keeps one row per id by
    its unique key; files keep a batch written again after a crash as second rows)."""
    url = MessageLogSettings().message_log_database_url
    if url:
        with engine_for(url).connect() as connection:  # one pool per URL, not one per poll
            return list(
                connection.execute(sa.text("SELECT message_id FROM message_log_messages")).scalars()
            )
    folder = data_dir / LOG_DIRNAME / "messages"
    if not folder.exists():
        return []
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table(
        columns=["message_id"]
    )
    return [str(i) for i in table["message_id"].to_pylist()]
