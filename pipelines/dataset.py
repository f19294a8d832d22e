"""Step `build_dataset`: a point-in-time correct training set from the Feast offline store.

Consumes labelled rows (message_id, sender_id, sent_at, label, subject, body) and the sender
views' offline rows (written by the backfill and the stream processor); produces the rows with
the FeatureService's columns added, in the same order and count. Usage:
`python -m pipelines.dataset [--period history] [--feature-service spam_model_v1] [--out F]`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import pandas as pd
import pyarrow as pa
import typer
from rich.console import Console

from features import store as featurestore
from modstack import names
from modstack.log import configure_logging

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

ROW_COLUMNS = ("message_id", "sender_id", "sent_at", "label", "subject", "body")
REQUEST_COLUMNS = ("subject", "body")
# Feature rows sit on a microsecond grid (an event at t gives a row at t + 1 µs or later), so
# moving an entity timestamp by fewer than 1000 ns never changes which rows it can see.
MAX_EQUAL_TIMES = 1000
_SENTINEL_SENDER = "__no-such-sender__"


def entity_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Entity rows for `get_historical_features`: one unique (sender_id, event_timestamp) each.

    Feast collapses entity rows that share (entity, timestamp); messages of one sender with the
    same `sent_at` are spread by k nanoseconds (k-th of them), which the µs grid makes invisible.
    """
    stamps = pd.to_datetime(rows["sent_at"], utc=True).dt.floor("us")
    tie_rank = stamps.groupby([rows["sender_id"].to_numpy(), stamps.to_numpy()]).cumcount()
    if len(tie_rank) and tie_rank.max() >= MAX_EQUAL_TIMES:
        raise ValueError(f"more than {MAX_EQUAL_TIMES} messages of one sender share a sent_at")
    return pd.DataFrame(
        {
            names.FEAST_JOIN_KEY: rows["sender_id"].to_numpy(),
            "event_timestamp": (stamps + pd.to_timedelta(tie_rank, unit="ns")).to_numpy(),
            "message_id": rows["message_id"].to_numpy(),
            "subject": rows["subject"].fillna("").to_numpy(),
            "body": rows["body"].fillna("").to_numpy(),
        }
    ).astype({"event_timestamp": "datetime64[ns, UTC]"})


def _point_in_time(
    store: FeatureStore, entities: pd.DataFrame, view_name: str, features: list[str]
) -> pd.DataFrame:
    """One sender view's values as of each entity row, keyed by message_id (NaN: no state yet)."""
    # Two quirks of Feast's file (dask) offline store, measured with 0.67: it drops an entity
    # row that has no feature row at or before it (a sender's first message), and it returns
    # nothing when every matched feature row has the same timestamp. One view per call plus a
    # sentinel row for an unknown sender avoids both; the left join below restores the rows.
    sentinel = pd.DataFrame(
        {
            names.FEAST_JOIN_KEY: [_SENTINEL_SENDER],
            "event_timestamp": [entities["event_timestamp"].min()],
            "message_id": [_SENTINEL_SENDER],
        }
    )
    entity_df = pd.concat(
        [entities[[names.FEAST_JOIN_KEY, "event_timestamp", "message_id"]], sentinel],
        ignore_index=True,
    )
    with warnings.catch_warnings():
        # Feast floors the entity time range to microseconds for its scan: harmless here, as
        # feature rows are on the microsecond grid and the tie offsets stay below it.
        warnings.filterwarnings("ignore", "Discarding nonzero nanoseconds", UserWarning)
        job = store.get_historical_features(
            entity_df=entity_df,
            features=[f"{view_name}:{feature}" for feature in features],
            full_feature_names=False,
        )
        found = job.to_df()
    found = found[found["message_id"] != _SENTINEL_SENDER]
    return found[["message_id", *features]].drop_duplicates("message_id")


def _on_demand(
    store: FeatureStore, entities: pd.DataFrame, view_name: str, features: list[str]
) -> pd.DataFrame:
    """An on-demand view's values from the request columns, keyed by message_id."""
    # The view's own transform: what get_historical_features applies after the join (and
    # get_online_features per request). Called directly because the file store cannot run an
    # on-demand-only retrieval and would drop rows a sender view has no state for.
    view = store.get_on_demand_feature_view(view_name)
    table = pa.Table.from_pandas(entities[["message_id", *REQUEST_COLUMNS]], preserve_index=False)
    transformed = view.transform_arrow(table, full_feature_names=False).to_pandas()
    # python mode returns the udf's columns only, row for row in the input order
    return transformed[features].assign(message_id=entities["message_id"].to_numpy())


def build_training_set(
    rows: pd.DataFrame,
    feature_service_name: str = names.FEATURE_SERVICE_V1,
    store: FeatureStore | None = None,
    data_dir: Path | None = None,
) -> pd.DataFrame:
    """`rows` plus the FeatureService's columns, point-in-time correct, same order and count.

    A row's sender features are the sender's state strictly before its `sent_at`: no feature
    sees the message itself, its label, another message with the same `sent_at`, or anything
    later (rows are stamped after their event: features.sender). Features of a
    sender with no earlier state are NaN.
    """
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack columns {missing}")
    if rows["message_id"].duplicated().any():
        raise ValueError("message_id must be unique in rows")
    store = store or featurestore.get_store(data_dir=data_dir)
    service = store.get_feature_service(feature_service_name, allow_cache=True)
    on_demand = {v.name for v in store.list_on_demand_feature_views(allow_cache=True)}
    out = rows.reset_index(drop=True)
    if out.empty:
        columns = featurestore.feature_columns(store, service.name)
        return out.assign(**{column: pd.Series(dtype="float64") for column in columns})
    entities = entity_frame(out)
    for projection in service.feature_view_projections:
        features = [f.name for f in projection.features]
        fetch = _on_demand if projection.name in on_demand else _point_in_time
        values = fetch(store, entities, projection.name_to_use(), features)
        out = out.merge(values, on="message_id", how="left", validate="one_to_one")
    columns = featurestore.feature_columns(store, service.name)
    out[columns] = out[columns].astype("float64")
    return out


def content_hash(frame: pd.DataFrame) -> str:
    """Short SHA-256 of the dataset's values (row order included): same data, same hash."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def corpus_rows(period: str = "history", data_dir: Path | None = None) -> pd.DataFrame:
    """The labelled rows of a corpus period (or "all"), in sent_at order."""
    from modstack.corpus import load_corpus

    corpus = load_corpus(data_dir)
    if period != "all":
        corpus = corpus[corpus["period"] == period]
    ordered = corpus.sort_values(["sent_at", "message_id"], kind="stable")
    return ordered[list(ROW_COLUMNS)].reset_index(drop=True)


def describe(frame: pd.DataFrame, columns: list[str]) -> dict[str, object]:
    """Shape, time range, label balance, share of rows without sender state, content hash."""
    sender_columns = [c for c in columns if c.startswith("sender_")]
    return {
        "rows": len(frame),
        "columns": frame.shape[1],
        "feature_columns": len(columns),
        "first_sent_at": frame["sent_at"].min(),
        "last_sent_at": frame["sent_at"].max(),
        "labels": frame["label"].value_counts().to_dict(),
        "spam_share": round(float((frame["label"] == "spam").mean()), 4) if len(frame) else 0.0,
        "rows_without_sender_state": int(frame[sender_columns].isna().all(axis=1).sum()),
        "content_hash": content_hash(frame),
    }


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    period: Literal["history", "future", "all"] = "history",
    feature_service: str = names.FEATURE_SERVICE_V1,
    data_dir: Path | None = None,
    out: Annotated[Path | None, typer.Option(help="write the set as parquet here")] = None,
) -> pd.DataFrame:
    """Build the point-in-time training set of a period; print its shape, balance and hash."""
    configure_logging("dataset")
    console = Console()
    rows = corpus_rows(period, data_dir)
    store = featurestore.get_store(data_dir=data_dir)
    started = time.perf_counter()
    frame = build_training_set(rows, feature_service, store=store)
    seconds = time.perf_counter() - started
    columns = featurestore.feature_columns(store, feature_service)
    for key, value in describe(frame, columns).items():
        console.print(f"{key:>26}: {value}")
    console.print(f"{'build_training_set':>26}: {seconds:.2f} s")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
        console.print(f"{'written':>26}: {out}")
    return frame


if __name__ == "__main__":
    cli()
