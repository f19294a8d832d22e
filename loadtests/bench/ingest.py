"""Benchmark of the ingest -> online-features path (a script that prints numbers, not a test).

Starts a private stack on free loopback ports in a tmp DATA_DIR: Tansu, `python -m
services.ingestion`, `python -m services.processor`, a Feast store applied there. Then:

1. throughput: N messages (corpus bodies when the corpus is built, else synthetic ones) posted
   in batches by several client threads; prints messages/s accepted (202) and end to end (every
   message in the message log, hence its features online);
2. freshness: single-message requests at a steady rate, each from a new sender; a poller reads
   the online store and records when each sender's row appears; prints p50/p90/p99 of the time
   from the 202 to the feature being readable online.

Usage: `python -m loadtests.bench.ingest [--messages 5000] [--rate 50] [--probes 300]`; the
numbers go to var/run/results/bench-ingest.json (`make report` renders them).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

from features import store as featurestore
from modstack.kafka import ensure_topics
from modstack.message_log import MessageLog
from modstack.names import VIEW_SENDER_ACTIVITY
from modstack.processes import BackgroundProcess, http_ok, kafka_ready, tansu_argv
from modstack.results import Result, ResultTable, write_result
from modstack.waits import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalStream:
    """Addresses of a running private stream stack."""

    bootstrap: str
    ingestion: str
    processor_metrics: str
    data_dir: Path


@contextmanager
def local_stream(workdir: Path) -> Iterator[LocalStream]:
    """Tansu + ingestion + processor on free ports, state under `workdir` (stopped after)."""
    data_dir = workdir / "data"
    kafka_port, ingestion_port, metrics_port = free_port(), free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    stack = LocalStream(
        bootstrap=bootstrap,
        ingestion=f"http://127.0.0.1:{ingestion_port}",
        processor_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
        data_dir=data_dir,
    )
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATA_DIR": str(data_dir),
        "FEAST_DATA_DIR": str(data_dir / "feast"),
        "FEAST_REPO_PATH": str(REPO_ROOT / "features"),
        "INGESTION_ADDR": stack.ingestion,
        "PROCESSOR_METRICS_PORT": str(metrics_port),
        "LOG_LEVEL": "WARNING",
    }
    python = [sys.executable, "-m"]
    with ExitStack() as running:
        running.enter_context(
            BackgroundProcess(
                "Tansu",
                tansu_argv(kafka_port),
                workdir / "tansu.log",
                lambda: kafka_ready(bootstrap),
            )
        )
        ensure_topics(bootstrap)
        featurestore.apply_repo(REPO_ROOT / "features", data_dir=data_dir)
        for name, ready in (
            ("ingestion", lambda: http_ok(f"{stack.ingestion}/readyz")),
            ("processor", lambda: processor_joined(stack.processor_metrics)),
        ):
            running.enter_context(
                BackgroundProcess(
                    name,
                    [*python, f"services.{name}"],
                    workdir / f"{name}.log",
                    ready,
                    timeout_s=120,
                    env=env,
                    cwd=REPO_ROOT,
                )
            )
        yield stack


def processor_joined(metrics_url: str) -> bool:
    """True once the processor owns partitions (its state is built, it is consuming)."""
    try:
        return metric_values(metrics_url).get("processor_assigned_partitions", 0) > 0
    except httpx.HTTPError:
        return False


def corpus_bodies(limit: int) -> list[tuple[str, str]]:
    """(subject, body) of real mails when the corpus is built; synthetic ones otherwise."""
    try:
        from modstack.corpus import load_corpus

        corpus = load_corpus()
        rows = corpus[["subject", "body"]].head(limit)
        return list(rows.itertuples(index=False, name=None))
    except (FileNotFoundError, OSError):
        text = "Hello, this is a message of about a kilobyte. " * 22
        return [(f"subject {i}", text) for i in range(limit)]


def messages(n: int, run: str, bodies: list[tuple[str, str]], senders: int) -> list[dict]:
    sent_at = datetime(2002, 9, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        subject, body = bodies[i % len(bodies)]
        out.append(
            {
                "message_id": f"{run}-{i}",
                "sender_id": f"{run}-sender{i % senders}@bench.example",
                "subject": subject,
                "body": body,
                "sent_at": (sent_at + timedelta(seconds=i)).isoformat(),
            }
        )
    return out


def logged_count(data_dir: Path, prefix: str) -> int:
    ids = MessageLog(data_dir).read("messages", columns=[])["message_id"]
    return int(ids.str.startswith(prefix).sum())


def metric_values(url: str) -> dict[str, float]:
    text = httpx.get(url, timeout=5).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels or set(sample.labels) <= {"view"}:
                key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sample.labels.items())
                values[key] = values.get(key, 0.0) + sample.value
    return values


def throughput(stack: LocalStream, n: int, batch: int, clients: int) -> dict[str, float]:
    """Post `n` messages in batches from `clients` threads; time the 202s and the catch-up."""
    run = f"tp{uuid.uuid4().hex[:6]}"
    items = messages(n, run, corpus_bodies(n), senders=max(1, n // 20))
    batches = [items[i : i + batch] for i in range(0, n, batch)]
    http = httpx.Client(
        base_url=stack.ingestion, timeout=60, limits=httpx.Limits(max_connections=clients)
    )

    def post(chunk: list[dict]) -> None:
        response = http.post("/v1/messages", json={"messages": chunk})
        if response.status_code != 202:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, batches))
    accepted_s = time.perf_counter() - started
    wait_until(
        lambda: logged_count(stack.data_dir, run) >= n,
        600,
        f"{n} messages in the log",
        interval_s=0.2,
    )
    end_to_end_s = time.perf_counter() - started
    http.close()
    return {
        "messages": n,
        "accepted_per_s": n / accepted_s,
        "end_to_end_per_s": n / end_to_end_s,
        "accepted_s": accepted_s,
        "end_to_end_s": end_to_end_s,
    }


def freshness(stack: LocalStream, rate: float, probes: int) -> list[float]:
    """Seconds from each probe's 202 to its sender's row being readable online."""
    store = featurestore.get_store(REPO_ROOT / "features", data_dir=stack.data_dir)
    feature = f"{VIEW_SENDER_ACTIVITY}:sender_msgs_total"
    run = f"fr{uuid.uuid4().hex[:6]}"
    bodies = corpus_bodies(probes)
    accepted_at: dict[str, float] = {}
    visible_at: dict[str, float] = {}
    lock = threading.Lock()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            with lock:
                pending = [s for s in accepted_at if s not in visible_at]
            if pending:
                rows = store.get_online_features(
                    features=[feature], entity_rows=[{"sender_id": s} for s in pending]
                ).to_dict()
                now = time.perf_counter()
                for sender, value in zip(rows["sender_id"], rows["sender_msgs_total"], strict=True):
                    if value is not None:
                        visible_at[sender] = now
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    http = httpx.Client(base_url=stack.ingestion, timeout=30)
    started = time.perf_counter()
    for i in range(probes):
        subject, body = bodies[i % len(bodies)]
        sender = f"{run}-{i}@fresh.example"
        message = {
            "message_id": f"{run}-{i}",
            "sender_id": sender,
            "subject": subject,
            "body": body,
            "sent_at": datetime(2002, 9, 1, tzinfo=UTC).isoformat(),
        }
        response = http.post("/v1/messages", json=message)
        if response.status_code != 202:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        with lock:
            accepted_at[sender] = time.perf_counter()
        pause = started + (i + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    wait_until(lambda: len(visible_at) >= probes, 120, f"{probes} probe senders online")
    done.set()
    poller.join(timeout=5)
    http.close()
    return [visible_at[s] - accepted_at[s] for s in accepted_at]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def internals(stack: LocalStream) -> list[list[object]]:
    """Where the time goes inside: (stage, count, mean ms) from the services' own metrics."""
    processor = metric_values(stack.processor_metrics)
    ingestion = metric_values(f"{stack.ingestion}/metrics")
    stages = (
        (
            "processor push to Feast (sender_activity)",
            processor,
            "processor_push_duration_seconds",
            "{view=sender_activity}",
        ),
        ("ingestion wait for broker acks", ingestion, "ingestion_produce_duration_seconds", ""),
        ("processor micro-batch", processor, "processor_batch_duration_seconds", ""),
    )
    rows: list[list[object]] = []
    for stage, values, metric, labels in stages:
        count = values.get(f"{metric}_count{labels}", 0.0)
        if count:
            mean_ms = values[f"{metric}_sum{labels}"] / count * 1000
            rows.append([stage, int(count), round(mean_ms, 1)])
    return rows


def bench_result(
    tp: dict[str, float],
    freshness_ms: list[float],
    stages: list[list[object]],
    setup: dict[str, float],
    command: str,
) -> Result:
    """The results file's content: throughput, freshness percentiles, internal stages."""
    fresh = {
        "p50": percentile(freshness_ms, 50),
        "p90": percentile(freshness_ms, 90),
        "p99": percentile(freshness_ms, 99),
        "max": max(freshness_ms),
        "mean": statistics.mean(freshness_ms),
    }
    return Result(
        name="bench-ingest",
        title="Ingest to online features: throughput and freshness",
        command=command,
        tables=[
            ResultTable(
                f"Throughput: {int(tp['messages']):,} messages in batches of {int(setup['batch'])} "
                f"from {int(setup['clients'])} client threads",
                ["measure", "msg/s", "seconds"],
                [
                    ["accepted (202)", round(tp["accepted_per_s"]), round(tp["accepted_s"], 2)],
                    [
                        "end to end (in the message log, features online)",
                        round(tp["end_to_end_per_s"]),
                        round(tp["end_to_end_s"], 2),
                    ],
                ],
            ),
            ResultTable(
                f"Freshness: {len(freshness_ms)} single-message requests at {setup['rate']:g}/s, "
                "a new sender each; 202 -> the sender's row readable online (ms)",
                ["p50", "p90", "p99", "max", "mean"],
                [[round(fresh[k]) for k in ("p50", "p90", "p99", "max", "mean")]],
            ),
            ResultTable(
                "Inside, from the services' metrics over the whole run",
                ["stage", "count", "mean ms"],
                stages,
            ),
        ],
        notes=[
            "A private Tansu (memory storage), ingestion and stream processor on loopback, Feast "
            "with the SQLite online store and parquet offline store, in a temporary DATA_DIR."
        ],
        data={"throughput": tp, "freshness_ms": fresh, "setup": setup},
    )


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    messages: Annotated[int, typer.Option(help="throughput run size")] = 5000,
    batch: Annotated[int, typer.Option(help="messages per request")] = 100,
    clients: Annotated[int, typer.Option(help="concurrent client threads")] = 4,
    rate: Annotated[float, typer.Option(help="freshness probes per second")] = 50.0,
    probes: Annotated[int, typer.Option(help="freshness probes")] = 300,
    keep: Annotated[bool, typer.Option("--keep", help="keep the tmp dir (logs, data)")] = False,
) -> None:
    """Run both measurements, print them and write var/run/results/bench-ingest.json."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    print(f"starting Tansu, ingestion and the processor under {workdir} ...", flush=True)
    with local_stream(workdir) as stack:
        warmup = freshness(stack, rate=5, probes=5)  # the consumer has joined, caches are warm
        print(f"warm-up: first feature online {warmup[0]:.2f} s after its 202")

        tp = throughput(stack, messages, batch, clients)
        print(
            f"\nthroughput: {tp['messages']} messages in batches of {batch} from "
            f"{clients} clients\n"
            f"  accepted (202):              {tp['accepted_per_s']:6.0f} msg/s "
            f"({tp['accepted_s']:.2f} s)\n"
            f"  end to end (logged, online): {tp['end_to_end_per_s']:6.0f} msg/s "
            f"({tp['end_to_end_s']:.2f} s)"
        )
        seconds = freshness(stack, rate, probes)
        ms = [s * 1000 for s in seconds]
        print(
            f"\nfreshness: {probes} single-message requests at {rate:g}/s, "
            "a new sender each\n"
            f"  202 -> readable online: p50 {percentile(ms, 50):.0f} ms, p90 "
            f"{percentile(ms, 90):.0f} ms, p99 {percentile(ms, 99):.0f} ms, "
            f"max {max(ms):.0f} ms, mean {statistics.mean(ms):.0f} ms"
        )
        stages = internals(stack)
        for stage, count, mean_ms in stages:
            print(f"  {stage}: {count} times, mean {mean_ms} ms")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    command = (
        f"python -m loadtests.bench.ingest --messages {messages} --batch {batch} "
        f"--clients {clients} --rate {rate:g} --probes {probes}"
    )
    setup = {"batch": batch, "clients": clients, "rate": rate, "probes": probes}
    print(f"wrote {write_result(bench_result(tp, ms, stages, setup, command))}")
    if not keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs and data kept in {workdir}")


if __name__ == "__main__":
    cli()
