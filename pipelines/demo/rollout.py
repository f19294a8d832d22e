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
Usage: `python -m pipelines.demo.rollout [--speed 40] [--interval 20] [--steps 20,50,100]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta

import pandas as pd

from modstack.log import configure_logging
from modstack.settings import get_settings
from pipelines.demo import traffic as demo
from services.canary.client import wide_console

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
    traffic = demo.TrafficReplayer(warmup, speed=speed, ingest=True)
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


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit code 0 when the challenger was promoted."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo.rollout", description=__doc__)
    parser.add_argument("--speed", type=float, default=50.0, help="messages per second")
    parser.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.5,
        help="share of the future period replayed before retraining",
    )
    parser.add_argument(
        "--skip-warmup",
        action="store_true",
        help="the warm-up part is already in the message log (a second run): retrain at once",
    )
    parser.add_argument(
        "--ignore-gate",
        action="store_true",
        help="roll the retrained model out even when the offline quality gate refuses it "
        "(the canary still judges it online; the refusal stays in the version's tags)",
    )
    parser.add_argument("--label-delay-hours", type=float, default=6.0)
    demo.add_rollout_arguments(parser, timeout_s=900.0)
    args = parser.parse_args(argv)
    configure_logging("demo", "WARNING")

    controller = demo.ready_controller(console, "rollout")
    if controller is None:
        return 2

    messages, _labels, events = demo.future_timeline(timedelta(hours=args.label_delay_hours))
    cut = messages["sent_at"].iloc[int(len(messages) * args.warmup_fraction)]
    warmup = events[events["time"] < cut]
    rest = events[events["time"] >= cut]

    console.rule("1. live traffic, champion only")
    if args.skip_warmup:
        console.print(f"  skipped: the message log already holds the period up to {cut:%Y-%m-%d}")
    else:
        warm_up(warmup, cut, args.speed)

    console.rule("2. retrain on the fresh labels")
    from modstack.corpus import FUTURE_START
    from pipelines.train import TrainConfig, train_challenger

    result = train_challenger(
        start=FUTURE_START, end=cut.to_pydatetime(), config=TrainConfig(skip_gate=args.ignore_gate)
    )
    gate = result.gate
    console.print(
        f"  candidate v{result.version}: PR-AUC {result.candidate_metrics.get('pr_auc', 0):.3f} "
        f"in {result.seconds:.0f} s; gate {'passed' if gate and gate.passed else 'refused'}"
        + (" (ignored: --ignore-gate)" if args.ignore_gate and gate and not gate.passed else "")
    )
    if not result.challenger_set:
        failures = "; ".join(gate.failures) if gate else "no gate result"
        console.print(
            f"[red]the quality gate refused the retrained model ({failures}): nothing to roll "
            "out. Replay more of the period (--warmup-fraction) or pass --ignore-gate.[/]"
        )
        return 1

    console.rule(f"3. canary rollout of v{result.version}")
    rollout_traffic = demo.TrafficReplayer(rest, speed=args.speed, ingest=True, cycle=True).start()
    demo.start_rollout(controller, result.version, args)
    try:
        outcome = demo.follow(controller, console, rollout_traffic, timeout_s=args.timeout)
    finally:
        traffic_stats = rollout_traffic.stop()
    demo.report_outcome(outcome, console, traffic_stats, "demo-rollout")
    return 0 if outcome.state["status"] == "promoted" else 1


if __name__ == "__main__":
    sys.exit(main())
