"""The SLO check reads the CSV that locust itself writes and judges latency and failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.slo import check_slo, read_stats
from services.serving.settings import ServingSettings

# Locust monkey-patches the standard library with gevent on import, which breaks other tests in
# the same process (ssl recursion): the CSV files are written by locust in a child process.
_WRITE_CSV = """
import csv, json, sys
from pathlib import Path
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

for prefix, spec in json.loads(sys.argv[1]).items():
    env = Environment()
    for ms in spec["moderate_ms"]:
        env.stats.log_request("POST", "moderate", ms, 200)
    for _ in range(spec["failures"]):
        env.stats.log_error("POST", "moderate", "HTTP 500")
    for ms in (5, 6):
        env.stats.log_request("POST", "bad payload", ms, 100)
    with Path(f"{prefix}_stats.csv").open("w", newline="") as handle:
        StatsCSV(env, PERCENTILES_TO_REPORT).requests_csv(csv.writer(handle))
"""

SCENARIOS = {
    "percentiles": {"moderate_ms": [10] * 980 + [150] * 15 + [300] * 5, "failures": 0},
    "fast": {"moderate_ms": [20] * 200, "failures": 0},
    "slow_tail": {"moderate_ms": [20] * 95 + [400] * 5, "failures": 0},
    "one_failure": {"moderate_ms": [20] * 100, "failures": 1},
    "no_moderate": {"moderate_ms": [], "failures": 0},
}


@pytest.fixture(scope="module")
def csv_prefixes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scenario name -> the `--csv` prefix of a stats file locust wrote for it."""
    folder = tmp_path_factory.mktemp("locust-csv")
    prefixes = {name: folder / name for name in SCENARIOS}
    spec = {str(prefixes[name]): scenario for name, scenario in SCENARIOS.items()}
    subprocess.run([sys.executable, "-c", _WRITE_CSV, json.dumps(spec)], check=True, timeout=60)
    return prefixes


def _settings(**overrides: float) -> ServingSettings:
    base = {"serving_slo_p99_ms": 200.0}
    return ServingSettings(**(base | overrides))


def test_stats_are_read_per_request_name_with_percentiles(csv_prefixes: dict[str, Path]) -> None:
    stats = read_stats(csv_prefixes["percentiles"])
    moderate = stats["moderate"]
    assert moderate.requests == 1000
    assert moderate.p50_ms == 10
    assert moderate.p99_ms == 150
    assert moderate.max_ms == 300
    assert stats["Aggregated"].requests == 1002


def test_slo_holds_when_latency_and_failures_are_within_bounds(
    csv_prefixes: dict[str, Path],
) -> None:
    result = check_slo(read_stats(csv_prefixes["fast"]), _settings())
    assert result.held, result.reasons


def test_slo_fails_on_p99_and_names_the_numbers(csv_prefixes: dict[str, Path]) -> None:
    result = check_slo(read_stats(csv_prefixes["slow_tail"]), _settings())
    assert not result.held
    assert any("p99 400 ms > 200 ms" in reason for reason in result.reasons)


def test_slo_fails_on_any_failure_when_none_is_allowed(csv_prefixes: dict[str, Path]) -> None:
    result = check_slo(read_stats(csv_prefixes["one_failure"]), _settings())
    assert not result.held
    assert any("failures 1/" in reason for reason in result.reasons)


def test_slo_fails_without_moderate_requests(csv_prefixes: dict[str, Path]) -> None:
    result = check_slo(read_stats(csv_prefixes["no_moderate"]), _settings())
    assert not result.held
