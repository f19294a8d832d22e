"""Two models judged on the same labelled messages: what counts as harm, and the exact McNemar
test on the messages where exactly one of them did harm. The canary (live labels) and the
training gate (its holdout) share it, so the gate refuses offline what the canary would roll
back online on the same evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from scipy.stats import binomtest

# One-sided significance of "the labels side with the reference" (the canary's CANARY_ALPHA
# default and the gate's): small, because the canary repeats the test at every window.
PAIRED_ALPHA: Final = 0.01


def harmful(action: str, positive: bool) -> bool:
    """The mistake a label can show: harm let through to its recipient (a positive allowed), or
    a harmless message held back from it (blocked, or sent to a moderator's queue).

    A positive held for review is no mistake: a person catches it. So a model that moves harm
    between review and block (another block cut-off) is judged on what reaches people, while
    one that sends ordinary messages to review, at the moderators' cost and the recipient's
    wait, is not let off because nothing was blocked."""
    return action == "allow" if positive else action != "allow"


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: under H0 (equally good) each discordant pair is a fair coin."""

    b: int  # challenger right, champion wrong
    c: int  # champion right, challenger wrong
    p_worse: float  # one-sided P(X <= b), X ~ Bin(b + c, 1/2): small = labels side with champion
    p_better: float  # one-sided P(X >= b): small = labels side with the challenger

    @property
    def n(self) -> int:
        return self.b + self.c


def mcnemar_exact(b: int, c: int) -> McNemar:
    """The exact (binomial) McNemar test on discordant counts b and c (scipy's binomtest;
    exact rather than the chi-square form because early windows hold a handful of pairs)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return McNemar(0, 0, 1.0, 1.0)
    worse = binomtest(b, n, 0.5, alternative="less").pvalue
    better = binomtest(b, n, 0.5, alternative="greater").pvalue
    return McNemar(b, c, float(worse), float(better))


def discordant(
    positives: Sequence[bool], candidate: Sequence[str], reference: Sequence[str]
) -> McNemar:
    """The test on labelled messages: b = the candidate right where the reference did harm,
    c = the reference right where the candidate did harm."""
    b = c = 0
    for positive, ours, theirs in zip(positives, candidate, reference, strict=True):
        we_harm, they_harm = harmful(ours, positive), harmful(theirs, positive)
        b += they_harm and not we_harm
        c += we_harm and not they_harm
    return mcnemar_exact(b, c)
