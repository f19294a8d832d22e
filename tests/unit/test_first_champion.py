"""Which training run makes the first champion of a policy (pipelines.train.first_champion_due)."""

from __future__ import annotations

import pytest

from modstack.registry.contract import Thresholds
from pipelines.gate import GateResult
from pipelines.train import TrainResult, first_champion_due


def run(passed: bool, challenger_set: bool) -> TrainResult:
    gate = GateResult(passed=passed, compared_with="baseline", checks=(), failures=())
    return TrainResult(
        run_id="r", baseline_run_id="b", model_uri="models:/m/1", candidate_metrics={},
        baseline_metrics={}, thresholds=Thresholds(block=0.9, review=0.5), seconds=1.0,
        version="1", gate=gate, challenger_set=challenger_set,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("passed", "challenger_set", "champion", "due"),
    [
        (True, True, None, True),  # the first version that passes its gate
        (True, True, "3", False),  # a champion exists: the canary decides
        (False, True, None, False),  # refused, challenger forced by --skip-gate: never champion
        (False, False, None, False),  # refused
    ],
)
def test_only_a_version_that_passed_its_gate_becomes_the_first_champion(
    passed: bool, challenger_set: bool, champion: str | None, due: bool
) -> None:
    assert first_champion_due(run(passed, challenger_set), champion) is due
