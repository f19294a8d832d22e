"""Windowing, late labels, realized quality and the retraining trigger's hysteresis."""

from __future__ import annotations

import pytest

from services.monitoring.drift.quality import realized_quality
from services.monitoring.drift.windows import (
    PredictionWindows,
    RetrainTrigger,
    WindowPolicy,
    WindowRow,
    rows_to_records,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def row(i: int, score: float = 0.1, action: str = "allow", version: str = "1") -> WindowRow:
    return WindowRow(
        message_id=f"m{i}",
        score=score,
        action=action,
        model_version=version,
        variant="champion",
        features={"body_chars": float(i)},
    )


def test_window_closes_at_max_rows() -> None:
    windows = PredictionWindows(WindowPolicy(max_rows=3, max_age_s=60, min_rows=1))
    assert windows.add(row(1)) is None
    assert windows.add(row(2)) is None
    closed = windows.add(row(3))
    assert closed is not None and closed.reason == "rows"
    assert [r.message_id for r in closed.rows] == ["m1", "m2", "m3"]
    assert windows.current_rows == 0


def test_window_closes_by_age_only_with_min_rows() -> None:
    clock = FakeClock()
    windows = PredictionWindows(WindowPolicy(max_rows=100, max_age_s=10, min_rows=2), clock=clock)
    windows.add(row(1))
    clock.now += 11
    assert windows.poll() is None, "one row is below min_rows: the window keeps filling"
    closed = windows.add(row(2))
    assert closed is not None and closed.reason == "age" and len(closed.rows) == 2


def test_window_age_counts_from_first_row_not_from_last_close() -> None:
    clock = FakeClock()
    windows = PredictionWindows(WindowPolicy(max_rows=100, max_age_s=10, min_rows=1), clock=clock)
    clock.now += 50  # idle time with no window open does not count
    windows.add(row(1))
    assert windows.poll() is None
    clock.now += 10
    assert windows.poll() is not None


def test_duplicate_delivery_is_counted_once_even_after_close() -> None:
    windows = PredictionWindows(WindowPolicy(max_rows=2, max_age_s=60, min_rows=1))
    windows.add(row(1))
    assert windows.add(row(1)) is None
    assert windows.current_rows == 1
    windows.add(row(2))  # closes
    assert windows.add(row(1)) is None and windows.current_rows == 0


def test_late_and_early_labels_reach_their_rows() -> None:
    windows = PredictionWindows(WindowPolicy(max_rows=2, max_age_s=60, min_rows=1))
    assert windows.add_label("m2", "spam") is False  # label before its prediction: parked
    windows.add(row(1))
    windows.add(row(2))  # closes window 0
    assert windows.add_label("m1", "ham") is True  # label after the window closed
    labels = {r.message_id: r.label for r in windows.labelled_rows()}
    assert labels == {"m1": "ham", "m2": "spam"}


def test_only_the_last_closed_windows_are_kept_for_labels() -> None:
    windows = PredictionWindows(WindowPolicy(max_rows=1, max_age_s=60, min_rows=1), keep_closed=2)
    for i in range(3):
        windows.add(row(i))
    assert [w.index for w in windows.closed] == [1, 2]
    assert windows.add_label("m0", "spam") is False  # window 0 was dropped


def test_records_keep_score_only_for_the_reference_model_version() -> None:
    records = rows_to_records([row(1, 0.9, version="1"), row(2, 0.8, version="2")], "1")
    assert records == [
        {"body_chars": 1.0, "score": 0.9},
        {"body_chars": 2.0, "score": None},
    ]


def test_policy_rejects_min_rows_above_max_rows() -> None:
    with pytest.raises(ValueError, match="min_rows"):
        WindowPolicy(max_rows=10, max_age_s=1, min_rows=11)


def test_realized_quality_counts_review_and_block_as_flagged() -> None:
    rows = [
        row(1, action="block"),
        row(2, action="review"),
        row(3, action="allow"),
        row(4, action="block"),
        row(5, action="allow"),  # unlabelled: ignored
    ]
    for r, label in zip(rows, ["spam", "ham", "spam", "spam", None], strict=True):
        r.label = label
    quality = realized_quality(rows)
    assert quality.labelled_rows == 4
    assert quality.precision == pytest.approx(2 / 3)  # flagged m1, m2, m4: two are spam
    assert quality.recall == pytest.approx(2 / 3)  # spam m1, m3, m4: two flagged
    assert quality.block_precision == 1.0


def test_realized_quality_is_undefined_without_labels() -> None:
    quality = realized_quality([row(1)])
    assert quality.labelled_rows == 0 and quality.precision is None and quality.recall is None


def test_trigger_fires_once_per_cooldown_not_once_per_window() -> None:
    clock = FakeClock()
    trigger = RetrainTrigger(consecutive=2, cooldown_s=100, clock=clock)
    fired = []
    for _ in range(10):  # ten drifted windows, 5 s apart: well inside one cooldown
        fired.append(trigger.observe(True))
        clock.now += 5
    assert fired == [False, True] + [False] * 8
    clock.now += 100  # cooldown over, drift still there
    assert trigger.observe(True) is True


def test_trigger_needs_consecutive_drifted_windows() -> None:
    trigger = RetrainTrigger(consecutive=3, cooldown_s=0, clock=FakeClock())
    pattern = [True, True, False, True, True, False, True]
    assert not any(trigger.observe(d) for d in pattern), "the streak never reached 3"
    assert [trigger.observe(True) for _ in range(2)] == [False, True]


def test_disabled_trigger_never_fires() -> None:
    trigger = RetrainTrigger(consecutive=1, cooldown_s=0, enabled=False, clock=FakeClock())
    assert not any(trigger.observe(True) for _ in range(5))
