"""The canary controller's HTTP client and the rollout views (timeline table, reasons) that
the `modstack rollout` commands and the demos print."""

from __future__ import annotations

from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

from modstack.names import (
    CHECK_NAMES,
    CheckName,
)
from modstack.settings import get_settings

# Check names come from modstack.names, not from the analysis: the CLI must not import scipy.


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
        interval_s: float | None = None,
        failure_limit: int | None = None,
        min_requests: int | None = None,
        paired_percent: float | None = None,
        max_extensions: int | None = None,
    ) -> dict:
        body: dict[str, Any] = {"actor": actor}
        optional = {
            "challenger_version": challenger_version,
            "mode": mode,
            "steps": steps,
            "interval_s": interval_s,
            "failure_limit": failure_limit,
            "min_requests": min_requests,
            "paired_percent": paired_percent,
            "max_extensions": max_extensions,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._call("POST", "/v1/rollout/start", body)

    def act(self, action: str, reason: str = "", actor: str = "admin:cli") -> dict:
        return self._call("POST", f"/v1/rollout/{action}", {"reason": reason, "actor": actor})


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# Column headers of the timeline table, one per check (* marks the reported ones).
SHORT_NAMES: dict[CheckName, str] = {
    "error_rate": "errors",
    "latency_p99": "p99",
    "label_mcnemar": "mcnemar p",
    "expected_block_rate": "exp.blocks",
    "expected_score_psi": "exp.psi",
    "score_collapse": "collapse",
    "score_psi": "psi*",
    "block_rate": "blocks*",
    "block_precision": "prec*",
}
VERDICT_STYLE = {
    "pass": "[green]pass[/]",
    "fail": "[bold red]FAIL[/]",
    "inconclusive": "[yellow]wait[/]",
    "skipped": "[dim]skip[/]",
    "ok": "[dim]ok[/]",
    "over": "[magenta]over[/]",
    "n/a": "[dim]n/a[/]",
}


def verdict_of(check: dict[str, Any]) -> str:
    """The stored verdict (older events have only `passed`)."""
    if check.get("verdict"):
        return str(check["verdict"])
    return {True: "pass", False: "fail", None: "inconclusive"}[check.get("passed")]


def check_cell(check: dict[str, Any]) -> str:
    """One check as 'value verdict' with rich colours (the limit is in the column header)."""
    verdict = VERDICT_STYLE.get(verdict_of(check), verdict_of(check))
    if check.get("value") is None:
        return verdict
    return f"{_fmt(check.get('value'))} {verdict}"


def checks_table(state: dict[str, Any]) -> Table | None:
    """Every check of the last judged window: kind, verdict, value, threshold, both sides."""
    judged = [e for e in state.get("history", []) if e.get("checks")]
    if not judged:
        return None
    last = judged[-1]
    when = f"{last['at'][11:19]} ({last['action']}, weight {last['weight_percent']:g}%)"
    table = Table(
        title=f"checks at {when}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("check", "kind", "verdict", "value", "threshold", "champion", "challenger"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail")
    for name in CHECK_NAMES:
        check = last["checks"].get(name)
        if check is None:
            continue
        table.add_row(
            name,
            str(check.get("kind", "-")),
            VERDICT_STYLE.get(verdict_of(check), verdict_of(check)),
            _fmt(check.get("value")),
            _fmt(check.get("threshold")),
            _fmt(check.get("champion")),
            _fmt(check.get("challenger")),
            str(check.get("detail", "")),
        )
    return table


def wide_console() -> Console:
    """A console that keeps the timeline table on one line per event when output is piped
    (rich assumes 80 columns then)."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=120)


def timeline_table(state: dict[str, Any], title: str = "rollout timeline") -> Table:
    """The history as a table: time, who, what, weight and each check's value and verdict
    (column headers carry the limits); reasons are printed by `timeline_reasons`."""
    history = state.get("history", [])
    limits: dict[str, Any] = {}
    for event in history:
        for name, check in event.get("checks", {}).items():
            limits.setdefault(name, check.get("threshold"))
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("time", "actor", "action", "weight"):
        table.add_column(column, no_wrap=True)
    for name in CHECK_NAMES:
        limit = limits.get(name)
        header = SHORT_NAMES[name] + (f" ≤{_fmt(limit)}" if limit is not None else "")
        table.add_column(header, no_wrap=True)
    for event in history:
        checks = event.get("checks", {})
        action = event["action"]
        style = {"rollback": "bold red", "abort": "red", "promote": "bold green"}.get(action, "")
        table.add_row(
            event["at"][11:19],
            event["actor"],
            f"[{style}]{action}[/]" if style else action,
            f"{event['weight_percent']:g}%",
            *(check_cell(checks[c]) if c in checks else "" for c in CHECK_NAMES),
        )
    table.caption = (
        f"v{state.get('challenger_version')} vs champion v{state.get('champion_version')}: "
        f"{state.get('status')} (* reported, not decisive)"
    )
    return table


def timeline_reasons(state: dict[str, Any]) -> list[str]:
    """'HH:MM:SS action: reason' for every event that has a reason."""
    return [
        f"{e['at'][11:19]} {e['action']}: {e['reason']}"
        for e in state.get("history", [])
        if e.get("reason")
    ]
