"""`modstack rollout ...`: start, follow, promote, abort, pause and resume a canary rollout
from a terminal (CANARY_ADDR, ADMIN_TOKEN)."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer

from modstack.canary_client import (
    ControllerClient,
    checks_table,
    timeline_reasons,
    timeline_table,
    wide_console,
)

console = wide_console()
rollout_app = typer.Typer(help="Canary rollouts: start, follow, promote, abort, pause, resume.")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _client(addr: str | None) -> ControllerClient:
    return ControllerClient(addr)


AddrOption = Annotated[str | None, typer.Option(help="Controller address (default CANARY_ADDR).")]
ReasonOption = Annotated[str, typer.Option(help="Why: kept in the rollout history.")]


def _run(call) -> dict:
    try:
        return call()
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


def _show(state: dict[str, Any]) -> None:
    console.print(
        f"rollout [bold]{state.get('rollout_id') or '-'}[/]: v{state.get('challenger_version')} "
        f"status [bold]{state['status']}[/] weight {state['weight_percent']:g}% "
        f"step {state['step'] + 1}/{len(state.get('steps') or []) or '-'} "
        f"failures {state.get('failures', 0)} extensions {state.get('extensions', 0)}"
        f"/{state.get('max_extensions', '-')} paired {state.get('paired_percent', '-')}%"
    )
    if state.get("reason"):
        console.print(f"  reason: {state['reason']}")
    if state.get("history"):
        console.print(timeline_table(state))
        for line in timeline_reasons(state):
            console.print(f"  [dim]{line}[/]")
        checks = checks_table(state)
        if checks is not None:
            console.print(checks)


@rollout_app.command()
def start(
    version: Annotated[
        str | None, typer.Argument(help="Model version to roll out (default: @challenger).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="canary or shadow.")] = None,
    steps: Annotated[str | None, typer.Option(help='Weights, e.g. "5,25,50,100".')] = None,
    interval: Annotated[float | None, typer.Option(help="Seconds per step.")] = None,
    failure_limit: Annotated[int | None, typer.Option(help="Failed analyses to roll back.")] = None,
    min_requests: Annotated[
        int | None, typer.Option(help="Challenger requests before a step is judged.")
    ] = None,
    addr: AddrOption = None,
) -> None:
    """Start rolling out a challenger (policy defaults: the controller's CANARY_* settings)."""
    weights = [float(s) for s in steps.split(",")] if steps else None
    _show(
        _run(
            lambda: _client(addr).start(
                version, mode, weights, _actor(), interval, failure_limit, min_requests
            )
        )
    )


@rollout_app.command()
def status(addr: AddrOption = None) -> None:
    """The rollout's state and the history of every step and decision."""
    _show(_run(lambda: _client(addr).status()))


@rollout_app.command()
def promote(reason: ReasonOption = "", addr: AddrOption = None) -> None:
    """Promote the challenger now (skips the remaining steps)."""
    _show(_run(lambda: _client(addr).act("promote", reason, _actor())))


@rollout_app.command()
def abort(reason: ReasonOption = "", addr: AddrOption = None) -> None:
    """Roll back now: weight 0, challenger alias removed."""
    _show(_run(lambda: _client(addr).act("abort", reason, _actor())))


@rollout_app.command()
def pause(reason: ReasonOption = "", addr: AddrOption = None) -> None:
    """Hold the current weight; no analysis until resumed."""
    _show(_run(lambda: _client(addr).act("pause", reason, _actor())))


@rollout_app.command()
def resume(addr: AddrOption = None) -> None:
    """Continue a paused rollout with a fresh analysis window."""
    _show(_run(lambda: _client(addr).act("resume", "", _actor())))
