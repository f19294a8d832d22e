"""Serving side by side with `mlflow models serve`, on the same registered champion version.

`python -m loadtests.bench.serving` (`make bench-serving`) needs the stack running with a
champion (`make up`, a trained model: `make backfill train`). In one run it:
- starts `mlflow models serve -m models:/<model>@champion --env-manager local` on a free port;
- drives both with locust, future-period mails with their real senders: MLflow's /invocations
  gets {"dataframe_split": ...} with every signature column (the Feast values read once up
  front), the full path gets /v1/moderate (Feast features, routing, prediction logging);
- closed loop: 20 users (the `make loadtest` profile); open loop: fixed offered rates
  (locust `constant_throughput`, 10 req/s per user: see OPEN_LOOP_RATE_PER_USER);
- the full path at 100 closed-loop users, to show load shedding (503 + Retry-After);
- optionally (`--rollout`) the full path during a 50 % shadow rollout of a copy of the
  champion, for the CPU cost of a rollout (the registry is restored afterwards);
- measures server CPU per request with psutil over the server's process tree;
- prints a table, writes var/run/results/bench-serving.json and bench-serving.png (copied to
  docs/img/).

This file is also the locustfile of those runs (the User classes below, configured through
BENCH_* environment variables by the runner).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import gevent
import typer
from locust import FastHttpUser, between, constant_throughput, task

# -- the locust side (runs inside the locust process) ------------------------------------------

_MESSAGES_ENV = "BENCH_MESSAGES"
_RATE_ENV = "BENCH_RATE_PER_USER"


@functools.cache
def _bench_messages() -> list[dict[str, Any]]:
    # once per locust process, not per user: 200 users each parsing the mails file kept
    # locust at 100 % of a core and 2.7 GB during the measured window
    path = os.environ.get(_MESSAGES_ENV)
    return json.loads(Path(path).read_text()) if path else []


def _wait_time() -> Any:
    rate = float(os.environ.get(_RATE_ENV, "0") or 0)
    # closed loop: the `make loadtest` think time; open loop: a fixed rate per user
    return constant_throughput(rate) if rate > 0 else between(0.0, 0.05)


def _desynchronize() -> None:
    """Open loop: start each user at a random phase of its period, or users spawned together
    fire in lockstep (bursts of all users at once instead of a steady rate)."""
    rate = float(os.environ.get(_RATE_ENV, "0") or 0)
    if rate > 0:
        gevent.sleep(random.uniform(0, 1 / rate))


class FullPathUser(FastHttpUser):
    """POST /v1/moderate with a future mail (fresh message id per call)."""

    wait_time = _wait_time()

    def on_start(self) -> None:
        self.messages = _bench_messages()
        _desynchronize()

    @task
    def moderate(self) -> None:
        message = dict(random.choice(self.messages)["request"])
        message["message_id"] = f"{message['message_id']}~{uuid.uuid4().hex[:12]}"
        self.client.post("/v1/moderate", json=message, name="score")


class MlflowUser(FastHttpUser):
    """POST /invocations with the same mail as one dataframe_split row."""

    wait_time = _wait_time()

    def on_start(self) -> None:
        self.messages = _bench_messages()
        _desynchronize()

    @task
    def invocations(self) -> None:
        self.client.post("/invocations", json=random.choice(self.messages)["mlflow"], name="score")


# -- the runner --------------------------------------------------------------------------------

RESULT_NAME = "bench-serving"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunResult:
    """One locust run against one server."""

    target: str  # "mlflow" or "full"
    profile: str  # "closed-20", "open-200", "closed-100", "rollout-closed-20"
    users: int
    offered_rps: float | None  # None for closed loop
    requests: int
    failures: int
    rps: float  # every answer, 503s included (locust's Requests/s)
    ok_rps: float  # answers that were not failures
    p50_ms: float
    p95_ms: float
    p99_ms: float
    status_503: int
    cpu_ms_per_request: float | None
    # a retraining run (drift-triggered by this benchmark's own traffic) shared the CPU
    retrain_overlap: bool = False


def retrain_marker(monitoring_addr: str) -> tuple[bool, int] | None:
    """(a training run is in flight, training runs triggered so far) from the monitoring
    service; None when it does not answer (the benchmark then cannot tell)."""
    import httpx

    try:
        retrain = httpx.get(f"{monitoring_addr}/v1/status", timeout=5.0).json()["retrain"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    triggered = sum(1 for event in retrain.get("history", []) if event.get("event") == "triggered")
    return bool(retrain.get("running")), triggered


def _fail(message: str) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


def process_tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their children."""
    import psutil

    seen: set[int] = set()
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
    return total


def listening_pids(port: int) -> list[int]:
    """Every process holding a listening socket on `port`: the server, its supervisor and
    its workers (uvicorn's workers inherit the supervisor's socket). `psutil.net_connections`
    names one process per socket, which would leave the other workers' CPU uncounted."""
    import psutil

    pids: set[int] = set()
    for proc in psutil.process_iter():
        try:
            connections = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections
        ):
            pids.add(proc.pid)
    return sorted(pids)


def worker_count(pids: list[int]) -> int:
    """How many of the socket's holders answer requests: the children of a holding
    supervisor (uvicorn --workers N), or the one process when there is no supervisor."""
    import psutil

    held = set(pids)
    children = 0
    for pid in pids:
        try:
            children += psutil.Process(pid).ppid() in held
        except psutil.NoSuchProcess:
            continue
    return children or len(held)


def _prepare_messages(settings: Any, version: str, limit: int) -> tuple[Path, list[str]]:
    """Future mails as both request bodies; the MLflow row carries the Feast values."""
    from modstack.corpus import load_corpus
    from modstack.registry.aliases import get_client
    from modstack.registry.contract import TEXT_COLUMNS
    from services.serving.model_store import ModelCache
    from services.serving.online_features import OnlineFeatures

    corpus = load_corpus(settings.data_dir)
    future = corpus[(corpus["period"] == "future") & ~corpus["is_duplicate"]]
    if future.empty:
        _fail("the corpus has no future-period mail: run `python -m pipelines.data`")
    future = future.sample(n=min(limit, len(future)), random_state=7)
    client = get_client(settings.mlflow_tracking_uri)
    cache = ModelCache(settings.model_cache_dir, client, settings.serving_model_name)
    model = cache.load(version)
    features = OnlineFeatures(settings.feast_repo_path)
    rows = [(str(r.sender_id), str(r.subject)[:1_000], str(r.body)) for r in future.itertuples()]
    lookups = []
    for start in range(0, len(rows), 64):
        lookups += features.lookup_many(
            model.feature_service, model.feature_columns, rows[start : start + 64]
        )
    columns = [*TEXT_COLUMNS, *model.feature_columns]
    messages = []
    for r, (sender, subject, body), lookup in zip(future.itertuples(), rows, lookups, strict=True):
        request = {
            "message_id": str(r.message_id),
            "sender_id": sender,
            "subject": subject,
            "body": body,
            "sent_at": r.sent_at.isoformat(),
        }
        values = [lookup.values.get(c) for c in model.feature_columns]
        messages.append(
            {
                "request": request,
                "mlflow": {
                    "dataframe_split": {"columns": columns, "data": [[subject, body, *values]]}
                },
            }
        )
    path = Path(tempfile.mkdtemp(prefix="bench-serving-")) / "messages.json"
    path.write_text(json.dumps(messages))
    return path, columns


def _start_mlflow(settings: Any, workers: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    from modstack.waits import free_port

    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="bench-mlflow-")) / "mlflow-serve.log"
    argv = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{settings.serving_model_name}@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(workers),
    ]
    # MLflow execs `uvicorn` by name: the venv's bin must be on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "PATH": path}
    log = log_path.open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, port, log_path


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _locust(
    target: str,
    host: str,
    users: int,
    rate_per_user: float,
    duration_s: int,
    messages: Path,
    out_dir: Path,
    tag: str,
) -> tuple[dict[str, Any], int]:
    """One headless locust run; returns the Aggregated stats row and the count of 503s."""
    prefix = out_dir / tag
    user_class = "MlflowUser" if target == "mlflow" else "FullPathUser"
    argv = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(Path(__file__).resolve()),
        user_class,
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration_s}s",
        "--stop-timeout",
        "3",
        "--exit-code-on-error",
        "0",
        "--host",
        host,
        "--csv",
        str(prefix),
    ]
    env = {**os.environ, _MESSAGES_ENV: str(messages), _RATE_ENV: str(rate_per_user)}
    subprocess.run(
        argv,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=duration_s + 60,
    )
    with Path(f"{prefix}_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    status_503 = 0
    failures_csv = Path(f"{prefix}_failures.csv")
    if failures_csv.exists():
        with failures_csv.open() as handle:
            for row in csv.DictReader(handle):
                if "503" in row.get("Error", ""):
                    status_503 += int(row.get("Occurrences", 0))
    return rows["Aggregated"], status_503


def _run(
    target: str,
    profile: str,
    host: str,
    pids: list[int],
    users: int,
    offered: float | None,
    duration_s: int,
    messages: Path,
    out_dir: Path,
) -> RunResult:
    rate_per_user = (offered / users) if offered else 0.0
    cpu_before = process_tree_cpu(pids)
    row, status_503 = _locust(
        target, host, users, rate_per_user, duration_s, messages, out_dir, f"{target}-{profile}"
    )
    cpu = process_tree_cpu(pids) - cpu_before
    requests = int(row["Request Count"])
    return RunResult(
        target=target,
        profile=profile,
        users=users,
        offered_rps=offered,
        requests=requests,
        failures=int(row["Failure Count"]),
        rps=round(float(row["Requests/s"]), 1),
        ok_rps=round(
            float(row["Requests/s"]) * (1 - int(row["Failure Count"]) / max(requests, 1)), 1
        ),
        p50_ms=float(row["50%"]),
        p95_ms=float(row["95%"]),
        p99_ms=float(row["99%"]),
        status_503=status_503,
        cpu_ms_per_request=round(1000 * cpu / requests, 2) if requests else None,
    )


# Offered req/s per open-loop user. A user blocks on its answer only when latency exceeds
# 1/RATE (100 ms, the SLO), so below the SLO the offered rate is kept; above it the table's
# req/s falls short of offered/s, which shows it. Not fewer req/s per user (more users): on
# this 2-core machine locust's own latency grows with its user count (same server, 200 req/s
# offered: 20 users p50 21 ms, 50 users 36 ms, 100 users 57 ms; an aiohttp open-loop client
# on 100 connections measured p50 19 ms, p99 69 ms), which would be measured as serving's.
OPEN_LOOP_RATE_PER_USER = 10.0


def _users_for(rate: float) -> int:
    return max(5, round(rate / OPEN_LOOP_RATE_PER_USER))


def _set_rollout(settings: Any, champion: str) -> tuple[Any, str]:
    """A copy of the champion registered as challenger, in a 50 % shadow rollout: the
    champion answers everyone, the challenger also scores half the senders (off the request
    path, through the same batcher)."""
    from modstack.registry.aliases import get_client
    from modstack.registry.rollout import RolloutState, RolloutStore

    client = get_client(settings.mlflow_tracking_uri)
    source = client.get_model_version(settings.serving_model_name, champion)
    copy = client.create_model_version(
        settings.serving_model_name,
        source=source.source,
        run_id=source.run_id,
        # MLflow 3 sources are "models:/<model_id>": the new version must name that model
        model_id=getattr(source, "model_id", None)
        or (source.source.split("/", 1)[1] if source.source.startswith("models:/") else None),
        tags={"bench-serving": "copy of the champion for the rollout CPU run"},
    )
    version = str(copy.version)
    client.set_registered_model_alias(settings.serving_model_name, "challenger", version)
    store = RolloutStore(client, settings.serving_model_name)
    store.save(
        RolloutState(
            rollout_id=f"bench-{uuid.uuid4().hex[:6]}",
            challenger_version=version,
            champion_version=champion,
            weight_percent=50.0,
            mode="shadow",
            status="paused",  # active for routing, never moved by a canary controller
            reason="bench-serving: CPU per request during a 50 % shadow rollout",
        )
    )
    return store, version


def _clear_rollout(settings: Any, store: Any, version: str) -> None:
    from modstack.registry.aliases import get_client
    from modstack.registry.rollout import RolloutState

    client = get_client(settings.mlflow_tracking_uri)
    store.save(RolloutState(status="rolled_back", reason="bench-serving finished"))
    client.delete_registered_model_alias(settings.serving_model_name, "challenger")
    client.delete_model_version(settings.serving_model_name, version)


def _rollout_run(
    settings: Any,
    version: str,
    serving: str,
    serving_pids: list[int],
    users: int,
    duration: int,
    messages: Path,
    out_dir: Path,
    console: Any,
) -> RunResult:
    """The closed-loop run during a 50 % shadow rollout of a copy of the champion."""
    import httpx

    console.print("rollout: a copy of the champion in a 50 % shadow rollout")
    store, copy_version = _set_rollout(settings, version)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            h = httpx.get(f"{serving}/healthz", timeout=5.0).json()
            if str(h.get("challenger")) == copy_version and h.get("rollout"):
                break
            time.sleep(1.0)
        else:
            raise RuntimeError("serving did not load the rollout's challenger within 120 s")
        time.sleep(2 * settings.serving_poll_interval_s + 1)  # every worker has polled
        result = _run("full", f"rollout-closed-{users}", serving, serving_pids, users, None,
                      duration, messages, out_dir)  # fmt: skip
        console.print(f"      {result}")
        return result
    finally:
        _clear_rollout(settings, store, copy_version)


def _plot(results: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = {
        "full": ("tab:blue", "full path /v1/moderate"),
        "mlflow": ("tab:red", "mlflow models serve"),
    }
    for target, (color, label) in styles.items():
        runs = sorted(
            (r for r in results if r.target == target and r.profile.startswith("open-")),
            key=lambda r: r.offered_rps or 0,
        )
        if not runs:
            continue
        x = [r.offered_rps for r in runs]
        ax.plot(x, [r.p99_ms for r in runs], "o-", color=color, label=f"{label}: p99")
        ax.plot(x, [r.p50_ms for r in runs], "s--", color=color, alpha=0.6, label=f"{label}: p50")
        for r in runs:
            ax.annotate(
                f"{r.rps:.0f}/s",
                (r.offered_rps or 0, r.p99_ms),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax.axhline(100, color="grey", linestyle=":", label="p99 target 100 ms")
    ax.set_xlabel("offered load (req/s, open loop); labels: answered req/s")
    ax.set_ylabel("latency (ms, log)")
    ax.set_yscale("log")
    ax.set_title("Same champion version: full serving path vs mlflow models serve")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _closed_profile(users: int, k: int, repeats: int) -> str:
    return f"closed-{users}" + (f" run {k}/{repeats}" if repeats > 1 else "")


def _median(values: Sequence[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    return round(statistics.median(present), 2) if present else None


def _ratio(full: RunResult | None, mlflow: RunResult | None) -> float | None:
    if full is None or mlflow is None or not mlflow.ok_rps:
        return None
    return round(full.ok_rps / mlflow.ok_rps, 1)


def main(
    duration: Annotated[int, typer.Option(help="seconds per locust run")] = 20,
    users: Annotated[int, typer.Option(help="closed-loop users (make loadtest's)")] = 20,
    rates: Annotated[str, typer.Option(help="open-loop offered req/s, comma-separated")] = (
        "50,100,200,400"
    ),
    shed_users: Annotated[int, typer.Option(help="users of the shedding run (0: skip)")] = 100,
    mlflow_workers: Annotated[int, typer.Option(help="workers of mlflow models serve")] = 1,
    rollout: Annotated[bool, typer.Option(help="also run a 50 % paired rollout")] = True,
    messages_limit: Annotated[int, typer.Option(help="future mails to sample")] = 2_000,
    mlflow: Annotated[bool, typer.Option(help="run mlflow models serve too")] = True,
    repeats: Annotated[
        int, typer.Option(help="closed-loop runs per target, alternating; medians reported")
    ] = 3,
    name: Annotated[
        str, typer.Option(help="results file name under var/run/results (and the PNG's)")
    ] = RESULT_NAME,
) -> None:
    """Benchmark the full serving path against `mlflow models serve` on the same champion.

    Needs the stack running with a champion: `make up`, then a trained model
    (`make backfill train`). Writes var/run/results/bench-serving.json and .png.
    """
    import httpx
    from rich.console import Console
    from rich.table import Table

    from modstack.registry.aliases import get_client
    from modstack.results import Result, ResultTable, provenance, results_dir, write_result
    from modstack.settings import port_of
    from services.serving.settings import ServingSettings

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    console = Console()
    settings = ServingSettings()
    serving = settings.serving_addr.rstrip("/")
    try:
        client = get_client(settings.mlflow_tracking_uri)
        champion = client.get_model_version_by_alias(settings.serving_model_name, "champion")
    except Exception as exc:
        _fail(
            f"no champion of {settings.serving_model_name} in the registry at "
            f"{settings.mlflow_tracking_uri} ({type(exc).__name__}: {str(exc)[:200]}): start the "
            "stack (`make up`) and train a model (`make backfill train`) first"
        )
    version = str(champion.version)
    try:
        ready = httpx.get(f"{serving}/readyz", timeout=5.0)
        body = ready.json()
    except (httpx.HTTPError, ValueError) as exc:
        _fail(f"serving at {serving} does not answer ({exc}): start the stack with `make up`")
    if ready.status_code != 200 or str(body.get("champion")) != version:
        _fail(f"serving at {serving} is not ready with champion v{version}: {body}")
    health = httpx.get(f"{serving}/healthz", timeout=5.0).json()
    if (health.get("rollout") or {}).get("status") in ("progressing", "paused"):
        _fail("a rollout is in flight: the benchmark measures champion-only serving first")
    marker = retrain_marker(settings.monitoring_addr)
    if marker and marker[0]:
        _fail("a retraining run is in flight (monitoring): it takes a core; run when it ends")
    serving_pids = listening_pids(port_of(settings.serving_addr))
    if not serving_pids:
        _fail(f"no local process listens on {settings.serving_addr}: the CPU cannot be measured")

    console.print(f"champion v{version}; preparing {messages_limit} future mails with Feast values")
    messages, _ = _prepare_messages(settings, version, messages_limit)
    out_dir = messages.parent
    mlflow_proc: subprocess.Popen[bytes] | None = None
    mlflow_host = ""
    if mlflow:
        console.print(f"starting mlflow models serve ({mlflow_workers} worker(s)) ...")
        mlflow_proc, mlflow_port, mlflow_log = _start_mlflow(settings, mlflow_workers)
        mlflow_host = f"http://127.0.0.1:{mlflow_port}"
    results: list[RunResult] = []
    offered = [float(r) for r in rates.split(",") if r.strip()]
    load_before = os.getloadavg()[0]
    try:
        if mlflow_proc is not None and not _wait_http(f"{mlflow_host}/ping", 180.0, mlflow_proc):
            _fail(f"mlflow models serve did not start; its log: {mlflow_log}")
        plan: list[tuple[str, str, int, float | None]] = []
        targets = ("mlflow", "full") if mlflow else ("full",)
        # the closed-loop pair alternates, so a noisy minute on the shared cores hits both
        for k in range(1, repeats + 1):
            plan += [(t, _closed_profile(users, k, repeats), users, None) for t in targets]
        for target in targets:
            plan += [(target, f"open-{int(r)}", _users_for(r), r) for r in offered]
        if shed_users:
            plan.append(("full", f"closed-{shed_users}", shed_users, None))
        hosts = {"mlflow": mlflow_host, "full": serving}
        pids = {"mlflow": [mlflow_proc.pid] if mlflow_proc else [], "full": serving_pids}
        for i, (target, profile, n_users, rate) in enumerate(plan, 1):
            console.print(f"[{i}/{len(plan)}] {target} {profile} ({duration} s)")
            before = retrain_marker(settings.monitoring_addr)
            run = _run(
                target,
                profile,
                hosts[target],
                pids[target],
                n_users,
                rate,
                duration,
                messages,
                out_dir,
            )
            after = retrain_marker(settings.monitoring_addr)
            # thousands of future mails are drift: monitoring may retrain mid-benchmark
            run.retrain_overlap = bool(
                before and after and (before[0] or after[0] or after[1] != before[1])
            )
            results.append(run)
            console.print(f"      {run}")
            if run.retrain_overlap:
                console.print(
                    "      [red]a retraining run shared the CPU during this run: "
                    "its numbers are not comparable[/red]"
                )
    finally:
        if mlflow_proc is not None:
            mlflow_proc.terminate()
            try:
                mlflow_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                mlflow_proc.kill()
    rollout_error = ""
    if rollout:
        try:
            results.append(_rollout_run(settings, version, serving, serving_pids, users,
                                        duration, messages, out_dir, console))  # fmt: skip
        except Exception as exc:  # the champion-only numbers are still worth writing
            rollout_error = f"rollout run failed: {type(exc).__name__}: {exc}"
            console.print(f"[red]{rollout_error}[/red]")
    by = {(r.target, r.profile): r for r in results}
    table = Table(title=f"serving vs mlflow models serve, champion v{version}, {duration} s runs")
    columns = [
        "target",
        "profile",
        "offered/s",
        "req/s",
        "ok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "failures",
        "503s",
        "server CPU ms/req",
        "ok/s full / mlflow",
    ]
    rows: list[list[Any]] = []
    for r in results:
        ratio = _ratio(by.get(("full", r.profile)), by.get(("mlflow", r.profile)))
        rows.append(
            [
                r.target,
                r.profile + (" (retraining ran)" if r.retrain_overlap else ""),
                r.offered_rps or "",
                r.rps,
                r.ok_rps,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.failures,
                r.status_503,
                r.cpu_ms_per_request,
                ratio if r.target == "full" and ratio is not None else "",
            ]
        )
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    console.print(table)

    closed = [_closed_profile(users, k, repeats) for k in range(1, repeats + 1)]
    full_closed = [by[("full", c)] for c in closed if ("full", c) in by]
    pair_ratios = [
        ratio
        for c in closed
        if (ratio := _ratio(by.get(("full", c)), by.get(("mlflow", c)))) is not None
    ]
    champion_cpu = _median([r.cpu_ms_per_request for r in full_closed])
    cpu_rollout = by.get(("full", f"rollout-closed-{users}"))
    summary = {
        # medians over the alternating closed-loop pairs
        "ratio_closed_loop": _median(pair_ratios),
        "full_closed_ok_rps": _median([r.ok_rps for r in full_closed]),
        "full_closed_p99_ms": _median([r.p99_ms for r in full_closed]),
        "full_closed_cpu_ms": champion_cpu,
        "rollout_cpu_ratio": (
            round(cpu_rollout.cpu_ms_per_request / champion_cpu, 2)
            if cpu_rollout and champion_cpu and cpu_rollout.cpu_ms_per_request
            else None
        ),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "serving_workers": worker_count(serving_pids),
        "mlflow_workers": mlflow_workers,
        "rollout_error": rollout_error or None,
    }
    console.print(summary)
    folder = results_dir(settings.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    _plot(results, png)
    docs_img = PROJECT_ROOT / "docs" / "img"
    docs_img.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, docs_img / png.name)
    command = "python -m loadtests.bench.serving " + " ".join(sys.argv[1:])
    result = Result(
        name=name,
        title="Serving vs mlflow models serve (same champion version)",
        command=command.strip(),
        tables=[ResultTable(table.title or "", columns, rows)],
        notes=[
            "closed-N: N locust users, think time 0-50 ms (the make loadtest profile); "
            "open-R: R req/s offered with constant_throughput, 10 req/s per user",
            "server CPU: user+system seconds of the server's process tree (psutil) / requests",
            "the machine is shared: compare the two targets within this run, as ratios",
        ],
        data={
            "runs": [asdict(r) for r in results],
            "summary": summary,
            "champion_version": version,
        },
        provenance=provenance(command.strip()),
    )
    path = write_result(result, settings.run_dir)
    console.print(f"wrote {path} and {png} (copied to docs/img/)")


if __name__ == "__main__":
    typer.run(main)
