"""The abuse peers (pipelines/peers.py): each scores hand-written comments in a sensible order,
a missing locale says how to get it, and the results file carries the ranking, the paired
bootstrap SE against the baseline and the cost of scoring."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from modstack.report import render_result
from modstack.results import read_result, write_result
from pipelines import peers

COMMENTS = ["you are an idiot", "have a nice day", "this bug is killing me"]


@pytest.mark.parametrize("load", [peers.load_profanity_check, peers.load_hatesonar])
def test_peer_scores_an_insult_above_a_greeting(load: Callable[[], peers.Scorer]) -> None:
    scores = load()(COMMENTS)
    assert scores.shape == (3,)
    assert ((scores >= 0) & (scores <= 1)).all()
    insult, greeting, _ = scores
    assert insult > greeting


def test_hatesonar_without_the_locale_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import hatesonar
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    def no_locale() -> None:
        raise Fail("Failed to construct locale with name:en_US.UTF-8")

    monkeypatch.setattr(hatesonar, "Sonar", no_locale)
    with pytest.raises(peers.PeerUnavailable, match="localedef -i en_US -f UTF-8"):
        peers.load_hatesonar()


def _cost(load_seconds: float) -> peers.Cost:
    return peers.Cost(load_seconds, 5, 0.2, 0.1, 1.0, 0.5)


def test_results_file_compares_every_model_with_the_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "BOOTSTRAP_RESAMPLES", 30)  # an SE, cheaply
    rng = np.random.default_rng(0)
    y = np.array([1] * 30 + [0] * 70)
    perfect = y.astype(float)
    noisy = np.clip(y * 0.3 + rng.random(100) * 0.7, 0, 1)
    scored = [
        peers.Scored(peers.BASELINE, "train.csv (history)", noisy, _cost(9.0)),
        peers.Scored(peers.PROFANITY_CHECK, "Davidson 2017 + Jigsaw", perfect, _cost(0.2)),
        peers.Scored(peers.HATESONAR, "Davidson 2017", 1 - noisy),
    ]
    result = peers.build_result(
        y, scored, min_precision=0.95, seed=42, holdout={"rows": 100}, notes=["a note"]
    )
    path = write_result(result, tmp_path)
    assert path == tmp_path / "results" / "abuse-peers.json"

    back = read_result(path)
    models = back.data["models"]
    assert models[peers.PROFANITY_CHECK]["pr_auc"] == 1.0
    assert models[peers.PROFANITY_CHECK]["recall_at_precision"] == 1.0
    baseline_pr_auc = average_precision_score(y, noisy)
    assert models[peers.BASELINE]["pr_auc"] == pytest.approx(baseline_pr_auc)
    assert "pr_auc_minus_baseline" not in models[peers.BASELINE]
    assert models[peers.PROFANITY_CHECK]["pr_auc_minus_baseline"] == pytest.approx(
        1.0 - baseline_pr_auc
    )
    assert models[peers.HATESONAR]["pr_auc_minus_baseline"] < 0
    assert models[peers.HATESONAR]["pr_auc_minus_baseline_se"] > 0
    assert models[peers.HATESONAR]["cost"] is None

    ranking, cost = back.tables
    assert [row[0] for row in ranking.rows] == [s.name for s in scored]
    assert ranking.rows[0][-2:] == ["-", "-"]
    assert [row[0] for row in cost.rows] == [peers.BASELINE, peers.PROFANITY_CHECK]
    rendered = render_result(back, "results/abuse-peers.json")
    assert "| alt-profanity-check 1.9.1 | Davidson 2017 + Jigsaw | 1 | 1 | 1 |" in rendered
    assert "- a note" in rendered
