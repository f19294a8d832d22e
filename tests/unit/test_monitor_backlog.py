"""The monitor's drift reports do not pile up: while one window is evaluated, at most
MONITORING_MAX_PENDING_WINDOWS wait; older waiting ones are skipped and counted; every window
that waits is evaluated, oldest first."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from services.monitoring.drift.quality import RealizedQuality
from services.monitoring.drift.windows import ClosedWindow
from services.monitoring.metrics import MonitoringMetrics
from services.monitoring.monitor import Monitor
from services.monitoring.settings import MonitoringSettings


def _window(index: int) -> ClosedWindow:
    return ClosedWindow(index=index, rows=[], opened_at=0.0, closed_at=0.0, reason="rows")


def test_a_burst_of_windows_keeps_the_newest_and_counts_the_skipped(tmp_path: Any) -> None:
    settings = MonitoringSettings(data_dir=tmp_path, monitoring_max_pending_windows=3)
    monitor = Monitor(settings, MonitoringMetrics(), client=object())  # type: ignore[arg-type]
    release = threading.Event()
    evaluated: list[int] = []

    def evaluate(closed: ClosedWindow, quality: RealizedQuality) -> None:
        release.wait(10)
        evaluated.append(closed.index)

    monitor.evaluate = evaluate  # type: ignore[method-assign]
    for index in range(10):
        monitor._submit(_window(index))
        time.sleep(0.01)  # the first one starts evaluating and blocks
    release.set()
    deadline = time.monotonic() + 10
    while len(evaluated) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert evaluated == [0, 7, 8, 9]
    skipped = monitor.metrics.evaluations.labels("skipped")._value.get()
    assert skipped == 6
    monitor._submit(_window(10))  # the drain ended; a new window starts a new one
    deadline = time.monotonic() + 10
    while len(evaluated) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert evaluated[-1] == 10


def test_reports_rest_so_they_take_at_most_their_cpu_share(tmp_path: Any) -> None:
    settings = MonitoringSettings(data_dir=tmp_path, monitoring_report_max_cpu_share=0.5)
    monitor = Monitor(settings, MonitoringMetrics(), client=object())  # type: ignore[arg-type]
    spans: list[tuple[float, float]] = []

    def evaluate(closed: ClosedWindow, quality: RealizedQuality) -> None:
        started = time.monotonic()
        time.sleep(0.2)
        spans.append((started, time.monotonic()))

    monitor.evaluate = evaluate  # type: ignore[method-assign]
    for index in range(3):
        monitor._submit(_window(index))
    deadline = time.monotonic() + 10
    while len(spans) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(spans) == 3
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        # a 0.2 s report at a 50 % share: 0.2 s of rest before the next
        assert second_start - first_end >= 0.19
