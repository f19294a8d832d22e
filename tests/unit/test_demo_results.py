"""A demo's results file keeps the traffic counters as counts (pipelines/demo/results.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.demo.replayer import TrafficStats
from pipelines.demo.results import write_demo_result


def test_traffic_counters_are_written_as_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUN_DIR", str(tmp_path))
    from modstack.settings import get_settings

    get_settings.cache_clear()
    traffic = TrafficStats(moderated=3)
    traffic.by_action.update({"block": 2, "allow": 1})
    traffic.by_variant.update({"spam champion": 3})
    path = write_demo_result("demo-x", {"status": "promoted"}, traffic)
    get_settings.cache_clear()
    body = json.loads(path.read_text())
    assert body["traffic"]["by_action"] == {"block": 2, "allow": 1}
    assert body["traffic"]["by_variant"] == {"spam champion": 3}
