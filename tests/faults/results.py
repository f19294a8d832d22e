"""The fault tests' measurements, in var/run/results/faults.json (rendered by `make report`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from tests.support.profile import profile_suffix

RESULTS = Path(__file__).resolve().parents[2] / "var" / "run" / "results" / "faults.json"


def record_fault(name: str, values: dict[str, Any], group: str | None = None) -> None:
    """Store one case's numbers under `name` (inside `group` when given), with the time; a
    run in the scale profile keeps its own copy under `<name or group>_scale`, so the two
    profiles' numbers stand side by side."""
    suffix = profile_suffix("_")
    if group:
        group += suffix
    else:
        name += suffix
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # both profiles' test sessions may run at once (make test): one writer at a time
    with FileLock(RESULTS.with_suffix(".lock")):
        found = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        entry = found.setdefault(group, {}) if group else found
        entry[name] = {**values, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
        RESULTS.write_text(json.dumps(found, indent=2) + "\n")
