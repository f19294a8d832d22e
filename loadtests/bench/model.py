"""The model alone, in process: what one moderation decision costs without the service around it.

`python -m loadtests.bench.model [--alias champion] [--requests 1000]` loads the same registered
version serving loads (through the same disk cache), takes messages from the corpus's future
period, and times, one call at a time:
- `model`: building the one-row input frame + `predict_proba` (features fetched beforehand);
- `features+model`: the Feast online lookup (sender views + on-demand text features) + the model.
Compare with `make loadtest` to see what HTTP, routing and prediction logging add.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table

from services.serving.settings import ServingSettings


@dataclass(frozen=True)
class Timing:
    """Latency distribution of one sequential loop."""

    name: str
    calls: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    # CPU time per call: far less sensitive than wall time to other work on a shared machine
    cpu_ms: float

    @property
    def calls_per_s(self) -> float:
        """Sequential throughput of one thread (1 / mean)."""
        return 1000.0 / self.mean_ms if self.mean_ms else 0.0


def summarize(name: str, seconds: list[float], cpu_seconds: float) -> Timing:
    """Percentiles of a list of wall-clock durations, plus the mean CPU time per call."""
    ms = sorted(s * 1000 for s in seconds)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    cpu_ms = cpu_seconds * 1000 / len(ms)
    return Timing(name, len(ms), cuts[49], cuts[94], cuts[98], statistics.fmean(ms), cpu_ms)


def time_calls(name: str, calls: list[Callable[[], object]], warmup: int) -> Timing:
    """Run each call once (after `warmup` untimed ones) and summarize."""
    for call in calls[:warmup]:
        call()
    seconds = []
    cpu_started = time.process_time()
    for call in track(calls, description=f"timing {name}", transient=True):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return summarize(name, seconds, time.process_time() - cpu_started)


def main(
    alias: Annotated[str, typer.Option(help="alias or version number to load")] = "champion",
    requests: Annotated[int, typer.Option(help="timed calls per measurement")] = 1000,
    warmup: Annotated[int, typer.Option(help="untimed calls first")] = 50,
    json_out: Annotated[Path | None, typer.Option(help="also write the numbers here")] = None,
) -> None:
    """Time the model and features+model in process, one call at a time."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    from modstack.corpus import load_corpus
    from modstack.registry.aliases import get_client, resolve_version
    from services.serving.model_store import ModelCache
    from services.serving.online_features import FeatureLookup, OnlineFeatures

    settings = ServingSettings()
    console = Console()
    client = get_client(settings.mlflow_tracking_uri)
    version = resolve_version(alias, client)
    model = ModelCache(settings.model_cache_dir, client, settings.serving_model_name).load(version)
    features = OnlineFeatures(settings.feast_repo_path)
    corpus = load_corpus(settings.data_dir)
    future = corpus[corpus["period"] == "future"]
    sample = future.sample(n=min(requests, len(future)), random_state=7, replace=False)
    messages = [(r.sender_id, r.subject, r.body) for r in sample.itertuples()]
    console.print(
        f"model {settings.serving_model_name} v{version} ({model.feature_service}, "
        f"{len(model.feature_columns)} feature columns); {len(messages)} future-period mails"
    )

    def lookup(sender: str, subject: str, body: str) -> FeatureLookup:
        return features.lookup(model.feature_service, model.feature_columns, sender, subject, body)

    prefetched = [(s, b, lookup(sender, s, b).values) for sender, s, b in messages]
    model_only = time_calls(
        "model", [lambda s=s, b=b, f=f: model.score(s, b, f) for s, b, f in prefetched], warmup
    )
    full = time_calls(
        "features+model",
        [
            lambda sender=sender, s=s, b=b: model.score(s, b, lookup(sender, s, b).values)
            for sender, s, b in messages
        ],
        warmup,
    )

    table = Table(title=f"in-process, one call at a time (v{version})")
    columns = ("path", "calls", "p50 ms", "p95 ms", "p99 ms", "mean ms", "CPU ms/call", "calls/s")
    for column in columns:
        table.add_column(column, justify="left" if column == "path" else "right")
    for t in (model_only, full):
        table.add_row(
            t.name,
            str(t.calls),
            f"{t.p50_ms:.2f}",
            f"{t.p95_ms:.2f}",
            f"{t.p99_ms:.2f}",
            f"{t.mean_ms:.2f}",
            f"{t.cpu_ms:.2f}",
            f"{t.calls_per_s:.0f}",
        )
    console.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model_version": version,
            "results": [asdict(t) | {"calls_per_s": t.calls_per_s} for t in (model_only, full)],
        }
        json_out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    typer.run(main)
