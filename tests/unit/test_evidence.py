"""How much labelled evidence the gate needs: the allowance formula inverted, per class."""

from __future__ import annotations

import pytest

from modstack.evidence import (
    EvidenceNeed,
    LabelEvidence,
    describe_shortfall,
    noise_allowance,
    rows_to_decide,
)


def test_rows_to_decide_is_the_fewest_rows_whose_allowance_fits() -> None:
    rows = rows_to_decide(max_noise=0.15, z=2.0, rate=0.8)
    assert noise_allowance(2.0, 0.8, rows) <= 0.15 < noise_allowance(2.0, 0.8, rows - 1)


def test_the_thin_demo_holdout_allowed_a_recall_drop_of_a_third() -> None:
    # 13 spam: two standard errors of the difference near recall 0.8 are ~0.31
    assert noise_allowance(2.0, 0.8, 13) == pytest.approx(0.314, abs=0.001)
    assert noise_allowance(2.0, 0.8, 0) == float("inf")


def test_the_default_need_and_the_labels_a_30_percent_holdout_asks_for() -> None:
    need = EvidenceNeed()
    assert need.per_class() == {"spam": 57, "ham": 152}
    assert need.labels_to_collect(0.3) == {"spam": 190, "ham": 507}
    assert need.shortfall({"spam": 13, "ham": 442}) == {"spam": 44, "ham": 0}
    with pytest.raises(ValueError, match="holdout_fraction"):
        need.labels_to_collect(0.0)


def test_label_evidence_counts_per_class_until_enough() -> None:
    evidence = LabelEvidence({"spam": 2, "ham": 1})
    evidence.add(True)
    assert evidence.missing() == {"spam": 1, "ham": 1} and not evidence.enough()
    evidence.add(True)
    evidence.add(False)
    assert evidence.enough()
    assert describe_shortfall({"spam": 3, "ham": 0}) == "3 more spam labels"
    assert describe_shortfall({"spam": 0, "ham": 0}) == ""
