"""The SLO check reads the CSV that locust itself writes and judges latency and failures."""

from __future__ import annotations

import csv
from pathlib import Path

from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from loadtests.slo import check_slo, read_stats
from services.serving.settings import ServingSettings


def _locust_csv(tmp_path: Path, moderate_ms: list[int], failures: int = 0) -> Path:
    """Write `<prefix>_stats.csv` with locust's own writer from logged requests."""
    env = Environment()
    for ms in moderate_ms:
        env.stats.log_request("POST", "moderate", ms, 200)
    for _ in range(failures):
        env.stats.log_error("POST", "moderate", "HTTP 500")
    for ms in (5, 6):
        env.stats.log_request("POST", "bad payload", ms, 100)
    prefix = tmp_path / "run"
    with Path(f"{prefix}_stats.csv").open("w", newline="") as handle:
        StatsCSV(env, PERCENTILES_TO_REPORT).requests_csv(csv.writer(handle))
    return prefix


def _settings(**overrides: float) -> ServingSettings:
    base = {"serving_slo_p50_ms": 50.0, "serving_slo_p99_ms": 200.0}
    return ServingSettings(**(base | overrides))


def test_stats_are_read_per_request_name_with_percentiles(tmp_path: Path) -> None:
    stats = read_stats(_locust_csv(tmp_path, [10] * 980 + [150] * 15 + [300] * 5))
    moderate = stats["moderate"]
    assert moderate.requests == 1000
    assert moderate.p50_ms == 10
    assert moderate.p99_ms == 150
    assert moderate.max_ms == 300
    assert stats["Aggregated"].requests == 1002


def test_slo_holds_when_latency_and_failures_are_within_bounds(tmp_path: Path) -> None:
    result = check_slo(read_stats(_locust_csv(tmp_path, [20] * 200)), _settings())
    assert result.held, result.reasons


def test_slo_fails_on_p99_and_names_the_numbers(tmp_path: Path) -> None:
    result = check_slo(read_stats(_locust_csv(tmp_path, [20] * 95 + [400] * 5)), _settings())
    assert not result.held
    assert any("p99 400 ms > 200 ms" in reason for reason in result.reasons)


def test_slo_fails_on_any_failure_when_none_is_allowed(tmp_path: Path) -> None:
    result = check_slo(read_stats(_locust_csv(tmp_path, [20] * 100, failures=1)), _settings())
    assert not result.held
    assert any("failures 1/" in reason for reason in result.reasons)


def test_slo_fails_without_moderate_requests(tmp_path: Path) -> None:
    result = check_slo(read_stats(_locust_csv(tmp_path, [])), _settings())
    assert not result.held
