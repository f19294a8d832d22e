"""Following a rollout: each decision of the canary controller printed as it happens, until the
challenger is promoted or rolled back."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.console import Console

from modstack.canary_client import ControllerClient
from modstack.names import CHECK_NAMES
from modstack.waits import wait_until
from pipelines.demo.outcome import RolloutOutcome
from pipelines.demo.replayer import TrafficReplayer

WAIT_NOTE_EVERY_S = 5.0
FINAL = ("promoted", "rolled_back")
COLOURS = {
    "promote": "bold green",
    "rollback": "bold red",
    "abort": "red",
    "analysis_failed": "yellow",
    "advance": "green",
}
# decisions whose reason is worth a line of its own
EXPLAINED = ("analysis_failed", "rollback", "abort", "start")
MARKS = {True: "[green]ok[/]", False: "[bold red]FAIL[/]", None: "[dim]skip[/]"}


def check_brief(checks: dict[str, dict[str, Any]]) -> str:
    """One line of the checks of a decision: `name value ok|FAIL|skip | ...`."""
    parts = []
    for name in CHECK_NAMES:
        check = checks.get(name)
        if check is None:
            continue
        value = check.get("value")
        shown = "n/a" if value is None else f"{value:.3g}"
        parts.append(f"{name} {shown} {MARKS[check.get('passed')]}")
    return " | ".join(parts)


class RolloutFollower:
    """Prints the decisions of the rollout it has not printed yet, one poll at a time."""

    def __init__(
        self, controller: ControllerClient, console: Console, traffic: TrafficReplayer | None
    ) -> None:
        self.controller = controller
        self.console = console
        self.traffic = traffic
        self.state: dict[str, Any] = {}
        self._shown = 0
        self._last_wait_note = 0.0

    def step(self) -> dict[str, Any] | None:
        """Print what is new; the controller's state once the rollout is over, else None."""
        self.state = state = self.controller.status()
        self._print_new(state.get("history", []))
        if state["status"] in FINAL:
            return state
        self._note_waiting(state)
        traffic = self.traffic
        if traffic is not None and traffic.error is not None:
            raise RuntimeError(f"the traffic replayer failed: {traffic.error}") from traffic.error
        return None

    def _print_new(self, history: list[dict[str, Any]]) -> None:
        t0 = datetime.fromisoformat(history[0]["at"]) if history else None
        for event in history[self._shown :]:
            offset = (datetime.fromisoformat(event["at"]) - t0).total_seconds() if t0 else 0.0
            action = event["action"]
            colour = COLOURS.get(action, "cyan")
            self.console.print(
                f"[dim]+{offset:6.1f}s[/] [{colour}]{action:<15}[/] weight "
                f"{event['weight_percent']:>5g}%  {check_brief(event.get('checks', {}))}"
            )
            if action in EXPLAINED:
                self.console.print(f"           [dim]{event.get('reason', '')}[/]")
        self._shown = len(history)

    def _note_waiting(self, state: dict[str, Any]) -> None:
        """The controller waits for the step's minimum traffic: say so every few seconds."""
        reason = state.get("reason") or ""
        if "waiting" in reason and time.monotonic() - self._last_wait_note >= WAIT_NOTE_EVERY_S:
            self.console.print(
                f"[dim]           {state['status']} at {state['weight_percent']:g}%: {reason}[/]"
            )
            self._last_wait_note = time.monotonic()


def follow(
    controller: ControllerClient,
    console: Console,
    traffic: TrafficReplayer | None = None,
    timeout_s: float = 900.0,
    poll_s: float = 1.0,
) -> RolloutOutcome:
    """Print each new decision of the rollout until it is promoted or rolled back."""
    started = time.monotonic()
    follower = RolloutFollower(controller, console, traffic)
    try:
        state = wait_until(follower.step, timeout_s, "the rollout", interval_s=poll_s, retry_on=())
    except TimeoutError as exc:
        last = follower.state
        raise TimeoutError(
            f"the rollout did not finish within {timeout_s:g} s (status {last.get('status')}, "
            f"{last.get('reason')}); `modstack rollout status` shows it"
        ) from exc
    return RolloutOutcome.of(state, time.monotonic() - started)
