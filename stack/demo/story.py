"""`make demo`: the whole story on one machine, every box a real process.

corpus -> local stack -> history through ingestion and the stream -> first champion (LightGBM vs
baseline, gated) -> the future period arrives as traffic -> monitoring sees the drift -> after
RETRAIN_CONSECUTIVE_WINDOWS drifted windows it retrains on the labels that arrived -> the canary
controller rolls the challenger out -> promotion -> drift measured against the new champion.

The demo starts from a clean slate (message log, Feast store, MLflow store, caches; the parsed
corpus is kept) and leaves the stack running so MLflow, Prometheus and the reports can be
explored; `make down` stops it. `prepare()` is also what `make demo-rollback` runs first.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modstack.canary_client import ControllerClient
from modstack.log import configure_logging
from modstack.policy import DEFAULT_POLICY
from modstack.settings import CommonSettings, get_settings
from modstack.waits import wait_until
from pipelines.demo.cli import demo_cli
from pipelines.demo.future import demo_corpus, future_timeline
from pipelines.demo.replayer import TrafficReplayer, TrafficStats
from pipelines.demo.results import write_demo_result

console = Console(width=max(110, shutil.get_terminal_size((110, 24)).columns))

# Knobs that make the story fit in minutes: drift windows of 1,000 rows, a retrain after three
# drifted windows (enough fresh labels for an honest gate), canary steps of 20 s that see >= 1,000
# paired requests per variant at the demo's rate (every request is scored by both variants),
# extended while labels are still arriving. Set before the stack starts (supervisord passes
# the environment to every process); an explicit env var wins.
DEMO_ENVIRONMENT = {
    # The story replays months of traffic in minutes; the broker keeps it in memory. On the
    # durable default (Tansu on the local S3 server, `make up`) producers alone are fast (100
    # records in ~35 ms; 1, 2, 4 concurrent producers: 1,758, 2,121, 3,368 records/s), but the
    # whole demo on it (four consumer groups fetching, every service on two cores) replayed
    # history at 241 events/s instead of ~2,000 on 2026-12-06, its canary saw ~150 challenger
    # requests per 20 s step instead of ~1,000 (7 extensions for the first), and serving's
    # prediction events expired unacknowledged after 30 s. Which part of the broker's S3 path
    # saturates was not isolated. Durability is shown by tests/faults/test_broker_durability.py.
    "BROKER_STORAGE": "memory",
    # 1,000-row windows (one per ~20 s): with 300-row windows every 6 s, drift evaluation
    # (Evidently, 5-30 s per window under the demo's load) kept one core busy, and serving and
    # the retrain starved
    "MONITORING_WINDOW_MAX_ROWS": "1000",
    "MONITORING_WINDOW_MIN_ROWS": "500",
    "MONITORING_WINDOW_MAX_SECONDS": "60",
    "RETRAIN_CONSECUTIVE_WINDOWS": "3",
    "RETRAIN_COOLDOWN_SECONDS": "1800",
    "CANARY_STEPS": "20,50,100",
    "CANARY_INTERVAL_S": "20",
    "CANARY_MIN_REQUESTS": "1000",
    "CANARY_PAIRED_PERCENT": "100",
    "CANARY_MAX_EXTENSIONS": "8",
    "CANARY_MIN_DISCORDANT": "20",
}
DEFAULT_SPEED = 50.0  # future messages per second (serving scores each twice while pairing)
# Under DATA_DIR, what a demo run keeps: the corpus and its npm cache. The rest is state.
KEPT_DATA = ("corpus", "cache")
LABEL_DELAY = timedelta(hours=6)


class DemoFailed(RuntimeError):
    """A stage of the demo could not complete; the message says which and why."""


def reset_state(settings: CommonSettings) -> None:
    """Stop the stack and remove every piece of state but the parsed corpus."""
    from stack.lifecycle import down

    down(settings, say=lambda line: None)
    data_dir = settings.data_dir
    if data_dir.exists():
        for child in data_dir.iterdir():
            if child.name not in KEPT_DATA:
                shutil.rmtree(child) if child.is_dir() else child.unlink()


def start_stack(settings: CommonSettings) -> None:
    """`modstack up` for every process, failing with the names of those that did not start."""
    from stack.lifecycle import up
    from stack.programs import StackError

    try:
        result = up(settings, say=lambda line: console.print(f"  [dim]{line}[/]"))
    except StackError as exc:
        raise DemoFailed(str(exc)) from exc
    if result.failed:
        raise DemoFailed(
            f"the stack did not come up: {', '.join(result.failed)} "
            "(`modstack logs NAME` shows why)"
        )


def serving_champion(settings: CommonSettings) -> str | None:
    """The champion version serving has loaded (None until it has one)."""
    health = httpx.get(f"{settings.serving_addr}/healthz", timeout=5).json()
    return (health.get("policies", {}).get(DEFAULT_POLICY) or {}).get("champion")


def _loaded_champion(settings: CommonSettings, timeout_s: float) -> str:
    """Wait until serving has loaded a champion; its version."""
    what = "serving to load the champion"
    try:
        champion = wait_until(
            lambda: serving_champion(settings),
            timeout_s,
            what,
            interval_s=1.0,
            retry_on=(httpx.HTTPError,),
        )
    except TimeoutError:
        raise DemoFailed(f"timed out after {timeout_s:.0f} s waiting for {what}") from None
    return str(champion)


def monitoring_status(settings: CommonSettings) -> dict[str, Any]:
    """Monitoring's /v1/status (windows, last drift result, retraining)."""
    return httpx.get(f"{settings.monitoring_addr}/v1/status", timeout=5).json()


def prepare(fresh: bool = True) -> str:
    """Stages 1-4: corpus, stack, history through the stream, first champion. Returns the
    champion version serving loaded."""
    from pipelines.data import run as build_corpus
    from pipelines.demo.replay import run as replay
    from pipelines.train import main as train

    for key, value in DEMO_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    get_settings.cache_clear()
    settings = get_settings()

    console.rule("[bold]1. the corpus")
    build_corpus()

    console.rule("[bold]2. the local stack")
    if fresh:
        console.print("  clean slate: stopping any running stack, clearing state (corpus kept)")
        reset_state(settings)
    start_stack(settings)
    console.print(f"  moderators' console: {settings.review_addr} ({_dev_login()})")

    console.rule("[bold]3. history through ingestion -> Kafka -> processor -> Feast")
    replay("history", label_delay=LABEL_DELAY, console=console, corpus=demo_corpus())

    console.rule("[bold]4. first champion: candidate vs baseline, history -> future holdout")
    result = train()
    configure_logging("demo", "WARNING")
    if not getattr(result, "promoted", False):
        raise DemoFailed("the first model did not pass the gate against the baseline: no champion")
    version = _loaded_champion(settings, timeout_s=120)
    console.print(f"  serving answers with champion v{version}")
    return version


@dataclass
class Timeline:
    """What the demo saw happen, for the closing summary."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    rollout: dict[str, Any] = field(default_factory=dict)
    champion_before: str = ""
    champion_after: str = ""
    speed: float = 0.0
    traffic: TrafficStats | None = None


def _window_line(result: dict[str, Any]) -> str:
    share = result.get("drift_share")
    prediction = result.get("prediction_drift_score")
    return (
        f"window of {result.get('rows', '?')} rows vs champion "
        f"v{result.get('reference_model_version', '?')}: "
        f"drift share {share if share is None else f'{share:.2f}'}, prediction drift "
        f"{prediction if prediction is None else f'{prediction:.3f}'}, "
        f"{'[red]DRIFT[/]' if result.get('drift_detected') else '[green]no drift[/]'}"
    )


class _LiveFollower:
    """Prints what monitoring, retraining and the canary did since the last look."""

    def __init__(
        self, story: Timeline, traffic: TrafficReplayer, controller: ControllerClient
    ) -> None:
        self.story = story
        self.traffic = traffic
        self.controller = controller
        self.settings = get_settings()
        self._seen_report: Any = None
        self._seen_retrain = 0
        self._seen_rollout = 0
        self.windows_after_promotion = 0

    def step(self, after_windows: int) -> bool:
        """One look; True when the story is over (rolled back, or promoted and followed for
        `after_windows` drift windows)."""
        if self.traffic.error is not None:
            raise DemoFailed(f"the traffic replayer failed: {self.traffic.error}")
        status = monitoring_status(self.settings)
        self._windows(status)
        self._retrains(status["retrain"]["history"])
        state = self._rollout()
        if state.get("status") == "rolled_back":
            return True
        return state.get("status") == "promoted" and self.windows_after_promotion >= after_windows

    def _windows(self, status: dict[str, Any]) -> None:
        result = status.get("last_result")
        if result and status.get("last_report") != self._seen_report:
            self._seen_report = status.get("last_report")
            self.story.windows.append(result)
            console.print(f"  [cyan]monitoring[/] {_window_line(result)}")
            if self.story.rollout.get("status") == "promoted":
                self.windows_after_promotion += 1

    def _retrains(self, history: list[dict[str, Any]]) -> None:
        for event in history[self._seen_retrain :]:
            self.story.retrains.append(event)
            detail = event.get("detail") or event.get("reason", "")
            console.print(f"  [magenta]retraining[/] {event['event']}: {escape(detail[:400])}")
        self._seen_retrain = len(history)

    def _rollout(self) -> dict[str, Any]:
        state = self.controller.status()
        history = state.get("history", [])
        for event in history[self._seen_rollout :]:
            console.print(
                f"  [yellow]canary[/] {event['action']:<15} weight "
                f"{event['weight_percent']:>5g}%  {event.get('reason', '')[:90]}"
            )
        self._seen_rollout = len(history)
        if history:
            self.story.rollout = state
        return state


def live_story(champion: str, speed: float, timeout_s: float, after_windows: int) -> Timeline:
    """Stages 5-7: future traffic, drift, retraining, canary, promotion, drift afterwards."""
    settings = get_settings()
    story = Timeline(champion_before=champion, speed=speed)
    console.rule("[bold]5. the future period arrives as traffic (moderate + ingest + labels)")
    _, _, events = future_timeline(LABEL_DELAY)
    console.print(f"  {int((events['kind'] == 'message').sum())} messages at <= {speed:g}/s")
    traffic = TrafficReplayer(events, speed=speed, ingest=True, cycle=True).start()
    follower = _LiveFollower(story, traffic, ControllerClient())
    try:
        wait_until(
            lambda: follower.step(after_windows),
            timeout_s,
            "the story",
            interval_s=2.0,
            retry_on=(),
        )
    except TimeoutError:
        raise DemoFailed(
            f"the story did not finish within {timeout_s:.0f} s "
            f"(rollout: {story.rollout.get('status', 'not started')}); see `modstack status`"
        ) from None
    finally:
        stats = traffic.stop()
    story.champion_after = str(serving_champion(settings))
    story.traffic = stats
    _print_traffic(stats)
    if story.rollout:
        path = write_demo_result(
            "demo-rollout",
            story.rollout,
            stats,
            champion_before=story.champion_before,
            champion_after=story.champion_after,
            speed=speed,
            retrains=story.retrains,
        )
        console.print(f"  results: {path}")
    return story


def _print_traffic(stats: TrafficStats) -> None:
    console.print(
        f"  traffic: {stats.moderated} moderated {dict(stats.by_variant)}, {stats.failed} failed "
        f"({stats.shed_retries} shed and retried after Retry-After), "
        f"{stats.requests_per_s:.0f} req/s; labels: {stats.user_reports} user reports, "
        f"{stats.moderator_labels} moderator labels"
    )


def _mean_share(rows: list[dict[str, Any]]) -> str:
    values = [w["drift_share"] for w in rows if w.get("drift_share") is not None]
    return f"{sum(values) / len(values):.2f} over {len(values)} windows" if values else "-"


def _against(story: Timeline, version: str) -> list[dict[str, Any]]:
    """The drift windows measured against the champion `version`."""
    return [w for w in story.windows if w.get("reference_model_version") == version]


def summary(story: Timeline, settings: CommonSettings) -> Table:
    """What happened and where to look."""
    drifted = [w for w in story.windows if w.get("drift_detected")]
    table = Table(title="ModStack demo: what happened and where to look", show_lines=False)
    table.add_column("what")
    table.add_column("result / where")
    table.add_row("champion", f"v{story.champion_before} -> v{story.champion_after}")
    table.add_row("drift windows", f"{len(drifted)} of {len(story.windows)} drifted")
    table.add_row(
        "drift share vs first champion", _mean_share(_against(story, story.champion_before))
    )
    if story.champion_after != story.champion_before:
        table.add_row(
            "drift share vs new champion", _mean_share(_against(story, story.champion_after))
        )
    table.add_row("retraining", "; ".join(str(e.get("event", e)) for e in story.retrains) or "-")
    table.add_row(
        "rollout",
        f"{story.rollout.get('status', '-')}: {story.rollout.get('reason', '')}"[:160],
    )
    for what, where in _where_to_look(settings):
        table.add_row(what, where)
    return table


def _dev_login() -> str:
    """The dev moderator's login, as docs/review.md documents it."""
    from services.review.settings import DEV_ACCOUNTS

    alice = DEV_ACCOUNTS[0]
    return f"log in as {alice.username} / {alice.password.get_secret_value()}"


def _where_to_look(settings: CommonSettings) -> list[tuple[str, str]]:
    return [
        ("moderators' console", f"{settings.review_addr} ({_dev_login()})"),
        ("MLflow UI", settings.mlflow_tracking_uri),
        ("drift reports", f"{settings.monitoring_addr}/v1/reports"),
        ("Prometheus", settings.prometheus_url or "http://127.0.0.1:9090 (if installed)"),
        ("metrics", f"{settings.serving_addr}/metrics, {settings.monitoring_addr}/metrics"),
        ("rollout history", "modstack rollout status"),
        ("stop the stack", "make down"),
    ]


def run(
    *,
    speed: float = DEFAULT_SPEED,
    timeout_s: float = 900.0,
    after_windows: int = 2,
    fresh: bool = True,
) -> int:
    """Run the whole demo; 0 when the challenger was promoted, 1 otherwise."""
    started = time.monotonic()
    try:
        champion = prepare(fresh=fresh)
        story = live_story(champion, speed, timeout_s, after_windows)
    except DemoFailed as exc:
        console.print(f"[bold red]demo stopped:[/] {exc}")
        return 1
    console.rule("[bold]summary")
    console.print(summary(story, get_settings()))
    console.print(f"demo took {time.monotonic() - started:.0f} s; the stack is still up")
    return 0 if story.rollout.get("status") == "promoted" else 1


cli = demo_cli(__doc__)


@cli.command(help=__doc__)
def main(
    speed: Annotated[float, typer.Option(help="future messages per second")] = DEFAULT_SPEED,
    timeout: Annotated[float, typer.Option(help="bound on stages 5-7 (s)")] = 900.0,
    after_windows: Annotated[int, typer.Option(help="drift windows to show after promotion")] = 2,
    keep_state: Annotated[
        bool, typer.Option("--keep-state", help="do not start from scratch")
    ] = False,
) -> None:
    """Run the whole demo; exit 0 when the challenger was promoted."""
    configure_logging("demo", "WARNING")
    code = run(speed=speed, timeout_s=timeout, after_windows=after_windows, fresh=not keep_state)
    raise typer.Exit(code)


if __name__ == "__main__":
    cli()
