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


def test_a_result_without_tables_renders_its_numbers_at_any_depth(tmp_path: Path) -> None:
    # the fault tests' file: test -> case -> measure (three levels), no tables
    source = tmp_path / "results"
    source.mkdir()
    (source / "faults.json").write_text(
        json.dumps(
            {
                "processor_sigkill": {"kills": 5, "lost": 0},
                "broker_durability": {"broker_sigkill": {"lost": 0, "seconds_to_catch_up": 2.06}},
                "date": "2026-12-06",
            }
        )
    )
    docs = tmp_path / "docs"
    docs.mkdir()

    build_report(docs, source=source)

    text = (docs / "benchmarks.md").read_text()
    assert "| processor_sigkill.kills | 5 |" in text
    assert "| broker_durability.broker_sigkill.seconds_to_catch_up | 2.06 |" in text
    assert "| date |" not in text
