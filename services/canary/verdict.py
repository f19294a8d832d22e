"""What the analysis answers: one `CheckResult` per check and the window's `Analysis`.

Each check says pass / fail / inconclusive (`passed` None); an inconclusive decisive check
extends the step (see `state_machine.judge`), it neither passes nor fails the window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from modstack.names import CheckName

CheckKind = Literal["health", "quality", "guardrail", "report"]
DECISIVE_KINDS: frozenset[str] = frozenset({"health", "quality", "guardrail"})


@dataclass
class CheckResult:
    """One check: `passed` is None when the evidence does not decide it (inconclusive)."""

    name: CheckName
    passed: bool | None
    value: float | None  # the compared quantity (difference, ratio, PSI, p-value ...)
    threshold: float
    champion: float | None = None
    challenger: float | None = None
    detail: str = ""
    kind: CheckKind = "report"
    # False for a decisive kind that cannot be judged at all here (no expectation logged):
    # it is reported as skipped instead of holding the step forever.
    required: bool = True

    @property
    def decisive(self) -> bool:
        return self.kind in DECISIVE_KINDS and self.required

    @property
    def verdict(self) -> str:
        """pass / fail / inconclusive (decisive) or ok / over / n/a (reported)."""
        if not self.decisive:
            if self.kind != "report":
                return "skipped"
            return {True: "ok", False: "over", None: "n/a"}[self.passed]
        return {True: "pass", False: "fail", None: "inconclusive"}[self.passed]

    def as_dict(self) -> dict[str, Any]:
        body = {k: v for k, v in asdict(self).items() if k not in ("name", "required")}
        body["verdict"] = self.verdict
        return body


@dataclass
class Analysis:
    """The verdict on one window."""

    enough_data: bool
    checks: list[CheckResult]
    champion_requests: float
    challenger_requests: float

    @property
    def failed(self) -> list[CheckResult]:
        """Decisive checks that failed."""
        return [c for c in self.checks if c.decisive and c.passed is False]

    @property
    def inconclusive(self) -> list[CheckResult]:
        """Decisive checks the evidence does not decide yet."""
        return [c for c in self.checks if c.decisive and c.passed is None]

    @property
    def passed(self) -> bool:
        """Enough traffic, every decisive check passed."""
        return self.enough_data and not self.failed and not self.inconclusive

    def summary(self) -> str:
        """One line: each check as name=value (threshold) and its verdict."""
        parts = []
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.4g}"
            parts.append(f"{c.name}={value} ({c.threshold:g}) {c.verdict}")
        return "; ".join(parts)

    def metrics(self) -> dict[str, float | None]:
        """Raw values, flat, for the rollout history."""
        values: dict[str, float | None] = {
            "champion_requests": self.champion_requests,
            "challenger_requests": self.challenger_requests,
        }
        for c in self.checks:
            if c.champion is not None or c.challenger is not None:
                values[f"{c.name}.champion"] = c.champion
                values[f"{c.name}.challenger"] = c.challenger
        return values
