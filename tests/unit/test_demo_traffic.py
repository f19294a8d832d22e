"""The rollout demos' shared pieces that need no stack: following the controller's decisions,
the outcome of a rollout, user reports and the results file's keys."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from rich.console import Console

from pipelines.demo.labels import UserReports, original_id, renamed
from pipelines.demo.outcome import RolloutOutcome
from pipelines.demo.results import str_keys
from pipelines.demo.timeline import check_brief, follow


def _event(action: str, second: int, **extra: Any) -> dict[str, Any]:
    return {"action": action, "at": f"2026-01-01T00:00:{second:02d}", "weight_percent": 20, **extra}


CHECKS = {"error_rate": {"value": 0.01, "passed": True}}
PROMOTED = {
    "status": "promoted",
    "challenger_version": "7",
    "history": [
        _event("start", 0, reason="demo"),
        _event("advance", 10, checks=CHECKS),
        _event("analysis_failed", 20, reason="waiting"),  # no checks: not an analysis
        _event("promote", 30, checks=CHECKS),
    ],
}


def test_outcome_of_a_finished_rollout() -> None:
    outcome = RolloutOutcome.of(PROMOTED, wall_seconds=42.0)
    assert (outcome.seconds, outcome.analyses, outcome.wall_seconds) == (30.0, 2, 42.0)


def test_check_brief_marks_each_check() -> None:
    brief = check_brief({"error_rate": {"value": 0.5, "passed": False}, "unknown": {}})
    assert "error_rate 0.5" in brief
    assert "FAIL" in brief
    assert "unknown" not in brief


class _Controller:
    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states = iter(states)

    def status(self) -> dict[str, Any]:
        return next(self.states)


def test_follow_prints_each_decision_once_until_the_end() -> None:
    progressing = {"status": "progressing", "history": PROMOTED["history"][:2], "reason": ""}
    console = Console(record=True, width=200)
    controller = _Controller([progressing, progressing, PROMOTED])
    outcome = follow(controller, console, timeout_s=5, poll_s=0.01)  # type: ignore[arg-type]
    assert outcome.state is PROMOTED
    text = console.export_text()
    assert [line.split()[2] for line in text.splitlines() if line.startswith("+")] == [
        "start",
        "advance",
        "analysis_failed",
        "promote",
    ]


def test_follow_times_out_with_the_rollout_status() -> None:
    waiting = {
        "status": "progressing",
        "history": [],
        "reason": "waiting for traffic",
        "weight_percent": 20,
    }
    controller = _Controller(itertools.repeat(waiting))  # type: ignore[arg-type]
    with pytest.raises(TimeoutError, match="status progressing, waiting for traffic"):
        follow(controller, Console(file=None, quiet=True), timeout_s=0.05, poll_s=0.01)  # type: ignore[arg-type]


def test_user_reports_come_due_after_the_delay() -> None:
    # every message's labels, one per policy that labels it
    truth = {
        f"m{i}": [{"message_id": f"m{i}", "sender_id": f"u{i}@x.org", "label": "spam"}]
        for i in range(100)
    }
    reports = UserReports(truth, share=0.5, delay_s=0.0)
    reports.queue([{"message_id": f"m{i}"} for i in range(100)], "-r1")
    due = reports.pop_due()
    assert 30 < len(due) < 70
    assert all(r["message_id"].endswith("-r1") and r["source"] == "user_report" for r in due)
    assert all(r["sender_id"].endswith("-r1@x.org") for r in due)  # a fresh sender per pass
    assert reports.pop_due() == []
    both = {"c1": [{"message_id": "c1", "label": "ham"}, {"message_id": "c1", "label": "abuse"}]}
    every = UserReports(both, share=1.0, delay_s=0.0)
    every.queue([{"message_id": "c1"}], "")
    assert sorted(r["label"] for r in every.pop_due()) == ["abuse", "ham"]
    later = UserReports(truth, share=1.0, delay_s=60.0)
    later.queue([{"message_id": "m1"}], "")
    assert later.pop_due() == []


def test_repeated_ids() -> None:
    assert renamed({"message_id": "a", "sender_id": "s@x.org"}, "-r2") == {
        "message_id": "a-r2",
        "sender_id": "s-r2@x.org",
    }
    assert renamed({"message_id": "a", "sender_id": "s"}, "") == {
        "message_id": "a",
        "sender_id": "s",
    }
    assert original_id("a-r12") == "a"
    assert original_id("a") == "a"


def test_result_keys_are_strings() -> None:
    body = {"traffic": Counter({("v1", "allow"): 3}), "rows": [{(1, 2): "x"}]}
    assert str_keys(body) == {"traffic": {"v1/allow": 3}, "rows": [{"1/2": "x"}]}
