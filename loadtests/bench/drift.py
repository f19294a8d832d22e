"""Drift benchmark: evaluation time per window, and the drift the real period shift produces.

    python -m loadtests.bench.drift [--data-dir var/data] [--write docs/benchmarks.md]

The numbers go to var/run/results/bench-drift.json (`make report` renders them).

Rows are the full corpus (`python -m pipelines.data` first), duplicates removed, with the
model's text features (the on-demand half of the feature service; sender features need the
Feast offline store and are left out here). History is cut into fit / reference / held-out
rows three ways (at random; by time; as training's reference is taken today), because history
is not stationary (its spam share falls from 92% in its oldest fifth to 1% in its newest): a
held-out slice only shows "no drift" when it is exchangeable with the reference. Future is
the 2002-08-22+ period.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from modstack.corpus import FUTURE_START
from modstack.names import FEATURE_SERVICE_V1
from modstack.results import Result, ResultTable, write_result
from pipelines.fitting import fit_candidate
from pipelines.model import model_input
from pipelines.model_config import ModelConfig
from pipelines.training_data import LabelledSet, corpus_rows, with_features
from services.monitoring.drift.evidently_report import SCORE_COLUMN, DriftReference

SECTION = "drift"
READING = """How to read it: the random split is the control (held-out history is exchangeable with
the reference, so it must show no drift, and the future must). The two time splits show why
the reference must be drawn across the whole training period: history is not stationary
(spam share 92% in its oldest fifth, 1% in its newest), so a reference cut from its newest
slice makes every other history slice look drifted, and its near-zero spread on spam
features inflates the normed Wasserstein scores (values above 1)."""
REPEATS = 3


@dataclass
class Scenario:
    """How history is cut into fit / reference / held-out rows."""

    name: str
    description: str
    fit: pd.DataFrame
    reference: pd.DataFrame
    held_out: pd.DataFrame


def scenarios(history: pd.DataFrame) -> list[Scenario]:
    """The same history cut by time (as training's validation tail does) and at random."""
    ordered = history.sort_values(["sent_at", "message_id"], kind="stable")
    n = len(ordered)
    by_time = Scenario(
        "time split",
        "fit = oldest 60% of history, reference = next 20%, held out = newest 20%",
        ordered.iloc[: int(n * 0.6)],
        ordered.iloc[int(n * 0.6) : int(n * 0.8)],
        ordered.iloc[int(n * 0.8) :],
    )
    shuffled = history.sample(frac=1.0, random_state=0)
    at_random = Scenario(
        "random split",
        "fit = random 60% of history, reference = random 20%, held out = the other 20%",
        shuffled.iloc[: int(n * 0.6)],
        shuffled.iloc[int(n * 0.6) : int(n * 0.8)],
        shuffled.iloc[int(n * 0.8) :],
    )
    # What training logs today (`pipelines.train.reference_sample`): the validation tail, i.e.
    # the newest 20% of history. No history row is out of sample for that model, so the
    # held-out row here is a random 25% of the fit rows, scored in sample.
    validation_tail = Scenario(
        "validation tail",
        "fit = oldest 80% of history, reference = newest 20% (training's reference today), "
        "held out = random quarter of the fit rows (in-sample scores)",
        ordered.iloc[: int(n * 0.8)],
        ordered.iloc[int(n * 0.8) :],
        ordered.iloc[: int(n * 0.8)].sample(frac=0.25, random_state=0),
    )
    return [at_random, by_time, validation_tail]


def _spam_share(frame: pd.DataFrame) -> str:
    return f"{(frame['label'] == 'spam').mean():.0%}"


def run_scenario(
    scenario: Scenario, future: pd.DataFrame, columns: list[str]
) -> tuple[list[str], list[ResultTable], DriftReference, pd.DataFrame]:
    """Fit the training pipeline's candidate, score reference / held-out / future out of
    sample, and report their drift. Returns markdown lines, the same numbers as result tables,
    the reference and the scored future."""
    started = time.perf_counter()
    train = LabelledSet(scenario.fit.reset_index(drop=True), columns, FEATURE_SERVICE_V1)
    candidate = fit_candidate(train, ModelConfig(), validation_fraction=0.25)
    print(
        f"[{scenario.name}] fitted on {len(scenario.fit)} mails in "
        f"{time.perf_counter() - started:.0f} s"
    )

    def scored(frame: pd.DataFrame) -> pd.DataFrame:
        proba = candidate.pipeline.predict_proba(model_input(frame, columns))[:, 1]
        return frame.assign(score=proba).reset_index(drop=True)

    cols = [*columns, SCORE_COLUMN]
    reference_rows, held_out, future = map(scored, (scenario.reference, scenario.held_out, future))
    reference = DriftReference(
        reference_rows[cols], feature_columns=columns, text_descriptor_columns=columns
    )
    results = {
        "held-out history": (held_out, reference.evaluate(held_out[cols]).result),
        "future, first 1,000": (
            future.iloc[:1000],
            reference.evaluate(future[cols].iloc[:1000]).result,
        ),
        "future, all": (future, reference.evaluate(future[cols]).result),
    }
    lines = [
        f"#### {scenario.name}: {scenario.description}",
        "",
        f"Reference {len(reference_rows)} rows, spam share {_spam_share(reference_rows)}.",
        "",
        "| window | rows | spam share | drift share | drifted / features | drift detected "
        "| prediction drift | text drift share |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    windows = ResultTable(
        f"{scenario.name}: {scenario.description}; reference {len(reference_rows)} rows, "
        f"spam share {_spam_share(reference_rows)}",
        [
            "window",
            "rows",
            "spam share",
            "drift share",
            "drifted / features",
            "drift detected",
            "prediction drift",
            "text drift share",
        ],
        [],
    )
    for name, (frame, r) in results.items():
        prediction = f"{r.prediction.score:.3f}" if r.prediction else "n/a"
        windows.rows.append(
            [
                name,
                r.rows,
                _spam_share(frame),
                round(r.drift_share, 3),
                f"{r.drifted_columns} / {len(r.features)}",
                "yes" if r.drift_detected else "no",
                prediction,
                "n/a" if r.text_drift_share is None else round(r.text_drift_share, 3),
            ]
        )
        lines.append(
            f"| {name} | {r.rows:,} | {_spam_share(frame)} | {r.drift_share:.2f} "
            f"| {r.drifted_columns} / {len(r.features)} | {'yes' if r.drift_detected else 'no'} "
            f"| {prediction} | {r.text_drift_share:.2f} |"
        )
        print(f"[{scenario.name}] {name}: share {r.drift_share:.2f}, prediction drift {prediction}")
    held, fut = results["held-out history"][1], results["future, all"][1]
    held_by = {c.column: c for c in held.features}
    lines += [
        "",
        "| feature | method | held-out history | future, all |",
        "| --- | --- | ---: | ---: |",
    ]
    features = ResultTable(
        f"{scenario.name}: per-feature drift score (a trailing star marks a drifted one)",
        ["feature", "method", "held-out history", "future, all"],
        [],
    )
    for c in sorted(fut.features, key=lambda c: -c.score):
        h = held_by[c.column]
        held_cell = f"{h.score:.3f}{'*' if h.drifted else ''}"
        future_cell = f"{c.score:.3f}{'*' if c.drifted else ''}"
        lines.append(f"| {c.column} | {c.method} | {held_cell} | {future_cell} |")
        features.rows.append([c.column, c.method, held_cell, future_cell])
    return [*lines, ""], [windows, features], reference, future


def timing_lines(
    reference: DriftReference, future: pd.DataFrame, columns: list[str]
) -> tuple[list[str], ResultTable]:
    """Evaluation time of 1k and 5k-row windows against one prepared reference (markdown
    lines and the same numbers as a result table)."""
    cols = [*columns, SCORE_COLUMN]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    DriftReference(reference.frame, feature_columns=columns, text_descriptor_columns=columns)
    prepare_s = time.perf_counter() - started
    lines = [
        f"Reference of {reference.rows} rows prepared once in {prepare_s * 1000:.0f} ms "
        "(sampling, typing, Evidently `Dataset`); each window then only builds its own.",
        "",
        f"| window rows | evaluate, median of {REPEATS} (s) | min (s) | save HTML (s) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    table = ResultTable(
        f"Evaluation time per window (reference of {reference.rows} rows prepared once in "
        f"{prepare_s * 1000:.0f} ms)",
        ["window rows", f"evaluate, median of {REPEATS} (s)", "min (s)", "save HTML (s)"],
        [],
    )
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (1_000, 5_000):
            picks = rng.integers(0, len(future), rows)  # with replacement: future has ~3k
            window = future.iloc[picks][cols].reset_index(drop=True)
            times = [reference.evaluate(window).result.duration_s for _ in range(REPEATS)]
            report = reference.evaluate(window)
            t0 = time.perf_counter()
            report.save_html(Path(tmp) / f"w{rows}.html")
            html_s = time.perf_counter() - t0
            print(
                f"{rows}-row window: median {statistics.median(times):.2f} s, runs "
                + ", ".join(f"{t:.2f}" for t in times)
            )
            lines.append(
                f"| {rows:,} | {statistics.median(times):.2f} | {min(times):.2f} | {html_s:.2f} |"
            )
            table.rows.append(
                [rows, round(statistics.median(times), 2), round(min(times), 2), round(html_s, 2)]
            )
    return lines, table


def run(data_dir: Path | None) -> tuple[str, Result]:
    """Run the benchmark; returns the markdown section and the results file's content."""
    history = with_features(corpus_rows(data_dir, end=FUTURE_START), FEATURE_SERVICE_V1, "text")
    future = with_features(corpus_rows(data_dir, start=FUTURE_START), FEATURE_SERVICE_V1, "text")
    columns = history.feature_columns
    load = os.getloadavg()[0]
    lines = [
        f"## {SECTION}",
        "",
        f"Measured by `python -m loadtests.bench.drift` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"(full corpus, duplicates removed; 1-minute load average {load:.1f} on 2 cores shared "
        "with other work, so timings are +-30% at best). Features: the "
        f"{len(columns)} text descriptors of `features/text.py` (sender features need "
        "the Feast offline store and are left out) + the candidate's spam score. Pinned "
        "methods: numeric = normed Wasserstein, 0/1 flags = Jensen-Shannon, drifted at >= 0.1; "
        "dataset drift at drift share >= 0.5. The model is the training pipeline's own "
        "`fit_candidate` (TF-IDF + LightGBM) fitted on the scenario's fit rows; scores are out "
        "of sample except where marked.",
        "",
        "### Drift on the real period shift",
        "",
        *READING.splitlines(),
        "",
    ]
    reference = scored_future = None
    tables: list[ResultTable] = []
    for scenario in scenarios(history.frame):
        section, found, ref, fut = run_scenario(scenario, future.frame, columns)
        lines += section
        tables += found
        if reference is None:
            reference, scored_future = ref, fut
    lines += ["### Evaluation time per window", ""]
    assert reference is not None and scored_future is not None
    timing, timing_table = timing_lines(reference, scored_future, columns)
    lines += timing
    result = Result(
        name="bench-drift",
        title="Drift: the real period shift, and evaluation time per window",
        command="python -m loadtests.bench.drift",
        tables=[*tables, timing_table],
        notes=[
            f"Features: the {len(columns)} text descriptors of `features/text.py` (sender "
            "features need the Feast offline store and are left out) + the candidate's spam "
            "score. Pinned methods: numeric = normed Wasserstein, 0/1 flags = Jensen-Shannon, "
            "drifted at >= 0.1; dataset drift at drift share >= 0.5.",
            " ".join(READING.split()),
        ],
    )
    return "\n".join(lines) + "\n", result


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the `## drift` section of the benchmarks page."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^## {SECTION}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    data_dir: Annotated[Path | None, typer.Option(help="DATA_DIR (var/data)")] = None,
    write: Annotated[Path | None, typer.Option(help="update this markdown file")] = None,
) -> None:
    """Measure drift evaluation time and drift on the real period shift; print the section
    and write var/run/results/bench-drift.json."""
    section, result = run(data_dir)
    print(section)
    print(f"wrote {write_result(result)}")
    if write:
        write_section(write, section)
        print(f"wrote the '{SECTION}' section of {write}")


if __name__ == "__main__":
    cli()
