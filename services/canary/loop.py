"""The controller loop: read the rollout state, collect the step's metrics, judge, act, save.

Every `CANARY_TICK_S` it re-reads the state from the registry (the single source of truth, so
a restart resumes where it stopped), keeps a metrics window per step, and when the step's
interval is over hands the window to `analysis.analyze` and the decision to
`state_machine.judge`. Registry side effects (clear or promote the challenger alias) come
before saving the new state, and `reconcile` repairs a crash between the two.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from modstack.names import ALIAS_CHALLENGER, ALIAS_CHAMPION, REGISTERED_MODEL, VARIANT_CHAMPION
from modstack.registry import aliases as registry
from modstack.registry.expectation import OfflineExpectation, load_expectation
from modstack.registry.rollout import RolloutMode, RolloutState, RolloutStore
from services.canary import state_machine as cc
from services.canary.analysis import analyze, windows_from_samples
from services.canary.checks import AnalysisThresholds
from services.canary.evidence import PairedLabels, VariantWindow
from services.canary.label_feed import LabelFollower
from services.canary.metrics import CanaryMetrics
from services.canary.sources import MetricsSource, PrometheusSource
from services.canary.verdict import Analysis

log = logging.getLogger(__name__)


class CanaryRunner:
    """Owns the rollout: the loop's ticks and the admin actions share one lock (single writer).

    Args:
        client: `mlflow.MlflowClient` for the registry.
        source: where the serving metrics come from (Prometheus or scraping).
        policy / thresholds: the rollout steps and the analysis limits.
        labels: optional follower of predictions + labels for the precision check.
    """

    def __init__(
        self,
        client: Any,
        source: MetricsSource,
        policy: cc.RolloutPolicy,
        thresholds: AnalysisThresholds,
        metrics: CanaryMetrics,
        labels: LabelFollower | None = None,
        tick_s: float = 2.0,
        model_name: str = REGISTERED_MODEL,
    ) -> None:
        self.client = client
        self.model_name = model_name  # the policy's registered model: its rollout, its versions
        self.store = RolloutStore(client, model_name)
        self.source = source
        self.policy = policy
        self.thresholds = thresholds
        self.metrics = metrics
        self.labels = labels
        self.tick_s = tick_s
        self.lock = threading.RLock()
        self.last_analysis: Analysis | None = None
        self.last_error = ""
        self._window_key: tuple[str, datetime | None] | None = None
        self._label_rollout = ""
        self._baseline: VariantWindow | None = None
        self._reconciled = ""
        # the challenger's offline expectation, read once per rollout from its MLflow run
        self._expectation: tuple[str, OfflineExpectation | None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loop ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.labels is not None:
            self.labels.start()
        self._thread = threading.Thread(target=self._run, name="canary-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.labels is not None:
            self.labels.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = ""
            except Exception as exc:  # registry or metrics down: keep the state, try again
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("tick failed: %s", self.last_error)
            self._stop.wait(self.tick_s)

    def tick(self, now: datetime | None = None) -> cc.Decision | None:
        """One pass of the loop; returns the decision when a window was judged."""
        with self.lock:
            state = self.store.load(with_history=False)
            state = self._reconcile(state)
            self.metrics.show_state(state)
            if state.status != "progressing":
                return None
            self._follow_window(state)
            due = cc.window_due(state, cc.policy_of(state, self.policy), now)
            # Scraping must see every interval to notice replica restarts; Prometheus keeps
            # its own history, so it is asked only when the window is judged.
            if not due and isinstance(self.source, PrometheusSource):
                return None
            samples = self.source.collect()
            if not due:
                return None
            return self._judge(samples, now)

    def _follow_window(self, state: RolloutState) -> None:
        """Start a new metrics window when the step (or its retry, or the rollout) changed."""
        key = (state.rollout_id, state.step_started_at)
        if key == self._window_key:
            return
        if state.rollout_id != self._label_rollout:
            self._baseline = None
            self._label_rollout = state.rollout_id
            if self.labels is not None:
                with self.labels.lock:
                    self.labels.join.reset(state.started_at)
        self.source.begin_window()
        self._window_key = key

    def expectation(self, version: str) -> OfflineExpectation | None:
        """The challenger's offline expectation (cached per version; None when not logged)."""
        if self._expectation is None or self._expectation[0] != version:
            try:
                found = load_expectation(self.client, self.model_name, version)
            except Exception as exc:  # a run without the artifact, or MLflow briefly down
                log.warning("no offline expectation for v%s: %s", version, exc)
                found = None
            self._expectation = (version, found)
        return self._expectation[1]

    def _pairs(self) -> PairedLabels:
        if self.labels is None:
            return PairedLabels()
        with self.labels.lock:
            return self.labels.join.paired()

    def _judge(self, samples: Any, now: datetime | None) -> cc.Decision:
        state = self.store.load()
        windows = windows_from_samples(samples)
        if self.labels is not None:
            with self.labels.lock:
                for variant, window in windows.items():
                    blocks = self.labels.join.blocks(variant)
                    window.labelled_blocks, window.labelled_blocks_spam = (
                        blocks.labelled,
                        blocks.spam,
                    )
        champion = windows.get(VARIANT_CHAMPION)
        if champion is not None and champion.observations > 0:
            self._baseline = champion
        thresholds = self.thresholds
        if state.min_requests:
            thresholds = replace(thresholds, min_requests=state.min_requests)
        analysis = analyze(
            windows,
            thresholds,
            self._baseline,
            pairs=self._pairs(),
            expectation=self.expectation(str(state.challenger_version)),
            champion_version=state.champion_version,
            final_step=state.step >= len(state.steps) - 1,
        )
        self.last_analysis = analysis
        new, decision = cc.judge(state, analysis, cc.policy_of(state, self.policy), now=now)
        # Registry first, then the state: whoever reads `promoted` / `rolled_back` finds the
        # aliases already moved (a crash in between is repaired by `_reconcile`).
        if decision is cc.Decision.PROMOTE:
            registry.promote_challenger(new.reason, self.client, model=self.model_name)
        elif decision is cc.Decision.ROLLBACK:
            self._clear_challenger(new)
        self.store.save(new)
        self._count(decision, analysis, new)
        log.info(
            "step %d at %g%%: %s (%s) -> %s",
            state.step + 1,
            state.weight_percent,
            decision.value,
            analysis.summary(),
            new.reason,
        )
        return decision

    def _count(self, decision: cc.Decision, analysis: Analysis, state: RolloutState) -> None:
        self.metrics.analyses.labels(decision.value).inc()
        self.metrics.show_analysis(analysis)
        if decision is cc.Decision.ROLLBACK:
            self.metrics.rollbacks.inc()
        elif decision is cc.Decision.PROMOTE:
            self.metrics.promotions.inc()
        self.metrics.show_state(state)

    def _clear_challenger(self, state: RolloutState) -> None:
        if (
            registry.get_alias_version(ALIAS_CHALLENGER, self.client, model=self.model_name)
            == state.challenger_version
        ):
            registry.clear_challenger(self.client, model=self.model_name)

    def _reconcile(self, state: RolloutState) -> RolloutState:
        """Repair the registry after a crash between a side effect and the state save."""
        if (
            state.status == "rolled_back"
            and state.challenger_version
            and self._reconciled != state.rollout_id
        ):
            self._clear_challenger(state)
            self._reconciled = state.rollout_id  # once per rollout, not every tick
        if not state.active:
            return state
        if (
            registry.get_alias_version(ALIAS_CHALLENGER, self.client, model=self.model_name)
            == state.challenger_version
        ):
            return state
        full = self.store.load()
        champion = registry.get_alias_version(ALIAS_CHAMPION, self.client, model=self.model_name)
        if champion == state.challenger_version:
            new = cc.promote_now(full, cc.CONTROLLER, "promotion completed (alias already moved)")
            self.metrics.promotions.inc()
        else:
            # Either a rollback that crashed before saving, or someone moved the alias away.
            new = cc.abort(full, cc.CONTROLLER, "challenger alias removed or moved: rolled back")
            self.metrics.rollbacks.inc()
        log.warning("reconciled rollout %s: %s", state.rollout_id, new.reason)
        return self.store.save(new)

    # -- admin actions -------------------------------------------------------------------------

    def status(self) -> RolloutState:
        """The state with its full history."""
        return self.store.load()

    def start_rollout(
        self,
        actor: str,
        challenger_version: str | None = None,
        mode: RolloutMode = "canary",
        steps: list[float] | None = None,
        interval_s: float | None = None,
        failure_limit: int | None = None,
        min_requests: int | None = None,
        paired_percent: float | None = None,
        max_extensions: int | None = None,
    ) -> RolloutState:
        """Start rolling out `challenger_version` (default: the `challenger` alias); the
        optional policy values override the controller's settings for this rollout."""
        with self.lock:
            version = challenger_version or registry.get_alias_version(
                ALIAS_CHALLENGER, self.client, model=self.model_name
            )
            if version is None:
                raise cc.RolloutConflict(
                    "no challenger: train one (`make train`) or name a version to roll out"
                )
            if registry.get_alias_version(
                ALIAS_CHALLENGER, self.client, model=self.model_name
            ) != str(version):
                registry.set_challenger(str(version), self.client, model=self.model_name)
            # RolloutPolicy validates the overrides (increasing steps, positive interval)
            policy = replace(
                self.policy,
                steps=tuple(steps) if steps else self.policy.steps,
                interval_s=interval_s or self.policy.interval_s,
                failure_limit=failure_limit or self.policy.failure_limit,
                paired_percent=(
                    self.policy.paired_percent if paired_percent is None else paired_percent
                ),
                max_extensions=(
                    self.policy.max_extensions if max_extensions is None else max_extensions
                ),
            )
            champion = registry.get_alias_version(
                ALIAS_CHAMPION, self.client, model=self.model_name
            )
            state = cc.start(
                self.store.load(),
                str(version),
                champion,
                policy,
                mode=mode,
                actor=actor,
                min_requests=min_requests,
            )
            saved = self.store.save(state)
            self.metrics.show_state(saved)
            log.info("rollout %s of v%s started by %s", saved.rollout_id, version, actor)
            return saved

    def _act(self, change: Callable[[RolloutState], RolloutState]) -> RolloutState:
        with self.lock:
            return self.store.save(change(self.store.load()))

    def pause(self, actor: str, reason: str = "") -> RolloutState:
        return self._act(lambda s: cc.pause(s, actor, reason))

    def resume(self, actor: str) -> RolloutState:
        return self._act(lambda s: cc.resume(s, actor))

    def abort(self, actor: str, reason: str = "") -> RolloutState:
        with self.lock:
            new = cc.abort(self.store.load(), actor, reason)
            self._clear_challenger(new)
            new = self.store.save(new)
            self.metrics.rollbacks.inc()
            self.metrics.show_state(new)
            return new

    def promote(self, actor: str, reason: str = "") -> RolloutState:
        with self.lock:
            new = cc.promote_now(self.store.load(), actor, reason)
            registry.promote_challenger(new.reason, self.client, model=self.model_name)
            saved = self.store.save(new)
            self.metrics.promotions.inc()
            self.metrics.show_state(saved)
            return saved
