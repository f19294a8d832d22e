"""Results files and the report: provenance is recorded, tables render between their markers,
prose around them survives, and a result without a marker is appended."""

from __future__ import annotations

import json
from pathlib import Path

from modstack.report import build_report
from modstack.results import Result, ResultTable, read_result, write_result


def _result(name: str, value: float) -> Result:
    table = ResultTable(caption="closed loop", columns=["server", "req/s"], rows=[["x", value]])
    return Result(name=name, title=f"Bench {name}", command=f"make {name}", tables=[table])


def test_a_written_result_records_command_date_machine_and_versions(tmp_path: Path) -> None:
    path = write_result(_result("bench-a", 12.5), run_dir=tmp_path)
    raw = json.loads(path.read_text())
    assert path == tmp_path / "results" / "bench-a.json"
    assert raw["provenance"]["command"] == "make bench-a"
    assert raw["provenance"]["machine"]["cores"] >= 1
    assert "mlflow" in raw["provenance"]["versions"]
    assert read_result(path).tables[0].rows == [["x", 12.5]]


def test_the_report_replaces_marked_blocks_and_keeps_the_prose(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.md").write_text(
        "# Benchmarks\n\nWhy we measure.\n\n<!-- result:bench-a -->\nold numbers\n"
        "<!-- /result:bench-a -->\n\nAfter the table.\n"
    )
    write_result(_result("bench-a", 12.5), run_dir=tmp_path)
    write_result(_result("bench-b", 7.0), run_dir=tmp_path)

    outcome = build_report(docs, source=tmp_path / "results")

    text = (docs / "benchmarks.md").read_text()
    assert outcome.rendered == ["bench-a"] and outcome.appended == ["bench-b"]
    assert "old numbers" not in text
    assert "Why we measure." in text and "After the table." in text
    assert "| x | 12.5 |" in text and "| x | 7 |" in text
    assert "[bench-a.json](results/bench-a.json)" in text
    assert (docs / "results" / "bench-b.json").exists()


def test_rendering_twice_gives_the_same_document(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_result(_result("bench-a", 1.0), run_dir=tmp_path)
    build_report(docs, source=tmp_path / "results")
    first = (docs / "benchmarks.md").read_text()
    build_report(docs, source=tmp_path / "results")
    assert (docs / "benchmarks.md").read_text() == first
