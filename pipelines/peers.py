"""Peers: the abuse holdout scored by the plain baseline, two published models and, when MLflow
answers, the registered abuse champion; writes var/run/results/abuse-peers.json.

Reads the abuse policy's training rows and holdout exactly as `pipelines.train` selects them
for the first champion (`corpus_rows` before / from the future period: the comments of
`test_with_solutions.csv` without the spam-looking ones). Each model gets PR-AUC, ROC-AUC,
recall at the policy's block precision, its PR-AUC difference from the baseline with the
paired-bootstrap SE, and what scoring costs per text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import typer
from rich.console import Console
from sklearn.metrics import average_precision_score, roc_auc_score

from modstack.corpus import FUTURE_START
from modstack.names import ALIAS_CHAMPION, registered_model
from modstack.processes import http_ok
from modstack.registry import aliases as registry
from modstack.registry.contract import META_FEATURE_COLUMNS
from modstack.report import render_table
from modstack.results import Result, ResultTable, write_result
from pipelines.fitting import fit_baseline
from pipelines.metrics import bootstrap_pr_auc_difference, recall_at_precision
from pipelines.model import model_input
from pipelines.train import TrainConfig
from pipelines.training_data import (
    LabelledSet,
    content_hash,
    corpus_rows,
    time_range,
    with_features,
)

POLICY = "abuse"
RESULT_NAME = "abuse-peers"
BASELINE = "plain baseline"
CANDIDATE = "abuse champion"
PROFANITY_CHECK = "alt-profanity-check 1.9.1"
HATESONAR = "hatesonar 0.1.0"
# single-text calls timed per model (a fixed sample of the holdout)
CALL_SAMPLE = 200
# the same resampling as the training run's `pr_auc_minus_baseline_se`
BOOTSTRAP_RESAMPLES = 200
# the versions that change the peers' numbers (the results file's provenance lists the rest)
PEER_PACKAGES = ("alt-profanity-check", "hatesonar", "onnxruntime", "scikit-learn")
# hatesonar's output_probability keys (its Sonar.mapping)
HATESONAR_CLASSES = {0: "hate_speech", 1: "offensive_language", 2: "neither"}
PEERS_HINT = (
    "install the peers extra: `make setup` (requirements.lock), or `.venv/bin/uv pip install "
    "alt-profanity-check==1.9.1 hatesonar==0.1.0`"
)
LOCALE_HINT = (
    "hatesonar's ONNX model lower-cases text with onnxruntime's StringNormalizer, which needs "
    "the en_US.UTF-8 locale: run `make setup` as root (stack/system_deps.py generates it), or "
    "`sudo apt-get install locales && sudo localedef -i en_US -f UTF-8 en_US.UTF-8`"
)

Scorer = Callable[[Sequence[str]], npt.NDArray[np.float64]]


class PeerUnavailable(RuntimeError):
    """A peer cannot be loaded here; the message says what to install."""


# ---- the models --------------------------------------------------------------------------------


def load_profanity_check() -> Scorer:
    """alt-profanity-check's P(profane): its shipped TF-IDF + calibrated linear SVM."""
    try:
        import profanity_check
    except ImportError as error:
        raise PeerUnavailable(f"alt-profanity-check is not installed: {PEERS_HINT}") from error

    def score(texts: Sequence[str]) -> npt.NDArray[np.float64]:
        return np.asarray(profanity_check.predict_prob(list(texts)), dtype=float)

    return score


def hatesonar_probabilities(session: Any, texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """hatesonar's class probabilities, one row per text, columns in HATESONAR_CLASSES order.

    The model takes a batch (Sonar.ping runs the same session on a batch of one)."""
    _, probabilities = session.run(None, {"text": np.array(list(texts), dtype=object)})
    return np.array([[row[k] for k in HATESONAR_CLASSES] for row in probabilities], dtype=float)


def load_hatesonar_session() -> Any:
    """hatesonar's ONNX session (`Sonar().sess`); PeerUnavailable when onnxruntime cannot
    build it (no en_US.UTF-8 locale) or the package is missing."""
    try:
        from hatesonar import Sonar
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail
    except ImportError as error:
        raise PeerUnavailable(f"hatesonar is not installed: {PEERS_HINT}") from error
    try:
        return Sonar().sess
    except Fail as error:
        if "locale" in str(error):
            raise PeerUnavailable(LOCALE_HINT) from error
        raise


def load_hatesonar() -> Scorer:
    """hatesonar's P(hate speech) + P(offensive language) = 1 - P(neither).

    Why both classes: the abuse label is an insult at a participant, which Davidson et al.'s
    annotators put under "offensive" or, when it targets a group, "hate"; neither class alone
    is the insult class, and "not neither" is the binary question the policy asks."""
    session = load_hatesonar_session()

    def score(texts: Sequence[str]) -> npt.NDArray[np.float64]:
        probabilities = hatesonar_probabilities(session, texts)
        return probabilities[:, 0] + probabilities[:, 1]

    return score


def pipeline_scorer(model: Any, feature_columns: Sequence[str] = ()) -> Scorer:
    """A project model (the model contract's frame in, P(abuse) out) over bare texts: a comment
    has no subject, its text is the body."""

    def score(texts: Sequence[str]) -> npt.NDArray[np.float64]:
        frame = pd.DataFrame({"subject": [""] * len(texts), "body": list(texts)})
        probabilities = model.predict_proba(model_input(frame, feature_columns))
        return np.asarray(probabilities[:, 1], dtype=float)

    return score


def abuse_sets(config: TrainConfig) -> tuple[LabelledSet, LabelledSet]:
    """(training rows, holdout) as `pipelines.train.train_first_champion` reads them."""
    history = corpus_rows(config.data_dir, end=FUTURE_START, policy=config.policy)
    future = corpus_rows(config.data_dir, start=FUTURE_START, policy=config.policy)
    return (
        with_features(history, config.service, config.source),
        with_features(future, config.service, config.source),
    )


def load_baseline(train: LabelledSet, config: TrainConfig) -> Scorer:
    """The training run's plain baseline, refitted: the same rows, protocol and seed as
    `pipelines.train` (the run logs metrics, not per-row holdout scores)."""
    fitted = fit_baseline(
        train,
        config.model,
        config.validation_fraction,
        config.review_budget,
        config.traffic_spam_share,
        config.policy,
    )
    return pipeline_scorer(fitted.pipeline, train.feature_columns)


@dataclass(frozen=True)
class Champion:
    """How to load the registered champion (None: left out), and which one it is or why not."""

    load: Callable[[], Scorer] | None
    description: str


def load_champion(policy: str = POLICY) -> Champion:
    """The policy's registered champion when MLFLOW_TRACKING_URI answers and its training rows
    all precede the holdout (a retrain has learnt from the replayed holdout comments)."""
    uri = registry.tracking_uri()
    if uri.startswith("http") and not http_ok(f"{uri.rstrip('/')}/health", timeout_s=2.0):
        return Champion(None, f"MLflow at {uri} does not answer")
    name = registered_model(policy)
    client = registry.get_client(uri)
    version = registry.get_alias_version(ALIAS_CHAMPION, client, model=name)
    if version is None:
        return Champion(None, f"{name} has no {ALIAS_CHAMPION} at {uri}")
    run_id = client.get_model_version(name, version).run_id
    params = client.get_run(run_id).data.params if run_id else {}
    last = params.get("training_last_sent_at", "")
    if not last or pd.Timestamp(last) >= pd.Timestamp(FUTURE_START):
        return Champion(
            None,
            f"{name} v{version} trained on rows up to {last or '?'}: inside the holdout period, "
            "not comparable",
        )

    def load() -> Scorer:
        model, metadata = registry.load_model(version, client, model=name)
        return pipeline_scorer(model, list(metadata.get(META_FEATURE_COLUMNS, [])))

    return Champion(load, f"{name} v{version} (run {run_id})")


# ---- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """What scoring costs: loading (or fitting), a batch of the whole holdout, single calls."""

    load_seconds: float
    calls: int
    batch_ms_per_text: float
    batch_cpu_ms_per_text: float
    call_ms_p50: float
    call_cpu_ms_p50: float


@dataclass(frozen=True)
class Scored:
    """One model's holdout scores, what it was trained on, and its cost (None: not measured)."""

    name: str
    trained_on: str
    scores: npt.NDArray[np.float64]
    cost: Cost | None = None


def _percentile_ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(seconds, q)) * 1_000 if len(seconds) else float("nan")


def score_and_time(
    name: str,
    trained_on: str,
    load: Callable[[], Scorer],
    texts: Sequence[str],
    call_sample: Sequence[str],
) -> Scored:
    """Load a model, score `texts` in one batch, then time it on `call_sample` one at a time."""
    started = time.perf_counter()
    scorer = load()
    load_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    scores = np.asarray(scorer(texts), dtype=float)
    batch_seconds = time.perf_counter() - started
    batch_cpu = time.process_time() - cpu_started
    calls, calls_cpu = [], []
    for text in call_sample:
        started, cpu_started = time.perf_counter(), time.process_time()
        scorer([text])
        calls.append(time.perf_counter() - started)
        calls_cpu.append(time.process_time() - cpu_started)
    per_text = 1_000 / max(len(texts), 1)
    cost = Cost(
        load_seconds=load_seconds,
        calls=len(calls),
        batch_ms_per_text=batch_seconds * per_text,
        batch_cpu_ms_per_text=batch_cpu * per_text,
        call_ms_p50=_percentile_ms(calls, 50),
        call_cpu_ms_p50=_percentile_ms(calls_cpu, 50),
    )
    return Scored(name, trained_on, scores, cost)


def ranking(
    y: npt.NDArray[np.int_],
    scores: npt.NDArray[np.float64],
    baseline_scores: npt.NDArray[np.float64] | None,
    min_precision: float,
    seed: int,
) -> dict[str, float]:
    """PR-AUC, ROC-AUC, recall at `min_precision`, and (with `baseline_scores`) the PR-AUC
    difference from the baseline with its paired-bootstrap SE."""
    metrics = {
        "pr_auc": float(average_precision_score(y, scores)),
        "roc_auc": float(roc_auc_score(y, scores)),
        "recall_at_precision": recall_at_precision(y, scores, min_precision),
    }
    if baseline_scores is not None:
        diff, se = bootstrap_pr_auc_difference(
            y, scores, baseline_scores, resamples=BOOTSTRAP_RESAMPLES, seed=seed
        )
        metrics |= {"pr_auc_minus_baseline": diff, "pr_auc_minus_baseline_se": se}
    return metrics


def _cell(value: float | None) -> float | str:
    return "-" if value is None or not np.isfinite(value) else round(float(value), 4)


def build_result(
    y: npt.NDArray[np.int_],
    scored: Sequence[Scored],
    *,
    min_precision: float,
    seed: int,
    holdout: dict[str, Any],
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> Result:
    """The results file's content: ranking and cost tables, raw numbers under `data`.

    The model named BASELINE (when present) is the reference of every PR-AUC difference."""
    reference = next((s.scores for s in scored if s.name == BASELINE), None)
    models: dict[str, dict[str, Any]] = {}
    ranking_rows, cost_rows = [], []
    for entry in scored:
        is_reference = entry.name == BASELINE
        metrics = ranking(y, entry.scores, None if is_reference else reference, min_precision, seed)
        models[entry.name] = {
            "trained_on": entry.trained_on,
            **metrics,
            "cost": None if entry.cost is None else asdict(entry.cost),
        }
        ranking_rows.append(
            [
                entry.name,
                entry.trained_on,
                *(
                    _cell(metrics.get(key))
                    for key in (
                        "pr_auc",
                        "roc_auc",
                        "recall_at_precision",
                        "pr_auc_minus_baseline",
                        "pr_auc_minus_baseline_se",
                    )
                ),
            ]
        )
        if entry.cost is not None:
            c = entry.cost
            cost_rows.append(
                [
                    entry.name,
                    round(c.load_seconds, 2),
                    round(c.batch_ms_per_text, 3),
                    round(c.batch_cpu_ms_per_text, 3),
                    round(c.call_ms_p50, 3),
                    round(c.call_cpu_ms_p50, 3),
                ]
            )
    rows, positives = len(y), int(np.sum(y))
    calls = max((s.cost.calls for s in scored if s.cost is not None), default=0)
    tables = [
        ResultTable(
            f"Abuse holdout ({rows:,} comments, {positives:,} insults); SE = paired bootstrap "
            f"of the PR-AUC difference from the {BASELINE} ({BOOTSTRAP_RESAMPLES} resamples)",
            [
                "model",
                "trained on",
                "PR-AUC",
                "ROC-AUC",
                f"recall at precision {min_precision:g}",
                "PR-AUC - baseline",
                "SE",
            ],
            ranking_rows,
        ),
        ResultTable(
            f"Cost of scoring (load: loading, or fitting for the baseline; batch: all {rows:,} "
            f"texts in one call; call: one text per call, {calls} calls; CPU: this process's "
            "CPU time, steadier than wall time on a shared machine)",
            [
                "model",
                "load (s)",
                "batch ms/text",
                "batch CPU ms/text",
                "call p50 (ms)",
                "call CPU p50 (ms)",
            ],
            cost_rows,
        ),
    ]
    return Result(
        name=RESULT_NAME,
        title="Abuse: the candidate, the plain baseline and two published peers on the holdout",
        command="make peers",
        tables=tables,
        notes=list(notes),
        data={
            "holdout": holdout,
            "min_precision": min_precision,
            "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": seed},
            "models": models,
            **(extra or {}),
        },
    )


# ---- the run -----------------------------------------------------------------------------------

PEER_NOTES = (
    f"{PROFANITY_CHECK}: MIT; its shipped TF-IDF + calibrated linear SVM (trained by its "
    "authors on Davidson et al. 2017 and Jigsaw toxic comments), score = P(profane).",
    f"{HATESONAR}: MIT; an ONNX logistic regression trained on Davidson et al. 2017 (hate speech "
    "/ offensive language / neither), score = P(hate) + P(offensive) = 1 - P(neither).",
)


def _hatesonar_classes(
    y: npt.NDArray[np.int_], texts: Sequence[str], min_precision: float
) -> dict[str, dict[str, float]]:
    """Each hatesonar class alone as the score: shown, not chosen on the holdout."""
    probabilities = hatesonar_probabilities(load_hatesonar_session(), texts)
    return {
        name: {
            "pr_auc": float(average_precision_score(y, probabilities[:, k])),
            "roc_auc": float(roc_auc_score(y, probabilities[:, k])),
            "recall_at_precision": recall_at_precision(y, probabilities[:, k], min_precision),
        }
        for k, name in HATESONAR_CLASSES.items()
        if name != "neither"
    }


def run(
    *, with_champion: bool = True, calls: int = CALL_SAMPLE, run_dir: Path | None = None
) -> tuple[Result, Path]:
    """Score the abuse holdout with every model, write the results file; (result, its path)."""
    config = TrainConfig(policy=POLICY)
    definition = config.definition
    train, holdout = abuse_sets(config)
    texts = holdout.frame["body"].tolist()
    y = holdout.y
    sample_rows = np.random.default_rng(config.model.seed).permutation(len(texts))[:calls]
    sample = [texts[i] for i in sample_rows]
    notes = list(PEER_NOTES)
    contenders: list[tuple[str, str, Callable[[], Scorer]]] = []
    champion = load_champion(config.policy) if with_champion else Champion(None, "not asked for")
    if champion.load is not None:
        contenders.append((CANDIDATE, "train.csv (history)", champion.load))
        notes.append(f"{CANDIDATE}: {champion.description}.")
    else:
        notes.append(f"No {CANDIDATE} compared: {champion.description}.")
    contenders += [
        (BASELINE, "train.csv (history)", lambda: load_baseline(train, config)),
        (PROFANITY_CHECK, "Davidson 2017 + Jigsaw", load_profanity_check),
        (HATESONAR, "Davidson 2017", load_hatesonar),
    ]
    scored = [score_and_time(*contender, texts, sample) for contender in contenders]
    first, last = time_range(holdout.frame)
    summary = {
        "rows": len(y),
        "positives": int(y.sum()),
        "sha256": content_hash(holdout.frame, holdout.feature_columns),
        "first_sent_at": first,
        "last_sent_at": last,
        "left_out": "the spam-looking comments (modstack/corpus/comments.py)",
    }
    classes = _hatesonar_classes(y, texts, definition.block_precision)
    notes.append(
        f"{HATESONAR}, one class alone (not chosen on this holdout): PR-AUC "
        + ", ".join(f"{m['pr_auc']:.3f} for P({name})" for name, m in classes.items())
        + "."
    )
    result = build_result(
        y,
        scored,
        min_precision=definition.block_precision,
        seed=config.model.seed,
        holdout=summary,
        notes=notes,
        extra={
            "versions": {package: metadata.version(package) for package in PEER_PACKAGES},
            "hatesonar_classes": classes,
        },
    )
    return result, write_result(result, run_dir)


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    champion: Annotated[
        bool, typer.Option(help="also score the abuse champion when MLflow answers")
    ] = True,
    calls: Annotated[int, typer.Option(help="single-text calls timed per model")] = CALL_SAMPLE,
) -> None:
    """Score the abuse holdout with the baseline, the peers (and the champion); write the file."""
    try:
        result, path = run(with_champion=champion, calls=calls)
    except PeerUnavailable as error:
        Console(stderr=True).print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    for table in result.tables:
        print(render_table(table), end="\n\n")
    for note in result.notes:
        print(f"- {note}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    cli()
