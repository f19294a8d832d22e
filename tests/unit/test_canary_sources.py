"""Snapshot parsing and growth (scrape source), and the label join for block precision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.canary.label_join import LabelJoin
from services.canary.promql import REQUESTS, SCORE_BUCKET, series_key
from services.canary.sources import growth, parse_samples

EXPOSITION = """\
# HELP serving_requests_total Moderation requests
# TYPE serving_requests_total counter
serving_requests_total{policy="spam",variant="champion",outcome="ok"} 120.0
serving_requests_total{policy="spam",variant="challenger",outcome="error"} 3.0
serving_requests_total{policy="abuse",variant="champion",outcome="ok"} 77.0
# HELP serving_score Spam scores
# TYPE serving_score histogram
serving_score_bucket{policy="spam",variant="champion",le="0.5"} 100.0
serving_score_bucket{policy="spam",variant="champion",le="+Inf"} 120.0
serving_score_bucket{policy="abuse",variant="champion",le="+Inf"} 77.0
serving_score_count{policy="spam",variant="champion"} 120.0
serving_score_sum{policy="spam",variant="champion"} 30.0
# HELP process_cpu_seconds_total CPU
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 5.0
"""


def test_parse_samples_keeps_only_the_compared_series_of_one_policy():
    assert parse_samples(EXPOSITION, "abuse") == {
        series_key(REQUESTS, {"variant": "champion", "outcome": "ok"}): 77.0,
        series_key(SCORE_BUCKET, {"variant": "champion", "le": "+Inf"}): 77.0,
    }
    samples = parse_samples(EXPOSITION, "spam")
    assert samples == {
        series_key(REQUESTS, {"variant": "champion", "outcome": "ok"}): 120.0,
        series_key(REQUESTS, {"variant": "challenger", "outcome": "error"}): 3.0,
        series_key(SCORE_BUCKET, {"variant": "champion", "le": "0.5"}): 100.0,
        series_key(SCORE_BUCKET, {"variant": "champion", "le": "+Inf"}): 120.0,
    }


def test_growth_counts_new_series_from_zero_and_a_reset_as_a_restart():
    a = series_key(REQUESTS, {"variant": "champion", "outcome": "ok"})
    b = series_key(REQUESTS, {"variant": "challenger", "outcome": "ok"})
    assert growth({a: 100.0}, {a: 130.0, b: 7.0}) == {a: 30.0, b: 7.0}
    assert growth({a: 100.0}, {a: 12.0}) == {a: 12.0}  # replica restarted: 12 new requests


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_label_join_counts_block_precision_per_variant():
    join = LabelJoin()
    join.reset(T0)
    join.add_decision("m1", "champion", "block", T0)
    join.add_decision("m2", "champion", "block", T0)
    join.add_decision("m3", "challenger", "block", T0)
    join.add_decision("m4", "challenger", "allow", T0)
    join.add_label("m1", "spam")
    join.add_label("m2", "ham")
    join.add_label("m3", "spam")
    join.add_label("m4", "ham")
    assert (join.blocks("champion").labelled, join.blocks("champion").spam) == (2, 1)
    assert (join.blocks("challenger").labelled, join.blocks("challenger").spam) == (1, 1)


def test_label_join_handles_early_labels_duplicates_and_old_decisions():
    join = LabelJoin()
    join.reset(T0)
    join.add_label("early", "spam")  # the label overtook its decision
    join.add_decision("early", "challenger", "block", T0 + timedelta(seconds=1))
    join.add_decision("early", "challenger", "block", T0 + timedelta(seconds=1))  # redelivered
    join.add_decision("old", "champion", "block", T0 - timedelta(seconds=1))  # before rollout
    join.add_label("old", "ham")
    assert join.blocks("challenger").labelled == 1
    assert join.blocks("champion").labelled == 0


def test_label_join_forgets_the_oldest_decisions_beyond_its_bound():
    join = LabelJoin(max_pending=2)
    for i in range(3):
        join.add_decision(f"m{i}", "champion", "block", T0)
    for i in range(3):
        join.add_label(f"m{i}", "spam")
    assert join.blocks("champion").labelled == 2
