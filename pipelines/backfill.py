"""Step `backfill`: replay the corpus through the stream's feature code into the Feast store.

Consumes `{DATA_DIR}/corpus/messages.parquet`; produces the sender views' offline rows (every
row, for point-in-time training sets) and their online rows (each sender's newest). Messages are
events at `sent_at`; each message's corpus label is an event at `sent_at + label_delay` (a
moderator decision that arrives later), so features only see a label after that delay.
Usage: `python -m pipelines.backfill [--period history|future|all] [--label-delay-hours 6]
[--replace]`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from features import store as featurestore
from features.sender import SenderFeatureComputer, events_from_frames
from modstack import names
from modstack.log import configure_logging
from modstack.policy import catalogue

log = logging.getLogger(__name__)

Period = Literal["history", "future", "all"]
# Corpus labels are moderator decisions: they arrive a while after the message. 6 h keeps
# "a label arrives before the sender's next message" common in the history, as in real traffic.
DEFAULT_LABEL_DELAY = timedelta(hours=6)
PUSH_BATCH_ROWS = 5_000


class CorpusLabelPublisher:
    """Corpus labels straight onto `labels.v1`, as `LabelEvent`s with source "corpus".

    The corpus's labels are ground truth this project holds, not reports anyone makes: they
    never go through the public HTTP API (which takes user reports from client apps only). The
    demo's history replay sends the messages through ingestion, like live traffic, and their
    labels through this publisher, in the same event-time order.
    """

    def __init__(self, bootstrap_servers: str) -> None:
        from modstack.kafka import make_producer

        self.bootstrap_servers = bootstrap_servers
        self._producer = make_producer(bootstrap_servers)

    def publish(self, labels: list[dict[str, Any]]) -> int:
        """Send and wait for every label of the batch (at-least-once); returns how many."""
        from modstack.events import LabelEvent

        now = datetime.now(UTC)
        futures = []
        for label in labels:
            event = LabelEvent(
                message_id=label["message_id"],
                sender_id=label["sender_id"],
                label=label["label"],
                source="corpus",
                labeled_at=label["labeled_at"],
                received_at=now,
            )
            futures.append(
                self._producer.send(names.TOPIC_LABELS, key=event.sender_id, value=event.to_bytes())
            )
        self._producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused one
        return len(futures)

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=10)


@dataclass(frozen=True)
class BackfillReport:
    """What the backfill replayed and wrote."""

    period: str
    messages: int
    labels: int
    senders: int
    activity_rows: int
    reputation_rows: int
    first_event: pd.Timestamp | None
    last_event: pd.Timestamp | None
    replay_seconds: float
    push_seconds: float


def corpus_events(
    corpus: pd.DataFrame, period: Period = "history", label_delay: timedelta = DEFAULT_LABEL_DELAY
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(messages, labels) frames of a corpus period; labels at `sent_at + label_delay`, one
    per policy whose label the message carries (every message has a spam label; comments an
    abuse label too), in policy order."""
    rows = corpus if period == "all" else corpus[corpus["period"] == period]
    messages = rows[["message_id", "sender_id", "subject", "body", "sent_at"]]
    parts = []
    for policy in catalogue().by_name.values():
        column = policy.training.label_column
        if column not in rows:  # a corpus without this policy's labels (hand-built frames)
            continue
        labelled = rows[rows[column] != ""]
        parts.append(
            pd.DataFrame(
                {
                    "message_id": labelled["message_id"],
                    "sender_id": labelled["sender_id"],
                    "label": labelled[column],
                    "source": "corpus",
                    "labeled_at": labelled["sent_at"] + label_delay,
                }
            )
        )
    return messages, pd.concat(parts, ignore_index=True)


def replay(
    messages: pd.DataFrame,
    labels: pd.DataFrame,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], list[dict], SenderFeatureComputer]:
    """Fold the events in event-time order: (activity rows, reputation rows, the computer)."""
    computer = SenderFeatureComputer()
    activity: list[dict] = []
    reputation: list[dict] = []
    events = events_from_frames(messages, labels, order_by="event_time")
    for done, event in enumerate(events, start=1):
        view, row = computer.apply(event)
        if row is not None:
            (activity if view == names.VIEW_SENDER_ACTIVITY else reputation).append(row)
        if on_progress and (done % 500 == 0 or done == len(events)):
            on_progress(done, len(events))
    return activity, reputation, computer


class OfflineStoreNotEmpty(RuntimeError):
    """The offline store already holds rows: a backfill would write the history twice."""


def run(
    period: Period = "history",
    label_delay: timedelta = DEFAULT_LABEL_DELAY,
    data_dir: Path | None = None,
    corpus: pd.DataFrame | None = None,
    console: Console | None = None,
    replace: bool = False,
) -> BackfillReport:
    """Apply the repo, replay the period, push offline (all rows) and online (newest per sender).

    The backfill starts the offline history: into a store that already has rows (an earlier
    backfill, or the stream processor's) it only writes with `replace=True`, which deletes
    those rows first; SQLite online rows are then overwritten with the backfill's newest.
    """
    from modstack.corpus import load_corpus

    console = console or Console(stderr=True)
    existing = featurestore.offline_row_counts(data_dir)
    if any(existing.values()) and not replace:
        raise OfflineStoreNotEmpty(
            f"the offline store under {featurestore.feast_data_dir(data_dir)} already has rows "
            f"{existing}; rerun with --replace to rebuild it from the corpus (this also deletes "
            "rows the stream processor wrote)"
        )
    corpus = corpus if corpus is not None else load_corpus(data_dir)
    messages, labels = corpus_events(corpus, period, label_delay)
    featurestore.reset_offline(data_dir)
    featurestore.apply_repo(data_dir=data_dir)
    store = featurestore.get_store(data_dir=data_dir)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"replaying {period}", total=len(messages) + len(labels))
        started = time.perf_counter()
        activity, reputation, computer = replay(
            messages, labels, lambda done, total: progress.update(task, completed=done)
        )
        replay_seconds = time.perf_counter() - started

        started = time.perf_counter()
        push_task = progress.add_task("pushing rows", total=len(activity) + len(reputation))
        for push, rows in (
            (featurestore.push_activity, activity),
            (featurestore.push_reputation, reputation),
        ):
            # Online only once, with each sender's newest row; offline in large batches
            # (each offline push rewrites the parquet file).
            push(store, rows, offline=False)
            for start in range(0, len(rows), PUSH_BATCH_ROWS):
                push(store, rows[start : start + PUSH_BATCH_ROWS], online=False)
                progress.advance(push_task, len(rows[start : start + PUSH_BATCH_ROWS]))
        push_seconds = time.perf_counter() - started

    times = pd.concat([messages["sent_at"], labels["labeled_at"]])
    report = BackfillReport(
        period=period,
        messages=len(messages),
        labels=len(labels),
        senders=len(computer),
        activity_rows=len(activity),
        reputation_rows=len(reputation),
        first_event=times.min() if len(times) else None,
        last_event=times.max() if len(times) else None,
        replay_seconds=replay_seconds,
        push_seconds=push_seconds,
    )
    log.info(
        "backfill %s: %d messages, %d labels, %d senders -> %d activity + %d reputation rows; "
        "replay %.2fs, push %.2fs (duplicates %d, too late %d, other policies' labels %d)",
        period,
        report.messages,
        report.labels,
        report.senders,
        report.activity_rows,
        report.reputation_rows,
        replay_seconds,
        push_seconds,
        computer.stats.duplicates,
        computer.stats.too_late,
        computer.stats.other_policy,
    )
    return report


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    period: Period = "history",
    label_delay_hours: Annotated[
        float, typer.Option(help="labels become events this long after their message's sent_at")
    ] = DEFAULT_LABEL_DELAY.total_seconds() / 3600,
    data_dir: Path | None = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="delete the offline rows already in the store")
    ] = False,
) -> BackfillReport:
    """Replay a corpus period through the sender features into the Feast store."""
    configure_logging("backfill")
    try:
        report = run(period, timedelta(hours=label_delay_hours), data_dir, replace=replace)
    except OfflineStoreNotEmpty as exc:
        raise SystemExit(f"backfill: {exc}") from exc
    console = Console()
    console.print(
        f"backfilled [bold]{report.period}[/]: {report.messages:,} messages and "
        f"{report.labels:,} labels of {report.senders:,} senders "
        f"({report.first_event} .. {report.last_event}) -> "
        f"{report.activity_rows:,} activity + {report.reputation_rows:,} reputation rows; "
        f"replay {report.replay_seconds:.2f} s, push {report.push_seconds:.2f} s"
    )
    return report


if __name__ == "__main__":
    cli()
