"""Train: fit the candidate and the baseline on the past, evaluate both on a later holdout (with
sender history and as cold senders), log everything to MLflow, then gate, register and (first
time) promote.

`python -m pipelines.train` runs the whole chain for the first champion (history -> future):
build training set -> train -> evaluate -> register (quality gate, `challenger`) -> promote when
there is no champion yet. `train_challenger(start, end)` is the retraining entry point.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import cloudpickle
import mlflow
import mlflow.data
import numpy as np
import pandas as pd
import typer
from mlflow.models import infer_signature
from rich.console import Console

import pipelines.model as model_module
from modstack.corpus import FUTURE_START
from modstack.log import configure_logging
from modstack.names import ALIAS_CHAMPION, FEATURE_SERVICE_V1, MLFLOW_EXPERIMENT
from modstack.registry import aliases as registry
from modstack.registry.contract import (
    META_FEATURE_COLUMNS,
    META_FEATURE_SERVICE,
    META_THRESHOLDS,
    REFERENCE_ARTIFACT,
    Thresholds,
)
from modstack.registry.expectation import expectation_from_scores, log_expectation
from modstack.results import Result, ResultTable, write_result
from pipelines.behaviour import SuiteResult
from pipelines.evaluate import (
    comparison_table,
    evaluate_model,
    plot_action_matrix,
    plot_pr_curves,
    plot_reliability,
    plot_top_weights,
    write_report,
)
from pipelines.gate import GateResult, GateTolerance, run_behaviour, tolerance_params
from pipelines.metrics import (
    EvaluationReport,
    action_thresholds,
    bootstrap_pr_auc_difference,
    evaluate_scores,
)
from pipelines.model import (
    ModelConfig,
    build_baseline_pipeline,
    build_candidate,
    cold_start,
    model_input,
    short_windows,
)
from pipelines.training_data import (
    LABEL_COLUMN,
    FeatureSource,
    LabelledSet,
    content_hash,
    corpus_rows,
    drop_repeated_content,
    logged_rows,
    replayed_feature_sets,
    shuffled_labels,
    time_range,
    time_validation_split,
    with_features,
)

log = logging.getLogger("pipelines.train")

# The thresholds' and gate's definitions, logged as params so a run says what it was held to.
THRESHOLD_PARAMS = {"block_min_precision": 0.99, "block_cutoff_from": "max(warm, cold validation)"}


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does besides the model's own hyper-parameters."""

    feature_service: str = FEATURE_SERVICE_V1
    features: FeatureSource = "feast"
    validation_fraction: float = 0.2
    reference_rows: int = 1_000
    # Drift reference: "validation" (the validation tail of the training data) for the first
    # champion; "holdout" for a retrain, whose holdout is the newest traffic it was gated on:
    # what "normal" looks like now, so drift is measured from there after its promotion.
    reference_from: Literal["validation", "holdout"] = "validation"
    shuffle_labels: bool = False
    skip_gate: bool = False
    register: bool = True
    data_dir: Path | None = None  # DATA_DIR (corpus, message log, Feast store); None: settings
    model: ModelConfig = field(default_factory=ModelConfig)
    tolerance: GateTolerance = field(default_factory=GateTolerance)
    # the review band: at most this share of traffic lands in [review, block), counted on
    # validation reweighted to `traffic_spam_share` spam (the deployment prior, see
    # docs/training.md); the block cut-off does not depend on either
    review_budget: float = 0.05
    traffic_spam_share: float = 0.05
    # write var/run/results/train-<kind>.json (the CLI does; tests keep the run dir clean)
    write_results: bool = False


@dataclass
class FittedModel:
    """A model fitted on the earlier part of the training rows, with what was learned on the
    validation tail (no refit: the thresholds are statements about this model's scores)."""

    name: str
    pipeline: Any
    thresholds: Thresholds
    validation: EvaluationReport
    validation_scores: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a training run produced (returned to the retraining trigger and the CLI)."""

    run_id: str
    baseline_run_id: str
    model_uri: str
    candidate_metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    thresholds: Thresholds
    seconds: float
    version: str | None = None
    gate: GateResult | None = None
    challenger_set: bool = False
    promoted: bool = False


# ---- fitting -----------------------------------------------------------------------------------

# fixed windows: two fits on the same data place the same block cut-off
SHORT_WINDOW_SEED = 7


def _fit_and_threshold(
    name: str,
    model: Any,
    train: LabelledSet,
    validation_fraction: float,
    review_budget: float,
    traffic_spam_share: float,
    short_text_check: bool,
) -> FittedModel:
    columns = train.feature_columns
    fit_part, val_part = time_validation_split(train.frame, validation_fraction)
    model.fit(model_input(fit_part, columns), fit_part[LABEL_COLUMN].to_numpy())
    x_val = model_input(val_part, columns)
    y_val = val_part[LABEL_COLUMN].to_numpy()
    val_scores = model.predict_proba(x_val)[:, 1]
    cold_scores = model.predict_proba(cold_start(x_val))[:, 1]
    budget = (review_budget, traffic_spam_share)
    thresholds = action_thresholds(y_val, val_scores, cold_scores, *budget)
    if hasattr(model, "abstain_below"):
        # low-evidence texts are capped just below the long-mail `block` (so they go to review
        # at most); the short-window check below can only raise `block` above that cap
        model.abstain_below(thresholds.block)
        val_scores = model.predict_proba(x_val)[:, 1]
        cold_scores = model.predict_proba(cold_start(x_val))[:, 1]
    if short_text_check:
        short_x, short_y = short_windows(
            list(val_part["subject"].fillna("")),
            list(val_part["body"].fillna("")),
            y_val,
            columns,
            seed=SHORT_WINDOW_SEED,
        )
        short = (short_y, model.predict_proba(short_x)[:, 1])
        thresholds = action_thresholds(y_val, val_scores, cold_scores, *budget, short=short)
    validation = evaluate_scores(y_val, val_scores, thresholds, val_part["group"])
    cold = evaluate_scores(y_val, cold_scores, thresholds, val_part["group"])
    return FittedModel(
        name, model, thresholds, validation, val_scores, {"validation_cold": cold.metrics}
    )


def fit_candidate(
    train: LabelledSet,
    config: ModelConfig,
    validation_fraction: float,
    review_budget: float = TrainConfig.review_budget,
    traffic_spam_share: float = TrainConfig.traffic_spam_share,
) -> FittedModel:
    """The candidate fitted on the earlier part of `train` and thresholded on the time-ordered
    validation tail (`pipelines.metrics.action_thresholds`).

    No refit on all rows afterwards: the block cut-off is a statement about the scores of
    one model (precision >= 0.99 on its validation scores), and a refit would serve another.
    """
    model = build_candidate(train.feature_columns, config)
    return _fit_and_threshold(
        "candidate",
        model,
        train,
        validation_fraction,
        review_budget,
        traffic_spam_share,
        short_text_check=True,
    )


def fit_baseline(
    train: LabelledSet,
    config: ModelConfig,
    validation_fraction: float,
    review_budget: float = TrainConfig.review_budget,
    traffic_spam_share: float = TrainConfig.traffic_spam_share,
) -> FittedModel:
    """TF-IDF + logistic regression under the same protocol as the candidate."""
    model = build_baseline_pipeline(config)
    # the plain baseline keeps the plain protocol: on short windows its block cut-off goes to
    # 0.98 (recall at block 0.16), and a reference that blocks nothing makes every
    # ham-error comparison of the gate meaningless
    return _fit_and_threshold(
        "baseline",
        model,
        train,
        validation_fraction,
        review_budget,
        traffic_spam_share,
        short_text_check=False,
    )


def reference_sample(
    train: LabelledSet,
    candidate: FittedModel,
    config: TrainConfig,
    holdout: LabelledSet,
    holdout_scores: np.ndarray,
) -> pd.DataFrame:
    """Drift reference: feature values, label and score of rows the served model did not train
    on (so monitoring does not mistake in-sample over-confidence for prediction drift): the
    validation tail, or the holdout (`config.reference_from`)."""
    if config.reference_from == "holdout":
        columns = ["message_id", "sent_at", "label", *holdout.feature_columns]
        sample = holdout.frame[columns].copy()
        sample["score"] = holdout_scores
    else:
        _, val_part = time_validation_split(train.frame, config.validation_fraction)
        sample = val_part[["message_id", "sent_at", "label", *train.feature_columns]].copy()
        sample["score"] = candidate.validation_scores
    if len(sample) > config.reference_rows:
        sample = sample.sample(config.reference_rows, random_state=config.model.seed)
    return sample.sort_values("sent_at").reset_index(drop=True)


# ---- MLflow logging ------------------------------------------------------------------------------


def git_commit() -> str:
    """HEAD's commit, with '-dirty' when the working tree has changes ('unknown' outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def _log_dataset(labelled: LabelledSet, name: str, context: str) -> dict[str, str]:
    """Log a dataset input (ids, times, labels, features; no mail text) and return its params."""
    digest = content_hash(labelled.frame, labelled.feature_columns)
    first, last = time_range(labelled.frame)
    light = labelled.frame[["message_id", "sent_at", "label", "group", *labelled.feature_columns]]
    dataset = mlflow.data.from_pandas(light, name=name, targets="label", digest=digest[:16])
    mlflow.log_input(dataset, context=context)
    return {
        f"{context}_sha256": digest,
        f"{context}_rows": str(len(labelled.frame)),
        f"{context}_spam_share": f"{labelled.y.mean():.4f}",
        f"{context}_first_sent_at": first,
        f"{context}_last_sent_at": last,
    }


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}.{key}": value for key, value in metrics.items() if np.isfinite(value)}


def _log_sklearn_model(
    pipeline: Any, labelled: LabelledSet, thresholds: Thresholds, columns: Sequence[str]
) -> str:
    """Log a model per the model contract; returns its URI."""
    example = model_input(labelled.frame.head(3), columns)
    signature = infer_signature(example, pipeline.predict_proba(example))
    # our transformers travel inside the pickle, so a model loads without this repo's version
    # of pipelines.model (serving images, older versions after a refactor)
    cloudpickle.register_pickle_by_value(model_module)
    try:
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="cloudpickle",
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            metadata={
                META_THRESHOLDS: thresholds.to_metadata(),
                META_FEATURE_SERVICE: labelled.feature_service,
                META_FEATURE_COLUMNS: list(columns),
            },
        )
    finally:
        cloudpickle.unregister_pickle_by_value(model_module)
    return info.model_uri


def log_behaviour(candidate: FittedModel, columns: Sequence[str], out: Path) -> SuiteResult:
    """Run the behavioural suite on the candidate (new senders, its own thresholds) and log
    its metrics and failing cases (behaviour/behaviour_failures.json) to the active run."""
    result = run_behaviour(candidate.pipeline, candidate.thresholds, columns)
    mlflow.log_metrics(result.as_metrics())
    path = out / "behaviour_failures.json"
    path.write_text(json.dumps(result.failures_table(), indent=2))
    mlflow.log_artifact(str(path), artifact_path="behaviour")
    return result


# ---- the run ------------------------------------------------------------------------------------

RESULT_METRICS = (
    "pr_auc",
    "pr_auc_minus_baseline",
    "pr_auc_minus_baseline_se",
    "recall_at_p99",
    "precision_at_block",
    "recall_at_block",
    "ece",
    "brier",
)


def write_training_result(
    kind: str,
    reports: dict[str, EvaluationReport],
    candidate: FittedModel,
    baseline: FittedModel,
    behaviour: SuiteResult,
    config: TrainConfig,
    holdout: LabelledSet,
) -> Path:
    """var/run/results/train-<kind>.json: holdout warm/cold vs baseline, validation, thresholds
    and the behavioural suite of this run (what docs/training.md quotes)."""

    def cell(metrics: dict[str, float], key: str) -> Any:
        value = metrics.get(key, float("nan"))
        return round(float(value), 4) if np.isfinite(value) else "-"

    holdout_rows = [
        [key, *(cell(r.metrics, key) for r in reports.values())] for key in RESULT_METRICS
    ]
    validation = {
        "candidate": candidate.validation.metrics,
        "candidate cold": candidate.params["validation_cold"],
        "baseline": baseline.validation.metrics,
    }
    validation_rows = [
        [key, *(cell(m, key) for m in validation.values())]
        for key in ("pr_auc", "recall_at_p99", "ece")
    ]
    t, tb = candidate.thresholds, baseline.thresholds
    behaviour_rows = [
        [test, r.total, r.failure_count, round(r.review_share, 3)]
        for test, r in behaviour.results.items()
    ]
    spam_share = f"{holdout.y.mean():.3f}"
    return write_result(
        Result(
            name=f"train-{kind}",
            title="Training run: candidate vs baseline, future holdout warm and cold",
            command="make train",
            tables=[
                ResultTable(
                    f"Holdout ({len(holdout.frame)} mails, spam share {spam_share}); cold = "
                    "sender columns blank; SE = paired bootstrap (200 resamples)",
                    ["metric", *reports],
                    holdout_rows,
                ),
                ResultTable(
                    "Validation (time-split tail of the training data)",
                    ["metric", *validation],
                    validation_rows,
                ),
                ResultTable(
                    f"Thresholds (review budget {config.review_budget:g} of traffic at "
                    f"{config.traffic_spam_share:g} spam)",
                    ["model", "block", "review"],
                    [
                        ["candidate", round(t.block, 4), round(t.review, 4)],
                        ["baseline", round(tb.block, 4), round(tb.review, 4)],
                    ],
                ),
                ResultTable(
                    "Behavioural suite on the candidate as new senders",
                    ["test", "cases", "failures", "review share"],
                    behaviour_rows,
                ),
            ],
            data={
                "holdout": {name: r.metrics for name, r in reports.items()},
                "validation": validation,
                "behaviour_failures": behaviour.failures_table(),
            },
        )
    )


def run_training(
    train: LabelledSet,
    holdout: LabelledSet,
    config: TrainConfig,
    run_name: str,
    extra_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Fit both models on `train`, evaluate on `holdout`, log to MLflow; then (if
    `config.register`) gate and register. Seeds are fixed: same data + config -> same metrics."""
    from pipelines.register import register_candidate

    started = time.perf_counter()
    if config.shuffle_labels:
        train = replace(train, frame=shuffled_labels(train.frame, config.model.seed))
    columns = train.feature_columns
    mlflow.set_tracking_uri(registry.tracking_uri())
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    console = Console()
    with mlflow.start_run(run_name=run_name) as run:
        commit = git_commit()
        mlflow.set_tags(
            {
                "git_commit": commit,
                "mlflow.source.git.commit": commit.removesuffix("-dirty"),
                "feature_service": train.feature_service,
                "feature_source": config.features,
                "shuffled_labels": str(config.shuffle_labels).lower(),
                "model_kind": "candidate",
                **(extra_tags or {}),
            }
        )
        params: dict[str, Any] = {
            **config.model.as_params(),
            **THRESHOLD_PARAMS,
            "review_budget": config.review_budget,
            "traffic_spam_share": config.traffic_spam_share,
            **tolerance_params(config.tolerance),
            "feature_service": train.feature_service,
            "feature_source": config.features,
            "feature_count": len(columns),
            "validation_fraction": config.validation_fraction,
            "shuffle_labels": config.shuffle_labels,
        }
        params |= _log_dataset(train, "training", "training")
        params |= _log_dataset(holdout, "holdout", "holdout")

        budget = (config.review_budget, config.traffic_spam_share)
        log.info("fitting baseline on %d mails", len(train.frame))
        baseline = fit_baseline(train, config.model, config.validation_fraction, *budget)
        log.info(
            "fitting the candidate on %d mails, %d feature columns", len(train.frame), len(columns)
        )
        candidate = fit_candidate(train, config.model, config.validation_fraction, *budget)
        mlflow.log_params(params)

        # the future twice: with the senders' real history, and as unknown senders get it
        cold_holdout = replace(holdout, frame=cold_start(holdout.frame))
        base_report, base_scores = evaluate_model(
            baseline.pipeline, baseline.thresholds, holdout, columns
        )
        base_cold, base_cold_scores = evaluate_model(
            baseline.pipeline, baseline.thresholds, cold_holdout, columns
        )
        cand_report, cand_scores = evaluate_model(
            candidate.pipeline, candidate.thresholds, holdout, columns
        )
        cand_cold, cand_cold_scores = evaluate_model(
            candidate.pipeline, candidate.thresholds, cold_holdout, columns
        )
        for setting, (ours, theirs) in {
            "warm": (cand_scores, base_scores),
            "cold": (cand_cold_scores, base_cold_scores),
        }.items():
            diff, se = bootstrap_pr_auc_difference(holdout.y, ours, theirs, seed=config.model.seed)
            extra = {"pr_auc_minus_baseline": diff, "pr_auc_minus_baseline_se": se}
            (cand_report if setting == "warm" else cand_cold).metrics.update(extra)

        with mlflow.start_run(run_name="baseline", nested=True) as baseline_run:
            mlflow.set_tags({"model_kind": "baseline", "git_commit": commit})
            mlflow.log_params(
                {
                    "baseline_c": config.model.baseline_c,
                    "training_sha256": params["training_sha256"],
                    "holdout_sha256": params["holdout_sha256"],
                }
            )
            mlflow.log_metrics(_prefixed("holdout", base_report.metrics))
            mlflow.log_metrics(_prefixed("holdout_warm", base_report.metrics))
            mlflow.log_metrics(_prefixed("holdout_cold", base_cold.metrics))
            mlflow.log_metrics(_prefixed("validation", baseline.validation.metrics))
            _log_sklearn_model(baseline.pipeline, holdout, baseline.thresholds, columns)

        # `holdout.*` (= warm) is what `pipelines.register` and the gate read back
        mlflow.log_metrics(_prefixed("holdout", cand_report.metrics))
        mlflow.log_metrics(_prefixed("holdout_warm", cand_report.metrics))
        mlflow.log_metrics(_prefixed("holdout_cold", cand_cold.metrics))
        mlflow.log_metrics(_prefixed("validation", candidate.validation.metrics))
        mlflow.log_metrics(_prefixed("validation_cold", candidate.params["validation_cold"]))
        mlflow.log_metrics(_prefixed("baseline_holdout", base_report.metrics))
        mlflow.log_metrics(_prefixed("baseline_holdout_cold", base_cold.metrics))
        reports = {
            "candidate": cand_report,
            "candidate cold": cand_cold,
            "baseline": base_report,
            "baseline cold": base_cold,
        }

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            y = holdout.y
            for path in (
                plot_pr_curves(
                    y,
                    {
                        "candidate": cand_scores,
                        "candidate cold": cand_cold_scores,
                        "baseline": base_scores,
                    },
                    out / "pr_curve.png",
                ),
                plot_action_matrix(
                    y, cand_scores, candidate.thresholds, out / "confusion_matrix.png"
                ),
                plot_action_matrix(
                    y, cand_cold_scores, candidate.thresholds, out / "confusion_matrix_cold.png"
                ),
                plot_reliability(reports, out / "reliability.png"),
            ):
                mlflow.log_artifact(str(path), artifact_path="plots")
            weights = plot_top_weights(
                candidate.pipeline.top_weights(), out / "feature_importance.png"
            )
            mlflow.log_artifact(str(weights), artifact_path="plots")
            report_path = write_report(reports, out / "holdout_report.json")
            mlflow.log_artifact(str(report_path), artifact_path="evaluation")
            behaviour = log_behaviour(candidate, columns, out)
            # What the canary compares the live challenger with (its own holdout behaviour).
            t = candidate.thresholds
            expectation = expectation_from_scores(cand_scores, t.block, t.review)
            log_expectation(expectation)  # registration adds the champion it was gated against
            reference = reference_sample(train, candidate, config, holdout, cand_scores)
            reference_file = out / Path(REFERENCE_ARTIFACT).name
            reference.to_parquet(reference_file, index=False)
            mlflow.log_artifact(
                str(reference_file), artifact_path=str(Path(REFERENCE_ARTIFACT).parent)
            )

        model_uri = _log_sklearn_model(candidate.pipeline, holdout, candidate.thresholds, columns)
        mlflow.set_tag("model_uri", model_uri)
        seconds = time.perf_counter() - started
        mlflow.log_metric("training_seconds", seconds)

        console.print(
            comparison_table(
                {name: report.metrics for name, report in reports.items()},
                f"holdout: {len(holdout.frame)} mails, spam share {holdout.y.mean():.3f} "
                "(cold: sender columns blank)",
            )
        )
        if config.write_results:
            path = write_training_result(
                run_name.split("-")[0], reports, candidate, baseline, behaviour, config, holdout
            )
            log.info("wrote %s", path)
        result = TrainResult(
            run_id=run.info.run_id,
            baseline_run_id=baseline_run.info.run_id,
            model_uri=model_uri,
            candidate_metrics=cand_report.metrics,
            baseline_metrics=base_report.metrics,
            thresholds=candidate.thresholds,
            seconds=seconds,
        )
        if config.register:
            registration = register_candidate(
                run_id=run.info.run_id,
                model_uri=model_uri,
                candidate_metrics=cand_report.metrics,
                baseline_metrics=base_report.metrics,
                holdout=holdout,
                candidate_cold_metrics=cand_cold.metrics,
                baseline_cold_metrics=base_cold.metrics,
                behaviour=behaviour,
                expectation=expectation,
                tolerance=config.tolerance,
                skip_gate=config.skip_gate,
                data_dir=config.data_dir,
            )
            result.version = registration.version
            result.gate = registration.gate
            result.challenger_set = registration.challenger_set
    log.info("training run %s done in %.1f s", result.run_id, result.seconds)
    return result


# ---- entry points ------------------------------------------------------------------------------


def _fresh_and_holdout(
    history_end: datetime, end: datetime | None, holdout_fraction: float, config: TrainConfig
) -> tuple[LabelledSet, LabelledSet]:
    """Training rows = corpus history + labelled log messages up to `end` except the newest
    `holdout_fraction` of the logged ones, which are the holdout."""
    data_dir = config.data_dir
    history = corpus_rows(data_dir, end=history_end)
    groups = corpus_rows(data_dir)[["message_id", "group"]].set_index("message_id")["group"]
    fresh = logged_rows(history_end, end, data_dir, groups=groups)
    if len(fresh) < 20 or fresh[LABEL_COLUMN].nunique() < 2:
        raise ValueError(
            f"only {len(fresh)} labelled messages in the message log between {history_end} and "
            f"{end}: replay traffic and labels first (python -m pipelines.demo.replay)"
        )
    # the stream interleaves both classes: a plain time cut is the honest "later slice"
    earlier, later = time_validation_split(fresh, holdout_fraction, per_label=False)
    train_rows = drop_repeated_content(pd.concat([history, earlier], ignore_index=True))
    # a mail already trained on (same id, or same text) would flatter the candidate
    seen_text = set(train_rows["subject"].fillna("") + "\x00" + train_rows["body"].fillna(""))
    later_text = later["subject"].fillna("") + "\x00" + later["body"].fillna("")
    holdout_rows = drop_repeated_content(
        later[~later["message_id"].isin(train_rows["message_id"]) & ~later_text.isin(seen_text)]
    )
    holdout_rows = holdout_rows.reset_index(drop=True)
    return (
        with_features(train_rows, config.feature_service, config.features, data_dir),
        with_features(holdout_rows, config.feature_service, config.features, data_dir),
    )


def train_challenger(
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    holdout_fraction: float = 0.3,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Retrain on everything labelled by `end`: corpus history before `start` (default: the
    future period's start) plus the messages and labels that arrived through the stream in
    [start, end). The newest `holdout_fraction` of those fresh messages is held out; the gate
    compares the new model with the champion there, and a pass sets `challenger`."""
    config = replace(config or TrainConfig(), reference_from="holdout")
    history_end = start or FUTURE_START
    train, holdout = _fresh_and_holdout(history_end, end, holdout_fraction, config)
    return run_training(
        train,
        holdout,
        config,
        run_name=f"retrain-{datetime.now():%Y%m%d-%H%M%S}",
        extra_tags={"trigger": "retrain", "window_start": str(history_end), "window_end": str(end)},
    )


def train_first_champion(config: TrainConfig | None = None) -> TrainResult:
    """History -> future: the first champion, compared with the baseline by the gate, and
    promoted when the registry has no champion yet. Both sides read a scratch, in-order replay
    of the corpus through the stream's feature code (see `replayed_feature_sets`):
    deterministic, and the future as the stream serves it."""
    config = config or TrainConfig()
    history = corpus_rows(config.data_dir, end=FUTURE_START)
    future = corpus_rows(config.data_dir, start=FUTURE_START)
    if config.features == "feast":
        train, holdout = replayed_feature_sets(
            [history, future], config.feature_service, config.data_dir
        )
    else:
        train = with_features(history, config.feature_service, "text")
        holdout = with_features(future, config.feature_service, "text")
    result = run_training(
        train, holdout, config, run_name=f"history-{datetime.now():%Y%m%d-%H%M%S}"
    )
    if result.challenger_set and registry.get_alias_version(ALIAS_CHAMPION) is None:
        from pipelines.promote import promote

        promote("first champion: passed the gate against the baseline on history -> future")
        result.promoted = True
    return result


def outcome(result: TrainResult) -> dict[str, Any]:
    """What a caller that started training as a process acts on (monitoring's retrainer):
    did a version become the challenger, and why."""
    gate = result.gate
    if gate is None:
        detail = "no gate verdict"
    elif gate.passed:
        detail = f"gate passed against {gate.compared_with}"
    else:
        detail = f"gate refused against {gate.compared_with}: " + "; ".join(gate.failures)
    return {
        "passed_gate": result.challenger_set,
        "version": result.version,
        "detail": f"{detail} (run {result.run_id})",
    }


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    retrain: Annotated[
        bool, typer.Option(help="train a challenger on history + labelled log messages")
    ] = False,
    start: Annotated[
        datetime | None, typer.Option(help="start of the fresh data (retrain)")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option(help="labelled data available up to here (retrain)")
    ] = None,
    feature_service: str = FEATURE_SERVICE_V1,
    features: Annotated[
        str, typer.Option(help="feast: the FeatureService from the offline store; text: text only")
    ] = "feast",
    seed: int = ModelConfig.seed,
    shuffle_labels: Annotated[
        bool, typer.Option(help="train on permuted labels (a bad model)")
    ] = False,
    skip_gate: Annotated[
        bool, typer.Option(help="set challenger even if the gate refuses (demo only)")
    ] = False,
    no_register: Annotated[bool, typer.Option(help="log the run only")] = False,
    review_budget: Annotated[
        float, typer.Option(help="share of traffic the review band may hold")
    ] = TrainConfig.review_budget,
    traffic_spam_share: Annotated[
        float, typer.Option(help="spam share of the traffic the review budget is counted on")
    ] = TrainConfig.traffic_spam_share,
    outcome_json: Annotated[
        Path | None, typer.Option(help="write the outcome (gate, version) as JSON here")
    ] = None,
) -> TrainResult:
    """Train, evaluate, gate and register; print the comparison and the gate's verdict."""
    if features not in ("feast", "text"):
        raise typer.BadParameter("--features must be 'feast' or 'text'")
    configure_logging("train")
    config = TrainConfig(
        feature_service=feature_service,
        features=features,  # type: ignore[arg-type]
        shuffle_labels=shuffle_labels,
        skip_gate=skip_gate,
        register=not no_register,
        model=ModelConfig(seed=seed),
        review_budget=review_budget,
        traffic_spam_share=traffic_spam_share,
        write_results=True,
    )
    if retrain:
        result = train_challenger(start, end, config=config)
    else:
        result = train_first_champion(config)
    console = Console()
    console.print(f"run {result.run_id} ({result.seconds:.1f} s), model {result.model_uri}")
    if result.gate is not None:
        console.print(result.gate.summary())
    if result.version is not None:
        state = "challenger" if result.challenger_set else "no alias"
        console.print(f"registered version {result.version}: {state}")
    if result.promoted:
        console.print(f"version {result.version} promoted to champion")
    if outcome_json is not None:
        outcome_json.write_text(json.dumps(outcome(result)))
    return result


if __name__ == "__main__":
    cli()
