"""The serving benchmark's plan, result shaping and summary, without a stack or locust."""

from __future__ import annotations

import ast
import csv
import subprocess
import sys
from pathlib import Path

from loadtests.bench.serving_checks import retrain_overlapped
from loadtests.bench.serving_report import COLUMNS, Context, summarize, table_rows
from loadtests.bench.serving_runs import (
    USER_CLASSES,
    USERS_FILE,
    PlannedRun,
    RunResult,
    count_503,
    plan_runs,
    run_result,
    users_for,
)


def _result(target: str, profile: str, ok_rps: float, cpu: float | None = 1.0) -> RunResult:
    return RunResult(target, profile, 20, None, 1000, 0, ok_rps, ok_rps, 5.0, 9.0, 20.0, 0, cpu)


def test_the_plan_alternates_the_closed_loop_pairs_then_open_loop_then_shedding() -> None:
    plan = plan_runs(("mlflow", "full"), users=20, repeats=2, offered=[50.0, 400.0], shed_users=100)
    assert [(r.target, r.profile, r.users, r.offered_rps) for r in plan] == [
        ("mlflow", "closed-20 run 1/2", 20, None),
        ("full", "closed-20 run 1/2", 20, None),
        ("mlflow", "closed-20 run 2/2", 20, None),
        ("full", "closed-20 run 2/2", 20, None),
        ("mlflow", "open-50", 5, 50.0),
        ("mlflow", "open-400", 40, 400.0),
        ("full", "open-50", 5, 50.0),
        ("full", "open-400", 40, 400.0),
        ("full", "closed-100", 100, None),
    ]
    assert plan[-2].rate_per_user == 10.0 and plan[0].rate_per_user == 0.0
    assert users_for(20) == 5  # never fewer than 5 users


def test_a_single_run_without_shedding_has_no_run_suffix() -> None:
    plan = plan_runs(("full",), users=20, repeats=1, offered=[], shed_users=0)
    assert [(r.target, r.profile) for r in plan] == [("full", "closed-20")]


def test_run_result_reads_locusts_aggregated_row(tmp_path: Path) -> None:
    row = {
        "Request Count": "2000",
        "Failure Count": "500",
        "Requests/s": "100.04",
        "50%": "12",
        "95%": "40",
        "99%": "95",
    }
    result = run_result(PlannedRun("full", "open-100", 10, 100.0), row, 480, cpu_s=3.0)
    assert (result.rps, result.ok_rps, result.p99_ms) == (100.0, 75.0, 95.0)
    assert (result.status_503, result.cpu_ms_per_request, result.offered_rps) == (480, 1.5, 100.0)

    failures = tmp_path / "x_failures.csv"
    with failures.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["Method", "Name", "Error", "Occurrences"])
        writer.writeheader()
        writer.writerow({"Method": "POST", "Name": "score", "Error": "HTTPError('503 ...')",
                         "Occurrences": "7"})  # fmt: skip
        writer.writerow({"Method": "POST", "Name": "score", "Error": "timeout", "Occurrences": "2"})
    assert count_503(failures) == 7
    assert count_503(tmp_path / "missing.csv") == 0


def test_rows_carry_the_ratio_on_the_full_path_and_the_summary_takes_medians() -> None:
    results = [
        _result("mlflow", "closed-20 run 1/2", 100.0),
        _result("full", "closed-20 run 1/2", 400.0, cpu=2.0),
        _result("mlflow", "closed-20 run 2/2", 100.0),
        _result("full", "closed-20 run 2/2", 300.0, cpu=4.0),
        _result("full", "rollout-closed-20", 300.0, cpu=4.5),
    ]
    results[1].retrain_overlap = True
    rows = table_rows(results)
    assert all(len(row) == len(COLUMNS) for row in rows)
    assert rows[0][-1] == "" and rows[1][-1] == 4.0 and rows[3][-1] == 3.0
    assert rows[1][1] == "closed-20 run 1/2 (retraining ran)"
    summary = summarize(results, Context(20, 2, 1.234, 2.0, 2, 1, ""))
    assert summary["ratio_closed_loop"] == 3.5
    assert summary["full_closed_cpu_ms"] == 3.0
    assert summary["rollout_cpu_ratio"] == 1.5
    assert summary["load_average_1m_before"] == 1.23
    assert summary["rollout_error"] is None


def test_retrain_overlap_needs_both_markers() -> None:
    assert not retrain_overlapped(None, (True, 1))
    assert not retrain_overlapped((False, 1), (False, 1))
    assert retrain_overlapped((False, 1), (False, 2))
    assert retrain_overlapped((False, 1), (True, 1))


def test_the_locustfile_defines_the_user_classes_the_runner_names() -> None:
    tree = ast.parse(USERS_FILE.read_text())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert set(USER_CLASSES.values()) <= classes


def test_the_runner_does_not_import_locust() -> None:
    # locust patches the standard library with gevent on import: the runner must stay clear
    code = (
        "import sys, loadtests.bench.serving\n"
        "print('locust' in sys.modules, 'gevent' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
