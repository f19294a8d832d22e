"""The demo entry points' typer CLIs: every option is in --help with its default, the options
reach the demo, and the demo's result is the exit code (`make demo` fails when not promoted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipelines.demo import replay
from pipelines.demo.knobs import DEMO_ACTOR, RolloutKnobs, start_rollout
from stack.demo import rollback, rollout, story

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FLAG = None  # an option without a value (no default shown)

ROLLOUT_KNOBS = {
    "--steps": "20,50,100",
    "--interval": "20.0",
    "--min-requests": "1000",
    "--max-extensions": "8",
    "--paired-percent": "100.0",
    "--failure-limit": "2",
}
EXPECTED: dict[ModuleType, dict[str, str | None]] = {
    story: {
        "--speed": "50.0",
        "--timeout": "900.0",
        "--after-windows": "2",
        "--keep-state": FLAG,
    },
    rollout: {
        "--speed": "50.0",
        "--warmup-fraction": "0.5",
        "--skip-warmup": FLAG,
        "--ignore-gate": FLAG,
        "--label-delay-hours": "6.0",
        **ROLLOUT_KNOBS,
        "--timeout": "900.0",
    },
    rollback: {
        "--fault": "shuffled",
        "--speed": "50.0",
        **ROLLOUT_KNOBS,
        "--timeout": "600.0",
    },
    replay: {
        "--period": "history",
        "--speed": "0",
        "--batch-size": "100",
        "--label-delay-hours": "6.0",
        "--limit": FLAG,
        "--ingestion-addr": FLAG,
        "--data-dir": FLAG,
        "--corpus-dir": FLAG,
        "--no-wait": FLAG,
        "--timeout": "600.0",
        "--show-senders": "4",
    },
}


def help_rows(app: typer.Typer, *args: str) -> tuple[str, dict[str, str]]:
    """The --help text and its option rows: option name -> the rest of its row (wrapped lines
    joined)."""
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.output)
    rows: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        cell = line.strip().strip("│").strip()
        if cell.startswith("--"):
            current, _, rest = cell.partition(" ")
            rows[current] = rest
        elif current and cell and not line.lstrip().startswith("╰"):
            rows[current] += " " + cell
        else:
            current = None
    return text, rows


@pytest.mark.parametrize("module", list(EXPECTED), ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_help_lists_every_option_with_its_default(module: ModuleType) -> None:
    text, rows = help_rows(module.cli)
    assert (module.__doc__ or "-").splitlines()[0] in text  # the module docstring is the help
    expected = EXPECTED[module]
    assert set(rows) == {*expected, "--help"}
    for option, default in expected.items():
        shown = re.search(r"\[default: ([^\]]+)\]", rows[option])
        assert (shown and shown.group(1)) == default, f"{option}: {rows[option]}"
    assert "-h" in rows["--help"].split()  # argparse's -h still works


def test_choices_are_listed() -> None:
    _, rows = help_rows(rollback.cli)
    assert "shuffled|errors|latency" in rows["--fault"]
    _, rows = help_rows(replay.cli)
    assert "history|future|all" in rows["--period"]


@pytest.fixture
def quiet_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (story, rollout, rollback, replay):
        monkeypatch.setattr(module, "configure_logging", lambda *a, **k: None)


@pytest.mark.parametrize("code", [0, 1, 2])
@pytest.mark.parametrize("module", [story, rollout, rollback], ids=["story", "rollout", "rollback"])
def test_the_demo_result_is_the_exit_code(
    module: ModuleType, code: int, monkeypatch: pytest.MonkeyPatch, quiet_logging: None
) -> None:
    monkeypatch.setattr(module, "run", lambda **kwargs: code)
    assert CliRunner().invoke(module.cli, []).exit_code == code


def _recorded(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> dict[str, Any]:
    calls: dict[str, Any] = {}

    def fake_run(*args: Any, **kwargs: Any) -> int:
        calls.update(kwargs, args=args)
        return 0

    monkeypatch.setattr(module, "run", fake_run)
    return calls


def test_story_options_reach_the_demo(monkeypatch: pytest.MonkeyPatch, quiet_logging: None) -> None:
    calls = _recorded(monkeypatch, story)
    CliRunner().invoke(story.cli, [])
    assert calls == {
        "speed": 50.0,
        "timeout_s": 900.0,
        "after_windows": 2,
        "fresh": True,
        "args": (),
    }
    args = ["--speed", "10", "--timeout", "60", "--after-windows", "0", "--keep-state"]
    result = CliRunner().invoke(story.cli, args)
    assert result.exit_code == 0, result.output
    assert calls == {
        "speed": 10.0,
        "timeout_s": 60.0,
        "after_windows": 0,
        "fresh": False,
        "args": (),
    }


def test_rollout_knobs_reach_the_controller(
    monkeypatch: pytest.MonkeyPatch, quiet_logging: None
) -> None:
    calls = _recorded(monkeypatch, rollback)
    args = ["--fault", "errors", "--steps", "10,100", "--interval", "5", "--min-requests", "50"]
    args += ["--max-extensions", "1", "--paired-percent", "30", "--failure-limit", "3"]
    result = CliRunner().invoke(rollback.cli, [*args, "--timeout", "30"])
    assert result.exit_code == 0, result.output
    assert calls["fault"] == "errors"
    assert calls["timeout_s"] == 30.0
    assert calls["knobs"] == RolloutKnobs("10,100", 5.0, 50, 1, 30.0, 3)

    class Controller:
        def start(self, *args: Any, **kwargs: Any) -> dict:
            self.call = (args, kwargs)
            return {}

    controller = Controller()
    start_rollout(controller, "7", calls["knobs"])  # type: ignore[arg-type]
    assert controller.call == (
        ("7", "canary", [10.0, 100.0], DEMO_ACTOR),
        {
            "interval_s": 5.0,
            "failure_limit": 3,
            "min_requests": 50,
            "paired_percent": 30.0,
            "max_extensions": 1,
        },
    )


def test_rollout_defaults_reach_the_demo(
    monkeypatch: pytest.MonkeyPatch, quiet_logging: None
) -> None:
    calls = _recorded(monkeypatch, rollout)
    assert CliRunner().invoke(rollout.cli, ["--skip-warmup"]).exit_code == 0
    assert calls["skip_warmup"] is True
    assert calls["ignore_gate"] is False
    assert calls["warmup_fraction"] == 0.5
    assert calls["label_delay"].total_seconds() == 6 * 3600
    assert calls["knobs"] == RolloutKnobs()
    assert calls["timeout_s"] == 900.0


def test_replay_options_reach_run(monkeypatch: pytest.MonkeyPatch, quiet_logging: None) -> None:
    calls = _recorded(monkeypatch, replay)
    result = CliRunner().invoke(replay.cli, ["--period", "future", "--no-wait", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert calls["args"] == ("future",)
    assert calls["speed"] is None  # 0: as fast as possible
    assert calls["limit"] == 5
    assert calls["wait"] is False
    assert calls["timeout_s"] == 600.0


def test_bad_option_is_a_usage_error() -> None:
    assert CliRunner().invoke(rollback.cli, ["--fault", "nope"]).exit_code == 2
    assert CliRunner().invoke(story.cli, ["--no-such-option"]).exit_code == 2


def test_python_dash_m_help() -> None:
    """`python -m stack.demo.story --help` (what `make demo` runs) answers and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "stack.demo.story", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--after-windows" in ANSI.sub("", result.stdout)
