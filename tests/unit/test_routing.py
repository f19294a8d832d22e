"""Sticky canary assignment: share within statistical tolerance, stickiness, monotonic steps."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from services.serving.routing import assign_variant, sender_point

SENDERS = [f"user{i}@example{i % 97}.org" for i in range(20_000)]


def _challenger_share(weight: float, salt: str = "v7") -> float:
    hits = sum(assign_variant(s, weight, salt) == "challenger" for s in SENDERS)
    return hits / len(SENDERS)


@pytest.mark.parametrize("weight", [0.5, 1.0, 5.0, 25.0, 50.0, 99.0])
def test_challenger_share_matches_weight_within_binomial_tolerance(weight: float) -> None:
    p = weight / 100
    # 5 standard deviations of a binomial proportion: a false failure is ~1 in 3.5 million.
    tolerance = 5 * math.sqrt(p * (1 - p) / len(SENDERS))
    assert abs(_challenger_share(weight) - p) <= tolerance


def test_zero_weight_sends_nobody_and_full_weight_sends_everybody_to_challenger() -> None:
    assert _challenger_share(0.0) == 0.0
    assert _challenger_share(100.0) == 1.0
    assert assign_variant("a@b.c", -3.0) == "champion"
    assert assign_variant("a@b.c", 250.0) == "challenger"


def test_assignment_is_sticky_for_a_sender_across_calls() -> None:
    first = [assign_variant(s, 30.0, "v3") for s in SENDERS[:2000]]
    again = [assign_variant(s, 30.0, "v3") for s in SENDERS[:2000]]
    assert first == again


def test_assignment_is_the_same_in_another_process_with_another_hash_seed() -> None:
    """Python's hash() is salted per process; the routing hash must not be."""
    code = (
        "from services.serving.routing import sender_point;"
        "print(repr([sender_point(f'user{i}@x.org', 'v1') for i in range(50)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert eval(out) == [sender_point(f"user{i}@x.org", "v1") for i in range(50)]


def test_raising_the_weight_only_moves_senders_from_champion_to_challenger() -> None:
    steps = [1.0, 5.0, 25.0, 50.0, 100.0]
    previous = {s for s in SENDERS if assign_variant(s, 0.0, "v9") == "challenger"}
    for weight in steps:
        current = {s for s in SENDERS if assign_variant(s, weight, "v9") == "challenger"}
        assert previous <= current
        previous = current


def test_fractional_weights_below_one_percent_are_honoured() -> None:
    share = _challenger_share(0.25)
    assert 0 < share < 0.01


def test_a_new_salt_samples_a_different_population() -> None:
    a = {s for s in SENDERS if assign_variant(s, 10.0, "v1") == "challenger"}
    b = {s for s in SENDERS if assign_variant(s, 10.0, "v2") == "challenger"}
    overlap = len(a & b) / len(a)
    # independent 10% samples overlap by ~10%; the same salt would overlap by 100%
    assert overlap < 0.2


def test_sender_point_is_uniform_over_the_percent_range() -> None:
    points = [sender_point(s) for s in SENDERS]
    assert all(0.0 <= p < 100.0 for p in points)
    deciles = [0] * 10
    for p in points:
        deciles[int(p // 10)] += 1
    expected = len(points) / 10
    assert all(abs(count - expected) < 5 * math.sqrt(expected) for count in deciles)
