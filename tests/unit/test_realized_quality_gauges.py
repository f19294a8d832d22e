"""The gauges behind the realized block-precision alert: the labelled blocks (the rule's
minimum count) and the policy's target, exported by the monitor of that policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.monitoring.drift.quality import realized_quality
from services.monitoring.drift.windows import WindowRow
from services.monitoring.metrics import MonitoringMetrics
from services.monitoring.monitor import Monitor
from services.monitoring.settings import MonitoringSettings


def _row(i: int, action: str, label: str | None) -> WindowRow:
    return WindowRow(
        message_id=f"m{i}",
        score=0.5,
        action=action,
        model_version="1",
        variant="champion",
        features={},
        label=label,
    )


def test_labelled_blocks_and_block_precision_are_exported_together() -> None:
    rows = [
        _row(1, "block", "spam"),
        _row(2, "block", "spam"),
        _row(3, "block", "ham"),
        _row(4, "block", None),  # no label yet: not behind the precision
        _row(5, "review", "ham"),
        _row(6, "allow", "ham"),
    ]
    metrics = MonitoringMetrics()

    metrics.export_quality(realized_quality(rows))

    gauge = metrics.registry.get_sample_value
    assert gauge("monitoring_labelled_blocked_rows") == 3
    assert gauge("monitoring_block_precision") == pytest.approx(2 / 3)
    assert gauge("monitoring_labelled_rows") == 5


def test_with_no_labelled_block_the_count_falls_to_zero_and_the_precision_stays() -> None:
    metrics = MonitoringMetrics()
    metrics.export_quality(realized_quality([_row(1, "block", "ham")]))

    metrics.export_quality(realized_quality([_row(2, "allow", "ham")]))

    gauge = metrics.registry.get_sample_value
    # the rule's count condition is what keeps a stale precision from paging
    assert gauge("monitoring_labelled_blocked_rows") == 0
    assert gauge("monitoring_block_precision") == 0.0


@pytest.mark.parametrize(("policy", "target"), [("spam", 0.99), ("abuse", 0.95)])
def test_the_monitor_exports_its_policys_block_precision_target(
    tmp_path: Path, policy: str, target: float
) -> None:
    settings = MonitoringSettings(data_dir=tmp_path, monitoring_policy=policy)
    metrics = MonitoringMetrics()

    Monitor(settings, metrics, client=object())  # type: ignore[arg-type]

    assert metrics.registry.get_sample_value("monitoring_block_precision_target") == target
