"""Register: put a trained model into `spam-classifier` and run the quality gate.

Every candidate becomes a version (so a refusal is auditable), tagged with the gate's verdict;
only a pass moves the `challenger` alias. The gate compares with the champion scored on the
same holdout, or with the run's baseline when there is no champion yet.

`python -m pipelines.register --run-id RUN` gates and registers a run logged by
`pipelines.train --no-register` (the holdout is rebuilt from the run's params).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, NamedTuple

import mlflow
import pandas as pd
import typer
from mlflow import MlflowClient

from modstack.names import ALIAS_CHAMPION, registered_model
from modstack.paired import McNemar, discordant
from modstack.policy import DEFAULT_POLICY
from modstack.registry import aliases as registry
from modstack.registry.contract import META_FEATURE_COLUMNS, META_FEATURE_SERVICE, Thresholds
from modstack.registry.expectation import (
    EXPECTATION_ARTIFACT,
    OfflineExpectation,
    load_run_expectation,
)
from pipelines.behaviour import SuiteResult
from pipelines.evaluate import evaluate_model
from pipelines.gate import GateResult, GateTolerance, check_gate, run_behaviour
from pipelines.model_frames import cold_start
from pipelines.training_data import (
    FeatureSource,
    LabelledSet,
    content_hash,
    with_features,
    with_replayed_features,
)

log = logging.getLogger(__name__)

Actions = tuple[Sequence[str], Sequence[str]]  # per holdout row: warm, then cold senders


@dataclass(frozen=True)
class Registration:
    """The new version, the gate's verdict, and whether `challenger` now points at it."""

    version: str
    gate: GateResult
    challenger_set: bool


class ChampionReference(NamedTuple):
    """The champion as the gate scored it on the candidate's holdout."""

    version: str
    metrics: dict[str, float]
    cold_metrics: dict[str, float]
    behaviour: SuiteResult
    actions: Actions  # its action on each holdout row: warm, then as cold senders


def champion_metrics(
    holdout: LabelledSet, data_dir: Path | None = None, policy: str = DEFAULT_POLICY
) -> ChampionReference | None:
    """The policy's current champion scored on `holdout` with its own features and
    thresholds, with sender history and as cold senders (sender columns blank), or None."""
    model_name = registered_model(policy)
    version = registry.get_alias_version(ALIAS_CHAMPION, model=model_name)
    if version is None:
        return None
    model, metadata = registry.load_model(version, model=model_name)
    columns = list(metadata[META_FEATURE_COLUMNS])
    if metadata[META_FEATURE_SERVICE] != holdout.feature_service or not set(columns) <= set(
        holdout.frame.columns
    ):
        # the champion reads another FeatureService: give it its own features for these rows
        source: FeatureSource = (
            "none"
            if not columns
            else "text"
            if set(columns) <= set(holdout.feature_columns)
            else "feast"
        )
        rows = holdout.frame.drop(columns=holdout.feature_columns)
        holdout = with_features(rows, metadata[META_FEATURE_SERVICE], source, data_dir)
    thresholds = Thresholds.from_metadata(metadata)
    report, scores = evaluate_model(model, thresholds, holdout, columns)
    cold = replace(holdout, frame=cold_start(holdout.frame))
    cold_report, cold_scores = evaluate_model(model, thresholds, cold, columns)
    behaviour = run_behaviour(model, thresholds, columns, policy)
    actions = (actions_at(thresholds, scores), actions_at(thresholds, cold_scores))
    return ChampionReference(str(version), report.metrics, cold_report.metrics, behaviour, actions)


def actions_at(thresholds: Thresholds, scores: Iterable[float]) -> tuple[str, ...]:
    """The action each score gets at `thresholds`."""
    return tuple(thresholds.action_for(float(s)) for s in scores)


def register_candidate(
    run_id: str,
    model_uri: str,
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    holdout: LabelledSet,
    tolerance: GateTolerance | None = None,
    skip_gate: bool = False,
    data_dir: Path | None = None,
    candidate_cold_metrics: Mapping[str, float] | None = None,
    baseline_cold_metrics: Mapping[str, float] | None = None,
    behaviour: SuiteResult | None = None,
    expectation: OfflineExpectation | None = None,
    baseline_behaviour: SuiteResult | None = None,
    cutoff_failures: Sequence[str] = (),
    policy: str = DEFAULT_POLICY,
    candidate_actions: Actions | None = None,
    baseline_actions: Actions | None = None,
) -> Registration:
    """Gate, register as a new version, tag the verdict, and set `challenger` on a pass (or
    when `skip_gate` forces it for the rollback demo: the refusal stays in the tags).

    The gate compares warm and (when given) cold-start holdout metrics with the reference's,
    and refuses a candidate whose behavioural suite (`behaviour`) fails a minimum-functionality
    rule. `expectation` (the candidate's offline expectation) is logged to the run before the
    alias moves, with the champion's block rate on the same holdout when there is one. The
    version is registered under the policy's model (`<policy>-classifier`). With
    `candidate_actions` (warm, cold) the gate also runs the canary's paired test on the
    holdout's labels against the reference's actions (the champion's, else `baseline_actions`).
    """
    reference = _gate_reference(
        holdout, data_dir, baseline_metrics, baseline_cold_metrics, expectation, policy
    )
    paired = _paired(holdout, candidate_actions, reference.actions or baseline_actions)
    compared_with, reference_metrics, reference_cold, expectation, reference_behaviour = (
        reference.name,
        reference.metrics,
        reference.cold,
        reference.expectation,
        reference.behaviour or baseline_behaviour,
    )
    client = registry.get_client()
    if expectation is not None:
        client.log_dict(run_id, expectation.to_json(), EXPECTATION_ARTIFACT)
    gate = check_gate(
        candidate_metrics,
        reference_metrics,
        compared_with,
        tolerance,
        candidate_cold=candidate_cold_metrics,
        reference_cold=reference_cold if candidate_cold_metrics else None,
        behaviour=behaviour,
        reference_behaviour=reference_behaviour,
        cutoff_failures=cutoff_failures,
        paired=paired[0] if paired else None,
        paired_cold=paired[1] if paired else None,
    )
    log.info("%s", gate.summary())

    mlflow.set_tracking_uri(registry.tracking_uri())
    model_name = registered_model(policy)
    version = str(mlflow.register_model(model_uri, model_name).version)
    tags = gate.as_tags() | {"gate.skipped": str(skip_gate and not gate.passed).lower()}
    for key, tag in tags.items():
        client.set_model_version_tag(model_name, version, key, tag)
        client.set_tag(run_id, key, tag)
    _log_reference_metrics(client, run_id, reference_metrics, reference_cold)
    client.set_tag(run_id, "registered_version", version)
    return Registration(
        version=version,
        gate=gate,
        challenger_set=_move_challenger(version, gate, skip_gate, model_name),
    )


class GateReference(NamedTuple):
    """What the gate compares with: its name, warm and cold metrics, the expectation (with
    the champion's block rate), and the reference's behaviour suite (None: the baseline's)."""

    name: str
    metrics: dict[str, float]
    cold: dict[str, float] | None
    expectation: OfflineExpectation | None
    behaviour: SuiteResult | None
    actions: Actions | None = None  # the champion's on the holdout (None: the baseline's)


def _gate_reference(
    holdout: LabelledSet,
    data_dir: Path | None,
    baseline_metrics: Mapping[str, float],
    baseline_cold_metrics: Mapping[str, float] | None,
    expectation: OfflineExpectation | None,
    policy: str = DEFAULT_POLICY,
) -> GateReference:
    """The champion on `holdout` (the expectation then gets its block rate), or the run's
    baseline when there is none."""
    reference = champion_metrics(holdout, data_dir, policy)
    if reference is None:
        cold = dict(baseline_cold_metrics) if baseline_cold_metrics else None
        return GateReference("baseline", dict(baseline_metrics), cold, expectation, None)
    if expectation is not None and "block_rate" in reference.metrics:
        expectation = expectation.with_champion(reference.version, reference.metrics["block_rate"])
    return GateReference(
        f"champion v{reference.version}",
        reference.metrics,
        reference.cold_metrics,
        expectation,
        reference.behaviour,
        reference.actions,
    )


def _paired(
    holdout: LabelledSet, candidate: Actions | None, reference: Actions | None
) -> tuple[McNemar, McNemar] | None:
    """The paired test, warm and cold, when both sides' actions are known."""
    if candidate is None or reference is None:
        return None
    positives = [bool(y) for y in holdout.y]
    return (
        discordant(positives, candidate[0], reference[0]),
        discordant(positives, candidate[1], reference[1]),
    )


def _log_reference_metrics(
    client: MlflowClient,
    run_id: str,
    reference_metrics: Mapping[str, float],
    reference_cold: Mapping[str, float] | None,
) -> None:
    """The reference's gated metrics on the candidate's run (`gate_reference[_cold].*`)."""
    for key, value in reference_metrics.items():
        if key in ("pr_auc", "recall_at_p99") or ".error_at_" in key:
            client.log_metric(run_id, f"gate_reference.{key}", float(value))
    for key, value in (reference_cold or {}).items():
        if key in ("pr_auc", "recall_at_p99"):
            client.log_metric(run_id, f"gate_reference_cold.{key}", float(value))


def _move_challenger(version: str, gate: GateResult, skip_gate: bool, model_name: str) -> bool:
    """Set `challenger` on a pass (or when `skip_gate` forces it); True when it moved."""
    if gate.passed or skip_gate:
        if skip_gate and not gate.passed:
            log.warning("gate refused version %s; setting challenger anyway (--skip-gate)", version)
        registry.set_challenger(version, model=model_name)
        return True
    log.warning("version %s registered without alias: the gate refused it", version)
    return False


def _metrics_with_prefix(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    run_id: Annotated[str, typer.Option(help="the logged training run to gate and register")],
    skip_gate: Annotated[
        bool, typer.Option("--skip-gate", help="register even if refused")
    ] = False,
) -> Registration:
    """Gate and register a logged training run."""
    from modstack.log import configure_logging
    from pipelines.training_data import corpus_rows

    configure_logging("register")

    client = registry.get_client()
    run = client.get_run(run_id)
    params, metrics = run.data.params, run.data.metrics
    first = pd.Timestamp(params["holdout_first_sent_at"])
    last = pd.Timestamp(params["holdout_last_sent_at"])
    # the run's holdout, rebuilt: corpus mails in its time range, checked against its hash
    # pd.Timestamp is a datetime: keeps the nanoseconds a to_pydatetime() would drop
    rows = corpus_rows(start=first, end=last + pd.Timedelta("1ns"))
    if params["feature_source"] == "feast":
        holdout = with_replayed_features(rows, params["feature_service"])
    else:
        holdout = with_features(rows, params["feature_service"], "text")
    if content_hash(holdout.frame, holdout.feature_columns) != params["holdout_sha256"]:
        raise SystemExit(
            f"run {run_id}'s holdout cannot be rebuilt from the corpus (its hash differs): "
            "it came from the message log; gate it in process (pipelines.train --retrain)"
        )
    # the behavioural suite on the logged model itself, at its own thresholds
    model_uri = run.data.tags["model_uri"]
    mlflow.set_tracking_uri(registry.tracking_uri())
    model = mlflow.sklearn.load_model(model_uri)
    info = mlflow.models.get_model_info(model_uri)
    thresholds = Thresholds.from_metadata(info.metadata or {})
    behaviour = run_behaviour(model, thresholds, list((info.metadata or {})[META_FEATURE_COLUMNS]))
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(behaviour.as_metrics())
        path = Path(tmp) / "behaviour_failures.json"
        path.write_text(json.dumps(behaviour.failures_table(), indent=2))
        mlflow.log_artifact(str(path), artifact_path="behaviour")
    registration = register_candidate(
        run_id=run_id,
        model_uri=model_uri,
        candidate_metrics=_metrics_with_prefix(metrics, "holdout."),
        baseline_metrics=_metrics_with_prefix(metrics, "baseline_holdout."),
        holdout=holdout,
        skip_gate=skip_gate,
        candidate_cold_metrics=_metrics_with_prefix(metrics, "holdout_cold.") or None,
        baseline_cold_metrics=_metrics_with_prefix(metrics, "baseline_holdout_cold.") or None,
        behaviour=behaviour,
        expectation=load_run_expectation(client, run_id),
    )
    print(registration.gate.summary())
    state = "challenger" if registration.challenger_set else "no alias"
    print(f"registered version {registration.version}: {state}")
    return registration


if __name__ == "__main__":
    cli()
