"""Before a rollout demo starts: the stack answers, serving has a champion, and the canary
controller has no rollout in flight."""

from __future__ import annotations

from typing import Any

import httpx
from rich.console import Console

from modstack.canary_client import ControllerClient
from modstack.policy import DEFAULT_POLICY
from modstack.settings import get_settings


class StackNotReady(RuntimeError):
    """The stack the demo needs is not running or has no champion (the message says what to do)."""


def preflight(need_ingestion: bool = True) -> dict[str, Any]:
    """Check serving (with a champion), the canary controller and ingestion; returns serving's
    /healthz. Raises StackNotReady with the fix."""
    settings = get_settings()
    checks = [("serving", settings.serving_addr), ("canary", settings.canary_addr)]
    if need_ingestion:
        checks.append(("ingestion", settings.ingestion_addr))
    health: dict[str, Any] = {}
    for name, addr in checks:
        response = _healthz(name, addr)
        if name == "serving":
            health = response.json()
    if not (health.get("policies", {}).get(DEFAULT_POLICY) or {}).get("champion"):
        raise StackNotReady(
            "serving has no champion model yet: train one first (`make backfill train`)"
        )
    return health


def _healthz(name: str, addr: str) -> httpx.Response:
    try:
        response = httpx.get(f"{addr}/healthz", timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise StackNotReady(
            f"{name} is not answering at {addr} ({exc}): start the stack with `make up`"
        ) from exc
    return response


def idle_controller() -> ControllerClient:
    """The canary controller, checked to have no rollout in flight (StackNotReady if it has)."""
    controller = ControllerClient()
    state = controller.status()
    if state["status"] in ("progressing", "paused"):
        raise StackNotReady(
            f"a rollout of v{state['challenger_version']} is still {state['status']}: "
            "`modstack rollout abort` or wait for it"
        )
    return controller


def ready_controller(console: Console, title: str) -> ControllerClient | None:
    """Pre-flight the stack and an idle controller, printing the demo's header; None (after
    printing why) when the demo cannot start. A caller that can start the stack catches
    `StackNotReady` from `preflight` first (stack.demo.rollback does)."""
    try:
        health = preflight(need_ingestion=True)
        controller = idle_controller()
    except StackNotReady as exc:
        console.print(f"[red]{exc}[/]")
        return None
    console.rule(f"[bold]ModStack {title} demo")
    champion = health["policies"][DEFAULT_POLICY]["champion"]
    console.print(f"champion v{champion} serves; controller at {controller.addr}")
    return controller
