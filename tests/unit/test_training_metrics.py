"""Metric helpers, threshold selection and the quality gate on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modstack.registry.contract import Thresholds
from pipelines.gate import GateTolerance, check_gate
from pipelines.metrics import (
    action_thresholds,
    bootstrap_pr_auc_difference,
    budget_review_cutoff,
    coarse_group,
    evaluate_scores,
    expected_calibration_error,
    recall_at_precision,
    select_thresholds,
)

# 10 mails, best score first: spam at ranks 1-4, 6, 8; ham at 5, 7, 9, 10.
SCORES = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2, 0.1])
LABELS = np.array([1, 1, 1, 1, 0, 1, 0, 1, 0, 0])


def test_coarse_group_drops_the_part_number() -> None:
    assert coarse_group("easy-ham-2") == "easy_ham"
    assert coarse_group("hard-ham-1") == "hard_ham"
    assert coarse_group("spam-1") == "spam"
    assert coarse_group("spam") == "spam"
    assert coarse_group("comments-train") == coarse_group("comments-test") == "comments"


def test_comments_get_a_review_share_and_the_emails_their_own_ranking() -> None:
    groups = ["spam-1"] * 6 + ["comments-test"] * 2 + ["easy-ham-1"] * 2
    y = np.array([1] * 6 + [0] * 4)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.95, 0.3, 0.2, 0.1])
    metrics = evaluate_scores(y, scores, Thresholds(block=0.9, review=0.25), groups).metrics
    # one comment blocked (0.95), one in the band (0.3): the band holds half of them
    assert metrics["group.comments.review_share"] == pytest.approx(0.5)
    # a group mixing classes: the share is over its negatives only (an insult in the band is
    # no harmless text sent to review)
    mixed = evaluate_scores(
        np.array([1, 0, 0, 0]),
        np.array([0.5, 0.5, 0.1, 0.1]),
        Thresholds(block=0.9, review=0.25),
        ["comments-test"] * 4,
    ).metrics
    assert mixed["group.comments.review_share"] == pytest.approx(1 / 3)
    assert metrics["group.comments.error_at_block"] == pytest.approx(0.5)
    # without the comments every spam outranks the e-mail ham
    assert metrics["email.pr_auc"] == pytest.approx(1.0)
    assert metrics["pr_auc"] < 1.0


def test_recall_at_precision_is_the_best_recall_among_precise_cutoffs() -> None:
    # the top 4 are all spam: precision 1.0, recall 4/6; any lower cut-off lets ham in
    assert recall_at_precision(LABELS, SCORES, 0.99) == pytest.approx(4 / 6)
    # cutting at 0.6 flags 5 spam + 1 ham (precision 0.83), at 0.4 6 spam + 2 ham (0.75)
    assert recall_at_precision(LABELS, SCORES, 0.8) == pytest.approx(5 / 6)
    assert recall_at_precision(LABELS, SCORES, 0.75) == pytest.approx(1.0)


def test_recall_at_precision_is_zero_when_no_cutoff_is_precise_enough() -> None:
    assert recall_at_precision([0, 1], [0.9, 0.1], 0.99) == 0.0


def test_select_thresholds_blocks_at_the_precise_cutoff_and_reviews_down_to_the_recall() -> None:
    thresholds = select_thresholds(LABELS, SCORES, block_precision=0.99, review_recall=0.95)
    assert thresholds.block == pytest.approx(0.8)  # lowest cut-off with precision 1
    assert thresholds.review == pytest.approx(0.4)  # highest cut-off with recall >= 0.95


def test_select_thresholds_never_reviews_above_block() -> None:
    # all spam score above all ham: block and review meet at the lowest spam score
    thresholds = select_thresholds([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert thresholds == Thresholds(block=0.8, review=0.8)


def test_select_thresholds_blocks_nothing_when_precision_is_never_reached() -> None:
    thresholds = select_thresholds([0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6])
    assert thresholds.block == 1.0
    assert thresholds.review <= thresholds.block


def test_evaluate_scores_measures_cutoffs_calibration_and_groups() -> None:
    groups = ["spam-1"] * 4 + ["hard-ham-1", "spam-2", "easy-ham-1", "spam-1"] + ["easy-ham-2"] * 2
    report = evaluate_scores(LABELS, SCORES, Thresholds(block=0.8, review=0.4), groups)
    metrics = report.metrics
    assert metrics["precision_at_block"] == 1.0
    assert metrics["recall_at_block"] == pytest.approx(4 / 6)
    assert metrics["recall_at_review"] == 1.0
    assert metrics["precision_at_review"] == pytest.approx(6 / 8)
    assert metrics["f1_at_0_5"] == pytest.approx(2 * (5 / 6) * (5 / 7) / (5 / 6 + 5 / 7))
    assert metrics["brier"] == pytest.approx(float(np.mean((SCORES - LABELS) ** 2)))
    # hard ham (0.7) is reviewed but not blocked; one easy ham of three is reviewed
    assert metrics["group.hard_ham.error_at_block"] == 0.0
    assert metrics["group.hard_ham.error_at_review"] == 1.0
    assert metrics["group.easy_ham.error_at_review"] == pytest.approx(1 / 3)
    # spam: 4 of 6 blocked, all 6 at least reviewed
    assert metrics["group.spam.error_at_block"] == pytest.approx(2 / 6)
    assert metrics["group.spam.error_at_review"] == 0.0
    assert len(report.reliability["observed"]) == len(report.reliability["mean_predicted"]) > 0


def test_evaluate_scores_on_one_class_has_no_ranking_metrics() -> None:
    report = evaluate_scores([0, 0, 0], [0.1, 0.2, 0.3], Thresholds(block=0.9, review=0.5))
    assert math.isnan(report.metrics["pr_auc"])
    assert report.metrics["precision_at_block"] == 1.0  # nothing blocked, nothing wrong


# the first champion's holdout: the e-mail future, 2,991 mails, 496 spam
REFERENCE = {
    "rows": 2991.0,
    "spam_share": 496 / 2991,
    "pr_auc": 0.970,
    "recall_at_p99": 0.730,
    "group.easy_ham.error_at_block": 0.001,
    "group.easy_ham.count": 2200.0,
    "group.hard_ham.error_at_block": 0.020,
    "group.hard_ham.count": 250.0,
    "group.spam.error_at_block": 0.270,
}


def test_gate_passes_an_equal_or_better_candidate() -> None:
    better = REFERENCE | {"pr_auc": 0.980, "recall_at_p99": 0.800}
    assert check_gate(REFERENCE, REFERENCE, "baseline").passed
    assert check_gate(better, REFERENCE, "baseline").passed


def test_gate_allows_a_drop_within_the_tolerance() -> None:
    tolerance = GateTolerance(pr_auc=0.005, recall_at_p99=0.02, group_error=0.02)
    slightly_worse = REFERENCE | {"pr_auc": 0.966, "recall_at_p99": 0.711}
    assert check_gate(slightly_worse, REFERENCE, "champion v1", tolerance).passed


def test_gate_refuses_a_pr_auc_drop_beyond_the_tolerance_and_says_why() -> None:
    # over 496 spam the allowance is 0.023 (two standard errors of the difference)
    worse = REFERENCE | {"pr_auc": 0.940}
    result = check_gate(worse, REFERENCE, "champion v1")
    assert not result.passed
    assert len(result.failures) == 1 and result.failures[0].startswith("pr_auc")
    assert "REFUSED" in result.summary() and "champion v1" in result.summary()
    assert result.as_tags()["gate.passed"] == "false"


def test_gate_refuses_a_group_regression_even_when_the_totals_improve() -> None:
    better_overall_worse_on_hard_ham = REFERENCE | {
        "pr_auc": 0.99,
        "recall_at_p99": 0.9,
        "group.hard_ham.error_at_block": 0.08,
    }
    result = check_gate(better_overall_worse_on_hard_ham, REFERENCE, "champion v2")
    assert not result.passed
    assert [f.split(":")[0] for f in result.failures] == ["group.hard_ham.error_at_block"]


def test_gate_allows_a_recall_drop_within_the_sampling_noise_of_a_holdout() -> None:
    # 0.576 over 240 spam: one standard error of the difference is 0.045 (the gate allows
    # two), so a drop of 0.06 is noise ...
    holdout = REFERENCE | {"recall_at_p99": 0.576, "rows": 2000.0, "spam_share": 0.12}
    result = check_gate(holdout | {"recall_at_p99": 0.516}, holdout, "champion v1")
    assert result.passed, result.summary()
    assert "standard errors of the difference over 240 spam" in result.summary()
    # ... and a drop of 0.2 is not
    assert not check_gate(holdout | {"recall_at_p99": 0.376}, holdout, "champion v1").passed


def test_recall_at_precision_on_a_holdout_one_ham_can_set_is_reported_not_decisive() -> None:
    # a demo retrain's holdout: 127 spam, 577 ham. At precision 0.99 the cut-off holds one
    # ham above it, so the highest-scoring ham sets the recall: 0.677 against the champion's
    # 0.811 there, with PR-AUC 0.9881 against 0.9918
    assert GateTolerance().recall_at_precision_min_spam == 198
    holdout = REFERENCE | {"rows": 704.0, "spam_share": 127 / 704, "pr_auc": 0.9918}
    holdout |= {"recall_at_p99": 0.811}
    candidate = holdout | {"pr_auc": 0.9881, "recall_at_p99": 0.677}
    result = check_gate(candidate, holdout, "champion v1")
    assert result.passed, result.summary()
    line = next(x for x in result.checks if x.startswith("recall_at_p99"))
    assert "fewer than 198, one ham sets it" in line and line.endswith("[reported, worse]")
    # PR-AUC still decides the ranking there: a clearly worse one is refused
    worse = candidate | {"pr_auc": 0.93}
    assert [f.split(":")[0] for f in check_gate(worse, holdout, "champion v1").failures] == [
        "pr_auc"
    ]


def test_gate_refuses_to_decide_on_a_holdout_with_too_few_spam() -> None:
    # the demo's thin retrain: 455 held-out mails, 13 spam; the allowance over 13 spam would
    # let recall fall by 0.37, so the gate says the holdout cannot decide
    thin = REFERENCE | {"rows": 455.0, "spam_share": 13 / 455}
    result = check_gate(thin, thin, "champion v1")
    assert not result.passed
    need = GateTolerance().evidence
    assert result.failures[0] == (
        f"holdout too small to decide: 13 spam and 442 ham, the gate needs {need.spam} and "
        f"{need.ham} ({need.spam - 13} more spam labels short)"
    )


def test_a_group_too_small_to_decide_is_reported_not_decisive() -> None:
    # 2 of 7 hard-ham mails wrongly blocked, then 3 of 7: no evidence either way
    few = REFERENCE | {"group.hard_ham.error_at_block": 2 / 7, "group.hard_ham.count": 7.0}
    result = check_gate(few | {"group.hard_ham.error_at_block": 3 / 7}, few, "champion v1")
    assert result.passed, result.summary()
    assert any("too few to decide" in line and "[reported" in line for line in result.checks)
    many = few | {"group.hard_ham.count": 700.0}
    assert not check_gate(many | {"group.hard_ham.error_at_block": 3 / 7}, many, "v1").passed


def test_gate_refuses_ham_sent_to_review_beyond_the_champion_and_reports_the_budget() -> None:
    with_review = REFERENCE | {
        "ham.count": 2495.0,
        "ham.error_at_block": 0.0,
        "ham.review_share": 0.04,
    }
    fine = check_gate(with_review | {"ham.review_share": 0.045}, with_review, "champion v1")
    assert fine.passed, fine.summary()
    # the retrain of the failed demo: most ham to review
    flooded = check_gate(with_review | {"ham.review_share": 0.56}, with_review, "champion v1")
    assert not flooded.passed
    assert [f.split(":")[0] for f in flooded.failures] == ["ham.review_share"]
    assert any(
        line.startswith("ham.review_share within the review budget") and "worse]" in line
        for line in flooded.checks
    )


def test_gate_refuses_a_candidate_that_sends_the_everyday_messages_to_review() -> None:
    from pipelines.behaviour import DIR, INV, MFT_ALLOWED, MFT_NOT_ALLOWED, SuiteResult, TypeResult

    def suite(review_share: float) -> SuiteResult:
        everyday = TypeResult(MFT_ALLOWED, 219, (), review_count=round(review_share * 219))
        others = {t: TypeResult(t, 50, ()) for t in (MFT_NOT_ALLOWED, INV, DIR)}
        rules = {"allowed": 0.0, "not_allowed": 0.1}
        return SuiteResult(results={MFT_ALLOWED: everyday, **others}, max_mft_failure_rate=rules)

    champion, candidate = suite(0.557), suite(0.96)
    result = check_gate(
        REFERENCE, REFERENCE, "champion v1", behaviour=candidate, reference_behaviour=champion
    )
    assert not result.passed
    assert result.failures[0].startswith("behaviour everyday review_share: 0.9589 vs 0.5571")
    same = check_gate(
        REFERENCE, REFERENCE, "champion v1", behaviour=champion, reference_behaviour=champion
    )
    assert same.passed, same.summary()


def test_everyday_comments_sent_to_review_beyond_the_budget_refuse_the_candidate() -> None:
    need = GateTolerance().evidence.ham
    within = {**REFERENCE, "group.comments.count": 2647.0, "group.comments.review_share": 0.017}
    assert check_gate(within, REFERENCE, "baseline").passed
    flooded = {**within, "group.comments.review_share": 0.12}
    result = check_gate(flooded, REFERENCE, "baseline")
    assert not result.passed
    assert result.failures[0].startswith("group.comments.review_share within the review budget")
    # too few comments to decide: reported, not decisive
    few = {**flooded, "group.comments.count": float(need - 1)}
    assert check_gate(few, REFERENCE, "baseline").passed


def test_cut_offs_too_uncertain_for_their_purpose_refuse_the_candidate() -> None:
    reason = "review cut-off too uncertain: 0.035 [0.010, 0.300]; ..."
    result = check_gate(REFERENCE, REFERENCE, "champion v1", cutoff_failures=[reason])
    assert not result.passed and result.failures == (reason,)


def test_gate_keeps_the_fixed_recall_tolerance_on_a_large_holdout() -> None:
    large = REFERENCE
    # two standard errors over 496 spam are ~0.04: a drop of 0.07 is a worse model
    reference = large["recall_at_p99"]
    worse = large | {"recall_at_p99": reference - 0.07}
    assert not check_gate(worse, large, "baseline").passed


def test_gate_refuses_nan_metrics() -> None:
    assert not check_gate(REFERENCE | {"pr_auc": float("nan")}, REFERENCE, "baseline").passed


def test_review_band_holds_at_most_the_budget_of_reweighted_traffic() -> None:
    # below block 0.9: scores 0.8 (spam), 0.7 (ham), 0.6 (spam), 0.5 (ham), ...; at a 50 %
    # traffic spam share each spam weighs 1/12 and each ham 1/8 (6 spam, 4 ham)
    cut = budget_review_cutoff(LABELS, SCORES, 0.9, review_budget=0.25, traffic_spam_share=0.5)
    assert cut == 0.7  # 0.8 + 0.7 = 1/12 + 1/8 = 0.208 <= 0.25; adding 0.6 gives 0.29
    # a budget too small for even one row still leaves a non-empty band (the top score below)
    assert budget_review_cutoff(LABELS, SCORES, 0.9, 0.001, 0.5) == 0.8


def test_action_thresholds_block_at_the_higher_of_the_warm_and_cold_cutoffs() -> None:
    cold = np.array([0.99, 0.95, 0.7, 0.8, 0.9, 0.6, 0.5, 0.4, 0.2, 0.1])  # ham at rank 3
    t = action_thresholds(LABELS, SCORES, cold, review_budget=0.25, traffic_spam_share=0.5)
    assert select_thresholds(LABELS, SCORES).block == 0.8
    assert select_thresholds(LABELS, cold).block == 0.95
    assert t.block == 0.95 and t.review < t.block


def test_expected_calibration_error_is_the_weighted_gap_per_bin() -> None:
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    # one bin [0.5, 0.6): mean score 0.5, spam share 0.25 -> gap 0.25
    assert expected_calibration_error([1, 0, 0, 0], [0.5] * 4) == pytest.approx(0.25)


def test_bootstrap_pr_auc_difference_is_zero_against_itself_and_positive_for_a_better_model() -> (
    None
):
    diff, se = bootstrap_pr_auc_difference(LABELS, SCORES, SCORES, resamples=50)
    assert diff == 0.0 and se == 0.0
    perfect = LABELS.astype(float)
    diff, se = bootstrap_pr_auc_difference(LABELS, perfect, SCORES, resamples=50)
    assert diff > 0 and se > 0


def test_precision_at_a_lower_spam_share_follows_bayes() -> None:
    from pipelines.metrics import precision_at_share

    # at a 50 % mix, precision 0.9 means FPR = TPR / 9; at 10 % spam that is 0.1/(0.1 + 0.9/9)
    shifted = precision_at_share(np.array([0.9, 1.0]), np.array([0.5, 0.2]), 0.5, 0.1)
    assert shifted == pytest.approx([0.5, 1.0])


def test_the_block_cut_off_at_the_deployment_prior_sits_above_every_validation_ham() -> None:
    from pipelines.metrics import select_thresholds

    # 100 spam and 100 ham; one ham scores 0.8, among spam: fine at 50 %, not at 5 % spam
    y = np.array([1] * 100 + [0] * 100)
    scores = np.concatenate([np.linspace(0.5, 1.0, 100), [0.8], np.linspace(0.0, 0.4, 99)])
    at_mix = select_thresholds(y, scores).block
    at_prior = select_thresholds(y, scores, spam_share=0.05).block
    assert at_mix < 0.8 < at_prior


def test_spam_missed_for_review_is_reported_not_decisive() -> None:
    base = {
        "pr_auc": 0.98,
        "recall_at_p99": 0.8,
        "rows": 1000.0,
        "spam_share": 0.3,
        "group.spam.count": 300.0,
        "group.spam.error_at_review": 0.0,
    }
    worse_review = dict(base, **{"group.spam.error_at_review": 0.2})
    result = check_gate(worse_review, base, "champion v1")
    assert result.passed
    assert any("error_at_review" in line and "reported, worse" in line for line in result.checks)


def test_gate_refuses_what_the_canarys_paired_test_would_roll_back() -> None:
    from modstack.paired import discordant

    # 300 labelled messages; the candidate sends 12 ham to review that the reference allows,
    # and gets 1 spam right that the reference let through: the labels side with the reference
    positives = [True] * 40 + [False] * 260
    reference = ["block"] * 39 + ["allow"] + ["allow"] * 260
    candidate = ["block"] * 40 + ["review"] * 12 + ["allow"] * 248
    paired = discordant(positives, candidate, reference)
    assert (paired.b, paired.c) == (1, 12)
    result = check_gate(REFERENCE, REFERENCE, "champion v1", paired=paired)
    assert not result.passed
    assert result.failures[0].startswith("paired harm on holdout labels: candidate right b=1")
    # a few discordant pairs either way: no evidence against the candidate
    even = discordant(positives, ["block"] * 40 + ["review"] * 2 + ["allow"] * 258, reference)
    assert check_gate(REFERENCE, REFERENCE, "champion v1", paired=even).passed
