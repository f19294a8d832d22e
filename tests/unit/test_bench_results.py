"""The ingest and feature-store benchmarks write results files that the report renders."""

from __future__ import annotations

from pathlib import Path

from loadtests.bench import featurestore, ingest
from modstack.report import build_report
from modstack.results import read_result, write_result


def test_the_ingest_result_holds_throughput_freshness_percentiles_and_stages(
    tmp_path: Path,
) -> None:
    throughput = {
        "messages": 5000,
        "accepted_per_s": 3110.4,
        "end_to_end_per_s": 2219.0,
        "accepted_s": 1.61,
        "end_to_end_s": 2.25,
    }
    freshness_ms = [float(ms) for ms in range(1, 101)]  # 1..100 ms
    stages: list[list[object]] = [["processor micro-batch", 192, 34.3]]
    setup = {"batch": 100, "clients": 4, "rate": 50.0, "probes": 100}

    result = ingest.bench_result(throughput, freshness_ms, stages, setup, "bench-ingest")
    back = read_result(write_result(result, run_dir=tmp_path))

    assert back.name == "bench-ingest"
    tp, fresh, inside = back.tables
    assert tp.rows[0] == ["accepted (202)", 3110, 1.61]
    assert fresh.columns == ["p50", "p90", "p99", "max", "mean"]
    assert fresh.rows == [[50, 90, 99, 100, 50]]  # nearest-rank percentiles, mean 50.5
    assert inside.rows == [["processor micro-batch", 192, 34.3]]


def test_the_featurestore_result_renders_one_row_per_measurement(tmp_path: Path) -> None:
    rows = [("apply, empty registry", 3.839, "s", ""), ("push 1 rows, online", 11.8, "ms", "")]
    write_result(featurestore.bench_result(rows, "sqlite", "bench-fs"), run_dir=tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()

    build_report(docs, source=tmp_path / "results")

    text = (docs / "benchmarks.md").read_text()
    assert "| apply, empty registry | 3.839 | s |  |" in text
    assert "online store sqlite" in text
