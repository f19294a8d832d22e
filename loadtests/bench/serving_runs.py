"""One measured locust run of `python -m loadtests.bench.serving`: the run plan, the headless
locust process on the User classes of loadtests/bench/serving_users.py, and the RunResult read
back from locust's CSV files plus the server's CPU over the run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench.serving_cpu import process_tree_cpu

# How the runner configures the users of serving_users.py (read inside the locust process).
MESSAGES_ENV = "BENCH_MESSAGES"
RATE_ENV = "BENCH_RATE_PER_USER"

# The locustfile; locust imports it by path, so it is named, not imported, here (importing
# locust monkey-patches the standard library with gevent).
USERS_FILE = Path(__file__).resolve().with_name("serving_users.py")
USER_CLASSES = {"mlflow": "MlflowUser", "full": "FullPathUser"}

# Offered req/s per open-loop user. A user blocks on its answer only when latency exceeds
# 1/RATE (100 ms, the SLO), so below the SLO the offered rate is kept; above it the table's
# req/s falls short of offered/s, which shows it. Not fewer req/s per user (more users): on
# this 2-core machine locust's own latency grows with its user count (same server, 200 req/s
# offered: 20 users p50 21 ms, 50 users 36 ms, 100 users 57 ms; an aiohttp open-loop client
# on 100 connections measured p50 19 ms, p99 69 ms), which would be measured as serving's.
OPEN_LOOP_RATE_PER_USER = 10.0


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


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: which server, under which load."""

    target: str  # "mlflow" or "full"
    profile: str
    users: int
    offered_rps: float | None  # None for closed loop

    @property
    def rate_per_user(self) -> float:
        return (self.offered_rps / self.users) if self.offered_rps else 0.0


@dataclass(frozen=True)
class Target:
    """A server under test: where to send requests, which processes' CPU to count."""

    host: str
    pids: list[int]


@dataclass(frozen=True)
class LocustSetup:
    """What every locust run of one benchmark shares."""

    messages: Path  # the prepared mails (JSON)
    out_dir: Path  # locust's CSV files go here
    duration_s: int


def users_for(rate: float) -> int:
    """Open-loop users offering `rate` req/s at OPEN_LOOP_RATE_PER_USER each (at least 5)."""
    return max(5, round(rate / OPEN_LOOP_RATE_PER_USER))


def closed_profile(users: int, k: int, repeats: int) -> str:
    return f"closed-{users}" + (f" run {k}/{repeats}" if repeats > 1 else "")


def plan_runs(
    targets: Sequence[str], users: int, repeats: int, offered: Sequence[float], shed_users: int
) -> list[PlannedRun]:
    """The closed-loop pairs (alternating, so a noisy minute on the shared cores hits both
    targets), then each target's open-loop rates, then the full path's shedding run."""
    plan: list[PlannedRun] = []
    for k in range(1, repeats + 1):
        plan += [PlannedRun(t, closed_profile(users, k, repeats), users, None) for t in targets]
    for target in targets:
        plan += [PlannedRun(target, f"open-{int(r)}", users_for(r), r) for r in offered]
    if shed_users:
        plan.append(PlannedRun("full", f"closed-{shed_users}", shed_users, None))
    return plan


def _locust_argv(run: PlannedRun, host: str, setup: LocustSetup, prefix: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(USERS_FILE),
        USER_CLASSES[run.target],
        "--headless",
        "--only-summary",
        "-u",
        str(run.users),
        "-r",
        str(run.users),
        "-t",
        f"{setup.duration_s}s",
        "--stop-timeout",
        "3",
        "--exit-code-on-error",
        "0",
        "--host",
        host,
        "--csv",
        str(prefix),
    ]


def count_503(failures_csv: Path) -> int:
    """Occurrences of 503 answers in locust's failures CSV (0 when there is none)."""
    if not failures_csv.exists():
        return 0
    with failures_csv.open() as handle:
        return sum(
            int(row.get("Occurrences", 0))
            for row in csv.DictReader(handle)
            if "503" in row.get("Error", "")
        )


def run_locust(run: PlannedRun, host: str, setup: LocustSetup) -> tuple[dict[str, str], int]:
    """One headless locust run; returns the Aggregated stats row and the count of 503s."""
    prefix = setup.out_dir / f"{run.target}-{run.profile}"
    env = {**os.environ, MESSAGES_ENV: str(setup.messages), RATE_ENV: str(run.rate_per_user)}
    subprocess.run(
        _locust_argv(run, host, setup, prefix),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=setup.duration_s + 60,
    )
    with Path(f"{prefix}_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    return rows["Aggregated"], count_503(Path(f"{prefix}_failures.csv"))


def run_result(run: PlannedRun, row: dict[str, str], status_503: int, cpu_s: float) -> RunResult:
    """The RunResult of locust's Aggregated row and the server CPU seconds over the run."""
    requests = int(row["Request Count"])
    failures = int(row["Failure Count"])
    rps = float(row["Requests/s"])
    return RunResult(
        target=run.target,
        profile=run.profile,
        users=run.users,
        offered_rps=run.offered_rps,
        requests=requests,
        failures=failures,
        rps=round(rps, 1),
        ok_rps=round(rps * (1 - failures / max(requests, 1)), 1),
        p50_ms=float(row["50%"]),
        p95_ms=float(row["95%"]),
        p99_ms=float(row["99%"]),
        status_503=status_503,
        cpu_ms_per_request=round(1000 * cpu_s / requests, 2) if requests else None,
    )


def measure(run: PlannedRun, target: Target, setup: LocustSetup) -> RunResult:
    """Run locust against `target` and measure its server CPU over the run."""
    cpu_before = process_tree_cpu(target.pids)
    row, status_503 = run_locust(run, target.host, setup)
    cpu = process_tree_cpu(target.pids) - cpu_before
    return run_result(run, row, status_503, cpu)
