"""Benchmark of the feature store path: apply, push, online read, backfill, training set.

Works in a throw-away DATA_DIR (the corpus parquet is copied in from DATA_DIR), prints numbers.
Usage: `python -m loadtests.bench.featurestore [--reads 1000] [--redis 127.0.0.1:6379]`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from features import store as featurestore
from modstack import names
from modstack.corpus import load_corpus, messages_path
from modstack.log import configure_logging
from modstack.settings import get_settings


def _percentiles(samples_s: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3, statistics.fmean(ordered) * 1e3


def bench(data_dir: Path, reads: int, console: Console) -> Table:
    """Run every measurement against `data_dir`; returns the result table."""
    from pipelines import backfill
    from pipelines.dataset import build_training_set, corpus_rows

    table = Table(title="feature store (this machine)", title_justify="left")
    for column in ("measurement", "value"):
        table.add_column(column)

    started = time.perf_counter()
    first = featurestore.apply_repo(data_dir=data_dir)
    table.add_row("apply, empty registry (s)", f"{first.seconds:.3f}")
    again = featurestore.apply_repo(data_dir=data_dir)
    table.add_row("apply, unchanged repo (s)", f"{again.seconds:.3f}")

    corpus = load_corpus(data_dir)
    report = backfill.run("history", data_dir=data_dir, corpus=corpus, console=console)
    table.add_row(
        "backfill history (s)",
        f"{report.replay_seconds + report.push_seconds:.2f} "
        f"(replay {report.replay_seconds:.2f} of {report.messages + report.labels:,} events, "
        f"push {report.push_seconds:.2f} of "
        f"{report.activity_rows + report.reputation_rows:,} rows)",
    )

    store = featurestore.get_store(data_dir=data_dir)
    messages, labels = backfill.corpus_events(corpus, "future")
    activity, _, _ = backfill.replay(messages, labels)
    for size in (1, 100, 500):
        for online, offline, what in ((True, False, "online"), (True, True, "online+offline")):
            timings = []
            for start in range(0, 5 * size, size):
                batch = activity[start : start + size]
                timings.append(
                    featurestore.push_activity(store, batch, online=online, offline=offline).seconds
                )
            p50, _, _ = _percentiles(timings)
            table.add_row(f"push {size:>3} rows, {what} (ms, p50 of 5)", f"{p50:.1f}")

    senders = corpus["sender_id"].drop_duplicates().sample(200, random_state=1).tolist()
    sample = corpus.sample(reads, replace=True, random_state=2)
    featurestore.online_features(store, names.FEATURE_SERVICE_V1, senders[0], "warm", "up")
    timings = []
    for i, row in enumerate(sample.itertuples(index=False)):
        t = time.perf_counter()
        featurestore.online_features(
            store, names.FEATURE_SERVICE_V1, senders[i % len(senders)], row.subject, row.body
        )
        timings.append(time.perf_counter() - t)
    p50, p99, mean = _percentiles(timings)
    table.add_row(
        f"online read, FeatureService + on-demand, {store.config.online_store.type} (ms)",
        f"p50 {p50:.2f}  p99 {p99:.2f}  mean {mean:.2f}  (n={reads})",
    )

    rows = corpus_rows("all", data_dir)
    t = time.perf_counter()
    built = build_training_set(rows, store=store)
    table.add_row(
        f"build_training_set, {len(built):,} rows, all periods (s)",
        f"{time.perf_counter() - t:.2f}",
    )
    table.add_row("total (s)", f"{time.perf_counter() - started:.1f}")
    return table


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    reads: int = 1000,
    redis: Annotated[str, typer.Option(help="host:port: use Redis as the online store")] = "",
) -> None:
    """Measure apply, backfill push, training-set build and online reads."""
    configure_logging("bench_featurestore", "WARNING")
    console = Console()
    source = messages_path(get_settings().data_dir)
    if not source.exists():
        raise SystemExit(f"{source} is missing: run `python -m pipelines.data` first")
    if redis:
        os.environ["FEAST_ONLINE_STORE_TYPE"] = "redis"
        os.environ["REDIS_CONNECTION_STRING"] = redis
    with tempfile.TemporaryDirectory(prefix="bench-featurestore-") as tmp:
        data_dir = Path(tmp)
        messages_path(data_dir).parent.mkdir(parents=True)
        shutil.copy(source, messages_path(data_dir))
        console.print(bench(data_dir, reads, console))


if __name__ == "__main__":
    cli()
