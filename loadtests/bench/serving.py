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

The pieces: serving_checks (preflight, the prepared mails), serving_runs (the plan, one
measured locust run), serving_users (the locustfile), serving_rollout (the rollout run),
serving_report (table, summary, plot, results file), serving_cpu (psutil).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loadtests.bench.serving_checks import (
    champion_version,
    check_serving,
    fail,
    prepare_messages,
    retrain_marker,
    retrain_overlapped,
)
from loadtests.bench.serving_cpu import worker_count
from loadtests.bench.serving_report import (
    RESULT_NAME,
    Context,
    summarize,
    table_rows,
    write_plot,
    write_results,
)
from loadtests.bench.serving_rollout import rollout_run
from loadtests.bench.serving_runs import (
    LocustSetup,
    PlannedRun,
    RunResult,
    Target,
    measure,
    plan_runs,
)
from modstack.processes import BackgroundProcess, http_ok
from modstack.waits import free_port

if TYPE_CHECKING:
    from rich.console import Console

    from services.serving.settings import ServingSettings

MLFLOW_START_TIMEOUT_S = 180.0
MLFLOW_STOP_TIMEOUT_S = 15.0


def mlflow_serve(settings: ServingSettings, workers: int) -> tuple[BackgroundProcess, str]:
    """`mlflow models serve` of the champion on a free port, logging to a temporary folder
    (not started yet), and its address."""
    port = free_port()
    host = f"http://127.0.0.1:{port}"
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
    server = BackgroundProcess(
        "mlflow models serve",
        argv,
        Path(tempfile.mkdtemp(prefix="bench-mlflow-")) / "mlflow-serve.log",
        ready=lambda: http_ok(f"{host}/ping", timeout_s=2.0),
        timeout_s=MLFLOW_START_TIMEOUT_S,
        # child_env puts the venv's bin first on PATH: MLflow execs `uvicorn` by name
        env={"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri},
    )
    return server, host


@contextmanager
def targets(
    settings: ServingSettings, serving: Target, mlflow_workers: int | None, console: Console
) -> Iterator[dict[str, Target]]:
    """The servers under test by name: the full path, and `mlflow models serve` (started
    here, stopped on exit) unless `mlflow_workers` is None."""
    if mlflow_workers is None:
        yield {"full": serving}
        return
    console.print(f"starting mlflow models serve ({mlflow_workers} worker(s)) ...")
    server, host = mlflow_serve(settings, mlflow_workers)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        fail(f"mlflow models serve did not start; its log: {server.log_path}\n{exc}")
    assert server.proc is not None  # started
    mlflow = Target(host, [server.proc.pid])
    try:
        yield {"mlflow": mlflow, "full": serving}
    finally:
        server.stop(timeout_s=MLFLOW_STOP_TIMEOUT_S)


def observed_run(
    run: PlannedRun, target: Target, setup: LocustSetup, monitoring_addr: str, console: Console
) -> RunResult:
    """One measured run, flagged when a retraining run shared the CPU: thousands of future
    mails are drift, so monitoring may retrain mid-benchmark."""
    before = retrain_marker(monitoring_addr)
    result = measure(run, target, setup)
    result.retrain_overlap = retrain_overlapped(before, retrain_marker(monitoring_addr))
    console.print(f"      {result}")
    if result.retrain_overlap:
        console.print(
            "      [red]a retraining run shared the CPU during this run: "
            "its numbers are not comparable[/red]"
        )
    return result


def run_plan(
    plan: Sequence[PlannedRun],
    servers: dict[str, Target],
    setup: LocustSetup,
    monitoring_addr: str,
    console: Console,
) -> list[RunResult]:
    results = []
    for i, run in enumerate(plan, 1):
        console.print(f"[{i}/{len(plan)}] {run.target} {run.profile} ({setup.duration_s} s)")
        results.append(observed_run(run, servers[run.target], setup, monitoring_addr, console))
    return results


def print_table(console: Console, title: str, rows: list[list[object]]) -> None:
    from rich.table import Table

    from loadtests.bench.serving_report import COLUMNS

    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    console.print(table)


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
    from rich.console import Console

    from services.serving.settings import ServingSettings

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    console = Console()
    settings = ServingSettings()
    serving_addr = settings.serving_addr.rstrip("/")
    version = champion_version(settings)
    pids, champions = check_serving(settings, serving_addr, version)
    serving = Target(serving_addr, pids)
    scored = ", ".join(f"{policy} v{v}" for policy, v in champions.items())
    console.print(f"serving scores every request with: {scored}")
    console.print(f"champion v{version}; preparing {messages_limit} future mails with Feast values")
    messages = prepare_messages(settings, version, messages_limit)
    setup = LocustSetup(messages, messages.parent, duration)
    offered = [float(r) for r in rates.split(",") if r.strip()]
    plan = plan_runs(
        ("mlflow", "full") if mlflow else ("full",), users, repeats, offered, shed_users
    )
    load_before = os.getloadavg()[0]
    with targets(settings, serving, mlflow_workers if mlflow else None, console) as servers:
        results = run_plan(plan, servers, setup, settings.monitoring_addr, console)
    rollout_error = ""
    if rollout:
        # the champion-only numbers are still worth writing when the rollout run fails
        try:
            results.append(rollout_run(settings, version, serving, users, setup, console))
        except Exception as exc:
            rollout_error = f"rollout run failed: {type(exc).__name__}: {exc}"
            console.print(f"[red]{rollout_error}[/red]")

    title = f"serving ({scored}) vs mlflow models serve (spam v{version} alone), {duration} s runs"
    rows = table_rows(results)
    print_table(console, title, rows)
    context = Context(
        users=users,
        repeats=repeats,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        serving_workers=worker_count(serving.pids),
        mlflow_workers=mlflow_workers,
        rollout_error=rollout_error,
    )
    summary = summarize(results, context)
    console.print(summary)
    png = write_plot(results, settings.run_dir, name)
    command = ("python -m loadtests.bench.serving " + " ".join(sys.argv[1:])).strip()
    summary["policies_scored"] = champions
    path = write_results(name, command, (title, rows), results, summary, version, settings.run_dir)
    console.print(f"wrote {path} and {png} (copied to docs/img/)")


if __name__ == "__main__":
    typer.run(main)
