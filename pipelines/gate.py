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
    # Each check also allows this many binomial standard errors of the reference's value over
    # the rows it is measured on (spam for PR-AUC and recall, the group's mails for a group
    # error; for PR-AUC the binomial interval of Boyd et al., 2013). A retrain's holdout holds
    # ~60 spam and ~7 hard ham: one standard error of recall is ~0.06 there, one hard-ham mail
    # moves its error by 0.14, and a smaller difference is not evidence of a worse model. On
    # the first champion's holdout (496 spam) the fixed tolerances are about the same size.
    noise_z: float = 1.0


def binomial_standard_error(value: float, rows: float) -> float:
    """sqrt(p (1 - p) / n), with p kept at least half a row away from 0 and 1 (0 when n < 1)."""
    if rows < 1 or not 0.0 <= value <= 1.0:  # NaN included
        return 0.0
    p = min(max(value, 0.5 / rows), 1.0 - 0.5 / rows)
    return math.sqrt(p * (1.0 - p) / rows)


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

    spam = reference.get("rows", 0.0) * reference.get("spam_share", 0.0)

    def allowed(fixed: float, value: float, rows: float, what: str) -> tuple[float, str]:
        noise = tol.noise_z * binomial_standard_error(value, rows)
        if noise <= fixed:
            return fixed, f"{fixed:g}"
        return noise, f"{noise:.3g}: {tol.noise_z:g} standard error over {rows:.0f} {what}"

    def compare(name: str, fixed: float, rows: float, what: str, higher_is_better: bool) -> None:
        new, old = candidate[name], reference[name]
        limit, why = allowed(fixed, old, rows, what)
        verb = "drop" if higher_is_better else "rise"
        line = f"{name}: {new:.4f} vs {old:.4f} (may {verb} by {why})"
        checks.append(line)
        # NaN (e.g. a one-class holdout) never passes: there is nothing to show it is as good
        ok = new >= old - limit if higher_is_better else new <= old + limit
        if not ok:
            failures.append(line)

    compare("pr_auc", tol.pr_auc, spam, "spam", higher_is_better=True)
    compare("recall_at_p99", tol.recall_at_p99, spam, "spam", higher_is_better=True)
    for group in GROUPS:
        key = f"group.{group}.{GROUP_ERROR[group]}"
        if key not in candidate or key not in reference:
            continue
        rows = reference.get(f"group.{group}.count", 0.0)
        compare(key, tol.group_error, rows, group.replace("_", " "), higher_is_better=False)
    return GateResult(
        passed=not failures,
        compared_with=compared_with,
        checks=tuple(checks),
        failures=tuple(failures),
    )


def tolerance_params(tolerance: GateTolerance) -> dict[str, float]:
    """The tolerance as run params (`gate_tolerance_*`)."""
    return {f"gate_tolerance_{key}": value for key, value in asdict(tolerance).items()}
