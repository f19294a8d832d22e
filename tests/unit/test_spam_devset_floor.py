"""The dev set's ranking floor (`pipelines.devset.ham_flagged_floor`): how much everyday ham
any review cut-off must flag to let through no more than a given share of short spam."""

from __future__ import annotations

import numpy as np

from pipelines.devset import ham_flagged_floor


def test_the_floor_is_the_ham_share_at_or_above_the_spam_quantile() -> None:
    spam = np.linspace(0.05, 0.95, 100)  # 0.05, ~0.059, ...: 8 of them below ~0.123
    ham = np.array([0.01, 0.05, 0.10, 0.12, 0.13, 0.50, 0.90, 0.02, 0.03, 0.04])
    # letting 8 % of the spam through puts the cut at the 9th lowest spam (~0.123): the ham
    # at 0.13, 0.50 and 0.90 would still be flagged
    assert ham_flagged_floor(ham, spam, 0.08) == 0.3
    # letting nothing through flags every ham at or above the lowest spam
    assert ham_flagged_floor(ham, spam, 0.0) == 0.6


def test_perfectly_separated_classes_flag_no_ham() -> None:
    assert ham_flagged_floor([0.1, 0.2, 0.3], [0.6, 0.7, 0.8, 0.9], 0.08) == 0.0
