"""Paired, label-aware canary checks: exact McNemar, the inconclusive path, the guardrails
against the challenger's own offline expectation, and the pair join."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from modstack.paired import mcnemar_exact
from modstack.registry.expectation import SCORE_EDGES, OfflineExpectation, expectation_from_scores
from services.canary.analysis import analyze
from services.canary.checks import AnalysisThresholds, label_quality_check, live_score_counts
from services.canary.evidence import PairedLabels, VariantWindow
from services.canary.label_join import LabelJoin
from services.canary.stats import densest_band_share

T0 = datetime(2026, 1, 1, tzinfo=UTC)
THRESHOLDS = AnalysisThresholds(min_requests=100, alpha=0.01, min_discordant=20)


def test_exact_mcnemar_on_small_counts_is_the_binomial_tail():
    # b=0, c=7: P(X <= 0 | n=7, 1/2) = 1/128
    test = mcnemar_exact(0, 7)
    assert test.p_worse == pytest.approx(1 / 128)
    assert test.p_better == pytest.approx(1.0)
    # b=2, c=8: P(X <= 2) = (1 + 10 + 45) / 1024
    assert mcnemar_exact(2, 8).p_worse == pytest.approx(56 / 1024)
    # symmetric counts: neither side is favoured
    even = mcnemar_exact(5, 5)
    assert even.p_worse == pytest.approx(even.p_better)
    assert even.p_worse == pytest.approx(sum(math.comb(10, k) for k in range(6)) / 1024)


def test_no_discordant_pairs_is_no_evidence_either_way():
    test = mcnemar_exact(0, 0)
    assert (test.n, test.p_worse, test.p_better) == (0, 1.0, 1.0)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_labels_siding_with_the_champion_fail_at_any_step():
    # 1 vs 12 discordant pairs: p_worse = 14/8192 < 0.01
    pairs = PairedLabels(challenger_right=1, champion_right=12, concordant=300, paired=2000)
    for final in (False, True):
        check = label_quality_check(pairs, THRESHOLDS, final_step=final)
        assert check.passed is False and check.verdict == "fail"
        assert check.value == pytest.approx(14 / 8192)
        assert "labels side with the champion" in check.detail


def test_an_intermediate_step_passes_without_evidence_against_the_challenger():
    check = label_quality_check(PairedLabels(1, 3), THRESHOLDS, final_step=False)
    assert check.passed is True and "no evidence against" in check.detail


def test_the_last_step_needs_enough_discordant_pairs_in_the_challengers_favour():
    few = label_quality_check(PairedLabels(6, 2), THRESHOLDS, final_step=True)
    assert few.passed is None and few.verdict == "inconclusive"
    assert "need >= 20 labelled discordant pairs" in few.detail
    # enough pairs but the champion ahead, not significantly: still inconclusive
    behind = label_quality_check(PairedLabels(10, 13), THRESHOLDS, final_step=True)
    assert behind.passed is None and "need b >= c" in behind.detail
    ahead = label_quality_check(PairedLabels(15, 6), THRESHOLDS, final_step=True)
    assert ahead.passed is True and "labels side with the challenger" in ahead.detail


def _scores_window(counts: list[float], blocks: float) -> VariantWindow:
    """A window whose score histogram has `counts` on serving's 0.05 buckets."""
    cumulative, total = {}, 0.0
    for bound, count in zip(SCORE_EDGES[1:], counts, strict=True):
        total += count
        cumulative[bound] = total
    cumulative[math.inf] = total
    return VariantWindow(
        requests=total,
        latency_buckets={0.01: total, math.inf: total},
        score_buckets=cumulative,
        actions={"allow": total - blocks, "block": blocks},
    )


def _healthy_counts(n: float = 1000.0) -> list[float]:
    # 65 % near 0, 10 % spread, 25 % near 1: a separating model
    counts = [0.0] * 20
    counts[0], counts[1] = 0.55 * n, 0.10 * n
    for i in range(2, 18):
        counts[i] = 0.10 * n / 16
    counts[18], counts[19] = 0.05 * n, 0.20 * n
    return counts


def test_live_scores_line_up_with_the_expectations_bins():
    window = _scores_window(_healthy_counts(), blocks=250)
    live = live_score_counts(window.score_buckets, list(SCORE_EDGES))
    assert len(live) == 20 and sum(live) == pytest.approx(1000)
    with pytest.raises(ValueError, match="do not match"):
        live_score_counts({0.5: 1.0, 1.0: 2.0, math.inf: 2.0}, list(SCORE_EDGES))


def test_expectation_from_holdout_scores():
    expectation = expectation_from_scores([0.0, 0.02, 0.5, 0.97, 1.0], block=0.9, review=0.4)
    assert expectation.block_rate == pytest.approx(0.4)
    assert expectation.review_rate == pytest.approx(0.2)
    assert sum(expectation.counts) == 5 and expectation.counts[-1] == 2  # 1.0 counted
    assert expectation.rows == 5


def test_a_challenger_that_differs_from_the_champion_but_not_from_itself_passes():
    # the challenger blocks 20 points more than the champion, as its holdout said it would
    expectation_scores = [0.01] * 550 + [0.07] * 100 + [0.5] * 100 + [0.93] * 50 + [0.99] * 200
    expectation = expectation_from_scores(expectation_scores, block=0.9, review=0.4)
    champion = _scores_window(_healthy_counts(), blocks=50)
    challenger = _scores_window(_healthy_counts(), blocks=250)
    result = analyze(
        {"champion": champion, "challenger": challenger},
        THRESHOLDS,
        pairs=PairedLabels(30, 8, 500, 1000),
        expectation=expectation,
        final_step=True,
    )
    checks = {c.name: c for c in result.checks}
    assert checks["block_rate"].verdict == "over"  # reported, not decisive
    assert checks["expected_block_rate"].passed is True
    assert checks["expected_score_psi"].passed is True
    assert checks["score_collapse"].passed is True
    assert result.passed


def test_collapsed_scores_fail_even_when_the_expectation_collapsed_too():
    collapsed = [0.0] * 20
    collapsed[5], collapsed[6] = 700.0, 290.0
    collapsed[19] = 10.0
    assert densest_band_share(collapsed) == pytest.approx(0.99)
    holdout = [0.27] * 700 + [0.32] * 290 + [0.99] * 10
    expectation = expectation_from_scores(holdout, block=0.9, review=0.4)
    result = analyze(
        {
            "champion": _scores_window(_healthy_counts(), blocks=250),
            "challenger": _scores_window(collapsed, blocks=10),
        },
        THRESHOLDS,
        expectation=expectation,
    )
    checks = {c.name: c for c in result.checks}
    assert checks["score_collapse"].passed is False
    assert checks["expected_score_psi"].passed is True  # its own holdout looked the same
    assert [c.name for c in result.failed] == ["score_collapse"]


def test_scores_piled_up_like_the_champions_on_the_same_messages_are_no_collapse():
    # a window of almost only ham: both variants score ~97 % of it near 0
    ham_heavy = [0.0] * 20
    ham_heavy[0], ham_heavy[1], ham_heavy[19] = 900.0, 70.0, 30.0
    result = analyze(
        {
            "champion": _scores_window(ham_heavy, blocks=30),
            "challenger": _scores_window(ham_heavy, blocks=30),
        },
        THRESHOLDS,
    )
    collapse = {c.name: c for c in result.checks}["score_collapse"]
    assert collapse.value == pytest.approx(0.97) and collapse.passed is True


def test_live_behaviour_far_from_the_holdout_fails_the_guardrails():
    expectation = expectation_from_scores([0.01] * 700 + [0.99] * 300, block=0.9, review=0.4)
    everything_blocked = [0.0] * 20
    everything_blocked[10], everything_blocked[19] = 400.0, 600.0
    result = analyze(
        {
            "champion": _scores_window(_healthy_counts(), blocks=250),
            "challenger": _scores_window(everything_blocked, blocks=900),
        },
        THRESHOLDS,
        expectation=expectation,
    )
    failed = {c.name for c in result.failed}
    assert {"expected_block_rate", "expected_score_psi"} <= failed


def test_a_spam_burst_that_moves_both_variants_alike_is_not_a_broken_challenger():
    # Gated against champion v1 on a holdout where both blocked ~5 %; live, a spam burst makes
    # both block 25 % of the same messages (what `make demo`'s clustered stream does). The bare
    # block rate is 20 points off the holdout's; the shift against the champion is not.
    holdout = [0.01] * 950 + [0.99] * 50
    expectation = expectation_from_scores(holdout, block=0.9, review=0.4).with_champion("1", 0.051)
    windows = {
        "champion": _scores_window(_healthy_counts(), blocks=252),
        "challenger": _scores_window(_healthy_counts(), blocks=250),
    }
    paired = analyze(windows, THRESHOLDS, expectation=expectation, champion_version="1")
    check = {c.name: c for c in paired.checks}["expected_block_rate"]
    assert check.passed is True and check.value == pytest.approx(0.001, abs=1e-9)
    assert "shift against champion v1" in check.detail
    # the same expectation with another live champion: only the bare rate can be compared
    other = analyze(windows, THRESHOLDS, expectation=expectation, champion_version="7")
    check = {c.name: c for c in other.checks}["expected_block_rate"]
    assert check.passed is False and check.value == pytest.approx(0.2)
    assert "live block rate vs the holdout's" in check.detail


def test_a_challenger_that_blocks_far_more_than_its_gate_said_fails_the_shift_check():
    # offline it blocked as the champion did; live it blocks 25 % where the champion blocks 5 %
    holdout = [0.01] * 950 + [0.99] * 50
    expectation = expectation_from_scores(holdout, block=0.9, review=0.4).with_champion("1", 0.05)
    result = analyze(
        {
            "champion": _scores_window(_healthy_counts(), blocks=50),
            "challenger": _scores_window(_healthy_counts(), blocks=250),
        },
        THRESHOLDS,
        expectation=expectation,
        champion_version="1",
    )
    check = {c.name: c for c in result.checks}["expected_block_rate"]
    assert check.passed is False and check.value == pytest.approx(0.2)
    assert (check.challenger, check.champion) == (pytest.approx(0.2), pytest.approx(0.0))


def test_the_expectation_round_trips_with_and_without_its_champion():
    plain = expectation_from_scores([0.1, 0.95], block=0.9, review=0.4)
    assert OfflineExpectation.from_json(plain.to_json()) == plain
    gated = plain.with_champion("3", 0.4)
    assert OfflineExpectation.from_json(gated.to_json()) == gated
    assert gated.to_json()["champion"] == {"version": "3", "block_rate": 0.4}


def test_the_pair_join_counts_who_was_right_where_the_variants_disagree():
    join = LabelJoin()
    join.reset(T0)
    # m1: challenger blocks spam, champion allows -> b; m2: challenger blocks ham -> c;
    # m3: both block spam -> concordant; m4: only one variant scored -> not a pair
    for message_id, champion, challenger in (
        ("m1", "allow", "block"),
        ("m2", "allow", "block"),
        ("m3", "block", "block"),
    ):
        join.add_decision(message_id, "champion", champion, T0)
        join.add_decision(message_id, "challenger", challenger, T0)
    join.add_decision("m4", "champion", "allow", T0)
    join.add_label("m1", "spam")
    join.add_label("m2", "ham")
    join.add_label("m4", "spam")
    join.add_label("m3", "spam")
    join.add_label("m3", "ham")  # a second label of a message does not count
    pairs = join.paired()
    assert (pairs.challenger_right, pairs.champion_right, pairs.concordant) == (1, 1, 1)
    assert pairs.paired == 3
    assert join.blocks("challenger").labelled == 3 and join.blocks("challenger").spam == 2


def test_the_pair_join_takes_labels_before_decisions_and_ignores_duplicates():
    join = LabelJoin()
    join.reset(T0)
    join.add_label("m1", "ham")
    join.add_decision("m1", "challenger", "allow", T0)
    join.add_decision("m1", "challenger", "allow", T0)  # redelivered
    join.add_decision("m1", "champion", "block", T0)
    join.add_decision("m0", "champion", "block", datetime(2025, 1, 1, tzinfo=UTC))  # before
    pairs = join.paired()
    assert (pairs.challenger_right, pairs.champion_right, pairs.paired) == (1, 0, 1)


def test_a_rollout_asking_for_pairing_makes_serving_shadow_the_other_variant():
    from modstack.registry.rollout import RolloutState
    from services.serving.routing import route_request

    def rollout(paired: float | None) -> RolloutState:
        return RolloutState(
            challenger_version="7", weight_percent=20, status="progressing", paired_percent=paired
        )

    senders = [f"s{i}" for i in range(400)]
    full = [route_request(s, rollout(100.0), "7") for s in senders]
    assert all(r.shadow for r in full)
    assert {r.answer for r in full} == {"champion", "challenger"}
    unpaired = [route_request(s, rollout(None), "7") for s in senders]
    assert not any(r.shadow for r in unpaired)
    share = sum(route_request(s, rollout(25.0), "7").shadow for s in senders) / len(senders)
    assert 0.15 < share < 0.35


def test_moving_spam_between_review_and_block_is_no_harm_either_way():
    join = LabelJoin()
    join.reset(T0)
    # s1: spam, blocked vs reviewed -> both kept it from the recipient (concordant);
    # h1: ham, allowed vs reviewed -> the challenger held ordinary mail back (champion right);
    # s2: spam, allowed vs reviewed -> the champion let it through (challenger right)
    for message_id, champion, challenger, label in (
        ("s1", "block", "review", "spam"),
        ("h1", "allow", "review", "ham"),
        ("s2", "allow", "review", "spam"),
    ):
        join.add_decision(message_id, "champion", champion, T0)
        join.add_decision(message_id, "challenger", challenger, T0)
        join.add_label(message_id, label)
    pairs = join.paired()
    assert (pairs.challenger_right, pairs.champion_right, pairs.concordant) == (1, 1, 1)


def test_the_last_step_passes_when_many_labelled_pairs_show_no_extra_harm():
    # the two models rarely disagree: no discordant pair among 4,500 labelled ones
    agree = PairedLabels(challenger_right=0, champion_right=0, concordant=4_500, paired=9_000)
    assert label_quality_check(agree, THRESHOLDS, final_step=True).passed is True
    # few labels: no evidence yet
    few = PairedLabels(challenger_right=0, champion_right=0, concordant=50, paired=100)
    assert label_quality_check(few, THRESHOLDS, final_step=True).passed is None
    # many labels, but the challenger does harm the champion does not on 3 % of them
    worse = PairedLabels(challenger_right=0, champion_right=12, concordant=388, paired=800)
    assert label_quality_check(worse, THRESHOLDS, final_step=True).passed is False
