"""How a rollout ended: what the demo remembers of it, prints at the end and writes down."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from modstack.canary_client import timeline_reasons, timeline_table
from modstack.names import CHECK_NAMES
from pipelines.demo.replayer import TrafficStats
from pipelines.demo.results import write_demo_result

# the decisions that judge a window of traffic (with checks)
ANALYSES = ("advance", "analysis_failed", "promote", "rollback")


@dataclass
class RolloutOutcome:
    """How the rollout ended and what it took."""

    state: dict[str, Any]
    seconds: float  # from the start event to the final decision (controller clock)
    analyses: int  # windows judged (advance, analysis_failed, promote, rollback)
    wall_seconds: float  # what the demo waited, including serving loading the challenger

    @classmethod
    def of(cls, state: dict[str, Any], wall_seconds: float) -> RolloutOutcome:
        """The outcome of a finished rollout's controller state."""
        history = state["history"]
        first, last = (datetime.fromisoformat(history[i]["at"]) for i in (0, -1))
        analyses = sum(1 for e in history if e["action"] in ANALYSES and e.get("checks"))
        return cls(state, (last - first).total_seconds(), analyses, wall_seconds)


def print_outcome(outcome: RolloutOutcome, console: Console, traffic: TrafficStats) -> None:
    """The timeline table and the numbers worth remembering."""
    state = outcome.state
    console.print(timeline_table(state, title="rollout timeline"))
    for line in timeline_reasons(state):
        console.print(f"  [dim]{line}[/]")
    interval = state.get("interval_s")
    console.print(
        f"[bold]{state['status']}[/] v{state['challenger_version']} after "
        f"{outcome.seconds:.1f} s ({outcome.analyses} analysed windows of {interval:g} s; "
        f"demo waited {outcome.wall_seconds:.1f} s); traffic: {traffic.moderated} moderated "
        f"({dict(traffic.by_variant)}), {traffic.failed} failed, actions {dict(traffic.by_action)}"
    )
    final = state["history"][-1]
    for name in CHECK_NAMES:
        check = final.get("checks", {}).get(name)
        if check:
            console.print(_check_line(name, check))


def _check_line(name: str, check: dict[str, Any]) -> str:
    verdict = {True: "passed", False: "FAILED", None: "skipped"}[check.get("passed")]
    return (
        f"  {name:<16} {verdict:<8} value {_fmt(check.get('value'))} limit "
        f"{_fmt(check.get('threshold'))}  champion {_fmt(check.get('champion'))} "
        f"challenger {_fmt(check.get('challenger'))}  [dim]{check.get('detail', '')}[/]"
    )


def report_outcome(
    outcome: RolloutOutcome, console: Console, traffic: TrafficStats, name: str, **extra: Any
) -> Path:
    """Print the rollout's outcome and write it to var/run/results/<name>.json; the path."""
    print_outcome(outcome, console, traffic)
    path = write_demo_result(name, outcome.state, traffic, outcome.seconds, **extra)
    console.print(f"results: {path}")
    return path


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"
