"""Results files: what a benchmark or a demo measured, with where it came from.

Every number in the docs comes from one of these files. A result names the command that wrote
it, the date, the machine (cores, memory, load) and the library versions, and carries its
numbers as tables that `modstack report` renders into docs/benchmarks.md unchanged.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from modstack.settings import get_settings

RESULTS_FOLDER = "results"
# The libraries whose versions change the numbers.
VERSIONED_PACKAGES = (
    "fastapi",
    "uvicorn",
    "feast",
    "mlflow",
    "evidently",
    "lightgbm",
    "scikit-learn",
    "kafka-python",
    "locust",
)


@dataclass
class ResultTable:
    """One table of a result: a caption, column names, rows of cells (numbers or text)."""

    caption: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Result:
    """A results file's content. `data` holds anything else a reader may want (raw numbers)."""

    name: str
    title: str
    command: str
    tables: list[ResultTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def results_dir(run_dir: Path | None = None) -> Path:
    """var/run/results (RUN_DIR/results)."""
    return (run_dir or get_settings().run_dir) / RESULTS_FOLDER


def provenance(command: str | None = None) -> dict[str, Any]:
    """Command, UTC date, machine and versions of the current process."""
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    load1, _, _ = os.getloadavg()
    return {
        "command": command or shlex.join(["python", *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": psutil.cpu_count(logical=True),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_1m": round(load1, 2),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
        "versions": versions,
    }


def write_result(result: Result, run_dir: Path | None = None) -> Path:
    """Write `result` as var/run/results/<name>.json (provenance filled in); returns the path."""
    if not result.provenance:
        result.provenance = provenance(result.command)
    folder = results_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.name}.json"
    path.write_text(json.dumps(asdict(result), indent=2, default=_jsonable) + "\n")
    return path


def read_result(path: Path) -> Result:
    """A results file back as a `Result`. A file written in another shape (a demo's rollout
    record) keeps its fields under `data`, with its command and date as provenance."""
    raw = json.loads(path.read_text())
    tables = [ResultTable(**table) for table in raw.pop("tables", [])]
    known = {"name", "title", "command", "notes", "data", "provenance"}
    extra = {k: raw.pop(k) for k in list(raw) if k not in known}
    result = Result(
        name=raw.pop("name", path.stem),
        title=raw.pop("title", path.stem),
        command=raw.pop("command", "?"),
        tables=tables,
        **raw,
    )
    if extra:
        result.data = {**extra, **result.data}
        result.provenance = result.provenance or {"date": extra.get("date", "?")}
    return result


def _jsonable(value: Any) -> Any:
    # numpy scalars and paths: the types benchmarks hand over most often
    if hasattr(value, "item"):
        return value.item()
    return str(value)
