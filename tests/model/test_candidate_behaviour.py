"""The behavioural suite (CheckList-style, modstack/policies/spam/behaviour.yaml) on the real
candidate: trained by the training code on the full corpus history with text features (the
corpus is parsed into DATA_DIR by `python -m pipelines.data` before `make test`), thresholded
on its own validation tail, and scored as new senders, as the quality gate does."""

from __future__ import annotations

import json

import pytest

from modstack.corpus import FUTURE_START
from modstack.names import FEATURE_SERVICE_V1
from pipelines.behaviour import SuiteResult
from pipelines.fitting import FittedModel, fit_candidate
from pipelines.gate import behaviour_failures, run_behaviour
from pipelines.model_config import ModelConfig
from pipelines.training_data import corpus_rows, with_features


@pytest.fixture(scope="module")
def candidate() -> FittedModel:
    rows = corpus_rows(end=FUTURE_START)
    if len(rows) < 1_000:
        pytest.fail(f"only {len(rows)} history mails in DATA_DIR: run `python -m pipelines.data`")
    history = with_features(rows, FEATURE_SERVICE_V1, "text")
    return fit_candidate(history, ModelConfig(), validation_fraction=0.2)


@pytest.fixture(scope="module")
def suite_result(candidate: FittedModel) -> SuiteResult:
    columns = list(candidate.pipeline.feature_columns)
    return run_behaviour(candidate.pipeline, candidate.thresholds, columns)


def test_the_candidate_passes_the_minimum_functionality_rules(suite_result: SuiteResult) -> None:
    failures = behaviour_failures(suite_result)
    cases = [f for f in suite_result.failures_table() if f["test"].startswith("mft")]
    assert not failures, json.dumps(cases[:20], indent=1)


def test_the_candidate_passes_the_whole_suite(suite_result: SuiteResult) -> None:
    assert suite_result.passed(), (
        "\n".join(suite_result.gate_violations())
        + "\n"
        + json.dumps(suite_result.failures_table()[:20], indent=1)
    )
