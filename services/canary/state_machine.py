"""The rollout state machine, as in Flagger or Argo Rollouts, without any I/O.

    idle/promoted/rolled_back --start--> progressing --pass, more steps--> progressing (next weight)
    progressing --pass at the last step--> promoted
    progressing --inconclusive, extensions < bound--> progressing (same step, window extended)
    progressing --inconclusive at the bound--> paused (held for a human: promote or abort)
    progressing --failed analysis, failures < limit--> progressing (same step, fresh window)
    progressing --failures reach the limit--> rolled_back (weight 0)
    progressing <--pause / resume--> paused;  progressing|paused --abort--> rolled_back
    progressing|paused --promote (manual)--> promoted

Each function takes the current `RolloutState`, returns a changed copy plus what happened, and
records the decision in the history. The canary service applies the registry side effects
(move or clear aliases) and then saves the copy; if a side effect fails, nothing is saved and
the next tick tries again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from modstack.registry.rollout import RolloutMode, RolloutState, RolloutStatus, utc_now
from services.canary.verdict import Analysis

CONTROLLER = "controller"


class RolloutConflict(ValueError):
    """The requested change does not apply to the rollout's current status."""


class Decision(StrEnum):
    EXTEND = "extend"  # inconclusive evidence: the same window grows by one interval
    HOLD = "hold"  # still inconclusive at the bound: paused for a human decision
    RETRY = "retry"  # analysis failed, below the failure limit: same step, fresh window
    ADVANCE = "advance"  # analysis passed: next weight
    PROMOTE = "promote"  # the last step passed (or an admin promoted)
    ROLLBACK = "rollback"  # failure limit reached (or an admin aborted)


@dataclass(frozen=True)
class RolloutPolicy:
    """How a rollout proceeds (from the controller's settings)."""

    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    interval_s: float = 60.0
    failure_limit: int = 2  # failed analyses that trigger the rollback
    # An inconclusive window (too little traffic, labels not arrived) extends the step by one
    # interval, at most this many times; then the rollout is held (paused) for a human: no
    # silent pass, no rollback without evidence.
    max_extensions: int = 5
    # Share of requests scored by both variants (the one that does not answer in the shadow).
    paired_percent: float = 100.0

    def __post_init__(self) -> None:
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ValueError(f"steps must be weights in (0, 100], got {self.steps}")
        if list(self.steps) != sorted(self.steps):
            raise ValueError(f"steps must increase, got {self.steps}")
        if self.interval_s <= 0 or self.failure_limit < 1:
            raise ValueError("interval_s must be > 0 and failure_limit >= 1")
        if self.max_extensions < 0 or not 0 <= self.paired_percent <= 100:
            raise ValueError("max_extensions must be >= 0 and paired_percent within [0, 100]")


def _checks_of(analysis: Analysis) -> dict[str, dict]:
    return {c.name: c.as_dict() for c in analysis.checks}


def _failure_reason(analysis: Analysis) -> str:
    parts = []
    for c in analysis.failed:
        value = "n/a" if c.value is None else f"{c.value:.4g}"
        parts.append(f"{c.name} {value} vs {c.threshold:g} ({c.detail})")
    return "; ".join(parts)


def _inconclusive_reason(analysis: Analysis) -> str:
    if not analysis.enough_data:
        return (
            f"waiting for traffic: {analysis.challenger_requests:g} challenger / "
            f"{analysis.champion_requests:g} champion observations"
        )
    return "; ".join(f"{c.name}: {c.detail}" for c in analysis.inconclusive)


def start(
    state: RolloutState,
    challenger_version: str,
    champion_version: str | None,
    policy: RolloutPolicy,
    *,
    mode: RolloutMode = "canary",
    actor: str = CONTROLLER,
    now: datetime | None = None,
    min_requests: int | None = None,
) -> RolloutState:
    """A new rollout of `challenger_version` at the first step's weight; the policy is stored
    in the state, so the controller follows it even across restarts."""
    if state.active:
        raise RolloutConflict(
            f"rollout {state.rollout_id} of version {state.challenger_version} is still "
            f"{state.status}: promote or abort it first"
        )
    if champion_version is not None and str(champion_version) == str(challenger_version):
        raise RolloutConflict(f"version {challenger_version} already is the champion")
    now = now or utc_now()
    new = RolloutState(
        rollout_id=uuid.uuid4().hex[:12],
        challenger_version=str(challenger_version),
        champion_version=None if champion_version is None else str(champion_version),
        weight_percent=policy.steps[0],
        mode=mode,
        status="progressing",
        step=0,
        steps=list(policy.steps),
        interval_s=policy.interval_s,
        failure_limit=policy.failure_limit,
        min_requests=min_requests,
        paired_percent=policy.paired_percent,
        max_extensions=policy.max_extensions,
        started_at=now,
        step_started_at=now,
        reason=f"started by {actor}",
        revision=state.revision,
    )
    new.record(
        actor,
        "start",
        f"{mode} rollout of version {challenger_version} against champion {champion_version}, "
        f"steps {list(policy.steps)}, {policy.interval_s:g} s per step, "
        f"failure limit {policy.failure_limit}, up to {policy.max_extensions} extensions, "
        f"{policy.paired_percent:g}% of requests scored by both variants",
    )
    return new


def policy_of(state: RolloutState, default: RolloutPolicy) -> RolloutPolicy:
    """The policy a rollout started with (the default's values where it stored none)."""
    return RolloutPolicy(
        steps=tuple(state.steps) or default.steps,
        interval_s=state.interval_s or default.interval_s,
        failure_limit=state.failure_limit or default.failure_limit,
        max_extensions=(
            default.max_extensions if state.max_extensions is None else state.max_extensions
        ),
        paired_percent=(
            default.paired_percent if state.paired_percent is None else state.paired_percent
        ),
    )


def window_due(state: RolloutState, policy: RolloutPolicy, now: datetime | None = None) -> bool:
    """True when the current step's interval (and its extensions) is over: judge the window."""
    if state.status != "progressing" or state.step_started_at is None:
        return False
    elapsed = ((now or utc_now()) - state.step_started_at).total_seconds()
    return elapsed >= policy.interval_s * (1 + state.extensions)


def judge(
    state: RolloutState,
    analysis: Analysis,
    policy: RolloutPolicy,
    *,
    now: datetime | None = None,
) -> tuple[RolloutState, Decision]:
    """Apply the analysis of the current step's window (call when `window_due`)."""
    if state.status != "progressing":
        raise RolloutConflict(f"cannot judge a window while the rollout is {state.status}")
    now = now or utc_now()
    new = state.model_copy(deep=True)
    if analysis.enough_data and analysis.failed:
        return _on_failure(state, new, analysis, policy, now)
    if analysis.passed:
        return _on_pass(state, new, analysis, now)
    return _on_inconclusive(state, new, analysis, policy)


def _record(new: RolloutState, action: str, analysis: Analysis) -> None:
    """Record the controller's `action` with the window's checks and metrics."""
    new.record(
        CONTROLLER, action, new.reason, checks=_checks_of(analysis), metrics=analysis.metrics()
    )


def _on_pass(
    state: RolloutState, new: RolloutState, analysis: Analysis, now: datetime
) -> tuple[RolloutState, Decision]:
    """Every decisive check passed: the next step, or the promotion after the last one."""
    new.extensions = 0
    if state.step >= len(state.steps) - 1:
        new.status = "promoted"
        new.weight_percent = 0.0
        new.reason = f"all {len(state.steps)} steps passed"
        _record(new, "promote", analysis)
        return new, Decision.PROMOTE
    new.step += 1
    new.weight_percent = state.steps[new.step]
    new.step_started_at = now
    new.reason = f"step {state.step + 1} passed at {state.weight_percent:g}%"
    _record(new, "advance", analysis)
    return new, Decision.ADVANCE


def _on_inconclusive(
    state: RolloutState, new: RolloutState, analysis: Analysis, policy: RolloutPolicy
) -> tuple[RolloutState, Decision]:
    """Not decided yet: extend the step, or hold it for a human at the bound."""
    why = _inconclusive_reason(analysis)
    if state.extensions < policy.max_extensions:
        new.extensions += 1
        new.reason = (
            f"inconclusive, step extended ({new.extensions}/{policy.max_extensions}): {why}"
        )
        _record(new, "extend", analysis)
        return new, Decision.EXTEND
    new.status = "paused"
    new.reason = (
        f"held: still inconclusive after {policy.max_extensions} extensions ({why}); "
        "`modstack rollout promote` or `modstack rollout abort` decides"
    )
    _record(new, "hold", analysis)
    return new, Decision.HOLD


def _on_failure(
    state: RolloutState,
    new: RolloutState,
    analysis: Analysis,
    policy: RolloutPolicy,
    now: datetime,
) -> tuple[RolloutState, Decision]:
    """A decisive check failed: retry the step with a fresh window, or roll back at the limit."""
    failure = _failure_reason(analysis)
    new.failures += 1
    if new.failures >= policy.failure_limit:
        new.status = "rolled_back"
        new.weight_percent = 0.0
        new.reason = f"failure limit {policy.failure_limit} reached: {failure}"
        _record(new, "rollback", analysis)
        return new, Decision.ROLLBACK
    new.step_started_at = now
    new.extensions = 0
    new.reason = f"analysis failed ({new.failures}/{policy.failure_limit}): {failure}"
    _record(new, "analysis_failed", analysis)
    return new, Decision.RETRY


def pause(state: RolloutState, actor: str, reason: str = "") -> RolloutState:
    """Hold the current weight; no analysis until resumed."""
    if state.status != "progressing":
        raise RolloutConflict(f"only a progressing rollout can be paused (it is {state.status})")
    new = state.model_copy(deep=True)
    new.status = "paused"
    new.reason = reason or f"paused by {actor}"
    new.record(actor, "pause", new.reason)
    return new


def resume(state: RolloutState, actor: str, now: datetime | None = None) -> RolloutState:
    """Continue a paused rollout at its step, with a fresh window."""
    if state.status != "paused":
        raise RolloutConflict(f"only a paused rollout can be resumed (it is {state.status})")
    new = state.model_copy(deep=True)
    new.status = "progressing"
    new.step_started_at = now or utc_now()
    new.extensions = 0
    new.reason = f"resumed by {actor}"
    new.record(actor, "resume", new.reason)
    return new


def _end_now(
    state: RolloutState, actor: str, action: str, status: RolloutStatus, reason: str
) -> RolloutState:
    """The active rollout ended by `actor`: weight 0, `status`, recorded as `action`."""
    if not state.active:
        raise RolloutConflict(f"no active rollout to {action} (status {state.status})")
    new = state.model_copy(deep=True)
    new.status = status
    new.weight_percent = 0.0
    new.reason = reason
    new.record(actor, action, new.reason)
    return new


def abort(state: RolloutState, actor: str, reason: str = "") -> RolloutState:
    """Roll back now: weight 0, status rolled_back."""
    return _end_now(state, actor, "abort", "rolled_back", reason or f"aborted by {actor}")


def promote_now(state: RolloutState, actor: str, reason: str = "") -> RolloutState:
    """Promote without waiting for the remaining steps."""
    reason = reason or f"promoted by {actor} at step {state.step + 1}"
    return _end_now(state, actor, "promote", "promoted", reason)
