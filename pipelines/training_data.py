"""Labelled rows for training and evaluation, split by time, with their feature columns.

Rows come from the parsed corpus (history, and the future period's ground truth for the first
holdout) and from the offline message log (messages + labels that arrived through the stream,
what a retrain learns from). Features come from the Feast FeatureService, point in time, via
`pipelines.dataset.build_training_set` (the feature-store helper's step). Exact
duplicates are dropped so the same mail never sits on both sides of a split.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.console import Console

from modstack.corpus import load_corpus
from modstack.corpus.comments import from_sources
from modstack.policy import DEFAULT_POLICY, catalogue

ROW_COLUMNS = ("message_id", "sender_id", "sent_at", "label", "subject", "body")
LABEL_COLUMN = "y"  # 1 = the policy's harm (spam, abuse, ...), 0 = not
# feast: the FeatureService from the offline store; text: the on-demand text features only;
# none: no feature columns at all (a model of the text alone, e.g. abuse)
FeatureSource = Literal["feast", "text", "none"]
# Which label wins when one message has several (a moderator overrides a user report).
_SOURCE_PRIORITY = {"moderator": 0, "corpus": 1, "user_report": 2}


@dataclass(frozen=True)
class LabelledSet:
    """Rows with labels and feature columns, and the names of those columns."""

    frame: pd.DataFrame
    feature_columns: list[str]
    feature_service: str

    @property
    def y(self) -> npt.NDArray[np.int_]:
        return self.frame[LABEL_COLUMN].to_numpy(dtype=int)


def _with_label_column(rows: pd.DataFrame, policy: str = DEFAULT_POLICY) -> pd.DataFrame:
    definition = catalogue().get(policy)
    unknown = set(rows["label"].unique()) - set(definition.labels)
    if unknown:
        raise ValueError(
            f"unexpected labels {sorted(unknown)} for policy {policy!r}: expected "
            f"{' or '.join(repr(x) for x in definition.labels)}"
        )
    rows = rows.copy()
    rows[LABEL_COLUMN] = (rows["label"] == definition.positive_label).astype(int)
    return rows


def corpus_rows(
    data_dir: Path | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    policy: str = DEFAULT_POLICY,
    sources: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Corpus messages sent in [start, end) that carry `policy`'s label (its column becomes
    `label`), duplicates removed, oldest first; from the policy's `sources` unless `sources`
    names others (model selection: `pipelines.devset --sources`)."""
    corpus = load_corpus(data_dir)
    training = catalogue().get(policy).training
    column = training.label_column
    picked = tuple(sources) if sources is not None else training.sources
    corpus = from_sources(corpus[~corpus["is_duplicate"] & (corpus[column] != "")], picked)
    corpus = corpus.assign(label=corpus[column])
    if start is not None:
        corpus = corpus[corpus["sent_at"] >= pd.Timestamp(start)]
    if end is not None:
        corpus = corpus[corpus["sent_at"] < pd.Timestamp(end)]
    rows = corpus[[*ROW_COLUMNS, "group"]].sort_values(["sent_at", "message_id"], kind="stable")
    return _with_label_column(rows.reset_index(drop=True), policy)


def logged_rows(
    start: datetime | None,
    end: datetime | None,
    data_dir: Path | None = None,
    groups: pd.Series | None = None,
    policy: str = DEFAULT_POLICY,
    logged_before: datetime | None = None,
) -> pd.DataFrame:
    """Messages from the message log sent in [start, end) whose `policy` label was given
    before `end` (a label names its policy by its value: labels are unique across policies).

    A label given after `end` did not exist at training time, so its message is left out.
    `logged_before` keeps only the messages and labels the log held at that moment.
    `groups` (message_id -> corpus group) fills `group` for replayed corpus mails.
    """
    from modstack.message_log import read_labels, read_messages

    messages = _logged_before(read_messages(start, end, data_dir=data_dir), logged_before)
    labels = _logged_before(read_labels(None, end, data_dir=data_dir), logged_before)
    definition = catalogue().get(policy)
    if not labels.empty:
        labels = labels[labels["label"].isin(definition.labels)]
    if not messages.empty:
        messages = from_sources(messages, definition.training.sources)
    if messages.empty or labels.empty:
        return pd.DataFrame(columns=[*ROW_COLUMNS, "group", LABEL_COLUMN])
    labels = labels.assign(priority=labels["source"].map(_SOURCE_PRIORITY).fillna(9))
    labels = labels.sort_values(["priority", "labeled_at"], ascending=[True, False])
    labels = labels.drop_duplicates("message_id")[["message_id", "label"]]
    rows = messages.merge(labels, on="message_id", how="inner")
    rows["sent_at"] = pd.to_datetime(rows["sent_at"], utc=True).astype("datetime64[ns, UTC]")
    mapped = rows["message_id"].map(groups) if groups is not None else None
    rows["group"] = mapped.fillna(rows["label"]) if mapped is not None else rows["label"]
    rows = rows[[*ROW_COLUMNS, "group"]].sort_values(["sent_at", "message_id"], kind="stable")
    return _with_label_column(rows.reset_index(drop=True), policy)


def _logged_before(rows: pd.DataFrame, moment: datetime | None) -> pd.DataFrame:
    """The rows the message log had written before `moment` (all of them when None)."""
    if moment is None or rows.empty:
        return rows
    logged = pd.to_datetime(rows["logged_at"], utc=True)
    return rows[logged < pd.Timestamp(moment)]


def drop_repeated_content(rows: pd.DataFrame) -> pd.DataFrame:
    """Keep the first of rows with identical subject + body (the log may repeat corpus mails)."""
    key = rows["subject"].fillna("") + "\x00" + rows["body"].fillna("")
    return rows[~key.duplicated()].reset_index(drop=True)


def time_validation_split(
    frame: pd.DataFrame, validation_fraction: float = 0.2, per_label: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier rows, the last `validation_fraction` by sent_at): validation is later than fit.

    `per_label` takes the latest fraction of each class separately. The corpus's ham and spam
    were collected at different times: the last 20% of history by date holds 6 spam among
    588 mails, too few to place a precision-0.99 cut-off or to stop early on.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    ordered = frame.sort_values(["sent_at", "message_id"], kind="stable")
    parts = [group for _, group in ordered.groupby(LABEL_COLUMN)] if per_label else [ordered]
    fit_parts, val_parts = [], []
    for part in parts:
        cut = round(len(part) * (1.0 - validation_fraction))
        fit_parts.append(part.iloc[:cut])
        val_parts.append(part.iloc[cut:])

    def _ordered(pieces: list[pd.DataFrame]) -> pd.DataFrame:
        joined = pd.concat(pieces).sort_values(["sent_at", "message_id"], kind="stable")
        return joined.reset_index(drop=True)

    return _ordered(fit_parts), _ordered(val_parts)


def _text_feature_columns(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Only the on-demand text features, computed by the same function Feast's view calls.

    For tests and quick experiments without a feature store; sender features are absent.
    """
    from features.text import TEXT_FEATURE_NAMES, text_features

    values = [
        text_features(subject, body)
        for subject, body in zip(rows["subject"], rows["body"], strict=True)
    ]
    features = pd.DataFrame(values, columns=list(TEXT_FEATURE_NAMES), index=rows.index)
    return pd.concat([rows, features], axis=1), list(TEXT_FEATURE_NAMES)


def _feast_feature_columns(
    rows: pd.DataFrame, feature_service: str, data_dir: Path | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Point-in-time features of the FeatureService from the Feast offline store."""
    from features.store import feature_columns, get_store
    from pipelines.dataset import build_training_set

    store = get_store(data_dir=data_dir)
    columns = list(feature_columns(store, feature_service))
    built = build_training_set(rows[list(ROW_COLUMNS)], feature_service, store=store)
    # join back on message_id: keeps our columns (group, y) whatever the builder passes through
    merged = rows.merge(
        built[["message_id", *columns]], on="message_id", how="left", validate="one_to_one"
    )
    return merged, columns


def with_features(
    rows: pd.DataFrame,
    feature_service: str,
    source: FeatureSource = "feast",
    data_dir: Path | None = None,
) -> LabelledSet:
    """Attach the model's feature columns to labelled rows (`source="feast"`: the FeatureService
    from the offline store under `data_dir`, default DATA_DIR; "none": no columns, and no
    feature service: the model reads the text alone)."""
    if source == "none":
        return LabelledSet(frame=rows.copy(), feature_columns=[], feature_service="")
    if source == "text":
        frame, columns = _text_feature_columns(rows)
    else:
        frame, columns = _feast_feature_columns(rows, feature_service, data_dir)
    return LabelledSet(frame=frame, feature_columns=columns, feature_service=feature_service)


def with_replayed_features(
    rows: pd.DataFrame, feature_service: str, data_dir: Path | None = None
) -> LabelledSet:
    """Features of corpus rows as the live stream would have served them (see
    `replayed_feature_sets`)."""
    (labelled,) = replayed_feature_sets([rows], feature_service, data_dir)
    return labelled


def replayed_feature_sets(
    row_sets: Sequence[pd.DataFrame], feature_service: str, data_dir: Path | None = None
) -> list[LabelledSet]:
    """Features of corpus rows as an in-order stream computes them: the whole corpus is
    replayed once, in event-time order, through the stream's feature code
    (`pipelines.backfill`, labels arriving after the backfill's delay) into a scratch Feast
    store, then each row set is read point in time.

    Why not the stack's store: it holds the history only until the future is replayed as
    traffic (a future mail would see its sender frozen at the end of the history: PR-AUC 0.959
    instead of 0.983), and its rows depend on the order the processor happened to interleave
    the messages and labels topics, so two runs on the same corpus trained different models.
    """
    from pipelines import backfill

    with tempfile.TemporaryDirectory(prefix="modstack-eval-store-") as scratch:
        scratch_dir = Path(scratch)
        backfill.run(
            period="all",
            data_dir=scratch_dir,
            corpus=load_corpus(data_dir),
            console=Console(stderr=True, quiet=True),
        )
        return [with_features(rows, feature_service, "feast", scratch_dir) for rows in row_sets]


def content_hash(frame: pd.DataFrame, feature_columns: list[str]) -> str:
    """SHA-256 over ids, times, labels and feature values: the dataset's identity in MLflow."""
    columns = ["message_id", "sent_at", LABEL_COLUMN, *feature_columns]
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def time_range(frame: pd.DataFrame) -> tuple[str, str]:
    """(first, last) sent_at as ISO strings ('' for an empty frame)."""
    if frame.empty:
        return "", ""
    return frame["sent_at"].min().isoformat(), frame["sent_at"].max().isoformat()


def shuffled_labels(frame: pd.DataFrame, seed: int, policy: str = DEFAULT_POLICY) -> pd.DataFrame:
    """The same rows with labels permuted: a deliberately useless model for the rollback demo."""
    definition = catalogue().get(policy)
    permuted = np.random.default_rng(seed).permutation(frame[LABEL_COLUMN].to_numpy())
    out = frame.copy()
    out[LABEL_COLUMN] = permuted
    out["label"] = np.where(permuted == 1, definition.positive_label, definition.negative_label)
    return out
