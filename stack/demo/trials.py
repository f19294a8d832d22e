"""`make demo` as a stranger runs it, several times: each trial a fresh clone of this checkout's
HEAD, `make demo` from scratch, some trials with one core kept busy by another process for the
whole run. What each trial's retrain saw and did goes to var/run/results/demo-trials.json.

Usage: `python -m stack.demo.trials --runs 5 --busy 2` (about ten minutes a trial here). The
demo binds fixed ports, so trials run one after another and nothing else may hold those ports.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from modstack.results import Result, ResultTable, write_result

REPO = Path(__file__).resolve().parents[2]
# a busy machine: one process spinning on a core for the whole run, as another user's job would
CPU_HOG = "while True: pass"
_RUN_ID = re.compile(r"\(run ([0-9a-f]{32})\)")
_EVIDENCE = re.compile(r"evidence there: (\d+) spam and (\d+) ham labels")
_PAIRS = re.compile(r"b=(\d+) challenger right, c=(\d+) champion right")


@dataclass
class Trial:
    """One fresh `make demo`: how it ended and what its retrain was judged on."""

    trial: int
    busy: bool
    exit_code: int
    seconds: float
    status: str
    trained_on_spam: int | None = None
    trained_on_ham: int | None = None
    holdout_rows: int | None = None
    holdout_spam: int | None = None
    block: str = ""
    review: str = ""
    gate: str = ""
    canary_b: int | None = None
    canary_c: int | None = None


def _retrain_run(retrains: list[dict[str, Any]]) -> tuple[str | None, str]:
    """The MLflow run id the retrain registered (or was refused on), and the gate's word."""
    for event in reversed(retrains):
        found = _RUN_ID.search(event.get("detail", ""))
        if found and event["event"] in ("challenger", "gate_failed"):
            verdict = "passed" if event["event"] == "challenger" else event["detail"][:200]
            return found.group(1), verdict
    return None, "no retrain registered"


def _interval(metrics: dict[str, float], name: str) -> str:
    point = metrics.get(f"validation.threshold_{name}")
    low, high = metrics.get(f"threshold_{name}_low"), metrics.get(f"threshold_{name}_high")
    if point is None:
        return ""
    if low is None or high is None:
        return f"{point:.3f}"
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def summarise(clone: Path, trial: int, busy: bool, exit_code: int, seconds: float) -> Trial:
    """What a finished demo in `clone` left behind, as one row."""
    result = Trial(trial, busy, exit_code, round(seconds), status="no result written")
    rollout_path = clone / "var/run/results/demo-rollout.json"
    if not rollout_path.exists():
        return result
    rollout = json.loads(rollout_path.read_text())
    result.status = rollout.get("status", "?")
    retrains = rollout.get("retrains") or []
    triggers = [e for e in retrains if e["event"] == "triggered"]
    if triggers and (found := _EVIDENCE.search(triggers[-1].get("reason", ""))):
        result.trained_on_spam, result.trained_on_ham = map(int, found.groups())
    run_id, result.gate = _retrain_run(retrains)
    database = clone / "var/data/mlflow/mlflow.db"
    if run_id and database.exists():
        with sqlite3.connect(database) as db:
            params = dict(db.execute("select key, value from params where run_uuid=?", (run_id,)))
            metrics = {
                k: float(v)
                for k, v in db.execute(
                    "select key, value from latest_metrics where run_uuid=?", (run_id,)
                )
            }
        rows = int(params.get("holdout_rows", 0))
        result.holdout_rows = rows
        result.holdout_spam = round(rows * float(params.get("holdout_spam_share", 0.0)))
        result.block, result.review = _interval(metrics, "block"), _interval(metrics, "review")
    analysis = (rollout.get("rollout") or {}).get("last_analysis") or {}
    detail = (analysis.get("checks") or {}).get("label_mcnemar", {}).get("detail", "")
    if found := _PAIRS.search(detail):
        result.canary_b, result.canary_c = map(int, found.groups())
    return result


def run_trial(trial: int, busy: bool, workdir: Path, timeout_s: float) -> Trial:
    """Clone HEAD into `workdir`, run `make demo` there (beside a CPU hog when `busy`)."""
    clone = workdir / f"trial-{trial}"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    hog = subprocess.Popen([sys.executable, "-c", CPU_HOG]) if busy else None
    started = time.monotonic()
    log = clone / "demo.log"
    try:
        with log.open("w") as out:
            try:
                code = subprocess.run(
                    ["make", "demo"],
                    cwd=clone,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout_s,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
    finally:
        seconds = time.monotonic() - started
        if hog is not None:
            hog.kill()
        subprocess.run(["make", "down"], cwd=clone, capture_output=True, timeout=120, check=False)
    return summarise(clone, trial, busy, code, seconds)


COLUMNS = [
    "trial",
    "machine",
    "exit",
    "seconds",
    "outcome",
    "labels at trigger (spam/ham)",
    "holdout (spam/all)",
    "block cut-off [90 % interval]",
    "review cut-off [90 % interval]",
    "canary pairs b/c",
]


def table(trials: list[Trial]) -> ResultTable:
    """The trials as one table."""
    rows = [
        [
            t.trial,
            "one core busy" if t.busy else "quiet",
            t.exit_code,
            t.seconds,
            t.status,
            f"{t.trained_on_spam}/{t.trained_on_ham}" if t.trained_on_spam is not None else "-",
            f"{t.holdout_spam}/{t.holdout_rows}" if t.holdout_rows else "-",
            t.block or "-",
            t.review or "-",
            f"{t.canary_b}/{t.canary_c}" if t.canary_b is not None else "-",
        ]
        for t in trials
    ]
    promoted = sum(t.exit_code == 0 and t.status == "promoted" for t in trials)
    caption = (
        f"{promoted} of {len(trials)} fresh `make demo` runs promoted the retrained challenger"
    )
    return ResultTable(caption=caption, columns=COLUMNS, rows=rows)


def main(
    runs: Annotated[int, typer.Option(help="fresh demos to run")] = 5,
    busy: Annotated[int, typer.Option(help="of them, how many beside a CPU hog")] = 2,
    timeout: Annotated[float, typer.Option(help="bound per demo (s)")] = 1800.0,
) -> None:
    """Run fresh demos one after another and write demo-trials.json."""
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="modstack-trials-") as tmp:
        for trial in range(1, runs + 1):
            is_busy = trial > runs - busy
            print(f"trial {trial}/{runs} ({'one core busy' if is_busy else 'quiet'})", flush=True)
            outcome = run_trial(trial, is_busy, Path(tmp), timeout)
            print(f"  {outcome}", flush=True)
            trials.append(outcome)
    result = Result(
        name="demo-trials",
        title="Fresh `make demo` runs, quiet and beside a CPU hog",
        command=f"python -m stack.demo.trials --runs {runs} --busy {busy}",
        tables=[table(trials)],
        notes=[
            "each trial: a fresh clone of HEAD, `make demo` from scratch; a busy trial runs "
            f"`python -c '{CPU_HOG}'` beside it for the whole run",
            "cut-off intervals: bootstrap over the validation rows (pipelines/cutoffs.py)",
            "canary pairs: labelled messages where exactly one model did harm at the last "
            "analysis, b for the challenger right, c for the champion right",
        ],
        data={"trials": [asdict(t) for t in trials]},
    )
    print(f"wrote {write_result(result)}")
    failed = [t.trial for t in trials if t.exit_code != 0]
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    typer.run(main)
