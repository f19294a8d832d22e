"""What both rollout demos share: a pre-flight check of the stack, a traffic replayer that sends
the future period to serving (and ingestion) in event-time order, and a follower that prints the
rollout's timeline as the controller decides.

Used by `stack.demo.rollout` (a retrained challenger promoted) and `stack.demo.rollback`
(a bad challenger rolled back on its own).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import pandas as pd
import typer
from rich.console import Console

from modstack.canary_client import ControllerClient, timeline_reasons, timeline_table
from modstack.names import CHECK_NAMES
from modstack.settings import get_settings

DEMO_ACTOR = "demo"
# the demo's users who report messages (a user report names its reporter)
REPORTERS = 500
WAIT_NOTE_EVERY_S = 5.0
log = logging.getLogger("pipelines.demo.traffic")
_REPEAT_SUFFIX = re.compile(r"-r\d+$")


def _renamed(payload: dict[str, Any], suffix: str) -> dict[str, Any]:
    """A message or label of a repeated pass, under its fresh id."""
    return dict(payload, message_id=payload["message_id"] + suffix) if suffix else payload


def _original_id(message_id: str) -> str:
    return _REPEAT_SUFFIX.sub("", message_id)


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
        try:
            response = httpx.get(f"{addr}/healthz", timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise StackNotReady(
                f"{name} is not answering at {addr} ({exc}): start the stack with `make up`"
            ) from exc
        if name == "serving":
            health = response.json()
    if not health.get("champion"):
        raise StackNotReady(
            "serving has no champion model yet: train one first (`make backfill train`)"
        )
    return health


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


def start_rollout(controller: ControllerClient, version: str | None, knobs: RolloutKnobs) -> dict:
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
    console.print(f"champion v{health['champion']} serves; controller at {controller.addr}")
    return controller


@dataclass
class TrafficStats:
    """What the replayer sent and what serving answered."""

    moderated: int = 0
    failed: int = 0  # not answered 200, after the one retry a shed request gets
    shed_retries: int = 0  # 503 + Retry-After (serving's load shedding), retried once
    by_variant: Counter = field(default_factory=Counter)
    by_action: Counter = field(default_factory=Counter)
    messages_ingested: int = 0
    user_reports: int = 0  # labels sent as user reports (delayed, for a share of messages)
    moderator_labels: int = 0  # review-queue items labelled through serving's review API
    requests_per_s: float = 0.0  # moderation requests answered per second, over the run
    last_event_time: datetime | None = None
    passes: int = 0


class TrafficReplayer:
    """Replays a timeline (pipelines.demo.replay.timeline: messages and labels in event-time order).

    Each message goes to serving's POST /v1/moderate (a few requests in flight, like several
    clients) and, with `ingest`, to ingestion with its label later in the timeline, so the
    stream keeps sender features fresh and the message log fills with labelled data.
    `cycle` starts over when the timeline ends, with fresh message ids (`-rN`), so a rollout
    never runs out of traffic; those repeats are ingested too, and labels arrive for them the
    way they do in production: user reports for a share `report_share` of the messages,
    `report_delay_s` after the answer, through ingestion's POST /v1/labels. With `moderate`, a
    moderator works through serving's review queue (GET /v1/review, POST /v1/review/{id}),
    answering from the corpus label.

    Args:
        events: the timeline.
        speed: messages per second at most (None: as fast as serving answers).
    """

    def __init__(
        self,
        events: pd.DataFrame,
        *,
        speed: float | None = None,
        ingest: bool = True,
        cycle: bool = False,
        workers: int = 8,
        chunk: int = 20,
        report_share: float = 0.5,
        report_delay_s: float = 5.0,
        moderate: bool = True,
    ) -> None:
        settings = get_settings()
        self.events = events
        self.speed = speed
        self.ingest = ingest
        self.cycle = cycle
        self.workers = workers
        self.chunk = chunk
        self.serving_addr = settings.serving_addr
        self.ingestion_addr = settings.ingestion_addr
        self.admin_token = settings.admin_token.get_secret_value()
        self.report_share = report_share
        self.report_delay_s = report_delay_s
        self.moderate = moderate
        # the corpus label of every message: what a reporting user or a moderator would say
        labels = events.loc[events["kind"] == "label", "payload"]
        self.truth: dict[str, dict[str, Any]] = {p["message_id"]: p for p in labels}
        self._reports: list[tuple[float, dict[str, Any]]] = []  # (due, label), in due order
        self._rng = random.Random(7)
        self.stats = TrafficStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- running ------------------------------------------------------------------------------

    def run(self) -> TrafficStats:
        """Send the whole timeline in this thread (until stopped, when cycling)."""
        from pipelines.demo.replay import IngestionClient, ReplayReport

        report = ReplayReport()
        ingestion = IngestionClient(self.ingestion_addr, report) if self.ingest else None
        started, sent_messages = time.perf_counter(), 0
        moderator = None
        if self.moderate:
            moderator = threading.Thread(target=self._moderator, name="demo-moderator", daemon=True)
            moderator.start()
        try:
            with (
                httpx.Client(base_url=self.serving_addr, timeout=30) as http,
                ThreadPoolExecutor(self.workers, thread_name_prefix="demo-traffic") as pool,
            ):
                while not self._stop.is_set():
                    suffix = f"-r{self.stats.passes}" if self.stats.passes else ""
                    for start in range(0, len(self.events), self.chunk):
                        if self._stop.is_set():
                            break
                        part = self.events.iloc[start : start + self.chunk]
                        messages = [
                            p
                            for k, p in zip(part["kind"], part["payload"], strict=True)
                            if k == "message"
                        ]
                        list(
                            pool.map(
                                self._moderate,
                                [http] * len(messages),
                                messages,
                                [suffix] * len(messages),
                            )
                        )
                        if ingestion is not None and messages:
                            # messages before their labels, as in pipelines.demo.replay
                            self.stats.messages_ingested += ingestion.send(
                                "/v1/messages", "messages", [_renamed(m, suffix) for m in messages]
                            )
                        # the corpus labels are not sent: labels arrive as in production,
                        # user reports for a share of the messages and moderator decisions
                        if ingestion is not None:
                            self._queue_reports(messages, suffix)
                            self._send_due_reports(ingestion)
                        self.stats.last_event_time = part["time"].iloc[-1].to_pydatetime()
                        sent_messages += len(messages)
                        if self.speed:
                            ahead = started + sent_messages / self.speed - time.perf_counter()
                            if ahead > 0:
                                self._stop.wait(ahead)
                    self.stats.passes += 1
                    if not self.cycle:
                        break
        finally:
            self._stop.set()
            if moderator is not None:
                moderator.join(timeout=10)
            if ingestion is not None:
                ingestion.close()
            elapsed = time.perf_counter() - started
            self.stats.requests_per_s = self.stats.moderated / elapsed if elapsed > 0 else 0.0
        return self.stats

    # -- labels as they arrive in production -----------------------------------------------------

    def _queue_reports(self, messages: list[dict[str, Any]], suffix: str) -> None:
        """A share of the messages gets a user report, due after the delay, from one of
        `REPORTERS` users (reputation counts distinct reporters, with a cap each)."""
        due = time.monotonic() + self.report_delay_s
        for message in messages:
            label = self.truth.get(message["message_id"])
            if label is None or self._rng.random() >= self.report_share:
                continue
            reporter = f"demo-user-{self._rng.randrange(REPORTERS)}"
            report = dict(_renamed(label, suffix), source="user_report", reporter_id=reporter)
            self._reports.append((due, report))

    def _send_due_reports(self, ingestion: Any) -> None:
        now = time.monotonic()
        due = [r for t, r in self._reports if t <= now]
        if not due:
            return
        self._reports = [(t, r) for t, r in self._reports if t > now]
        self.stats.user_reports += ingestion.send("/v1/labels", "labels", due)

    def _moderator(self) -> None:
        """Label what serving queued for review, from the corpus label (the demo's moderator)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        with httpx.Client(base_url=self.serving_addr, timeout=30, headers=headers) as http:
            while not self._stop.wait(2.0):
                try:
                    queue = http.get("/v1/review", params={"limit": 200})
                    queue.raise_for_status()
                    for item in queue.json().get("items", []):
                        message_id = item["message_id"]
                        truth = self.truth.get(_original_id(message_id))
                        if truth is None:
                            continue
                        answer = http.post(
                            f"/v1/review/{message_id}",
                            json={"label": truth["label"], "moderator": "demo-moderator"},
                        )
                        if answer.status_code == 200:
                            with self._lock:
                                self.stats.moderator_labels += 1
                except httpx.HTTPError as exc:  # serving busy or restarting: try again
                    log.warning("demo moderator: %s", exc)

    def _moderate(self, http: httpx.Client, message: dict[str, Any], suffix: str) -> None:
        body = _renamed(message, suffix)
        try:
            response = http.post("/v1/moderate", json=body)
            if response.status_code == 503 and "Retry-After" in response.headers:
                # shed by serving: a well-behaved client waits as told and tries once more
                with self._lock:
                    self.stats.shed_retries += 1
                self._stop.wait(min(float(response.headers["Retry-After"]), 5.0))
                response = http.post("/v1/moderate", json=body)
        except (httpx.HTTPError, ValueError):
            with self._lock:
                self.stats.failed += 1
            return
        with self._lock:
            if response.status_code == 200:
                answer = response.json()
                self.stats.moderated += 1
                self.stats.by_variant[answer["variant"]] += 1
                self.stats.by_action[answer["action"]] += 1
            else:
                self.stats.failed += 1

    def start(self) -> TrafficReplayer:
        """Run in a background thread (see `stop`)."""

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # surfaced by the follower, not lost in the thread
                self.error = exc

        self._thread = threading.Thread(target=target, name="demo-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> TrafficStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        return self.stats


# -- following the rollout ---------------------------------------------------------------------


def _check_brief(checks: dict[str, dict[str, Any]]) -> str:
    parts = []
    for name in CHECK_NAMES:
        check = checks.get(name)
        if check is None:
            continue
        value = check.get("value")
        shown = "n/a" if value is None else f"{value:.3g}"
        mark = {True: "[green]ok[/]", False: "[bold red]FAIL[/]", None: "[dim]skip[/]"}[
            check.get("passed")
        ]
        parts.append(f"{name} {shown} {mark}")
    return " | ".join(parts)


@dataclass
class RolloutOutcome:
    """How the rollout ended and what it took."""

    state: dict[str, Any]
    seconds: float  # from the start event to the final decision (controller clock)
    analyses: int  # windows judged (advance, analysis_failed, promote, rollback)
    wall_seconds: float  # what the demo waited, including serving loading the challenger


def follow(
    controller: ControllerClient,
    console: Console,
    traffic: TrafficReplayer | None = None,
    timeout_s: float = 900.0,
    poll_s: float = 1.0,
) -> RolloutOutcome:
    """Print each new decision of the rollout until it is promoted or rolled back."""
    started = time.monotonic()
    shown = 0
    last_wait_note = 0.0
    while True:
        state = controller.status()
        history = state.get("history", [])
        t0 = datetime.fromisoformat(history[0]["at"]) if history else None
        for event in history[shown:]:
            offset = (datetime.fromisoformat(event["at"]) - t0).total_seconds() if t0 else 0.0
            action = event["action"]
            colour = {
                "promote": "bold green",
                "rollback": "bold red",
                "abort": "red",
                "analysis_failed": "yellow",
                "advance": "green",
            }.get(action, "cyan")
            console.print(
                f"[dim]+{offset:6.1f}s[/] [{colour}]{action:<15}[/] weight "
                f"{event['weight_percent']:>5g}%  {_check_brief(event.get('checks', {}))}"
            )
            if action in ("analysis_failed", "rollback", "abort", "start"):
                console.print(f"           [dim]{event.get('reason', '')}[/]")
        shown = len(history)
        if state["status"] in ("promoted", "rolled_back"):
            break
        reason = state.get("reason") or ""
        # the controller waits for the step's minimum traffic: say so every few seconds
        if "waiting" in reason and time.monotonic() - last_wait_note >= WAIT_NOTE_EVERY_S:
            console.print(
                f"[dim]           {state['status']} at {state['weight_percent']:g}%: {reason}[/]"
            )
            last_wait_note = time.monotonic()
        if traffic is not None and traffic.error is not None:
            raise RuntimeError(f"the traffic replayer failed: {traffic.error}") from traffic.error
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(
                f"the rollout did not finish within {timeout_s:g} s (status {state['status']}, "
                f"{state.get('reason')}); `modstack rollout status` shows it"
            )
        time.sleep(poll_s)
    history = state["history"]
    seconds = (
        datetime.fromisoformat(history[-1]["at"]) - datetime.fromisoformat(history[0]["at"])
    ).total_seconds()
    analyses = sum(
        1
        for e in history
        if e["action"] in ("advance", "analysis_failed", "promote", "rollback") and e.get("checks")
    )
    return RolloutOutcome(state, seconds, analyses, time.monotonic() - started)


def print_outcome(outcome: RolloutOutcome, console: Console, traffic: TrafficStats) -> None:
    """The timeline table and the numbers worth remembering."""
    state = outcome.state
    console.print(timeline_table(state, title="rollout timeline"))
    for line in timeline_reasons(state):
        console.print(f"  [dim]{line}[/]")
    interval = state.get("interval_s")
    console.print(
        f"[bold]{state['status']}[/] v{state['challenger_version']} after "
        f"{outcome.seconds:.1f} s ({outcome.analyses} analysed windows of {interval:g} s; "
        f"demo waited {outcome.wall_seconds:.1f} s); traffic: {traffic.moderated} moderated "
        f"({dict(traffic.by_variant)}), {traffic.failed} failed, actions {dict(traffic.by_action)}"
    )
    final = state["history"][-1]
    for name in CHECK_NAMES:
        check = final.get("checks", {}).get(name)
        if not check:
            continue
        verdict = {True: "passed", False: "FAILED", None: "skipped"}[check.get("passed")]
        console.print(
            f"  {name:<16} {verdict:<8} value {_fmt(check.get('value'))} limit "
            f"{_fmt(check.get('threshold'))}  champion {_fmt(check.get('champion'))} "
            f"challenger {_fmt(check.get('challenger'))}  [dim]{check.get('detail', '')}[/]"
        )


def report_outcome(
    outcome: RolloutOutcome, console: Console, traffic: TrafficStats, name: str, **extra: Any
) -> Path:
    """Print the rollout's outcome and write it to var/run/results/<name>.json; the path."""
    print_outcome(outcome, console, traffic)
    path = write_demo_result(name, outcome.state, traffic, outcome.seconds, **extra)
    console.print(f"results: {path}")
    return path


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def future_timeline(label_delay: timedelta) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(messages, labels, timeline) of the corpus future period, in event-time order."""
    from modstack.corpus import load_corpus
    from pipelines.backfill import corpus_events
    from pipelines.demo.replay import timeline

    messages, labels = corpus_events(load_corpus(), "future", label_delay)
    messages = messages.sort_values("sent_at", kind="stable").reset_index(drop=True)
    return messages, labels, timeline(messages, labels)


def write_demo_result(
    name: str,
    state: dict[str, Any],
    traffic: TrafficStats,
    seconds: float | None = None,
    **extra: Any,
) -> Path:
    """var/run/results/<name>.json: the rollout's state and full history (every check with its
    values, threshold and verdict at every window), the traffic the demo sent and how labels
    arrived. docs/canary.md quotes its numbers."""
    import json
    import shlex
    import sys
    from dataclasses import asdict

    folder = get_settings().run_dir / "results"
    folder.mkdir(parents=True, exist_ok=True)
    traffic_body = asdict(traffic)
    traffic_body["last_event_time"] = (
        traffic.last_event_time.isoformat() if traffic.last_event_time else None
    )
    body = {
        "name": name,
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "status": state.get("status"),
        "reason": state.get("reason"),
        "rollout_seconds": seconds,
        "traffic": traffic_body,
        "rollout": state,
        **extra,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(_str_keys(body), indent=2, default=str))
    return path


def _str_keys(value: Any) -> Any:
    """JSON object keys must be strings; counters of (variant, action) pairs have tuples."""
    if isinstance(value, dict):
        key = lambda k: "/".join(map(str, k)) if isinstance(k, tuple) else k  # noqa: E731
        return {key(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value
