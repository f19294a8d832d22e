"""Rollout state machine: every transition, on hand-made analyses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modstack.registry.rollout import RolloutState
from services.canary import state_machine as cc
from services.canary.verdict import Analysis, CheckResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = cc.RolloutPolicy(steps=(5, 25, 50, 100), interval_s=10, failure_limit=2, max_extensions=2)


def passing() -> Analysis:
    check = CheckResult("error_rate", True, 0.0, 0.01, 0.0, 0.0, kind="health")
    return Analysis(True, [check], 900, 100)


def failing(check: str = "expected_score_psi", value: float = 3.2) -> Analysis:
    result = CheckResult(check, False, value, 0.25, None, None, "PSI", kind="guardrail")
    return Analysis(True, [result], 900, 100)


def undecided() -> Analysis:
    result = CheckResult("label_mcnemar", None, 0.5, 0.01, 3, 4, "need pairs", kind="quality")
    return Analysis(True, [result], 900, 900)


def starved() -> Analysis:
    return Analysis(False, [], 900, 3)


def started() -> RolloutState:
    return cc.start(RolloutState(), "7", "6", POLICY, actor="admin:test", now=T0)


def test_start_sets_the_first_step_and_records_who_started_it():
    state = started()
    assert (state.status, state.step, state.weight_percent) == ("progressing", 0, 5)
    assert state.challenger_version == "7" and state.champion_version == "6"
    assert state.history[-1].action == "start" and state.history[-1].actor == "admin:test"


def test_start_refuses_while_a_rollout_is_active():
    with pytest.raises(cc.RolloutConflict, match="still progressing"):
        cc.start(started(), "8", "6", POLICY)


def test_start_refuses_the_champion_itself():
    with pytest.raises(cc.RolloutConflict, match="already is the champion"):
        cc.start(RolloutState(), "6", "6", POLICY)


def test_window_is_due_only_after_the_interval():
    state = started()
    assert not cc.window_due(state, POLICY, T0 + timedelta(seconds=9))
    assert cc.window_due(state, POLICY, T0 + timedelta(seconds=10))


def test_a_passing_step_advances_to_the_next_weight_with_a_fresh_window():
    now = T0 + timedelta(seconds=10)
    state, decision = cc.judge(started(), passing(), POLICY, now=now)
    assert decision is cc.Decision.ADVANCE
    assert (state.step, state.weight_percent, state.step_started_at) == (1, 25, now)
    assert state.history[-1].checks["error_rate"]["passed"] is True


def test_every_step_passing_promotes():
    state, decisions = started(), []
    for i in range(len(POLICY.steps)):
        state, decision = cc.judge(state, passing(), POLICY, now=T0 + timedelta(seconds=10 * i))
        decisions.append(decision)
    assert decisions == [cc.Decision.ADVANCE] * 3 + [cc.Decision.PROMOTE]
    assert state.status == "promoted" and state.weight_percent == 0
    assert [e.action for e in state.history] == [
        "start",
        "advance",
        "advance",
        "advance",
        "promote",
    ]


def test_a_failed_analysis_below_the_limit_retries_the_same_step():
    state, decision = cc.judge(started(), failing(), POLICY, now=T0 + timedelta(seconds=10))
    assert decision is cc.Decision.RETRY
    assert (state.status, state.step, state.weight_percent, state.failures) == (
        "progressing",
        0,
        5,
        1,
    )
    assert "expected_score_psi 3.2 vs 0.25" in state.reason


def test_reaching_the_failure_limit_rolls_back_with_the_reason():
    state, _ = cc.judge(started(), failing(), POLICY, now=T0 + timedelta(seconds=10))
    state, decision = cc.judge(
        state, failing("error_rate", 0.4), POLICY, now=T0 + timedelta(seconds=20)
    )
    assert decision is cc.Decision.ROLLBACK
    assert (state.status, state.weight_percent) == ("rolled_back", 0)
    assert "failure limit 2 reached" in state.reason and "error_rate 0.4" in state.reason
    assert state.history[-1].action == "rollback"
    assert state.history[-1].checks["error_rate"]["value"] == 0.4


def test_failures_count_across_steps():
    state, _ = cc.judge(started(), failing(), POLICY, now=T0)
    state, _ = cc.judge(state, passing(), POLICY, now=T0)
    state, decision = cc.judge(state, failing(), POLICY, now=T0)
    assert decision is cc.Decision.ROLLBACK and state.step == 1


def test_too_little_traffic_extends_the_step_and_never_fails_it():
    state = started()
    extended, decision = cc.judge(state, starved(), POLICY, now=T0 + timedelta(seconds=10))
    assert decision is cc.Decision.EXTEND and extended.failures == 0
    assert extended.extensions == 1 and "waiting for traffic" in extended.reason
    # the same window grows: due again one interval later, not at once
    assert extended.step_started_at == state.step_started_at
    assert not cc.window_due(extended, POLICY, T0 + timedelta(seconds=19))
    assert cc.window_due(extended, POLICY, T0 + timedelta(seconds=20))


def test_a_report_check_over_its_limit_does_not_fail_the_window():
    reported = CheckResult("block_rate", False, 0.2, 0.15, 0.1, 0.3, "reported")
    analysis = Analysis(True, [*passing().checks, reported], 900, 100)
    assert analysis.passed and not analysis.failed
    state, decision = cc.judge(started(), analysis, POLICY, now=T0 + timedelta(seconds=10))
    assert decision is cc.Decision.ADVANCE
    assert state.history[-1].checks["block_rate"]["verdict"] == "over"


def test_inconclusive_evidence_extends_up_to_the_bound_then_holds_for_a_human():
    state, decisions = started(), []
    for i in range(POLICY.max_extensions + 1):
        state, decision = cc.judge(state, undecided(), POLICY, now=T0 + timedelta(seconds=10 * i))
        decisions.append(decision)
    assert decisions == [cc.Decision.EXTEND] * POLICY.max_extensions + [cc.Decision.HOLD]
    assert state.status == "paused" and state.failures == 0 and state.weight_percent == 5
    assert "still inconclusive after 2 extensions" in state.reason
    assert [e.action for e in state.history] == ["start", "extend", "extend", "hold"]
    assert state.history[-1].checks["label_mcnemar"]["verdict"] == "inconclusive"


def test_an_extension_then_a_pass_advances_and_resets_the_count():
    state, _ = cc.judge(started(), undecided(), POLICY, now=T0 + timedelta(seconds=10))
    state, decision = cc.judge(state, passing(), POLICY, now=T0 + timedelta(seconds=20))
    assert decision is cc.Decision.ADVANCE and state.extensions == 0


def test_start_stores_pairing_and_the_extension_bound():
    state = started()
    assert state.paired_percent == 100.0 and state.max_extensions == 2
    assert cc.policy_of(state, cc.RolloutPolicy()).max_extensions == 2


def test_pause_holds_the_weight_and_resume_restarts_the_window():
    state = cc.pause(started(), "admin:test")
    assert state.status == "paused" and state.weight_percent == 5 and state.active
    assert not cc.window_due(state, POLICY, T0 + timedelta(hours=1))
    with pytest.raises(cc.RolloutConflict):
        cc.judge(state, passing(), POLICY)
    resumed = cc.resume(state, "admin:test", now=T0 + timedelta(hours=1))
    assert resumed.status == "progressing"
    assert resumed.step_started_at == T0 + timedelta(hours=1)
    assert [e.action for e in resumed.history][-2:] == ["pause", "resume"]


def test_pause_and_resume_refuse_the_wrong_status():
    with pytest.raises(cc.RolloutConflict, match="only a progressing"):
        cc.pause(RolloutState(), "admin")
    with pytest.raises(cc.RolloutConflict, match="only a paused"):
        cc.resume(started(), "admin")


def test_abort_rolls_back_a_paused_rollout():
    state = cc.abort(cc.pause(started(), "admin"), "admin:cli", "looks wrong")
    assert (state.status, state.weight_percent, state.reason) == ("rolled_back", 0, "looks wrong")
    assert state.history[-1].actor == "admin:cli"
    with pytest.raises(cc.RolloutConflict, match="no active rollout"):
        cc.abort(state, "admin")


def test_manual_promote_skips_the_remaining_steps():
    state = cc.promote_now(started(), "admin:http")
    assert state.status == "promoted" and "step 1" in state.reason
    assert cc.start(state, "8", "7", POLICY).status == "progressing"  # next rollout may start


def test_judging_returns_a_copy_and_leaves_the_input_untouched():
    state = started()
    cc.judge(state, failing(), POLICY, now=T0)
    assert state.failures == 0 and len(state.history) == 1


def test_policy_rejects_decreasing_or_out_of_range_steps():
    with pytest.raises(ValueError):
        cc.RolloutPolicy(steps=(50, 25))
    with pytest.raises(ValueError):
        cc.RolloutPolicy(steps=(0, 100))
