"""Each window's Evidently HTML report, saved under {DATA_DIR}/reports with a JSON summary next
to it, listed newest first."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.monitoring.drift.evidently_report import WindowReport

_NAME = re.compile(r"^drift-\d{8}T\d{12}Z-w\d{6}\.html$")


@dataclass
class ReportStore:
    """HTML reports plus `<name>.json` summaries in one folder, pruned to `keep`."""

    directory: Path
    keep: int = 500

    def save(self, report: WindowReport, window_index: int, extra: dict[str, Any]) -> str:
        """Write one window's report; returns its file name."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"drift-{stamp}Z-w{window_index:06d}.html"
        summary = {"name": name, "created_at": datetime.now(UTC).isoformat()}
        summary |= report.result.summary() | extra
        # Summary first, HTML last and renamed into place: a report is listed (by its HTML
        # name) only once both files are complete.
        (self.directory / f"{name}.json").write_text(json.dumps(summary, indent=1))
        partial = report.save_html(self.directory / f".{name}.partial")
        os.replace(partial, self.directory / name)
        self._prune()
        return name

    def names(self) -> list[str]:
        """Report file names, newest first (the name starts with its UTC time)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            (p.name for p in self.directory.iterdir() if _NAME.match(p.name)), reverse=True
        )

    def listing(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` reports with their summaries."""
        items = []
        for name in self.names()[:limit]:
            sidecar = self.directory / f"{name}.json"
            try:
                summary = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                summary = {"name": name}
            summary.pop("features", None)  # per-feature detail is in the HTML and the JSON file
            items.append(summary)
        return items

    def path(self, name: str) -> Path | None:
        """The file of a listed report, or None (names outside the pattern never resolve)."""
        if not _NAME.match(name):
            return None
        path = self.directory / name
        return path if path.is_file() else None

    def _prune(self) -> None:
        for name in self.names()[self.keep :]:
            (self.directory / name).unlink(missing_ok=True)
            (self.directory / f"{name}.json").unlink(missing_ok=True)
