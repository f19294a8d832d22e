"""Demo: a bad challenger is rolled out and the canary controller rolls it back on its own.

The bad challenger is one of:
- `shuffled` (default): LightGBM trained on history with shuffled labels; the quality gate
  refuses it and is skipped for the demo (the refusal stays in the version's tags). Where it
  and the champion disagree on the same messages, the labels (user reports, moderators) side
  with the champion: the exact McNemar check fails; its scores also pile up (collapse).
- `errors` / `latency`: the champion's own model registered again as a new version, while
  serving injects errors (30 %) or latency (+500 ms) into the challenger's path; the error-rate
  or p99-latency check fails. The faults are switched off again at the end.

The future period is replayed against serving's /v1/moderate in event-time order while the
controller steps the weight; each decision is printed as it happens.

Needs the stack (`make up`) and a champion (`make backfill train`).
Usage: `python -m stack.demo.rollback [--fault shuffled|errors|latency] [--interval 15]`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import httpx
import typer

from modstack.canary_client import wide_console
from modstack.log import configure_logging
from modstack.names import ALIAS_CHAMPION, REGISTERED_MODEL
from modstack.registry import aliases as registry
from modstack.settings import get_settings
from pipelines.demo.cli import demo_cli
from pipelines.demo.future import future_timeline
from pipelines.demo.knobs import (
    FailureLimitOption,
    IntervalOption,
    MaxExtensionsOption,
    MinRequestsOption,
    PairedPercentOption,
    RolloutKnobs,
    StepsOption,
    TimeoutOption,
    start_rollout,
)
from pipelines.demo.outcome import report_outcome
from pipelines.demo.preflight import StackNotReady, preflight, ready_controller
from pipelines.demo.replayer import TrafficReplayer
from pipelines.demo.timeline import follow

console = wide_console()
Fault = Literal["shuffled", "errors", "latency"]
FAULTS = {
    "errors": {"error_rate": 0.3, "extra_latency_ms": 0.0},
    "latency": {"error_rate": 0.0, "extra_latency_ms": 500.0},
}


def shuffled_label_challenger() -> str:
    """Train on history with shuffled labels, skip the gate, set `challenger`; the version."""
    from modstack.corpus import FUTURE_START
    from pipelines.train import TrainConfig, run_training
    from pipelines.training_data import corpus_rows, with_features

    config = TrainConfig(shuffle_labels=True, skip_gate=True)
    train = with_features(corpus_rows(end=FUTURE_START), config.service, config.source)
    holdout = with_features(corpus_rows(start=FUTURE_START), config.service, config.source)
    result = run_training(
        train,
        holdout,
        config,
        run_name=f"shuffled-labels-{datetime.now():%Y%m%d-%H%M%S}",
        extra_tags={"trigger": "rollback-demo"},
    )
    if not result.version:
        raise RuntimeError("the shuffled-label model was not registered")
    gate = result.gate
    console.print(
        f"  v{result.version} trained on shuffled labels in {result.seconds:.0f} s: "
        f"PR-AUC {result.candidate_metrics.get('pr_auc', 0):.3f}, gate "
        f"{'passed' if gate and gate.passed else 'refused (skipped for the demo)'}"
    )
    return result.version


def _logged_model_id(version: object) -> str | None:
    """MLflow 3 versions point at a logged model (`models:/m-...`); a copy must name it."""
    model_id = getattr(version, "model_id", None)
    source = str(getattr(version, "source", ""))
    if model_id is None and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/")
    return model_id


def champion_copy() -> str:
    """Register the champion's model again as a new version (a healthy model whose serving path
    will be broken by injected faults)."""
    client = registry.get_client()
    champion = registry.get_alias_version(ALIAS_CHAMPION, client)
    if champion is None:
        raise StackNotReady("no champion to copy: `make backfill train` first")
    source = client.get_model_version(REGISTERED_MODEL, champion)
    if source.source is None:
        raise StackNotReady(f"champion v{champion} has no model source to copy")
    copy = client.create_model_version(
        REGISTERED_MODEL,
        source.source,
        run_id=source.run_id,
        tags={"copy_of": champion, "purpose": "rollback demo with injected faults"},
        description=f"copy of v{champion} for the rollback demo",
        model_id=_logged_model_id(source),
    )
    console.print(f"  v{copy.version}: the champion v{champion}'s model, registered again")
    return str(copy.version)


def set_faults(error_rate: float, extra_latency_ms: float) -> None:
    """Serving's admin endpoint: faults on the challenger's path of this replica."""
    settings = get_settings()
    response = httpx.put(
        f"{settings.serving_addr}/v1/admin/faults",
        json={"error_rate": error_rate, "extra_latency_ms": extra_latency_ms},
        headers={"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"},
        timeout=10,
    )
    response.raise_for_status()


def _stack_ready_or_prepared() -> bool:
    """A fresh clone brings up the stack and trains the first champion first, as `make demo`
    does; False (after printing why) when that fails."""
    from stack.demo.story import DemoFailed, prepare

    try:
        preflight(need_ingestion=True)
        return True
    except StackNotReady as exc:
        console.print(f"[yellow]{exc}[/]: preparing the stack and a champion first")
    try:
        prepare()
        preflight(need_ingestion=True)
    except (DemoFailed, StackNotReady) as failure:
        console.print(f"[red]{failure}[/]")
        return False
    return True


def run(
    *,
    fault: Fault = "shuffled",
    speed: float = 50.0,
    knobs: RolloutKnobs | None = None,
    timeout_s: float = 600.0,
) -> int:
    """Run the demo; 0 when the controller rolled the bad challenger back, 1 when it did not, 2
    when the demo cannot start."""
    knobs = knobs or RolloutKnobs()
    if not _stack_ready_or_prepared():
        return 2
    controller = ready_controller(console, "rollback")
    if controller is None:
        return 2

    console.rule(f"1. a bad challenger ({fault})")
    version = shuffled_label_challenger() if fault == "shuffled" else champion_copy()
    if fault in FAULTS:
        set_faults(**FAULTS[fault])
        console.print(f"  serving injects {FAULTS[fault]} into the challenger's path")

    console.rule(f"2. canary rollout of v{version}: the controller decides alone")
    _, _, events = future_timeline(timedelta(hours=6))
    # ingested, so labels arrive: the corpus labels of the first pass, then user reports and
    # the moderator's answers on the review queue
    traffic = TrafficReplayer(events, speed=speed, ingest=True, cycle=True).start()
    try:
        start_rollout(controller, version, knobs)
        outcome = follow(controller, console, traffic, timeout_s=timeout_s)
    finally:
        stats = traffic.stop()
        if fault in FAULTS:
            set_faults(0.0, 0.0)
    report_outcome(outcome, console, stats, f"demo-rollback-{fault}", fault=fault)
    rolled_back = outcome.state["status"] == "rolled_back"
    client = registry.get_client()
    console.print(
        f"registry: champion v{registry.get_alias_version(ALIAS_CHAMPION, client)}, "
        f"challenger {registry.get_alias_version('challenger', client) or 'none'}"
    )
    return 0 if rolled_back else 1


cli = demo_cli(__doc__)


@cli.command(help=__doc__)
def main(
    fault: Fault = "shuffled",
    speed: Annotated[float, typer.Option(help="messages per second")] = 50.0,
    steps: StepsOption = RolloutKnobs.steps,
    interval: IntervalOption = RolloutKnobs.interval,
    min_requests: MinRequestsOption = RolloutKnobs.min_requests,
    max_extensions: MaxExtensionsOption = RolloutKnobs.max_extensions,
    paired_percent: PairedPercentOption = RolloutKnobs.paired_percent,
    failure_limit: FailureLimitOption = RolloutKnobs.failure_limit,
    timeout: TimeoutOption = 600.0,
) -> None:
    """Run the demo; exit code 0 when the controller rolled the bad challenger back."""
    configure_logging("demo", "WARNING")
    knobs = RolloutKnobs(
        steps, interval, min_requests, max_extensions, paired_percent, failure_limit
    )
    raise typer.Exit(run(fault=fault, speed=speed, knobs=knobs, timeout_s=timeout))


if __name__ == "__main__":
    cli()
