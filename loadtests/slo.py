"""Read locust's `--csv PREFIX` output, print the numbers, and check the serving SLO.

`python -m loadtests.slo var/loadtest/run` prints requests/s, p50/p95/p99 and failures per
request type, then whether the SLO in the serving settings held for the `moderate` requests
(SERVING_SLO_P99_MS) and for all requests (SERVING_SLO_MAX_FAILURE_RATIO).
Exit code 0 when it held, 1 when not, 2 when the CSV is missing or empty.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modstack.results import Result, ResultTable, write_result
from services.serving.settings import ServingSettings

MODERATE = "moderate"
AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class Row:
    """One line of `<prefix>_stats.csv`."""

    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class SloResult:
    """The verdict and why."""

    held: bool
    reasons: list[str]


def read_stats(prefix: Path) -> dict[str, Row]:
    """Rows of `<prefix>_stats.csv` by request name (`Aggregated` for the total)."""
    path = Path(f"{prefix}_stats.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        r["Name"]: Row(
            name=r["Name"],
            requests=int(r["Request Count"]),
            failures=int(r["Failure Count"]),
            rps=float(r["Requests/s"]),
            p50_ms=float(r["50%"]),
            p95_ms=float(r["95%"]),
            p99_ms=float(r["99%"]),
            max_ms=float(r["100%"]),
        )
        for r in rows
    }


def check_slo(stats: dict[str, Row], settings: ServingSettings) -> SloResult:
    """Compare the moderate latency and the overall failure ratio with the SLO."""
    reasons: list[str] = []
    moderate = stats.get(MODERATE)
    total = stats.get(AGGREGATED)
    if moderate is None or moderate.requests == 0 or total is None:
        return SloResult(False, ["no `moderate` requests in the run"])
    if moderate.p99_ms > settings.serving_slo_p99_ms:
        reasons.append(f"p99 {moderate.p99_ms:g} ms > {settings.serving_slo_p99_ms:g} ms")
    if total.failure_ratio > settings.serving_slo_max_failure_ratio:
        reasons.append(
            f"failures {total.failures}/{total.requests} ({total.failure_ratio:.3%}) > "
            f"{settings.serving_slo_max_failure_ratio:.3%}"
        )
    return SloResult(not reasons, reasons)


def render(stats: dict[str, Row], result: SloResult, settings: ServingSettings) -> None:
    """Print the table and the verdict."""
    console = Console()
    table = Table(title="load test (locust)")
    for column in ("request", "count", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms", "max"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for r in _in_order(stats):
        table.add_row(
            r.name,
            str(r.requests),
            str(r.failures),
            f"{r.rps:.1f}",
            f"{r.p50_ms:g}",
            f"{r.p95_ms:g}",
            f"{r.p99_ms:g}",
            f"{r.max_ms:g}",
        )
    console.print(table)
    console.print(f"[{'green' if result.held else 'red'}]SLO: {verdict(result, settings)}")


def _in_order(stats: dict[str, Row]) -> list[Row]:
    """The rows by request name, the aggregate last."""
    return [stats[name] for name in sorted(stats, key=lambda n: (n == AGGREGATED, n))]


def verdict(result: SloResult, settings: ServingSettings) -> str:
    """The SLO and whether it held, with the reasons when not."""
    slo = (
        f"moderate p99 <= {settings.serving_slo_p99_ms:g} ms, "
        f"failures <= {settings.serving_slo_max_failure_ratio:.3%}"
    )
    return f"{slo}: held" if result.held else f"{slo}: NOT held ({'; '.join(result.reasons)})"


def main(
    prefix: Annotated[Path, typer.Argument(help="the --csv prefix given to locust")],
) -> None:
    """Print the load-test numbers and exit non-zero when the SLO did not hold."""
    settings = ServingSettings()
    try:
        stats = read_stats(prefix)
    except FileNotFoundError:
        print(f"no locust stats at {prefix}_stats.csv: did the load test run?", file=sys.stderr)
        raise typer.Exit(2) from None
    if not stats:
        print(f"{prefix}_stats.csv has no rows", file=sys.stderr)
        raise typer.Exit(2)
    result = check_slo(stats, settings)
    render(stats, result, settings)
    cpu_file = Path(f"{prefix}_serving_cpu.json")
    cpu: dict[str, Any] = {}
    if cpu_file.exists():
        cpu = json.loads(cpu_file.read_text())
        print(
            f"serving process CPU: {cpu['cpu_ms_per_request']:.1f} ms per request "
            f"({cpu['serving_cpu_seconds']:.1f} s for {cpu['requests']} requests)"
        )
    path = write_result(loadtest_result(stats, result, settings, cpu), settings.run_dir)
    print(f"wrote {path}")
    raise typer.Exit(0 if result.held else 1)


def loadtest_result(
    stats: dict[str, Row], result: SloResult, settings: ServingSettings, cpu: dict[str, Any]
) -> Result:
    """The run as a results file (`make report` renders it into docs/benchmarks.md)."""
    rows = [
        [r.name, r.requests, r.failures, round(r.rps, 1), r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms]
        for r in _in_order(stats)
    ]
    notes = [f"SLO: {verdict(result, settings)}"]
    if cpu:
        notes.append(f"serving CPU: {cpu['cpu_ms_per_request']:.1f} ms per request")
    return Result(
        name="loadtest",
        title="make loadtest (locust against the running stack)",
        command="make loadtest",
        tables=[
            ResultTable(
                "make loadtest: locust against the running stack",
                ["request", "count", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
                rows,
            )
        ],
        notes=notes,
        data={"slo_held": result.held, "reasons": result.reasons, "serving_cpu": cpu},
    )


if __name__ == "__main__":
    typer.run(main)
