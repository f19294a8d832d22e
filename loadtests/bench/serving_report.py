"""The results of `python -m loadtests.bench.serving`: the table (rows also written to the
results file), the summary of the closed-loop pairs, the latency-vs-offered-load plot and
the results file itself."""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtests.bench.serving_runs import RunResult, closed_profile

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RESULT_NAME = "bench-serving"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

COLUMNS = [
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

NOTES = [
    "closed-N: N locust users, think time 0-50 ms (the make loadtest profile); "
    "open-R: R req/s offered with constant_throughput, 10 req/s per user",
    "server CPU: user+system seconds of the server's process tree (psutil) / requests",
    "the machine is shared: compare the two targets within this run, as ratios",
]

Runs = dict[tuple[str, str], RunResult]


def by_run(results: Sequence[RunResult]) -> Runs:
    """The results keyed by (target, profile)."""
    return {(r.target, r.profile): r for r in results}


def median(values: Sequence[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    return round(statistics.median(present), 2) if present else None


def ratio(full: RunResult | None, mlflow: RunResult | None) -> float | None:
    """Answered req/s of the full path over mlflow's in the same profile."""
    if full is None or mlflow is None or not mlflow.ok_rps:
        return None
    return round(full.ok_rps / mlflow.ok_rps, 1)


def _profile_ratio(by: Runs, profile: str) -> float | None:
    return ratio(by.get(("full", profile)), by.get(("mlflow", profile)))


def table_rows(results: Sequence[RunResult]) -> list[list[Any]]:
    """One row per run, in COLUMNS order; the full path's rows carry the ratio to mlflow."""
    by = by_run(results)
    rows: list[list[Any]] = []
    for r in results:
        profile_ratio = _profile_ratio(by, r.profile)
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
                profile_ratio if r.target == "full" and profile_ratio is not None else "",
            ]
        )
    return rows


@dataclass(frozen=True)
class Context:
    """What the summary reports besides the runs."""

    users: int  # closed-loop users
    repeats: int  # closed-loop pairs
    load_before: float  # 1-minute load average before the first run
    load_after: float
    serving_workers: int
    mlflow_workers: int
    rollout_error: str


def _cpu_ratio(rollout: RunResult | None, champion_cpu: float | None) -> float | None:
    """Server CPU per request during the rollout over the champion-only median."""
    if rollout and champion_cpu and rollout.cpu_ms_per_request:
        return round(rollout.cpu_ms_per_request / champion_cpu, 2)
    return None


def summarize(results: Sequence[RunResult], context: Context) -> dict[str, Any]:
    """Medians over the alternating closed-loop pairs, the rollout's CPU ratio, the machine."""
    by = by_run(results)
    closed = [
        closed_profile(context.users, k, context.repeats) for k in range(1, context.repeats + 1)
    ]
    full_closed = [by[("full", c)] for c in closed if ("full", c) in by]
    pair_ratios = [r for c in closed if (r := _profile_ratio(by, c)) is not None]
    champion_cpu = median([r.cpu_ms_per_request for r in full_closed])
    rollout = by.get(("full", f"rollout-closed-{context.users}"))
    return {
        # medians over the alternating closed-loop pairs
        "ratio_closed_loop": median(pair_ratios),
        "full_closed_ok_rps": median([r.ok_rps for r in full_closed]),
        "full_closed_p99_ms": median([r.p99_ms for r in full_closed]),
        "full_closed_cpu_ms": champion_cpu,
        "rollout_cpu_ratio": _cpu_ratio(rollout, champion_cpu),
        "load_average_1m_before": round(context.load_before, 2),
        "load_average_1m_after": round(context.load_after, 2),
        "serving_workers": context.serving_workers,
        "mlflow_workers": context.mlflow_workers,
        "rollout_error": context.rollout_error or None,
    }


PLOT_STYLES = {
    "full": ("tab:blue", "full path /v1/moderate"),
    "mlflow": ("tab:red", "mlflow models serve"),
}


def _open_loop_runs(results: Sequence[RunResult], target: str) -> list[RunResult]:
    return sorted(
        (r for r in results if r.target == target and r.profile.startswith("open-")),
        key=lambda r: r.offered_rps or 0,
    )


def _plot_target(ax: Axes, runs: list[RunResult], color: str, label: str) -> None:
    x = [r.offered_rps or 0 for r in runs]  # open-loop runs always have an offered rate
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


def plot(results: Sequence[RunResult], path: Path) -> None:
    """p99 and p50 latency against the offered open-loop load, per target, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for target, (color, label) in PLOT_STYLES.items():
        runs = _open_loop_runs(results, target)
        if runs:
            _plot_target(ax, runs, color, label)
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


def write_plot(results: Sequence[RunResult], run_dir: Path, name: str) -> Path:
    """The plot as var/run/results/<name>.png, copied to docs/img/; returns the first."""
    from modstack.results import results_dir

    folder = results_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    plot(results, png)
    docs_img = PROJECT_ROOT / "docs" / "img"
    docs_img.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, docs_img / png.name)
    return png


def write_results(
    name: str,
    command: str,
    table: tuple[str, list[list[Any]]],
    results: Sequence[RunResult],
    summary: dict[str, Any],
    version: str,
    run_dir: Path,
) -> Path:
    """var/run/results/<name>.json: the table (caption, rows), the runs and the summary."""
    from modstack.results import Result, ResultTable, provenance, write_result

    caption, rows = table
    result = Result(
        name=name,
        title="Serving vs mlflow models serve (same champion version)",
        command=command,
        tables=[ResultTable(caption, COLUMNS, rows)],
        notes=list(NOTES),
        data={
            "runs": [asdict(r) for r in results],
            "summary": summary,
            "champion_version": version,
        },
        provenance=provenance(command),
    )
    return write_result(result, run_dir)
