"""The demo-trials summary (stack/demo/trials.py) reads what a finished `make demo` left: the
rollout record, the retrain's MLflow run (holdout, cut-offs with intervals) and the canary's
last paired count."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from stack.demo.trials import Trial, summarise, table

RUN = "58f7e4f54544467ebde0c3333c841664"


def _clone(tmp_path: Path, rollout: dict[str, object]) -> Path:
    results = tmp_path / "var/run/results"
    results.mkdir(parents=True)
    (results / "demo-rollout.json").write_text(json.dumps(rollout))
    mlflow = tmp_path / "var/data/mlflow"
    mlflow.mkdir(parents=True)
    with sqlite3.connect(mlflow / "mlflow.db") as db:
        db.execute("create table params (key text, value text, run_uuid text)")
        db.execute("create table latest_metrics (key text, value real, run_uuid text)")
        db.executemany(
            "insert into params values (?, ?, ?)",
            [("holdout_rows", "704", RUN), ("holdout_spam_share", "0.1804", RUN)],
        )
        db.executemany(
            "insert into latest_metrics values (?, ?, ?)",
            [
                ("validation.threshold_block", 0.652, RUN),
                ("threshold_block_low", 0.595, RUN),
                ("threshold_block_high", 0.671, RUN),
                ("validation.threshold_review", 0.221, RUN),
                ("threshold_review_low", 0.184, RUN),
                ("threshold_review_high", 0.276, RUN),
            ],
        )
    return tmp_path


def test_a_promoted_trial_reports_its_evidence_holdout_cutoffs_and_pairs(tmp_path: Path) -> None:
    rollout = {
        "status": "promoted",
        "retrains": [
            {"event": "triggered", "reason": "evidence there: 190 spam and 510 ham labels ..."},
            {"event": "waiting", "detail": "holdout too small to decide"},
            {"event": "triggered", "reason": "evidence there: 208 spam and 750 ham labels ..."},
            {"event": "challenger", "detail": f"v2 passed the gate: gate passed (run {RUN})"},
        ],
        "rollout": {
            "last_analysis": {
                "checks": {
                    "label_mcnemar": {
                        "detail": "labels side with the challenger: b=51 challenger right, "
                        "c=7 champion right among 58 labelled discordant pairs"
                    }
                }
            }
        },
    }
    trial = summarise(_clone(tmp_path, rollout), 1, busy=True, exit_code=0, seconds=512.4)
    assert (trial.trained_on_spam, trial.trained_on_ham) == (208, 750)  # the last trigger
    assert (trial.holdout_spam, trial.holdout_rows) == (127, 704)
    assert trial.block == "0.652 [0.595, 0.671]" and trial.review == "0.221 [0.184, 0.276]"
    assert (trial.canary_b, trial.canary_c, trial.gate) == (51, 7, "passed")
    rendered = table([trial])
    assert rendered.caption.startswith("1 of 1 fresh")
    assert rendered.rows[0][1] == "one core busy" and rendered.rows[0][-1] == "51/7"


def test_a_refused_retrain_counts_as_not_promoted_and_says_why(tmp_path: Path) -> None:
    refusal = f"challenger not registered: gate refused against champion v1: pr_auc ... (run {RUN})"
    rollout = {"status": "timeout", "retrains": [{"event": "gate_failed", "detail": refusal}]}
    trial = summarise(_clone(tmp_path, rollout), 2, busy=False, exit_code=1, seconds=900)
    assert trial.gate.startswith("challenger not registered") and trial.holdout_rows == 704
    assert table([trial]).caption.startswith("0 of 1 fresh")


def test_a_demo_that_wrote_nothing_is_a_failed_trial(tmp_path: Path) -> None:
    trial = summarise(tmp_path, 3, busy=False, exit_code=2, seconds=30)
    assert trial == Trial(3, False, 2, 30, status="no result written")
