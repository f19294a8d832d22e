"""Back-of-envelope capacity, built on what was measured here (a script, not a test).

Reads the per-request costs the benchmarks wrote (serving CPU per request from
`bench-serving.json`) and measures the sizes that scale with traffic on the local stack's data
(online-store bytes per sender, message-log bytes per message, review share of the demo's
decisions from the serving review queue against its predictions). Then scales them to daily
volumes: peak requests/s, serving cores, Kafka partitions, online-store memory, message-log
storage per day, and moderators per shift. Writes var/run/results/capacity.json.

Usage: `python -m loadtests.bench.capacity` after `make demo` and `make bench-serving`.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from modstack.results import Result, ResultTable, results_dir, write_result
from modstack.settings import get_settings

VOLUMES = (1e6, 1e8, 1e9, 1e10, 1e11)  # messages per day
PEAK_TO_MEAN = 3.0  # a daily peak hour of a messaging platform: about 3x the mean rate
CORE_UTILISATION = 0.6  # plan cores at 60 % busy: headroom for the p99 and a lost zone
PARTITION_MSGS_PER_S = 2_000  # one consumer of the processor, batched Feast pushes
# Who sends the traffic: 50 messages per active sender a day (the largest messaging platforms
# report ~100 billion messages a day from ~2 billion daily users), and daily actives are 60 %
# of the senders seen in the 30 days the online store keeps. So 1e11 messages a day is 2
# billion daily senders, 3.3 billion in the online store: the planet's messaging, not more.
MESSAGES_PER_SENDER_DAY = 50
DAILY_SHARE_OF_30_DAY_SENDERS = 0.6
REVIEWS_PER_MODERATOR_HOUR = 120  # 30 s per decision
SHIFT_HOURS = 8


@dataclass(frozen=True)
class Inputs:
    """What the table is built on, each measured here (or a stated assumption)."""

    serving_cpu_ms: float
    online_bytes_per_sender: float
    log_bytes_per_message: float
    review_share: float
    sources: dict[str, str]


def _serving_cpu_ms(results: Path) -> tuple[float, str]:
    path = results / "bench-serving.json"
    if not path.exists():
        raise typer.BadParameter(f"{path} is missing: run `make bench-serving` first")
    median = json.loads(path.read_text())["data"].get("summary", {}).get("full_closed_cpu_ms")
    if not median:
        raise typer.BadParameter(f"{path} has no full-path closed-loop CPU: re-run it")
    return float(median), f"{path.name}: full path, closed loop 20 users (median of runs)"


def _online_bytes_per_sender(data_dir: Path) -> tuple[float, str]:
    store = data_dir / "feast" / "online.db"
    if not store.exists():
        raise typer.BadParameter(f"{store} is missing: run `make demo` first")
    with sqlite3.connect(store) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        senders = max(
            db.execute(f'select count(distinct entity_key) from "{t}"').fetchone()[0]
            for t in tables
        )
    return store.stat().st_size / max(senders, 1), f"{store.name}: file bytes / senders"


def _log_bytes_per_message(data_dir: Path) -> tuple[float, str]:
    import pyarrow.parquet as pq

    folder = data_dir / "message_log" / "messages"
    files = list(folder.rglob("*.parquet"))
    if not files:
        raise typer.BadParameter(f"no parquet under {folder}: run `make demo` first")
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    size = sum(f.stat().st_size for f in files)
    return size / max(rows, 1), f"message log: {size:,} bytes / {rows:,} messages"


def _review_share(data_dir: Path) -> tuple[float, str]:
    path = results_dir() / "demo-rollout.json"
    if path.exists():
        actions = json.loads(path.read_text()).get("traffic", {}).get("by_action") or {}
        total = sum(actions.values())
        if total:
            share = actions.get("review", 0) / total
            return share, f"{path.name}: review / decisions of the demo's traffic"
    return 0.05, "assumed: the review budget (5 % of traffic)"


def measure(data_dir: Path) -> Inputs:
    """The measured inputs of the table."""
    results = results_dir()
    cpu, cpu_src = _serving_cpu_ms(results)
    online, online_src = _online_bytes_per_sender(data_dir)
    log_bytes, log_src = _log_bytes_per_message(data_dir)
    review, review_src = _review_share(data_dir)
    sources = {
        "serving CPU ms/request": cpu_src,
        "online bytes/sender": online_src,
        "log bytes/message": log_src,
        "review share": review_src,
    }
    return Inputs(cpu, online, log_bytes, review, sources)


def capacity_rows(inputs: Inputs) -> list[list[object]]:
    """One row per daily volume."""
    rows: list[list[object]] = []
    for per_day in VOLUMES:
        mean = per_day / 86_400
        peak = mean * PEAK_TO_MEAN
        cores = math.ceil(peak * inputs.serving_cpu_ms / 1000 / CORE_UTILISATION)
        partitions = max(1, math.ceil(peak / PARTITION_MSGS_PER_S))
        senders = per_day / MESSAGES_PER_SENDER_DAY / DAILY_SHARE_OF_30_DAY_SENDERS  # 30 days
        online_gib = senders * inputs.online_bytes_per_sender / 2**30
        log_gib = per_day * inputs.log_bytes_per_message / 2**30
        reviews_hour = per_day * inputs.review_share / 24
        moderators = math.ceil(reviews_hour / REVIEWS_PER_MODERATOR_HOUR)
        rows.append(
            [
                f"{per_day:,.0f}",
                round(peak),
                cores,
                partitions,
                round(online_gib, 1),
                round(log_gib, 1),
                moderators,
            ]
        )
    return rows


def main(
    data_dir: Annotated[Path | None, typer.Option(help="DATA_DIR of the stack")] = None,
) -> None:
    """Print and write the capacity table."""
    inputs = measure(data_dir or get_settings().data_dir)
    table = ResultTable(
        caption=(
            f"scaled from {inputs.serving_cpu_ms:.2f} ms serving CPU/request, "
            f"{inputs.online_bytes_per_sender:,.0f} B online store/sender, "
            f"{inputs.log_bytes_per_message:,.0f} B log/message, "
            f"{inputs.review_share:.1%} of decisions to review"
        ),
        columns=[
            "messages/day",
            "peak req/s",
            "serving cores",
            "Kafka partitions",
            "online store GiB",
            "message log GiB/day",
            "moderators per shift",
        ],
        rows=capacity_rows(inputs),
    )
    notes = [f"{k}: {v}" for k, v in inputs.sources.items()] + [
        f"peak = {PEAK_TO_MEAN:g}x the daily mean; cores planned at {CORE_UTILISATION:.0%} busy",
        f"{PARTITION_MSGS_PER_S:,} msg/s per processor partition; {MESSAGES_PER_SENDER_DAY} "
        f"messages per active sender a day, daily actives {DAILY_SHARE_OF_30_DAY_SENDERS:.0%} "
        "of the 30 days' senders the online store keeps",
        f"a moderator decides {REVIEWS_PER_MODERATOR_HOUR} items an hour, {SHIFT_HOURS} h "
        "shifts, reviews spread evenly over the day",
    ]
    result = Result(
        name="capacity",
        title="Capacity at scale (back of the envelope)",
        command="python -m loadtests.bench.capacity",
        tables=[table],
        notes=notes,
        data={"inputs": inputs.__dict__},
    )
    path = write_result(result)
    for row in table.rows:
        print(" | ".join(str(c) for c in row))
    print(f"wrote {path}")


if __name__ == "__main__":
    typer.run(main)
