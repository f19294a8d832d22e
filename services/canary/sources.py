"""Where the canary's numbers come from: Prometheus (PromQL) or the serving replicas' /metrics.

Both sources answer the same question — how much did each serving series grow since the step's
window began — as flat `Samples` (`promql.py`) that `analysis.windows_from_samples` groups by
variant.

- `PrometheusSource`: `increase(...[window])` per series, when PROMETHEUS_URL is set.
- `ScrapeSource`: scrapes every replica's /metrics at each interval and adds up the growth
  between consecutive snapshots per replica and series (a counter that went down means the
  replica restarted: its new value is the growth, as PromQL's `increase` assumes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modstack.policy import DEFAULT_POLICY
from services.canary.promql import (
    COMPARED_SAMPLES,
    WINDOW,
    Samples,
    increase_queries,
    series_key,
)

log = logging.getLogger(__name__)


class MetricsUnavailable(RuntimeError):
    """No numbers for this window (the message names the address that failed)."""


class MetricsSource(Protocol):
    """A source of window increases of the serving metrics."""

    def begin_window(self) -> None:
        """Start a new window now (a new step, or a retry of the same step)."""

    def collect(self) -> Samples:
        """Growth of every compared series since `begin_window`."""


def parse_samples(
    text: str, policy: str = DEFAULT_POLICY, names: Iterable[str] = COMPARED_SAMPLES
) -> Samples:
    """Flatten Prometheus text exposition into {series key: value} for the given sample names
    of one policy (the `policy` label is dropped from the keys: one controller, one policy)."""
    wanted = frozenset(names)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted and sample.labels.get("policy") == policy:
                labels = {k: v for k, v in sample.labels.items() if k != "policy"}
                samples[series_key(sample.name, labels)] = float(sample.value)
    return samples


def growth(previous: Mapping, current: Mapping) -> Samples:
    """Per-series growth from one snapshot of a replica to the next.

    A series new in `current` grew from 0 (prometheus_client creates a labelled child on its
    first use); a series that went down was reset by a restart, so its whole value is growth.
    """
    result: Samples = {}
    for key, value in current.items():
        before = previous.get(key, 0.0)
        result[key] = value - before if value >= before else value
    return result


class ScrapeSource:
    """Scrapes the serving replicas' /metrics itself (no Prometheus needed).

    Args:
        urls: the /metrics URL of every serving replica.
        timeout_s: per-scrape HTTP timeout.
    """

    def __init__(
        self, urls: Sequence[str], timeout_s: float = 3.0, policy: str = DEFAULT_POLICY
    ) -> None:
        if not urls:
            raise ValueError("ScrapeSource needs at least one /metrics URL")
        self.urls = list(urls)
        self.policy = policy
        self._http = httpx.Client(timeout=timeout_s)
        self._last: dict[str, Samples] = {}
        self._window: Samples = {}

    def _scrape(self, url: str) -> Samples | None:
        try:
            response = self._http.get(url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("scrape of %s failed: %s", url, exc)
            return None
        return parse_samples(response.text, self.policy)

    def begin_window(self) -> None:
        self._window = {}
        self._last = {}
        for url in self.urls:
            snapshot = self._scrape(url)
            if snapshot is not None:
                self._last[url] = snapshot

    def collect(self) -> Samples:
        reached = 0
        for url in self.urls:
            snapshot = self._scrape(url)
            if snapshot is None:
                continue
            reached += 1
            if url not in self._last:
                # First contact inside the window: its counts so far predate what we can
                # attribute to the window, so it only sets the baseline.
                self._last[url] = snapshot
                continue
            for key, value in growth(self._last[url], snapshot).items():
                self._window[key] = self._window.get(key, 0.0) + value
            self._last[url] = snapshot
        if reached == 0:
            raise MetricsUnavailable(f"no serving replica answered on {', '.join(self.urls)}")
        return dict(self._window)

    def close(self) -> None:
        self._http.close()


class PrometheusSource:
    """Asks Prometheus (HTTP API, instant queries) for each series' increase over the window.

    Args:
        url: Prometheus base URL, e.g. http://127.0.0.1:9090.
        min_window_s: shortest range queried; `increase` needs two scrapes inside the range,
            so this should be at least twice the scrape interval.
    """

    def __init__(
        self,
        url: str,
        min_window_s: float = 10.0,
        timeout_s: float = 5.0,
        policy: str = DEFAULT_POLICY,
    ) -> None:
        self.url = url.rstrip("/")
        self.queries = increase_queries(policy)
        self.min_window_s = min_window_s
        self._http = httpx.Client(timeout=timeout_s)
        self._start = time.time()

    def begin_window(self) -> None:
        self._start = time.time()

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """Run an instant query; the `result` list of a vector answer."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = self._http.get(f"{self.url}/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} unreachable: {exc}") from exc
        body = response.json() if response.content else {}
        if response.status_code != 200 or body.get("status") != "success":
            raise MetricsUnavailable(
                f"Prometheus at {self.url} refused {promql!r}: "
                f"{body.get('error', response.text[:200])}"
            )
        return body["data"]["result"]

    def collect(self) -> Samples:
        now = time.time()
        window_s = max(now - self._start, self.min_window_s)
        rng = f"{round(window_s)}s"
        samples: Samples = {}
        for name, template in self.queries.items():
            for item in self.query(template.replace(WINDOW, rng), at=now):
                value = float(item["value"][1])
                if value != value:  # NaN: a series without two samples in range
                    continue
                samples[series_key(name, item["metric"])] = value
        return samples

    def close(self) -> None:
        self._http.close()
