"""The quality gate, as a pure comparison of two metric sets measured on the same holdout.

A candidate passes when it is at least as good as the reference (the champion, or the baseline
when there is no champion yet) on PR-AUC and recall at precision >= 0.99, each within a stated
tolerance, and no coarse group is worse off than with the reference by more than the group
tolerance: for easy and hard ham the share wrongly blocked, for spam the share let through
without review. (Each model acts at its own cut-offs; comparing spam blocked would reward a
model for blocking more ham.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pipelines.metrics import GROUPS

# The harm the gate guards per group: ham wrongly blocked, spam missed even for review.
GROUP_ERROR = {
    "easy_ham": "error_at_block",
    "hard_ham": "error_at_block",
    "spam": "error_at_review",
}


@dataclass(frozen=True)
class GateTolerance:
    """How much worse than the reference a candidate may be and still pass (absolute)."""

    pr_auc: float = 0.005
    recall_at_p99: float = 0.02
    group_error: float = 0.02
    # Recall at precision >= 0.99 may also drop by this many standard errors of the
    # reference's recall on the holdout's spam (binomial): on a retrain holdout of ~60 spam
    # one standard error is ~0.06, and a smaller difference is not evidence of a worse model.
    # On the first champion's holdout (496 spam) it is ~0.02, the fixed tolerance.
    recall_noise_z: float = 1.0


def recall_standard_error(metrics: Mapping[str, float]) -> float:
    """Binomial standard error of `recall_at_p99` over the holdout's spam (0 without spam)."""
    spam = metrics.get("rows", 0.0) * metrics.get("spam_share", 0.0)
    recall = metrics["recall_at_p99"]
    if spam < 1 or not 0.0 <= recall <= 1.0:
        return 0.0
    return math.sqrt(recall * (1.0 - recall) / spam)


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


def check_gate(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    compared_with: str,
    tolerance: GateTolerance | None = None,
) -> GateResult:
    """Compare flat holdout metrics (`pipelines.metrics.evaluate_scores(...).metrics`)."""
    tol = tolerance or GateTolerance()
    checks: list[str] = []
    failures: list[str] = []

    def at_least(name: str, allowed_drop: float, why: str = "") -> None:
        new, old = candidate[name], reference[name]
        line = f"{name}: {new:.4f} vs {old:.4f} (may drop by {allowed_drop:.3g}{why})"
        checks.append(line)
        # NaN (e.g. a one-class holdout) never passes: there is nothing to show it is as good
        if not new >= old - allowed_drop:
            failures.append(line)

    at_least("pr_auc", tol.pr_auc)
    noise = tol.recall_noise_z * recall_standard_error(reference)
    if noise > tol.recall_at_p99:
        spam = reference["rows"] * reference["spam_share"]
        why = f": {tol.recall_noise_z:g} standard error over {spam:.0f} spam"
        at_least("recall_at_p99", noise, why)
    else:
        at_least("recall_at_p99", tol.recall_at_p99)
    for group in GROUPS:
        key = f"group.{group}.{GROUP_ERROR[group]}"
        if key not in candidate or key not in reference:
            continue
        new, old = candidate[key], reference[key]
        line = f"{key}: {new:.4f} vs {old:.4f} (may rise by {tol.group_error})"
        checks.append(line)
        if not new <= old + tol.group_error:
            failures.append(line)
    return GateResult(
        passed=not failures,
        compared_with=compared_with,
        checks=tuple(checks),
        failures=tuple(failures),
    )


def tolerance_params(tolerance: GateTolerance) -> dict[str, float]:
    """The tolerance as run params (`gate_tolerance_*`)."""
    return {f"gate_tolerance_{key}": value for key, value in asdict(tolerance).items()}
