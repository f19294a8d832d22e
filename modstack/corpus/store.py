"""Where the parsed corpus lives, its columns, and how to read it back."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modstack.settings import get_settings

# The canonical split by the Date header: history < FUTURE_START <= future.
FUTURE_START = datetime(2002, 8, 22, tzinfo=UTC)

MESSAGE_COLUMNS: dict[str, str] = {
    "message_id": "str",  # "sa-" + the MD5 of the raw mail: stable across runs, unique
    "header_message_id": "str",  # the mail's own Message-ID header ('' when absent)
    "sender_id": "str",
    "sender_domain": "str",
    "subject": "str",
    "body": "str",
    "sent_at": "datetime64[ns, UTC]",
    "label": "str",  # the spam policy's label: 'spam' | 'ham'
    "label_abuse": "str",  # the abuse policy's: 'abuse' | 'ok'; '' when unknown (e-mails)
    # package folder (easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2) or comments-train,
    # comments-test (modstack/corpus/comments.py)
    "group": "str",
    "period": "str",  # 'history' | 'future'
    "is_html": "bool",  # the body came from HTML only (no text/plain part)
    "is_duplicate": "bool",  # same normalised content as an earlier mail
    "repaired": "str",  # rule(s) that repaired the row, "," joined; '' when none
    "content_hash": "str",  # SHA-1 of the normalised sender + subject + body
    "date_header": "str",  # the raw Date header, to audit the date rules
    "source_path": "str",  # <group>/<file>.json inside the package
}
REJECTED_COLUMNS: dict[str, str] = {
    "message_id": "str",
    "group": "str",
    "label": "str",
    "reason": "str",
    "detail": "str",
    "source_path": "str",
}
_META_KEY = b"modstack.corpus"


def corpus_dir(data_dir: Path | None = None) -> Path:
    """`{DATA_DIR}/corpus`."""
    return (data_dir if data_dir is not None else get_settings().data_dir) / "corpus"


def messages_path(data_dir: Path | None = None) -> Path:
    """`{DATA_DIR}/corpus/messages.parquet`."""
    return corpus_dir(data_dir) / "messages.parquet"


def rejected_path(data_dir: Path | None = None) -> Path:
    """`{DATA_DIR}/corpus/rejected.parquet`."""
    return corpus_dir(data_dir) / "rejected.parquet"


def load_corpus(data_dir: Path | None = None) -> pd.DataFrame:
    """The parsed corpus, one row per usable mail, ordered by `sent_at`."""
    path = messages_path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `python -m pipelines.data` first")
    return pd.read_parquet(path)


def load_rejected(data_dir: Path | None = None) -> pd.DataFrame:
    """The mails that could not be used, with the reason."""
    path = rejected_path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `python -m pipelines.data` first")
    return pd.read_parquet(path)


def write_frame(frame: pd.DataFrame, path: Path, metadata: dict[str, str]) -> None:
    """Write parquet atomically (readers never see half a file), build metadata in the footer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[_META_KEY] = json.dumps(metadata, sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_build_metadata(path: Path) -> dict[str, str] | None:
    """The metadata `write_frame` stored, or None if the file is missing or foreign."""
    if not path.exists():
        return None
    raw = (pq.read_schema(path).metadata or {}).get(_META_KEY)
    return json.loads(raw) if raw else None
