"""`modstack rollout start|status|promote|abort|pause|resume`: the canary controller's admin API
from a terminal (CANARY_ADDR, ADMIN_TOKEN), plus the timeline view the demos print."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from modstack.settings import get_settings

rollout_app = typer.Typer(help="Canary rollouts: start, follow, promote, abort, pause, resume.")
console = Console()

CHECK_ORDER = ("error_rate", "latency_p99", "score_psi", "block_rate", "block_precision")


class ControllerClient:
    """The controller's /v1/rollout endpoints, with the admin token."""

    def __init__(self, addr: str | None = None, token: str | None = None, timeout_s: float = 30):
        settings = get_settings()
        self.addr = (addr or settings.canary_addr).rstrip("/")
        secret = token if token is not None else settings.admin_token.get_secret_value()
        self._http = httpx.Client(
            base_url=self.addr, timeout=timeout_s, headers={"Authorization": f"Bearer {secret}"}
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise RuntimeError(
                f"canary controller at {self.addr} unreachable ({exc}): is it running "
                "(`modstack status`)?"
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response.json()

    def status(self) -> dict:
        return self._call("GET", "/v1/rollout")

    def start(
        self,
        challenger_version: str | None = None,
        mode: str | None = None,
        steps: list[float] | None = None,
        actor: str = "admin:cli",
    ) -> dict:
        body: dict[str, Any] = {"actor": actor}
        if challenger_version:
            body["challenger_version"] = challenger_version
        if mode:
            body["mode"] = mode
        if steps:
            body["steps"] = steps
        return self._call("POST", "/v1/rollout/start", body)

    def act(self, action: str, reason: str = "", actor: str = "admin:cli") -> dict:
        return self._call("POST", f"/v1/rollout/{action}", {"reason": reason, "actor": actor})


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def check_cell(check: dict[str, Any]) -> str:
    """One check as 'value (limit) verdict' with rich colours."""
    verdict = {True: "[green]ok[/]", False: "[bold red]FAIL[/]", None: "[dim]skip[/]"}
    return (
        f"{_fmt(check.get('value'))} ≤{_fmt(check.get('threshold'))} {verdict[check.get('passed')]}"
    )


def timeline_table(state: dict[str, Any], title: str = "rollout timeline") -> Table:
    """The history as a table: time, who, what, weight, each check's value and verdict."""
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in ("time", "actor", "action", "weight", *CHECK_ORDER, "reason"):
        table.add_column(column, overflow="fold")
    started = state.get("started_at")
    for event in state.get("history", []):
        at = event["at"][11:19]
        checks = event.get("checks", {})
        action = event["action"]
        style = {"rollback": "bold red", "abort": "red", "promote": "bold green"}.get(action, "")
        table.add_row(
            at,
            event["actor"],
            f"[{style}]{action}[/]" if style else action,
            f"{event['weight_percent']:g}%",
            *(check_cell(checks[c]) if c in checks else "" for c in CHECK_ORDER),
            event.get("reason", "")[:160],
        )
    if started:
        table.caption = (
            f"v{state.get('challenger_version')} vs champion v{state.get('champion_version')}, "
            f"status {state.get('status')}, started {started[:19]}"
        )
    return table


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _client(addr: str | None) -> ControllerClient:
    return ControllerClient(addr)


AddrOption = Annotated[str | None, typer.Option(help="Controller address (default CANARY_ADDR).")]
ReasonOption = Annotated[str, typer.Option(help="Why: kept in the rollout history.")]


def _run(call) -> dict:  # type: ignore[no-untyped-def]
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
        f"failures {state.get('failures', 0)}"
    )
    if state.get("reason"):
        console.print(f"  reason: {state['reason']}")
    if state.get("history"):
        console.print(timeline_table(state))


@rollout_app.command()
def start(
    version: Annotated[
        str | None, typer.Argument(help="Model version to roll out (default: @challenger).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="canary or shadow.")] = None,
    steps: Annotated[str | None, typer.Option(help='Weights, e.g. "5,25,50,100".')] = None,
    addr: AddrOption = None,
) -> None:
    """Start rolling out a challenger."""
    weights = [float(s) for s in steps.split(",")] if steps else None
    _show(_run(lambda: _client(addr).start(version, mode, weights, actor=_actor())))


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
