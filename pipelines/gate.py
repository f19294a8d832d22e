"""The quality gate, as a pure comparison of two metric sets measured on the same holdout.

A candidate passes when it is at least as good as the reference (the champion, or the baseline
when there is no champion yet) on PR-AUC and recall at precision >= 0.99 (decisive on a
holdout with spam enough that no single ham sets it), each within a stated tolerance, and no
coarse group is worse off than with the reference by more than the group tolerance: for easy
and hard ham the share wrongly blocked, for spam the share let through without review. (Each
model acts at its own cut-offs; comparing spam blocked would reward a model for blocking more
ham.)

Cold start is checked too: the same holdout with every sender column blank (what a new sender
gets) must not rank worse than the reference does there (PR-AUC, recall at precision >= 0.99).
And the candidate runs the behavioural suite (`pipelines.behaviour`, cases in
modstack/policies/spam/behaviour.yaml) as new senders at its own thresholds: failing a
minimum-functionality rule refuses it whatever its holdout metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modstack.evidence import EvidenceNeed, describe_shortfall, noise_allowance
from modstack.paired import PAIRED_ALPHA, McNemar
from modstack.policy import DEFAULT_POLICY, catalogue
from modstack.registry.contract import Thresholds
from pipelines.behaviour import (
    MFT_ALLOWED,
    MFT_NOT_ALLOWED,
    Decision,
    Message,
    SuiteResult,
    load_cases,
    run_suite,
)
from pipelines.metrics import BLOCK_MIN_PRECISION, GROUPS
from pipelines.model_frames import new_sender_frame

# The harm the gate guards per group: ham wrongly blocked, spam missed even for review.
GROUP_ERROR = {
    "easy_ham": "error_at_block",
    "hard_ham": "error_at_block",
    "spam": "error_at_review",
    "comments": "error_at_block",
}
# Ham groups that look like the traffic the review band will meet (short everyday messages
# from new senders): their share sent to review must stay within the review budget.
TRAFFIC_LIKE_GROUPS = ("comments",)
# Reported, not decisive: spam missed even for review depends on where the review budget puts
# each model's review cut-off on its own validation set (a retrain's validation is fresher
# traffic), so it compares two budgets as much as two models. Spam is judged threshold-free
# (PR-AUC, recall at precision >= 0.99); false blocks of ham are judged at block.
REPORTED_GROUPS = frozenset({"spam"})


@dataclass(frozen=True)
class GateTolerance:
    """How much worse than the reference a candidate may be and still pass (absolute), and
    how much evidence a holdout must hold before the gate decides at all.

    Each comparison allows the larger of its fixed tolerance and `noise_z` standard errors of
    the difference of two rates over the rows it is measured on (`noise_allowance`: spam for
    PR-AUC and recall, ham for the shares of ham blocked or sent to review, a group's mails
    for a group's rate; for PR-AUC the binomial interval of Boyd et al., 2013). Two standard
    errors, not one: the gate makes about ten decisive comparisons, and at one standard error
    each an equally good model fails one of them more often than not. The rows are the same
    for both models, so the unpaired error bounds the paired spread from above, and on a small
    holdout that allowance grows without limit (0.37 on 12 spam): below `evidence` rows per
    class the gate refuses to decide instead.
    """

    pr_auc: float = 0.005
    recall_at_p99: float = 0.02
    group_error: float = 0.02
    # the share of ham sent to review may rise by this much against the reference (warm,
    # cold, and the behaviour suite's everyday messages): the canary counts it as harm too
    review_share: float = 0.02
    noise_z: float = 2.0
    # the review budget the thresholds were sized for (share of traffic in [review, block) at
    # `traffic_spam_share` spam): a candidate's holdout ham may not exceed it beyond noise
    review_budget: float = 0.05
    traffic_spam_share: float = 0.05
    evidence: EvidenceNeed = field(default_factory=EvidenceNeed)
    # Recall at precision >= 0.99 is decisive only on a holdout whose spam lets its cut-off
    # hold this many ham above it (1 ham per 99 spam): with fewer, the highest-scoring ham
    # alone sets the metric, and its spread is not the binomial one the allowance assumes. A
    # demo retrain measured it: 127 spam, one ham at 0.854 instead of 0.827 gave recall 0.677
    # against the champion's 0.811 while PR-AUC differed by 0.004. PR-AUC and the paired harm
    # test decide the ranking there; the recall is reported.
    recall_at_precision_min_ham: int = 2
    # the paired test on the holdout's labels, as the canary runs it live (modstack.paired):
    # refused when the labels side with the reference at this one-sided significance
    paired_alpha: float = PAIRED_ALPHA

    @property
    def recall_at_precision_min_spam(self) -> int:
        """Holdout spam from which recall at precision >= 0.99 is decisive (198)."""
        per_ham = BLOCK_MIN_PRECISION / (1.0 - BLOCK_MIN_PRECISION)
        return math.ceil(self.recall_at_precision_min_ham * per_ham - 1e-9)

    @property
    def ham_review_limit(self) -> float:
        """The review budget as a share of ham (the band's ham part at the traffic's mix)."""
        return self.review_budget / (1.0 - self.traffic_spam_share)


@dataclass(frozen=True)
class GateResult:
    """Outcome of the gate: every check made, and the ones that failed."""

    passed: bool
    compared_with: str
    checks: tuple[str, ...]
    failures: tuple[str, ...]

    def summary(self) -> str:
        """One line per check, failures first; what `register` prints."""
        verdict = "PASSED" if self.passed else "REFUSED"
        lines = [f"quality gate {verdict} (compared with {self.compared_with})"]
        lines += [f"  FAIL {line}" for line in self.failures]
        lines += [f"  ok   {line}" for line in self.checks if line not in self.failures]
        return "\n".join(lines)

    def as_tags(self) -> dict[str, str]:
        """The result as registry tags on the model version."""
        return {
            "gate.passed": str(self.passed).lower(),
            "gate.compared_with": self.compared_with,
            "gate.failures": "; ".join(self.failures)[:4_000] or "none",
        }


def new_sender_scorer(model: Any, thresholds: Thresholds, feature_columns: Sequence[str]) -> Any:
    """A `pipelines.behaviour` scorer: each message as a sender the store never saw (sender
    columns NaN), the text features as the Feast on-demand view computes them."""
    columns = list(feature_columns)

    def score(messages: Sequence[Message]) -> list[Decision]:
        frame = new_sender_frame([m.subject for m in messages], [m.body for m in messages], columns)
        spam = model.predict_proba(frame)[:, 1]
        return [Decision(float(p), thresholds.action_for(float(p))) for p in spam]

    return score


def run_behaviour(
    model: Any, thresholds: Thresholds, feature_columns: Sequence[str], policy: str = DEFAULT_POLICY
) -> SuiteResult:
    """The policy's behavioural suite on `model` as new senders at its own thresholds (the
    spam suite may be replaced with $BEHAVIOUR_CASES, for tests)."""
    path = None if policy == DEFAULT_POLICY else catalogue().get(policy).behaviour_suite
    return run_suite(load_cases(path), new_sender_scorer(model, thresholds, feature_columns))


def behaviour_failures(result: SuiteResult) -> list[str]:
    """The minimum-functionality rules `result` violates (what refuses a candidate)."""
    return [
        f"behaviour {line}"
        for line in result.gate_violations()
        if line.startswith((MFT_ALLOWED, MFT_NOT_ALLOWED))
    ]


@dataclass(frozen=True)
class _Comparison:
    """One metric compared between candidate and reference over `rows` of `what`."""

    name: str
    fixed: float
    rows: float
    what: str
    higher_is_better: bool
    label: str = ""
    decisive: bool = True


class _Checks:
    """The checks made so far, the decisive ones that failed, and how to compare."""

    def __init__(self, tolerance: GateTolerance) -> None:
        self.tol = tolerance
        self.lines: list[str] = []
        self.failures: list[str] = []

    def note(self, line: str, ok: bool, decisive: bool = True) -> None:
        if not decisive:
            line = f"{line} [reported{'' if ok else ', worse'}]"
        self.lines.append(line)
        if decisive and not ok:
            self.failures.append(line)

    def allowed(self, fixed: float, value: float, rows: float, what: str) -> tuple[float, str]:
        noise = noise_allowance(self.tol.noise_z, value, rows) if math.isfinite(value) else 0.0
        if noise <= fixed:
            return fixed, f"{fixed:g}"
        return noise, (
            f"{noise:.3g}: {self.tol.noise_z:g} standard errors of the difference over "
            f"{rows:.0f} {what}"
        )

    def compare(self, comparison: _Comparison, new: float, old: float) -> None:
        # the allowance at the pooled rate: a reference at 0 (or 1) has no spread of its
        # own, and a holdout of a few dozen rows cannot tell 0 from 2 of them
        c = comparison
        limit, why = self.allowed(c.fixed, (new + old) / 2, c.rows, c.what)
        verb = "drop" if c.higher_is_better else "rise"
        line = f"{c.label}{c.name}: {new:.4f} vs {old:.4f} (may {verb} by {why})"
        # NaN (e.g. a one-class holdout) never passes: there is nothing to show it is as good
        ok = new >= old - limit if c.higher_is_better else new <= old + limit
        self.note(line, ok, c.decisive)


def holdout_shortfall(reference: Mapping[str, float], need: EvidenceNeed) -> str:
    """Why the holdout is too small to decide ('' when it is not)."""
    rows = round(reference.get("rows", 0.0))
    spam = round(rows * reference.get("spam_share", 0.0))
    missing = need.shortfall({"spam": spam, "ham": rows - spam})
    if not any(missing.values()):
        return ""
    return (
        f"holdout too small to decide: {spam} spam and {rows - spam} ham, the gate needs "
        f"{need.spam} and {need.ham} ({describe_shortfall(missing)} short)"
    )


Pair = tuple[Mapping[str, float], Mapping[str, float]]


def _ranking_checks(checks: _Checks, pair: Pair, label: str) -> None:
    tol = checks.tol
    spam = pair[1].get("rows", 0.0) * pair[1].get("spam_share", 0.0)
    checks.compare(
        _Comparison("pr_auc", tol.pr_auc, spam, "spam", True, label), *_values(pair, "pr_auc")
    )
    need = tol.recall_at_precision_min_spam
    decisive = spam >= need - 0.5
    what = "spam" if decisive else f"spam; fewer than {need}, one ham sets it"
    comparison = _Comparison("recall_at_p99", tol.recall_at_p99, spam, what, True, label, decisive)
    checks.compare(comparison, *_values(pair, "recall_at_p99"))


def _ham_checks(checks: _Checks, pair: Pair, label: str) -> None:
    """All ham: the shares blocked and sent to review may not rise beyond tolerance, and
    the review share stays within the budget beyond noise."""
    candidate, reference = pair
    if "ham.review_share" not in candidate or "ham.review_share" not in reference:
        return
    tol = checks.tol
    rows = reference.get("ham.count", 0.0)
    for name, fixed in (
        ("ham.error_at_block", tol.group_error),
        ("ham.review_share", tol.review_share),
    ):
        checks.compare(_Comparison(name, fixed, rows, "ham", False, label), *_values(pair, name))
    share, budget = candidate["ham.review_share"], tol.ham_review_limit
    # All ham together is reported, not decisive: it mixes hard e-mail ham (newsletters,
    # commercial mail a moderator should read) with chat; the decisive budget check is on the
    # traffic-like groups (`_traffic_budget_checks`). Retrains' holdouts sent 8.1-8.8 % of new
    # senders' e-mail ham to review (4.0-4.2 % on their validation) before comments joined.
    slack = _budget_slack(tol, rows)
    checks.note(
        f"{label}ham.review_share within the review budget: {share:.4f} <= {budget + slack:.4f} "
        f"(budget {tol.review_budget:g} of traffic = {budget:.4f} of ham, + {slack:.3g})",
        share <= budget + slack,
        decisive=False,
    )


def _values(pair: Pair, name: str) -> tuple[float, float]:
    return pair[0][name], pair[1][name]


def _group_checks(checks: _Checks, pair: Pair) -> None:
    """Per coarse group; a group with fewer rows than the evidence needs is reported, not
    decisive (all ham together is decisive in `_ham_checks`)."""
    need = checks.tol.evidence.ham
    for group in GROUPS:
        key = f"group.{group}.{GROUP_ERROR[group]}"
        if key not in pair[0] or key not in pair[1]:
            continue
        rows = pair[1].get(f"group.{group}.count", 0.0)
        what = group.replace("_", " ")
        if rows < need and group not in REPORTED_GROUPS:
            what += f"; fewer than {need}, too few to decide"
        decisive = group not in REPORTED_GROUPS and rows >= need
        comparison = _Comparison(key, checks.tol.group_error, rows, what, False, decisive=decisive)
        checks.compare(comparison, *_values(pair, key))


def _budget_slack(tol: GateTolerance, rows: float) -> float:
    """How far above the budget a share measured on `rows` ham may sit before it is a
    finding rather than noise (the fixed review tolerance, or the noise over those rows)."""
    budget = tol.ham_review_limit
    return max(tol.review_share, noise_allowance(tol.noise_z, budget, rows) / math.sqrt(2.0))


def _traffic_budget_checks(checks: _Checks, candidate: Mapping[str, float]) -> None:
    """The review share of traffic-like ham groups within the review budget: decisive once
    the group holds the rows the evidence rule needs (the canary counts each as harm)."""
    tol = checks.tol
    for group in TRAFFIC_LIKE_GROUPS:
        key = f"group.{group}.review_share"
        if key not in candidate:
            continue
        rows = candidate.get(f"group.{group}.count", 0.0)
        share, budget = candidate[key], tol.ham_review_limit
        slack = _budget_slack(tol, rows)
        decisive = rows >= tol.evidence.ham
        checks.note(
            f"{key} within the review budget: {share:.4f} <= {budget + slack:.4f} "
            f"(budget {budget:.4f} of ham + {slack:.3g}, {rows:.0f} rows)",
            share <= budget + slack,
            decisive=decisive,
        )


def _paired_checks(checks: _Checks, paired: McNemar, label: str) -> None:
    """The canary's quality check, on the holdout: among the labelled messages where exactly
    one model did harm (`modstack.paired.harmful`), do the labels side with the reference?"""
    alpha = checks.tol.paired_alpha
    checks.note(
        f"{label}paired harm on holdout labels: candidate right b={paired.b}, reference right "
        f"c={paired.c} (exact McNemar p={paired.p_worse:.4g}; refused below {alpha:g}, "
        "as the canary would roll it back)",
        paired.p_worse >= alpha,
    )


def _behaviour_checks(
    checks: _Checks, behaviour: SuiteResult, reference: SuiteResult | None
) -> None:
    """The suite's minimum-functionality rules, and the share of its everyday messages sent
    to review: no higher than the reference's beyond tolerance (decisive), and against the
    review budget (reported: the spam model has seen no everyday chat, docs/training.md)."""
    tally = ", ".join(f"{t} {r.failure_count}/{r.total}" for t, r in behaviour.results.items())
    checks.lines.append(f"behaviour suite as new senders, failed: {tally}")
    for line in behaviour_failures(behaviour):
        checks.note(line, ok=False)
    everyday = behaviour.results.get(MFT_ALLOWED)
    if everyday is None or not everyday.total:
        return
    share = everyday.review_share
    if reference is not None and MFT_ALLOWED in reference.results:
        comparison = _Comparison(
            "review_share",
            checks.tol.review_share,
            everyday.total,
            "everyday messages",
            False,
            label="behaviour everyday ",
        )
        checks.compare(comparison, share, reference.results[MFT_ALLOWED].review_share)
    limit = checks.tol.ham_review_limit
    checks.note(
        f"behaviour everyday review_share within the review budget: {share:.3f} <= {limit:.3f}",
        share <= limit,
        decisive=False,
    )


def check_gate(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    compared_with: str,
    tolerance: GateTolerance | None = None,
    candidate_cold: Mapping[str, float] | None = None,
    reference_cold: Mapping[str, float] | None = None,
    behaviour: SuiteResult | None = None,
    reference_behaviour: SuiteResult | None = None,
    cutoff_failures: Sequence[str] = (),
    paired: McNemar | None = None,
    paired_cold: McNemar | None = None,
) -> GateResult:
    """Compare flat holdout metrics (`pipelines.metrics.evaluate_scores(...).metrics`), with
    sender history and (when given) as cold senders; apply the behavioural suite's rules and
    its everyday review share (when given); refuse cut-offs too uncertain for their purpose
    (`cutoff_failures`, from `pipelines.cutoffs`); refuse a candidate the labels of the
    holdout's discordant pairs side against (`paired`, `paired_cold`: the canary's McNemar). A
    holdout with fewer rows per class than the tolerance's `evidence` needs is refused as
    undecidable."""
    checks = _Checks(tolerance or GateTolerance())
    shortfall = holdout_shortfall(reference, checks.tol.evidence)
    if shortfall:
        checks.note(shortfall, ok=False)
    _ranking_checks(checks, (candidate, reference), "")
    _ham_checks(checks, (candidate, reference), "")
    _group_checks(checks, (candidate, reference))
    _traffic_budget_checks(checks, candidate)
    if paired is not None:
        _paired_checks(checks, paired, "")
    if paired_cold is not None:
        _paired_checks(checks, paired_cold, "cold-start ")
    if candidate_cold is not None and reference_cold is not None:
        _ranking_checks(checks, (candidate_cold, reference_cold), "cold-start ")
        _ham_checks(checks, (candidate_cold, reference_cold), "cold-start ")
    if behaviour is not None:
        _behaviour_checks(checks, behaviour, reference_behaviour)
    for line in cutoff_failures:
        checks.note(line, ok=False)
    return GateResult(
        passed=not checks.failures,
        compared_with=compared_with,
        checks=tuple(checks.lines),
        failures=tuple(checks.failures),
    )


def tolerance_params(tolerance: GateTolerance) -> dict[str, float]:
    """The tolerance as run params (`gate_tolerance_*`), the evidence it needs included."""
    params = {
        f"gate_tolerance_{key}": value
        for key, value in asdict(tolerance).items()
        if isinstance(value, float)
    }
    params |= {f"gate_evidence_{c}": float(n) for c, n in tolerance.evidence.per_class().items()}
    return params
