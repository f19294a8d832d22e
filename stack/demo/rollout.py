"""Demo: the future period arrives as traffic, a challenger learns from its labels and is rolled
out by the canary controller to promotion.

1. The first part of the future period is replayed in event-time order: every message to
   serving's /v1/moderate (the champion answers) and to ingestion, every label 6 h (event
   time) after its message, so the stream keeps the features fresh and the message log fills.
2. `pipelines.train.train_challenger` retrains on history + those fresh labels and sets
   `challenger` when it passes the quality gate.
3. The rollout starts (steps, interval and minimum traffic chosen for a demo of minutes, not
   hours) while the rest of the period keeps flowing; each decision is printed as it happens.

Needs the stack (`make up`) and a champion (`make backfill train`).
Usage: `python -m stack.demo.rollout [--speed 40] [--interval 20] [--steps 20,50,100]`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

import pandas as pd
import typer

from modstack.canary_client import wide_console
from modstack.log import configure_logging
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
from pipelines.demo.preflight import ready_controller
from pipelines.demo.replayer import TrafficReplayer
from pipelines.demo.timeline import follow

console = wide_console()


def warm_up(warmup: pd.DataFrame, cut: pd.Timestamp, speed: float) -> None:
    """Replay the warm-up events (champion only) and wait until the processor logged them."""
    from pipelines.demo.replay import wait_for_processor

    warm_messages = int((warmup["kind"] == "message").sum())
    console.print(
        f"replaying {warm_messages} future messages (+ their labels) up to {cut:%Y-%m-%d} "
        f"at <= {speed:g} msg/s to serving and ingestion"
    )
    started = time.monotonic()
    traffic = TrafficReplayer(warmup, speed=speed, ingest=True)
    stats = traffic.run()
    console.print(
        f"  {stats.moderated} moderated ({dict(stats.by_action)}), {stats.failed} failed, "
        f"{stats.messages_ingested} messages ingested, {stats.user_reports} user reports, "
        f"{stats.moderator_labels} moderator labels "
        f"in {time.monotonic() - started:.0f} s"
    )

    def ids_of(kind: str) -> set[str]:
        return {p["message_id"] for p in warmup.loc[warmup["kind"] == kind, "payload"]}

    # labels arrive as reports and moderator decisions, not one per message: wait for messages
    waited = wait_for_processor(ids_of("message"), set(), get_settings().data_dir, timeout_s=300)
    console.print(f"  the processor logged every event ({waited:.1f} s after the last send)")


def retrain(cut: pd.Timestamp, ignore_gate: bool) -> str | None:
    """Retrain on the future period up to `cut` and set `challenger` when the gate passes (or
    is ignored); the version, or None (after printing why) when there is nothing to roll out."""
    from modstack.corpus import FUTURE_START
    from pipelines.train import TrainConfig, train_challenger

    result = train_challenger(
        start=FUTURE_START, end=cut.to_pydatetime(), config=TrainConfig(skip_gate=ignore_gate)
    )
    gate = result.gate
    console.print(
        f"  candidate v{result.version}: PR-AUC {result.candidate_metrics.get('pr_auc', 0):.3f} "
        f"in {result.seconds:.0f} s; gate {'passed' if gate and gate.passed else 'refused'}"
        + (" (ignored: --ignore-gate)" if ignore_gate and gate and not gate.passed else "")
    )
    if not result.challenger_set:
        failures = "; ".join(gate.failures) if gate else "no gate result"
        console.print(
            f"[red]the quality gate refused the retrained model ({failures}): nothing to roll "
            "out. Replay more of the period (--warmup-fraction) or pass --ignore-gate.[/]"
        )
        return None
    return result.version


def run(
    *,
    speed: float = 50.0,
    warmup_fraction: float = 0.5,
    skip_warmup: bool = False,
    ignore_gate: bool = False,
    label_delay: timedelta = timedelta(hours=6),
    knobs: RolloutKnobs | None = None,
    timeout_s: float = 900.0,
) -> int:
    """Run the demo; 0 when the challenger was promoted, 1 when not, 2 when it cannot start."""
    knobs = knobs or RolloutKnobs()
    controller = ready_controller(console, "rollout")
    if controller is None:
        return 2

    messages, _labels, events = future_timeline(label_delay)
    cut = messages["sent_at"].iloc[int(len(messages) * warmup_fraction)]
    warmup = events[events["time"] < cut]
    rest = events[events["time"] >= cut]

    console.rule("1. live traffic, champion only")
    if skip_warmup:
        console.print(f"  skipped: the message log already holds the period up to {cut:%Y-%m-%d}")
    else:
        warm_up(warmup, cut, speed)

    console.rule("2. retrain on the fresh labels")
    version = retrain(cut, ignore_gate)
    if version is None:
        return 1

    console.rule(f"3. canary rollout of v{version}")
    rollout_traffic = TrafficReplayer(rest, speed=speed, ingest=True, cycle=True).start()
    start_rollout(controller, version, knobs)
    try:
        outcome = follow(controller, console, rollout_traffic, timeout_s=timeout_s)
    finally:
        traffic_stats = rollout_traffic.stop()
    report_outcome(outcome, console, traffic_stats, "demo-rollout")
    return 0 if outcome.state["status"] == "promoted" else 1


cli = demo_cli(__doc__)


@cli.command(help=__doc__)
def main(
    speed: Annotated[float, typer.Option(help="messages per second")] = 50.0,
    warmup_fraction: Annotated[
        float, typer.Option(help="share of the future period replayed before retraining")
    ] = 0.5,
    skip_warmup: Annotated[
        bool,
        typer.Option(
            "--skip-warmup",
            help="the warm-up part is already in the message log (a second run): retrain at once",
        ),
    ] = False,
    ignore_gate: Annotated[
        bool,
        typer.Option(
            "--ignore-gate",
            help="roll the retrained model out even when the offline quality gate refuses it "
            "(the canary still judges it online; the refusal stays in the version's tags)",
        ),
    ] = False,
    label_delay_hours: float = 6.0,
    steps: StepsOption = RolloutKnobs.steps,
    interval: IntervalOption = RolloutKnobs.interval,
    min_requests: MinRequestsOption = RolloutKnobs.min_requests,
    max_extensions: MaxExtensionsOption = RolloutKnobs.max_extensions,
    paired_percent: PairedPercentOption = RolloutKnobs.paired_percent,
    failure_limit: FailureLimitOption = RolloutKnobs.failure_limit,
    timeout: TimeoutOption = 900.0,
) -> None:
    """Run the demo; exit code 0 when the challenger was promoted."""
    configure_logging("demo", "WARNING")
    knobs = RolloutKnobs(
        steps, interval, min_requests, max_extensions, paired_percent, failure_limit
    )
    code = run(
        speed=speed,
        warmup_fraction=warmup_fraction,
        skip_warmup=skip_warmup,
        ignore_gate=ignore_gate,
        label_delay=timedelta(hours=label_delay_hours),
        knobs=knobs,
        timeout_s=timeout,
    )
    raise typer.Exit(code)


if __name__ == "__main__":
    cli()
