"""The behavioural suite (CheckList-style, tests/model/behaviour/cases.yaml) on the real
candidate: trained by the training code on the full corpus history with text features (the
corpus is parsed into DATA_DIR by `python -m pipelines.data` before `make test`), thresholded
on its own validation tail, and scored as new senders, as the quality gate does."""

from __future__ import annotations

import json

import pytest

from modstack.behaviour import SuiteResult
from modstack.corpus import FUTURE_START
from modstack.names import FEATURE_SERVICE_V1
from pipelines.gate import behaviour_failures, run_behaviour
from pipelines.model import ModelConfig
from pipelines.train import FittedModel, fit_candidate
from pipelines.training_data import corpus_rows, with_features


@pytest.fixture(scope="module")
def candidate() -> FittedModel:
    rows = corpus_rows(end=FUTURE_START)
    if len(rows) < 1_000:
        pytest.fail(f"only {len(rows)} history mails in DATA_DIR: run `python -m pipelines.data`")
    history = with_features(rows, FEATURE_SERVICE_V1, "text")
    return fit_candidate(history, ModelConfig(), validation_fraction=0.2)


# Known gap (docs/training.md, issue 11): the corpus has almost no transactional ham, and 3 of
# the 219 everyday cases (an order shipped, an order confirmation, a refund) are blocked; an
# appended bit.ly link lowers the score (15 of 50 directional cases). Strict: the day the
# candidate passes, these xfails fail and must be removed.
KNOWN_GAP = pytest.mark.xfail(
    strict=True, reason="issue 11: commercial notifications blocked; links read as ham"
)


@pytest.fixture(scope="module")
def suite_result(candidate: FittedModel) -> SuiteResult:
    columns = list(candidate.pipeline.feature_columns)
    return run_behaviour(candidate.pipeline, candidate.thresholds, columns)


@KNOWN_GAP
def test_the_candidate_passes_the_minimum_functionality_rules(suite_result: SuiteResult) -> None:
    failures = behaviour_failures(suite_result)
    cases = [f for f in suite_result.failures_table() if f["test"].startswith("mft")]
    assert not failures, json.dumps(cases[:20], indent=1)


@KNOWN_GAP
def test_the_candidate_passes_the_whole_suite(suite_result: SuiteResult) -> None:
    assert suite_result.passed(), (
        "\n".join(suite_result.gate_violations())
        + "\n"
        + json.dumps(suite_result.failures_table()[:20], indent=1)
    )


def test_the_candidate_keeps_invariance_and_blocks_almost_no_everyday_message(
    suite_result: SuiteResult,
) -> None:
    """What holds today, pinned so a regression shows: no invariance failure (case, whitespace,
    sender domain, signature, quoted reply), plain spam allowed within the suite's rate, and
    no more everyday messages blocked than the 3 of the known gap."""
    allowed = suite_result["mft_allowed"]
    assert suite_result["inv"].failure_count == 0, suite_result.failures_table()
    assert suite_result["mft_not_allowed"].failure_rate <= 0.10
    assert allowed.failure_count <= 3, [f.case_id for f in allowed.failures]
