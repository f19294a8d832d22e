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
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import cloudpickle
import mlflow
import numpy as np
import numpy.typing as npt
import pandas as pd
import typer
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import infer_signature
from rich.console import Console

import pipelines.addressee
import pipelines.model
import pipelines.model_config
import pipelines.text_cleaning
from modstack.corpus import FUTURE_START
from modstack.evidence import (
    RETRAIN_HOLDOUT_FRACTION,
    EvidenceNeed,
    LabelClass,
    describe_shortfall,
)
from modstack.log import configure_logging
from modstack.names import ALIAS_CHAMPION, FEATURE_SERVICE_V1, registered_model
from modstack.policy import DEFAULT_POLICY, PolicyDefinition, catalogue
from modstack.registry import aliases as registry
from modstack.registry.contract import (
    META_FEATURE_COLUMNS,
    META_FEATURE_SERVICE,
    META_THRESHOLDS,
    REFERENCE_ARTIFACT,
    Thresholds,
)
from modstack.registry.expectation import (
    OfflineExpectation,
    expectation_from_scores,
    log_expectation,
)
from pipelines.behaviour import SuiteResult
from pipelines.evaluate import (
    HoldoutEvaluation,
    WarmCold,
    compare_on_holdout,
    comparison_table,
    write_report,
)
from pipelines.fitting import (
    MODEL_FACTORIES,
    FittedModel,
    fit_baseline,
    fit_candidate,
)
from pipelines.gate import GateResult, GateTolerance, run_behaviour, tolerance_params
from pipelines.learning_curve import LearningCurve, learning_curve, ranking_metrics
from pipelines.model import model_input
from pipelines.model_config import ModelConfig
from pipelines.register import actions_at
from pipelines.report_plots import plot_learning_curve, training_plots
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
from pipelines.training_result import write_training_result

log = logging.getLogger(__name__)

# The thresholds' and gate's definitions, logged as params so a run says what it was held to.
THRESHOLD_PARAMS = {"block_min_precision": 0.99, "block_cutoff_from": "max(warm, cold validation)"}


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does besides the model's own hyper-parameters."""

    # the policy trained (modstack/policies/<policy>): its data, model, suite, registered model
    policy: str = DEFAULT_POLICY
    feature_service: str = FEATURE_SERVICE_V1
    # None: the policy's own (`training.features`: spam reads Feast, abuse the text alone)
    features: FeatureSource | None = None
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
    # (None: the policy's `review_budget` and `traffic_positive_share`; see `budget`)
    review_budget_override: float | None = None
    traffic_share_override: float | None = None
    # write var/run/results/train-<kind>.json (the CLI does; tests keep the run dir clean)
    write_results: bool = False
    # refit the candidate on 25/50/75 % of the fit rows (plots/learning_curve.png): 31 s more
    # for the spam policy on 2 cores (a 48 s run), so `make train` asks for it, the demo and
    # monitoring's retrains do not
    learning_curve: bool = False

    @property
    def definition(self) -> PolicyDefinition:
        """The policy's definitions."""
        return catalogue().get(self.policy)

    @property
    def review_budget(self) -> float:
        """The share of traffic the review band may hold (the policy's unless overridden)."""
        override = self.review_budget_override
        return self.definition.review_budget if override is None else override

    @property
    def traffic_spam_share(self) -> float:
        """The share of the policy's harm in traffic the cut-offs are judged at."""
        override = self.traffic_share_override
        return self.definition.traffic_positive_share if override is None else override

    @property
    def source(self) -> FeatureSource:
        """Where the feature columns come from (`features`, else the policy's)."""
        return self.features or self.definition.training.features

    @property
    def service(self) -> str:
        """The FeatureService read ('' when the model reads no feature columns)."""
        return "" if self.source == "none" else self.feature_service


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


def reference_sample(
    train: LabelledSet,
    candidate: FittedModel,
    config: TrainConfig,
    holdout: LabelledSet,
    holdout_scores: npt.NDArray[np.float64],
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


# The modules whose classes a fitted model holds (estimators, their config, text transformers):
# pickled by value with the model.
MODEL_MODULES = (
    pipelines.model,
    pipelines.model_config,
    pipelines.text_cleaning,
    pipelines.addressee,
)


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
    dataset = from_pandas(light, name=name, targets="label", digest=digest[:16])
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
    # of the model modules (serving images, older versions after a refactor)
    for module in MODEL_MODULES:
        cloudpickle.register_pickle_by_value(module)
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
        for module in MODEL_MODULES:
            cloudpickle.unregister_pickle_by_value(module)
    return info.model_uri


def log_behaviour(
    candidate: FittedModel, columns: Sequence[str], out: Path, policy: str = DEFAULT_POLICY
) -> SuiteResult:
    """Run the policy's behavioural suite on the candidate (new senders, its own thresholds)
    and log its metrics and failing cases (behaviour/behaviour_failures.json) to the run."""
    result = run_behaviour(candidate.pipeline, candidate.thresholds, columns, policy)
    mlflow.log_metrics(result.as_metrics())
    path = out / "behaviour_failures.json"
    path.write_text(json.dumps(result.failures_table(), indent=2))
    mlflow.log_artifact(str(path), artifact_path="behaviour")
    return result


# ---- the run ------------------------------------------------------------------------------------


def run_training(
    train: LabelledSet,
    holdout: LabelledSet,
    config: TrainConfig,
    run_name: str,
    extra_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Fit both models on `train`, evaluate on `holdout`, log to MLflow; then (if
    `config.register`) gate and register. Seeds are fixed: same data + config -> same metrics."""
    started = time.perf_counter()
    if config.shuffle_labels:
        shuffled = shuffled_labels(train.frame, config.model.seed, config.policy)
        train = replace(train, frame=shuffled)
    columns = train.feature_columns
    mlflow.set_tracking_uri(registry.tracking_uri())
    mlflow.set_experiment(config.definition.experiment)
    with mlflow.start_run(run_name=run_name) as run:
        commit = git_commit()
        _set_run_tags(commit, train, config, extra_tags)
        params = _run_params(train, holdout, config)
        baseline, candidate = _fit_both(train, config)
        mlflow.log_params(params)
        evaluation = compare_on_holdout(
            (candidate.pipeline, candidate.thresholds),
            (baseline.pipeline, baseline.thresholds),
            holdout,
            columns,
            seed=config.model.seed,
        )
        baseline_run_id = _log_baseline_run(
            baseline, evaluation, holdout, columns, commit, params, config
        )
        _log_candidate_metrics(candidate, evaluation)
        curve = _log_fit_row_metrics(train, holdout, candidate, evaluation, config)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            _log_plots_and_report(out, holdout, candidate, evaluation)
            if curve is not None:
                plot = plot_learning_curve(curve, out / "learning_curve.png")
                mlflow.log_artifact(str(plot), artifact_path="plots")
            behaviour = log_behaviour(candidate, columns, out, config.policy)
            # what the gate compares the everyday review share with when there is no champion
            baseline_behaviour = run_behaviour(
                baseline.pipeline, baseline.thresholds, columns, config.policy
            )
            expectation = _log_expectation(candidate, evaluation)
            _log_reference(out, train, candidate, config, holdout, evaluation)
        model_uri = _log_sklearn_model(candidate.pipeline, holdout, candidate.thresholds, columns)
        mlflow.set_tag("model_uri", model_uri)
        seconds = time.perf_counter() - started
        mlflow.log_metric("training_seconds", seconds)
        _print_comparison(evaluation, holdout, config.policy)
        if config.write_results:
            _write_result(run_name, evaluation, candidate, baseline, behaviour, config, holdout)
        result = TrainResult(
            run_id=run.info.run_id,
            baseline_run_id=baseline_run_id,
            model_uri=model_uri,
            candidate_metrics=evaluation.candidate.warm.metrics,
            baseline_metrics=evaluation.baseline.warm.metrics,
            thresholds=candidate.thresholds,
            seconds=seconds,
        )
        if config.register:
            judged = _Judged(
                candidate, behaviour, baseline_behaviour, expectation, baseline.thresholds
            )
            _register(result, holdout, evaluation, judged, config)
    log.info("training run %s done in %.1f s", result.run_id, result.seconds)
    return result


# ---- the run's steps ----------------------------------------------------------------------------


def _set_run_tags(
    commit: str, train: LabelledSet, config: TrainConfig, extra_tags: dict[str, str] | None
) -> None:
    mlflow.set_tags(
        {
            "git_commit": commit,
            "mlflow.source.git.commit": commit.removesuffix("-dirty"),
            "policy": config.policy,
            "feature_service": train.feature_service,
            "feature_source": config.source,
            "shuffled_labels": str(config.shuffle_labels).lower(),
            "model_kind": "candidate",
            **(extra_tags or {}),
        }
    )


def _run_params(train: LabelledSet, holdout: LabelledSet, config: TrainConfig) -> dict[str, Any]:
    """The run's params (logged after the fits); logs both datasets as inputs on the way."""
    params: dict[str, Any] = {
        **config.model.as_params(),
        **THRESHOLD_PARAMS,
        "block_min_precision": config.definition.block_precision,
        "policy": config.policy,
        "review_budget": config.review_budget,
        "traffic_spam_share": config.traffic_spam_share,
        **tolerance_params(config.tolerance),
        "feature_service": train.feature_service,
        "feature_source": config.source,
        "feature_count": len(train.feature_columns),
        "validation_fraction": config.validation_fraction,
        "shuffle_labels": config.shuffle_labels,
    }
    params |= _log_dataset(train, "training", "training")
    params |= _log_dataset(holdout, "holdout", "holdout")
    return params


def _fit_both(train: LabelledSet, config: TrainConfig) -> tuple[FittedModel, FittedModel]:
    """(baseline, candidate), fitted and thresholded under the same protocol."""
    budget = (config.review_budget, config.traffic_spam_share)
    policy = config.policy
    log.info("fitting %s baseline on %d messages", policy, len(train.frame))
    baseline = fit_baseline(train, config.model, config.validation_fraction, *budget, policy)
    log.info(
        "fitting the %s candidate on %d messages, %d feature columns",
        policy,
        len(train.frame),
        len(train.feature_columns),
    )
    candidate = fit_candidate(train, config.model, config.validation_fraction, *budget, policy)
    return baseline, candidate


def _log_baseline_run(
    baseline: FittedModel,
    evaluation: HoldoutEvaluation,
    holdout: LabelledSet,
    columns: Sequence[str],
    commit: str,
    params: dict[str, Any],
    config: TrainConfig,
) -> str:
    """The baseline as a nested run (its metrics and model); returns the run's id."""
    with mlflow.start_run(run_name="baseline", nested=True) as baseline_run:
        mlflow.set_tags({"model_kind": "baseline", "git_commit": commit})
        mlflow.log_params(
            {
                "baseline_c": config.model.baseline_c,
                "training_sha256": params["training_sha256"],
                "holdout_sha256": params["holdout_sha256"],
            }
        )
        mlflow.log_metrics(_prefixed("holdout", evaluation.baseline.warm.metrics))
        mlflow.log_metrics(_prefixed("holdout_warm", evaluation.baseline.warm.metrics))
        mlflow.log_metrics(_prefixed("holdout_cold", evaluation.baseline.cold.metrics))
        mlflow.log_metrics(_prefixed("validation", baseline.validation.metrics))
        _log_sklearn_model(baseline.pipeline, holdout, baseline.thresholds, columns)
    return str(baseline_run.info.run_id)


def _log_candidate_metrics(candidate: FittedModel, evaluation: HoldoutEvaluation) -> None:
    """The candidate's metrics on the parent run, with the baseline's holdout beside them.
    `holdout.*` (= warm) is what `pipelines.register` and the gate read back."""
    ours, theirs = evaluation.candidate, evaluation.baseline
    mlflow.log_metrics(_prefixed("holdout", ours.warm.metrics))
    mlflow.log_metrics(_prefixed("holdout_warm", ours.warm.metrics))
    mlflow.log_metrics(_prefixed("holdout_cold", ours.cold.metrics))
    mlflow.log_metrics(_prefixed("validation", candidate.validation.metrics))
    mlflow.log_metrics(_prefixed("validation_cold", candidate.params["validation_cold"]))
    mlflow.log_metrics(_prefixed("baseline_holdout", theirs.warm.metrics))
    mlflow.log_metrics(_prefixed("baseline_holdout_cold", theirs.cold.metrics))
    if candidate.cutoffs is not None:
        # the cut-offs' bootstrap intervals (pipelines.cutoffs): how sure each one is
        mlflow.log_metrics(candidate.cutoffs.as_metrics())


def _log_fit_row_metrics(
    train: LabelledSet,
    holdout: LabelledSet,
    candidate: FittedModel,
    evaluation: HoldoutEvaluation,
    config: TrainConfig,
) -> LearningCurve | None:
    """`train.*`: PR-AUC, ROC-AUC and log loss of the shipped model on the rows it was fitted
    on, beside the same three on validation and holdout (a wide gap: overfitting; holdout as
    good as the fit rows, better than the task allows: leakage); then, when the config asks
    for it, the learning curve."""
    columns = train.feature_columns
    fit_rows, validation_rows = time_validation_split(train.frame, config.validation_fraction)
    fit_scores = candidate.pipeline.predict_proba(model_input(fit_rows, columns))[:, 1]
    y_validation = validation_rows[LABEL_COLUMN].to_numpy()
    mlflow.log_metrics(
        {
            **_prefixed("train", ranking_metrics(fit_rows[LABEL_COLUMN], fit_scores)),
            "validation.log_loss": ranking_metrics(y_validation, candidate.validation_scores)[
                "log_loss"
            ],
            "holdout.log_loss": ranking_metrics(holdout.y, evaluation.candidate.warm_scores)[
                "log_loss"
            ],
        }
    )
    if not config.learning_curve:
        return None
    factory = MODEL_FACTORIES[config.definition.training.model]
    curve = learning_curve(
        lambda: factory(columns, config.model),
        fit_rows,
        validation_rows,
        columns,
        shipped_scores=(fit_scores, candidate.validation_scores),
        seed=config.model.seed,
    )
    mlflow.log_metrics(curve.as_metrics())
    log.info("learning curve: %d refits in %.1f s", len(curve.fractions) - 1, curve.seconds)
    return curve


def _log_plots_and_report(
    out: Path, holdout: LabelledSet, candidate: FittedModel, evaluation: HoldoutEvaluation
) -> None:
    """The holdout plots (plots/) and all metrics as JSON (evaluation/holdout_report.json)."""
    # the text models' heaviest n-grams, where the model can say (the abuse pipeline cannot)
    top_weights = getattr(candidate.pipeline, "top_weights", None)
    weights = top_weights() if top_weights is not None else {}
    for path in training_plots(out, holdout.y, evaluation, candidate.thresholds, weights):
        mlflow.log_artifact(str(path), artifact_path="plots")
    report_path = write_report(evaluation.reports(), out / "holdout_report.json")
    mlflow.log_artifact(str(report_path), artifact_path="evaluation")


def _log_expectation(candidate: FittedModel, evaluation: HoldoutEvaluation) -> OfflineExpectation:
    """What the canary compares the live challenger with (its own holdout behaviour);
    registration adds the champion it was gated against."""
    t = candidate.thresholds
    expectation = expectation_from_scores(
        evaluation.candidate.warm_scores.tolist(), t.block, t.review
    )
    log_expectation(expectation)
    return expectation


def _log_reference(
    out: Path,
    train: LabelledSet,
    candidate: FittedModel,
    config: TrainConfig,
    holdout: LabelledSet,
    evaluation: HoldoutEvaluation,
) -> None:
    """The drift reference sample (`reference_sample`) as the REFERENCE_ARTIFACT parquet."""
    scores = evaluation.candidate.warm_scores
    reference = reference_sample(train, candidate, config, holdout, scores)
    reference_file = out / Path(REFERENCE_ARTIFACT).name
    reference.to_parquet(reference_file, index=False)
    mlflow.log_artifact(str(reference_file), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))


def _print_comparison(evaluation: HoldoutEvaluation, holdout: LabelledSet, policy: str) -> None:
    Console().print(
        comparison_table(
            {name: report.metrics for name, report in evaluation.reports().items()},
            f"{policy} holdout: {len(holdout.frame)} messages, "
            f"{catalogue().get(policy).positive_label} share {holdout.y.mean():.3f} "
            "(cold: sender columns blank)",
        )
    )


def _write_result(
    run_name: str,
    evaluation: HoldoutEvaluation,
    candidate: FittedModel,
    baseline: FittedModel,
    behaviour: SuiteResult,
    config: TrainConfig,
    holdout: LabelledSet,
) -> None:
    kind = run_name.split("-")[0]
    budget = (config.review_budget, config.traffic_spam_share)
    reports = evaluation.reports()
    path = write_training_result(kind, reports, candidate, baseline, behaviour, budget, holdout)
    log.info("wrote %s", path)


@dataclass(frozen=True)
class _Judged:
    """What the gate reads of a run besides its holdout metrics."""

    candidate: FittedModel
    behaviour: SuiteResult
    baseline_behaviour: SuiteResult
    expectation: OfflineExpectation
    baseline_thresholds: Thresholds


def _actions(thresholds: Thresholds, scored: WarmCold) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A model's action on each holdout row, warm and as cold senders (the gate's paired test)."""
    return actions_at(thresholds, scored.warm_scores), actions_at(thresholds, scored.cold_scores)


def _register(
    result: TrainResult,
    holdout: LabelledSet,
    evaluation: HoldoutEvaluation,
    judged: _Judged,
    config: TrainConfig,
) -> None:
    """Gate and register the run's model; the verdict and version go into `result`."""
    from pipelines.register import register_candidate

    cutoffs = judged.candidate.cutoffs
    # the gate holds the review share to the budget the thresholds were sized for
    tolerance = replace(
        config.tolerance,
        review_budget=config.review_budget,
        traffic_spam_share=config.traffic_spam_share,
    )

    registration = register_candidate(
        run_id=result.run_id,
        model_uri=result.model_uri,
        candidate_metrics=evaluation.candidate.warm.metrics,
        baseline_metrics=evaluation.baseline.warm.metrics,
        holdout=holdout,
        candidate_cold_metrics=evaluation.candidate.cold.metrics,
        baseline_cold_metrics=evaluation.baseline.cold.metrics,
        behaviour=judged.behaviour,
        baseline_behaviour=judged.baseline_behaviour,
        cutoff_failures=cutoffs.failures if cutoffs is not None else (),
        expectation=judged.expectation,
        tolerance=tolerance,
        skip_gate=config.skip_gate,
        data_dir=config.data_dir,
        policy=config.policy,
        candidate_actions=_actions(judged.candidate.thresholds, evaluation.candidate),
        baseline_actions=_actions(judged.baseline_thresholds, evaluation.baseline),
    )
    result.version = registration.version
    result.gate = registration.gate
    result.challenger_set = registration.challenger_set


# ---- entry points ------------------------------------------------------------------------------


def _fresh_and_holdout(
    history_end: datetime,
    end: datetime | None,
    holdout_fraction: float,
    config: TrainConfig,
    logged_before: datetime | None = None,
) -> tuple[LabelledSet, LabelledSet]:
    """Training rows = corpus history + labelled log messages up to `end` except the newest
    `holdout_fraction` of the logged ones of each class, which are the holdout."""
    data_dir, policy = config.data_dir, config.policy
    history = corpus_rows(data_dir, end=history_end, policy=policy)
    corpus = corpus_rows(data_dir, policy=policy)
    groups = corpus[["message_id", "group"]].set_index("message_id")["group"]
    fresh = logged_rows(
        history_end, end, data_dir, groups=groups, policy=policy, logged_before=logged_before
    )
    if len(fresh) < 20 or fresh[LABEL_COLUMN].nunique() < 2:
        raise ValueError(
            f"only {len(fresh)} labelled messages in the message log between {history_end} and "
            f"{end}: replay traffic and labels first (python -m pipelines.demo.replay)"
        )
    # the newest `holdout_fraction` of each class, as validation is cut: the stream's classes
    # are not spread evenly in time (the newest 30 % of the future period holds 42 of its 512
    # spam), and a plain time cut left the gate 12-13 spam to decide on
    earlier, later = time_validation_split(fresh, holdout_fraction, per_label=True)
    train_rows = drop_repeated_content(pd.concat([history, earlier], ignore_index=True))
    # a mail already trained on (same id, or same text) would flatter the candidate
    seen_text = set(train_rows["subject"].fillna("") + "\x00" + train_rows["body"].fillna(""))
    later_text = later["subject"].fillna("") + "\x00" + later["body"].fillna("")
    holdout_rows = drop_repeated_content(
        later[~later["message_id"].isin(train_rows["message_id"]) & ~later_text.isin(seen_text)]
    )
    holdout_rows = holdout_rows.reset_index(drop=True)
    return (
        with_features(train_rows, config.service, config.source, data_dir),
        with_features(holdout_rows, config.service, config.source, data_dir),
    )


class InsufficientEvidence(RuntimeError):
    """The retrain's holdout holds fewer labelled rows per class than the gate needs to decide
    (`modstack.evidence.EvidenceNeed`): nothing is trained or registered."""

    def __init__(self, counts: dict[LabelClass, int], need: EvidenceNeed) -> None:
        self.counts = counts
        self.missing = need.shortfall(counts)
        super().__init__(
            f"holdout too small to decide: {counts['spam']} spam and {counts['ham']} ham, the "
            f"gate needs {need.spam} and {need.ham}; waiting for "
            f"{describe_shortfall(self.missing)} in the holdout"
        )


def holdout_counts(holdout: LabelledSet) -> dict[LabelClass, int]:
    """Labelled rows per class."""
    spam = int(holdout.frame[LABEL_COLUMN].sum())
    return {"spam": spam, "ham": len(holdout.frame) - spam}


def train_challenger(
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    logged_before: datetime | None = None,
    holdout_fraction: float = RETRAIN_HOLDOUT_FRACTION,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Retrain on everything labelled by `end`: corpus history before `start` (default: the
    future period's start) plus the messages and labels that arrived through the stream in
    [start, end). The newest `holdout_fraction` of those fresh messages of each class is held
    out; the gate compares the new model with the champion there, and a pass sets
    `challenger`. `logged_before` keeps only what the message log held at that moment (the
    retrain reads the evidence it was started on, however late it runs). Raises
    `InsufficientEvidence` (before fitting anything) when that holdout cannot decide."""
    config = replace(config or TrainConfig(), reference_from="holdout")
    history_end = start or FUTURE_START
    train, holdout = _fresh_and_holdout(history_end, end, holdout_fraction, config, logged_before)
    counts = holdout_counts(holdout)
    if any(config.tolerance.evidence.shortfall(counts).values()):
        raise InsufficientEvidence(counts, config.tolerance.evidence)
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
    history = corpus_rows(config.data_dir, end=FUTURE_START, policy=config.policy)
    future = corpus_rows(config.data_dir, start=FUTURE_START, policy=config.policy)
    if config.source == "feast":
        train, holdout = replayed_feature_sets(
            [history, future], config.feature_service, config.data_dir
        )
    else:
        train = with_features(history, config.service, config.source)
        holdout = with_features(future, config.service, config.source)
    prefix = "history" if config.policy == DEFAULT_POLICY else f"{config.policy}-history"
    result = run_training(
        train, holdout, config, run_name=f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    model_name = registered_model(config.policy)
    if first_champion_due(result, registry.get_alias_version(ALIAS_CHAMPION, model=model_name)):
        from pipelines.promote import promote

        promote(
            "first champion: passed the gate against the baseline on history -> future",
            model=model_name,
        )
        result.promoted = True
    return result


def first_champion_due(result: TrainResult, champion: str | None) -> bool:
    """Whether this run's version becomes the policy's first champion: only when the registry
    has none and the version passed its gate. A challenger the gate refused (set anyway by
    --skip-gate, for the rollback demo) never becomes champion on its own."""
    passed = result.gate is not None and result.gate.passed
    return result.challenger_set and passed and champion is None


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


def waiting_outcome(waiting: InsufficientEvidence) -> dict[str, Any]:
    """The outcome of a retrain that did not start for want of labels (nothing registered)."""
    return {
        "passed_gate": False,
        "version": None,
        "detail": str(waiting),
        "missing": dict(waiting.missing),
    }


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


def _utc(moment: datetime | None) -> datetime | None:
    """A command-line time in UTC (one without a zone is read as UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# typer's defaults lack the zone and fractions `datetime.isoformat()` writes (monitoring passes
# the retrain's end that way)
DATETIME_FORMATS = [
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%d %H:%M:%S",
]


@cli.command()
def main(
    retrain: Annotated[
        bool, typer.Option(help="train a challenger on history + labelled log messages")
    ] = False,
    start: Annotated[
        datetime | None,
        typer.Option(help="start of the fresh data (retrain)", formats=DATETIME_FORMATS),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option(help="labelled data available up to here (retrain)", formats=DATETIME_FORMATS),
    ] = None,
    logged_before: Annotated[
        datetime | None,
        typer.Option(
            help="read only what the message log held at this moment (retrain; ISO 8601, UTC "
            "when no zone): monitoring passes when the evidence was complete",
            formats=DATETIME_FORMATS,
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option(help="the policy to train (a folder under modstack/policies)")
    ] = DEFAULT_POLICY,
    feature_service: str = FEATURE_SERVICE_V1,
    features: Annotated[
        str | None,
        typer.Option(
            help="feast: the FeatureService from the offline store; text: the text features "
            "only; none: no feature columns (default: the policy's)"
        ),
    ] = None,
    seed: int = ModelConfig.seed,
    shuffle_labels: Annotated[
        bool, typer.Option(help="train on permuted labels (a bad model)")
    ] = False,
    skip_gate: Annotated[
        bool, typer.Option(help="set challenger even if the gate refuses (demo only)")
    ] = False,
    no_register: Annotated[bool, typer.Option(help="log the run only")] = False,
    review_budget: Annotated[
        float | None,
        typer.Option(help="share of traffic the review band may hold (default: the policy's)"),
    ] = None,
    traffic_spam_share: Annotated[
        float | None,
        typer.Option(
            help="share of the policy's harm in the traffic the budget is counted on "
            "(default: the policy's)"
        ),
    ] = None,
    outcome_json: Annotated[
        Path | None, typer.Option(help="write the outcome (gate, version) as JSON here")
    ] = None,
    with_learning_curve: Annotated[
        bool,
        typer.Option(
            "--learning-curve",
            help="refit the candidate on 25/50/75 % of the fit rows and log the learning curve "
            "(plots/learning_curve.png; ~30 s more for spam on 2 cores)",
        ),
    ] = False,
) -> TrainResult:
    """Train, evaluate, gate and register; print the comparison and the gate's verdict."""
    if features not in (None, "feast", "text", "none"):
        raise typer.BadParameter("--features must be 'feast', 'text' or 'none'")
    try:
        catalogue().get(policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from None
    configure_logging("train")
    config = TrainConfig(
        policy=policy,
        feature_service=feature_service,
        features=features,  # type: ignore[arg-type]
        shuffle_labels=shuffle_labels,
        skip_gate=skip_gate,
        register=not no_register,
        model=ModelConfig(seed=seed),
        review_budget_override=review_budget,
        traffic_share_override=traffic_spam_share,
        write_results=True,
        learning_curve=with_learning_curve,
    )
    if retrain:
        try:
            result = train_challenger(
                _utc(start), _utc(end), logged_before=_utc(logged_before), config=config
            )
        except InsufficientEvidence as waiting:
            Console().print(f"[yellow]{waiting}[/]")
            if outcome_json is not None:
                outcome_json.write_text(json.dumps(waiting_outcome(waiting)))
            raise typer.Exit(0) from None
    else:
        result = train_first_champion(config)
    console = Console()
    console.print(f"run {result.run_id} ({result.seconds:.1f} s), model {result.model_uri}")
    if result.gate is not None:
        # the summary holds "[reported]": not rich markup
        console.print(result.gate.summary(), markup=False, highlight=False)
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
