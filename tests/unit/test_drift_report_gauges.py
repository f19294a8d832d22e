"""The exported Prometheus gauges carry exactly the numbers of the Evidently report."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.monitoring.drift.evidently_report import (
    SCORE_COLUMN,
    ColumnDrift,
    DriftReference,
    DriftResult,
    WindowReport,
)
from services.monitoring.metrics import MonitoringMetrics
from tests.drift_data import FEATURES, corpus_with_features, fixture_corpus, split_periods


@pytest.fixture(scope="module")
def periods(tmp_path_factory: pytest.TempPathFactory):
    rows = corpus_with_features(fixture_corpus(tmp_path_factory.mktemp("corpus")))
    return split_periods(rows)


@pytest.fixture(scope="module")
def reference(periods) -> DriftReference:
    return DriftReference(
        periods.reference[[*FEATURES, SCORE_COLUMN]],
        text_descriptor_columns=FEATURES,
        model_version="7",
    )


@pytest.fixture(scope="module")
def future_report(periods, reference: DriftReference) -> WindowReport:
    return reference.evaluate(periods.future[[*FEATURES, SCORE_COLUMN]])


def test_gauges_equal_the_values_in_the_evidently_report(periods, future_report) -> None:
    report = future_report
    metrics = MonitoringMetrics()
    metrics.export_drift(report.result, evaluated_at=1_700_000_000.0)

    raw = report.snapshot.dict()["metrics"]
    value_drift = {
        m["config"]["column"]: m for m in raw if m["config"]["type"].endswith("ValueDrift")
    }
    (count,) = [m for m in raw if m["config"]["type"].endswith("DriftedColumnsCount")]
    gauge = metrics.registry.get_sample_value

    assert gauge("monitoring_dataset_drift_share") == pytest.approx(count["value"]["share"])
    assert gauge("monitoring_dataset_drift_detected") == float(count["value"]["share"] >= 0.5)
    assert gauge("monitoring_window_rows") == len(periods.future)
    assert gauge("monitoring_last_evaluation_timestamp_seconds") == 1_700_000_000.0
    assert gauge("monitoring_prediction_drift_score") == pytest.approx(
        value_drift[SCORE_COLUMN]["value"]
    )
    assert value_drift[SCORE_COLUMN]["config"]["method"] == "wasserstein"
    features = [c for c in value_drift if c != SCORE_COLUMN]
    assert sorted(features) == sorted(c.column for c in report.result.features)
    for column in features:
        config = value_drift[column]["config"]
        labels = {"feature": column, "method": config["method"]}
        assert gauge("monitoring_feature_drift_score", labels) == pytest.approx(
            value_drift[column]["value"]
        ), column
    drifted_text = [
        value_drift[c]["value"] >= value_drift[c]["config"]["threshold"] for c in features
    ]
    assert gauge("monitoring_text_drift_share") == pytest.approx(
        sum(drifted_text) / len(drifted_text)
    )
    # Evidently's dataset count and its per-column verdicts agree (same pinned methods)
    assert count["value"]["count"] == sum(drifted_text)


def test_report_pins_methods_by_column_type(future_report: WindowReport) -> None:
    result = future_report.result
    methods = {c.column: c.method for c in result.features}
    assert methods["subject_is_reply"] == "jensenshannon"  # a 0/1 flag: categorical
    assert methods["body_chars"] == "wasserstein"
    assert result.prediction is not None and result.prediction.method == "wasserstein"


def test_window_without_scores_of_the_reference_model_skips_prediction_drift(
    periods, reference: DriftReference
) -> None:
    window = periods.future[FEATURES].assign(score=None)  # all answered by another version
    result = reference.evaluate(window).result
    assert result.prediction is None
    metrics = MonitoringMetrics()
    metrics.export_drift(result, evaluated_at=1.0)
    assert metrics.registry.get_sample_value("monitoring_prediction_drift_score") != pytest.approx(
        0.0
    ), "an unmeasured prediction drift must not read as 'no drift'"


def test_report_html_is_written(future_report: WindowReport, tmp_path: Path) -> None:
    path = future_report.save_html(tmp_path / "reports" / "r.html")
    html = path.read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "body_chars" in html


def _result(columns: dict[str, str]) -> DriftResult:
    features = tuple(
        ColumnDrift(column=c, method=m, threshold=0.1, score=0.2, drifted=True)
        for c, m in columns.items()
    )
    return DriftResult(
        rows=10,
        reference_rows=10,
        reference_model_version="1",
        drift_share=1.0,
        drifted_columns=len(features),
        drift_detected=True,
        features=features,
        prediction=None,
        text_drift_share=None,
    )


def test_feature_gauges_of_columns_no_longer_evaluated_disappear() -> None:
    metrics = MonitoringMetrics()
    metrics.export_drift(_result({"a": "wasserstein", "b": "jensenshannon"}), evaluated_at=1.0)
    metrics.export_drift(_result({"a": "wasserstein"}), evaluated_at=2.0)
    gauge = metrics.registry.get_sample_value
    assert gauge("monitoring_feature_drift_score", {"feature": "a", "method": "wasserstein"}) == 0.2
    assert (
        gauge("monitoring_feature_drift_score", {"feature": "b", "method": "jensenshannon"}) is None
    )
