"""The rollout demos' pre-flight reads serving's /healthz as serving writes it (per policy)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from pipelines.demo import preflight as module


class _Controller:
    addr = "http://127.0.0.1:8003"


def test_ready_controller_names_the_policys_champion(monkeypatch: pytest.MonkeyPatch) -> None:
    health: dict[str, Any] = {"status": "ok", "policies": {"spam": {"champion": "3"}}}
    monkeypatch.setattr(module, "preflight", lambda need_ingestion=True: health)
    monkeypatch.setattr(module, "idle_controller", lambda: _Controller())
    out = io.StringIO()
    controller = module.ready_controller(Console(file=out, width=120), "rollback")
    assert isinstance(controller, _Controller)
    assert "champion v3 serves; controller at http://127.0.0.1:8003" in out.getvalue()


def test_ready_controller_says_why_the_stack_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_ready(need_ingestion: bool = True) -> dict[str, Any]:
        raise module.StackNotReady("serving has no champion model yet: train one first")

    monkeypatch.setattr(module, "preflight", not_ready)
    out = io.StringIO()
    assert module.ready_controller(Console(file=out, width=120), "rollback") is None
    assert "train one first" in out.getvalue()
