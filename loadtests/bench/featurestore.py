"""Benchmark of the feature store path: apply, push, online read, backfill, training set.

Works in a throw-away DATA_DIR (the corpus parquet is copied in from DATA_DIR), prints numbers
and writes them to var/run/results/bench-featurestore.json (`make report` renders them).
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
from modstack.results import Result, ResultTable, write_result
from modstack.settings import get_settings


def _percentiles(samples_s: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3, statistics.fmean(ordered) * 1e3


# (measurement, value, unit, detail): one row of the results table
Row = tuple[str, float, str, str]


def bench(data_dir: Path, reads: int, console: Console) -> list[Row]:
    """Run every measurement against `data_dir`; returns the rows of the result."""
    from pipelines import backfill
    from pipelines.dataset import build_training_set, corpus_rows

    rows: list[Row] = []
    started = time.perf_counter()
    first = featurestore.apply_repo(data_dir=data_dir)
    rows.append(("apply, empty registry", round(first.seconds, 3), "s", ""))
    again = featurestore.apply_repo(data_dir=data_dir)
    rows.append(("apply, unchanged repo", round(again.seconds, 3), "s", ""))

    corpus = load_corpus(data_dir)
    report = backfill.run("history", data_dir=data_dir, corpus=corpus, console=console)
    rows.append(
        (
            "backfill history",
            round(report.replay_seconds + report.push_seconds, 2),
            "s",
            f"replay {report.replay_seconds:.2f} s of {report.messages + report.labels:,} events, "
            f"push {report.push_seconds:.2f} s of "
            f"{report.activity_rows + report.reputation_rows:,} rows",
        )
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
            rows.append((f"push {size} rows, {what}", round(p50, 1), "ms", "p50 of 5"))

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
    what = f"online read, FeatureService + on-demand, {store.config.online_store.type}"
    rows.append((f"{what}, p50", round(p50, 2), "ms", f"n={reads}"))
    rows.append((f"{what}, p99", round(p99, 2), "ms", f"n={reads}"))
    rows.append((f"{what}, mean", round(mean, 2), "ms", f"n={reads}"))

    training_rows = corpus_rows("all", data_dir)
    t = time.perf_counter()
    built = build_training_set(training_rows, store=store)
    rows.append(
        (
            "build_training_set, all periods",
            round(time.perf_counter() - t, 2),
            "s",
            f"{len(built):,} rows, point in time",
        )
    )
    rows.append(("total", round(time.perf_counter() - started, 1), "s", ""))
    return rows


def as_table(rows: list[Row]) -> Table:
    """The rows for the terminal."""
    table = Table(title="feature store (this machine)", title_justify="left")
    for column in ("measurement", "value", "unit", "detail"):
        table.add_column(column)
    for measurement, value, unit, detail in rows:
        table.add_row(measurement, f"{value:g}", unit, detail)
    return table


def bench_result(rows: list[Row], online_store: str, command: str) -> Result:
    """The results file's content."""
    return Result(
        name="bench-featurestore",
        title="Feature store: apply, backfill, push, online read, training set",
        command=command,
        tables=[
            ResultTable(
                f"Feast in a temporary DATA_DIR (online store {online_store}, offline parquet)",
                ["measurement", "value", "unit", "detail"],
                [list(row) for row in rows],
            )
        ],
        data={"online_store": online_store},
    )


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    reads: int = 1000,
    redis: Annotated[str, typer.Option(help="host:port: use Redis as the online store")] = "",
) -> None:
    """Measure apply, backfill push, training-set build and online reads; write the results."""
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
        rows = bench(data_dir, reads, console)
    console.print(as_table(rows))
    command = f"python -m loadtests.bench.featurestore --reads {reads}" + (
        f" --redis {redis}" if redis else ""
    )
    online_store = "redis" if redis else "sqlite"
    console.print(f"wrote {write_result(bench_result(rows, online_store, command))}")


if __name__ == "__main__":
    cli()
