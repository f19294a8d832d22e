"""The canary controller's rollout knobs both rollout demos expose, and starting the rollout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from modstack.canary_client import ControllerClient

DEMO_ACTOR = "demo"


@dataclass(frozen=True)
class RolloutKnobs:
    """The controller's rollout knobs both demos expose (`--steps` ... `--failure-limit`)."""

    steps: str = "20,50,100"
    interval: float = 20.0
    min_requests: int = 1000
    max_extensions: int = 8
    paired_percent: float = 100.0
    failure_limit: int = 2


# The options of RolloutKnobs (and the rollout's bound), declared once for both demos' commands.
StepsOption = Annotated[str, typer.Option(help="traffic weights of the steps")]
IntervalOption = Annotated[float, typer.Option(help="seconds per step")]
MinRequestsOption = Annotated[
    int,
    typer.Option(
        help="observations per variant before a step is judged (paired: both score every one)"
    ),
]
MaxExtensionsOption = Annotated[int, typer.Option()]
PairedPercentOption = Annotated[float, typer.Option(help="share scored by both variants")]
FailureLimitOption = Annotated[int, typer.Option()]
TimeoutOption = Annotated[float, typer.Option(help="seconds for the rollout")]


def start_rollout(
    controller: ControllerClient, version: str | None, knobs: RolloutKnobs
) -> dict[str, Any]:
    """Start a canary rollout of `version` with the demo's knobs."""
    return controller.start(
        version,
        "canary",
        [float(s) for s in knobs.steps.split(",")],
        DEMO_ACTOR,
        interval_s=knobs.interval,
        failure_limit=knobs.failure_limit,
        min_requests=knobs.min_requests,
        paired_percent=knobs.paired_percent,
        max_extensions=knobs.max_extensions,
    )
