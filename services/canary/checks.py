"""The canary analysis's check names, in the order they are judged and shown.

A module of its own (no scipy, no analysis code) so the light `modstack rollout` client and the
analysis share one list.
"""

from __future__ import annotations

CHECK_NAMES: tuple[str, ...] = (
    "error_rate",
    "latency_p99",
    "label_mcnemar",
    "expected_block_rate",
    "expected_score_psi",
    "score_collapse",
    "score_psi",
    "block_rate",
    "block_precision",
)
