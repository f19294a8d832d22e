"""A demo's results file: var/run/results/<name>.json, which docs/canary.md quotes."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from modstack.settings import get_settings
from pipelines.demo.replayer import TrafficStats


def write_demo_result(
    name: str,
    state: dict[str, Any],
    traffic: TrafficStats,
    seconds: float | None = None,
    **extra: Any,
) -> Path:
    """var/run/results/<name>.json: the rollout's state and full history (every check with its
    values, threshold and verdict at every window), the traffic the demo sent and how labels
    arrived. docs/canary.md quotes its numbers."""
    folder = get_settings().run_dir / "results"
    folder.mkdir(parents=True, exist_ok=True)
    traffic_body = asdict(traffic)
    # asdict rebuilds a Counter from its (key, count) items, counting the pairs: keep the counts
    traffic_body["by_variant"] = dict(traffic.by_variant)
    traffic_body["by_action"] = dict(traffic.by_action)
    traffic_body["last_event_time"] = (
        traffic.last_event_time.isoformat() if traffic.last_event_time else None
    )
    body = {
        "name": name,
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "status": state.get("status"),
        "reason": state.get("reason"),
        "rollout_seconds": seconds,
        "traffic": traffic_body,
        "rollout": state,
        **extra,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(str_keys(body), indent=2, default=str))
    return path


def _key(key: Any) -> Any:
    return "/".join(map(str, key)) if isinstance(key, tuple) else key


def str_keys(value: Any) -> Any:
    """JSON object keys must be strings; counters of (variant, action) pairs have tuples."""
    if isinstance(value, dict):
        return {_key(k): str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [str_keys(v) for v in value]
    return value
