"""Both canary metric sources on a real /metrics endpoint: scraping it directly, and a real
Prometheus (Debian's package) scraping it every second and answering PromQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from modstack.waits import free_port, wait_until
from services.canary.analysis import AnalysisThresholds, analyze, windows_from_samples
from services.canary.sources import MetricsUnavailable, PrometheusSource, ScrapeSource
from services.serving.metrics import LATENCY_BUCKETS, SCORE_BUCKETS
from tests.support.prometheus import running_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]

SCRAPE_INTERVAL_S = 1


@dataclass
class ServingLikeMetrics:
    """The serving metric names and buckets (the contract), on their own registry and port."""

    url: str
    requests: Counter
    latency: Histogram
    score: Histogram
    actions: Counter

    def serve(
        self, variant: str, n: int, *, errors: int = 0, latency_s: float, score: float, action: str
    ) -> None:
        """Record `n` answered requests (the first `errors` of them failed)."""
        for i in range(n):
            self.requests.labels("spam", variant, "error" if i < errors else "ok").inc()
            self.latency.labels("spam", variant).observe(latency_s)
            if i >= errors:
                self.score.labels("spam", variant).observe(score)
                self.actions.labels("spam", variant, action).inc()
            # another policy's series on the same replica: never counted for spam
            self.requests.labels("abuse", variant, "ok").inc()


@pytest.fixture(scope="module")
def serving_metrics() -> Iterator[ServingLikeMetrics]:
    registry = CollectorRegistry()
    metrics = ServingLikeMetrics(
        url="",
        requests=Counter(
            "serving_requests", "r", ["policy", "variant", "outcome"], registry=registry
        ),
        latency=Histogram(
            "serving_request_duration_seconds",
            "l",
            ["policy", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        score=Histogram(
            "serving_score", "s", ["policy", "variant"], buckets=SCORE_BUCKETS, registry=registry
        ),
        actions=Counter("serving_actions", "a", ["policy", "variant", "action"], registry=registry),
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    metrics.url = f"http://127.0.0.1:{port}/metrics"
    # traffic before any window: must not be counted
    metrics.serve("champion", 500, errors=5, latency_s=0.004, score=0.1, action="allow")
    yield metrics
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def prometheus_url(serving_metrics: ServingLikeMetrics, tmp_path_factory) -> Iterator[str]:
    target = serving_metrics.url.removeprefix("http://").removesuffix("/metrics")
    config = (
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL_S}s\n"
        "scrape_configs:\n"
        "  - job_name: serving\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), config) as url:
        yield url


def _targets_scraped(url: str, after: float) -> bool:
    import httpx

    targets = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
    return bool(targets) and all(
        t["health"] == "up" and t["lastScrape"] and _ts(t["lastScrape"]) > after for t in targets
    )


def _ts(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_scrape_source_counts_only_what_happened_in_the_window(serving_metrics):
    source = ScrapeSource([serving_metrics.url])
    source.begin_window()
    serving_metrics.serve("champion", 300, errors=3, latency_s=0.004, score=0.1, action="allow")
    source.collect()  # an intermediate scrape: growth adds up across scrapes
    serving_metrics.serve("challenger", 40, errors=4, latency_s=0.3, score=0.45, action="block")
    windows = windows_from_samples(source.collect())
    assert windows["champion"].requests == 300 and windows["champion"].errors == 3
    assert windows["challenger"].requests == 40 and windows["challenger"].errors == 4
    assert windows["challenger"].block_rate == 1.0
    result = analyze(windows, AnalysisThresholds(min_requests=30))
    # health guardrails decide; the shift against the champion is reported ("over"), not decisive
    assert {c.name for c in result.failed} == {"error_rate", "latency_p99"}
    over = {c.name for c in result.checks if c.verdict == "over"}
    assert {"score_psi", "block_rate"} <= over
    source.close()


def test_scrape_source_names_the_replica_it_cannot_reach():
    source = ScrapeSource([f"http://127.0.0.1:{free_port()}/metrics"], timeout_s=0.5)
    source.begin_window()
    with pytest.raises(MetricsUnavailable, match="no serving replica answered on http://127"):
        source.collect()


def test_prometheus_source_reports_the_window_increase(serving_metrics, prometheus_url):
    # A baseline Prometheus has seen, then the window's traffic spread over a few scrapes.
    started = time.time()
    wait_until(lambda: _targets_scraped(prometheus_url, started), 45, "first scrape")
    source = PrometheusSource(prometheus_url, min_window_s=3)
    source.begin_window()
    for _ in range(3):
        serving_metrics.serve("champion", 100, errors=2, latency_s=0.004, score=0.1, action="allow")
        serving_metrics.serve(
            "challenger", 20, errors=4, latency_s=0.004, score=0.1, action="block"
        )
        time.sleep(SCRAPE_INTERVAL_S)
    served = time.time()
    wait_until(lambda: _targets_scraped(prometheus_url, served), 15, "a scrape after")
    windows = windows_from_samples(source.collect())
    champion, challenger = windows["champion"], windows["challenger"]
    # `increase()` extrapolates to the range edges: counts are near, ratios exact-ish.
    assert champion.requests == pytest.approx(300, rel=0.35)
    assert challenger.requests == pytest.approx(60, rel=0.35)
    assert champion.error_rate == pytest.approx(0.02, abs=0.005)
    assert challenger.error_rate == pytest.approx(0.20, abs=0.01)
    assert challenger.block_rate == pytest.approx(1.0)
    assert champion.latency_p99 == pytest.approx(0.00495, abs=0.0005)
    result = analyze(windows, AnalysisThresholds(min_requests=30))
    assert {c.name for c in result.failed} == {"error_rate"}
    assert next(c for c in result.checks if c.name == "block_rate").verdict == "over"
    assert next(c for c in result.checks if c.name == "score_psi").value == pytest.approx(
        0, abs=1e-6
    )
    source.close()


def test_prometheus_source_names_an_unreachable_prometheus():
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(MetricsUnavailable, match="unreachable"):
        source.collect()
