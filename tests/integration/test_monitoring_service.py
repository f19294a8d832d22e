"""The monitoring service end to end with real parts: a Tansu broker of the module's own, an
MLflow server holding a champion with its reference sample, the service as its own process,
and Debian's Prometheus scraping it and evaluating the project's alert rules.

Traffic is the full corpus (real mails, real text features) scored by a model trained on the
reference half of history: the committed fixture is too small for "no drift" (at ~70 rows the
pinned distance thresholds sit inside sampling noise, see test_drift_period_shift.py). Each
period is shuffled before it is cut into windows: history is not stationary in time, so a
window must sample its period, not a slice of it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from modstack.events import LabelEvent, PredictionEvent
from modstack.kafka import make_producer
from modstack.names import ALIAS_CHAMPION, REGISTERED_MODEL, TOPIC_LABELS, TOPIC_PREDICTIONS
from modstack.processes import BackgroundProcess, http_ok
from modstack.registry.contract import (
    META_FEATURE_COLUMNS,
    META_THRESHOLDS,
    REFERENCE_ARTIFACT,
    Thresholds,
)
from modstack.waits import free_port, wait_until
from services.monitoring.drift.evidently_report import SCORE_COLUMN
from tests.drift_data import FEATURES, PeriodRows, full_corpus_periods
from tests.support.prometheus import running_prometheus

pytestmark = pytest.mark.integration

PROMETHEUS_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"
# 300 rows: held-out history measured at drift share 0.00-0.05, future at 0.67-0.81
WINDOW_ROWS = 300
WINDOW_MIN_ROWS = 100
WINDOW_MAX_SECONDS = 15  # long enough that no window closes by age while traffic flows
KEPT_WINDOWS = 3  # closed windows realized quality looks back over
THRESHOLDS = Thresholds(block=0.9, review=0.5)
SERVICE_START_TIMEOUT_S = 120.0  # importing Evidently takes ~5 s idle, much longer under load


@pytest.fixture(scope="module")
def periods() -> PeriodRows:
    split = full_corpus_periods()
    return PeriodRows(
        reference=split.reference,
        held_out=split.held_out.sample(frac=1, random_state=1).reset_index(drop=True),
        future=split.future.sample(frac=1, random_state=1).reset_index(drop=True),
    )


@pytest.fixture(scope="module")
def champion_version(mlflow_tracking_uri: str, periods: PeriodRows, tmp_path_factory) -> str:
    """A champion version whose run carries the reference sample (what training logs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    client = MlflowClient(mlflow_tracking_uri)
    mlflow.set_tracking_uri(mlflow_tracking_uri)
    mlflow.set_experiment("monitoring-test")
    reference_path = tmp_path_factory.mktemp("reference") / "reference.parquet"
    periods.reference[[*FEATURES, SCORE_COLUMN, "label"]].to_parquet(reference_path)
    with mlflow.start_run():
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
            periods.reference[FEATURES], periods.reference["label"] == "spam"
        )
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=REGISTERED_MODEL,
            serialization_format="cloudpickle",
            metadata={META_FEATURE_COLUMNS: FEATURES, META_THRESHOLDS: THRESHOLDS.to_metadata()},
        )
        mlflow.log_artifact(str(reference_path), artifact_path=Path(REFERENCE_ARTIFACT).parent.name)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS_CHAMPION, version)
    return version


@pytest.fixture(scope="module")
def monitoring_url(
    private_kafka: str, mlflow_tracking_uri: str, champion_version: str, tmp_path_factory
) -> Iterator[str]:
    """`python -m services.monitoring` on a free port, small windows, retraining enabled."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = tmp_path_factory.mktemp("monitoring")
    env = {
        "MONITORING_ADDR": url,
        "KAFKA_BOOTSTRAP_SERVERS": private_kafka,
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "DATA_DIR": str(workdir / "data"),
        "MONITORING_WINDOW_MAX_ROWS": str(WINDOW_ROWS),
        "MONITORING_WINDOW_MIN_ROWS": str(WINDOW_MIN_ROWS),
        "MONITORING_WINDOW_MAX_SECONDS": str(WINDOW_MAX_SECONDS),
        "MONITORING_KEEP_CLOSED_WINDOWS": str(KEPT_WINDOWS),
        "RETRAIN_ENABLED": "true",
        "RETRAIN_CONSECUTIVE_WINDOWS": "2",
        "RETRAIN_COOLDOWN_SECONDS": "3600",
        # the training run itself is the training pipeline's business (tested there)
        "RETRAIN_START_ROLLOUT": "false",
        "CANARY_ADDR": f"http://127.0.0.1:{free_port()}",
    }
    service = BackgroundProcess(
        "monitoring service",
        [sys.executable, "-m", "services.monitoring"],
        workdir / "monitoring.log",
        ready=lambda: http_ok(f"{url}/readyz"),
        timeout_s=SERVICE_START_TIMEOUT_S,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    # importing feast (MLflow does while logging a model) sets these in the test process; the
    # service is one process and must not inherit prometheus_client's multiprocess mode
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        service.env.pop(name, None)
    with service:
        yield url


@pytest.fixture(scope="module")
def prometheus_url(monitoring_url: str, tmp_path_factory) -> Iterator[str]:
    """Debian's Prometheus with the project's config and rules, pointed at the test service."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / "rules" / "*.yml")]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "monitoring"]
    job["static_configs"] = [{"targets": [monitoring_url.removeprefix("http://")]}]
    config["scrape_configs"] = [job]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), yaml.safe_dump(config)) as url:
        yield url


def _prediction(row: pd.Series, version: str, served: bool = True) -> PredictionEvent:
    score = float(row[SCORE_COLUMN])
    return PredictionEvent(
        message_id=row["message_id"],
        sender_id=row["sender_id"],
        sent_at=row["sent_at"].to_pydatetime(),
        scored_at=datetime.now(UTC),
        score=score,
        action=THRESHOLDS.action_for(score),
        model_version=version,
        variant="champion" if served else "challenger",
        served=served,
        features={name: float(row[name]) for name in FEATURES},
    )


def _label(row: pd.Series) -> LabelEvent:
    now = datetime.now(UTC)
    return LabelEvent(
        message_id=row["message_id"],
        sender_id=row["sender_id"],
        label=row["label"],
        source="corpus",
        labeled_at=now,
        received_at=now,
    )


def _send(bootstrap: str, frame: pd.DataFrame, version: str, labels: bool) -> None:
    producer = make_producer(bootstrap)
    for _, row in frame.iterrows():
        event = _prediction(row, version)
        producer.send(TOPIC_PREDICTIONS, key=event.message_id, value=event.to_bytes())
        if labels:
            producer.send(TOPIC_LABELS, key=row["sender_id"], value=_label(row).to_bytes())
    producer.flush(timeout=10)
    producer.close()


def _reports(url: str) -> list[dict]:
    return httpx.get(f"{url}/v1/reports", timeout=5).json()["reports"]


def _scraped(prometheus: str, service: str) -> bool:
    """True once Prometheus holds the service's current last-evaluation time."""
    text = httpx.get(f"{service}/metrics", timeout=5).text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith("monitoring_last_evaluation_timestamp_seconds ")
    )
    result = _query(prometheus, "monitoring_last_evaluation_timestamp_seconds")
    return bool(result) and float(result[0]["value"][1]) == float(line.split()[1])


def _labels_read(service: str) -> float:
    """Label events monitoring consumed (matched to a window row, or parked for later)."""
    return sum(
        _sample(service, "monitoring_events_total", {"topic": TOPIC_LABELS, "outcome": o}) or 0.0
        for o in ("matched", "parked")
    )


def _sample(service: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample's value from the service's /metrics (None when absent)."""
    text = httpx.get(f"{service}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return sample.value
    return None


def _query(prometheus: str, expr: str) -> list[dict]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _alert_states(prometheus: str, name: str) -> set[str]:
    """States ("pending", "firing") of the alert `name` in Prometheus right now."""
    return {a["metric"]["alertstate"] for a in _query(prometheus, f'ALERTS{{alertname="{name}"}}')}


def test_history_traffic_shows_no_drift_and_future_traffic_raises_the_gauges_and_the_alert(
    private_kafka: str,
    periods: PeriodRows,
    champion_version: str,
    monitoring_url: str,
    prometheus_url: str,
) -> None:
    # held-out history first: one window, exchangeable with the reference, so no drift
    _send(private_kafka, periods.held_out.iloc[:WINDOW_ROWS], champion_version, labels=True)
    wait_until(lambda: len(_reports(monitoring_url)) >= 1, 60, "the history window's report")
    (history_report,) = _reports(monitoring_url)
    assert history_report["rows"] == WINDOW_ROWS
    assert history_report["drift_detected"] is False, history_report
    assert history_report["drift_share"] < 0.5
    wait_until(lambda: _scraped(prometheus_url, monitoring_url), 45, "Prometheus scrape")
    (share,) = _query(prometheus_url, "monitoring_dataset_drift_share")
    assert float(share["value"][1]) == pytest.approx(history_report["drift_share"])
    assert _alert_states(prometheus_url, "ModelDataDrift") == set()

    # then future traffic: several windows, every one of them drifted
    future = periods.future.iloc[: 3 * WINDOW_ROWS]
    _send(private_kafka, future, champion_version, labels=True)
    wait_until(lambda: len(_reports(monitoring_url)) >= 4, 120, "three future windows evaluated")
    assert all(r["drift_detected"] for r in _reports(monitoring_url)[:3])
    # Labels travel on their own topic and can be consumed after the window they belong to
    # closed; once monitoring has read them all, one more window computes realized quality.
    sent_labels = WINDOW_ROWS + len(future)
    wait_until(
        lambda: _labels_read(monitoring_url) >= sent_labels,
        60,
        "monitoring to read every label",
    )
    _send(
        private_kafka,
        # the first future rows again as new messages: the later tests use the rest
        periods.future.iloc[:WINDOW_ROWS].assign(message_id=lambda f: f["message_id"] + "-again"),
        champion_version,
        labels=False,
    )
    wait_until(lambda: len(_reports(monitoring_url)) >= 5, 90, "one more future window")
    newest = _reports(monitoring_url)[0]
    assert newest["drift_detected"] is True
    assert newest["drift_share"] >= 0.5 > history_report["drift_share"]
    assert newest["reference_model_version"] == champion_version
    assert newest["prediction_drift_score"] > history_report["prediction_drift_score"]

    # live: the values Prometheus scraped are the report's values
    wait_until(lambda: _scraped(prometheus_url, monitoring_url), 45, "Prometheus scrape")
    detail = httpx.get(f"{monitoring_url}/v1/status", timeout=5).json()["last_result"]
    assert detail["drift_share"] == newest["drift_share"]
    (share,) = _query(prometheus_url, "monitoring_dataset_drift_share")
    assert float(share["value"][1]) == pytest.approx(newest["drift_share"])
    (detected,) = _query(prometheus_url, "monitoring_dataset_drift_detected")
    assert float(detected["value"][1]) == 1.0
    (prediction,) = _query(prometheus_url, "monitoring_prediction_drift_score")
    assert float(prediction["value"][1]) == pytest.approx(newest["prediction_drift_score"])
    scores = {
        s["metric"]["feature"]: (s["metric"]["method"], float(s["value"][1]))
        for s in _query(prometheus_url, "monitoring_feature_drift_score")
    }
    assert scores == {
        name: (f["method"], pytest.approx(f["score"])) for name, f in detail["features"].items()
    }
    (rows,) = _query(prometheus_url, "monitoring_window_rows")
    assert float(rows["value"][1]) == WINDOW_ROWS

    # the labels of the kept windows (the two labelled future windows before this one) are
    # behind the realized-quality gauges, and the gauges say what the report says
    assert newest["labelled_rows"] == (KEPT_WINDOWS - 1) * WINDOW_ROWS
    for gauge, key in (
        ("monitoring_labelled_rows", "labelled_rows"),
        ("monitoring_realized_precision", "realized_precision"),
        ("monitoring_realized_recall", "realized_recall"),
        ("monitoring_block_precision", "block_precision"),
    ):
        (sample,) = _query(prometheus_url, gauge)
        assert float(sample["value"][1]) == pytest.approx(newest[key]), gauge
    assert 0.0 < newest["realized_precision"] <= 1.0

    # the project's drift alert rule, loaded by Prometheus, holds on the live gauge: pending
    # now, firing after its `for: 10m` (promtool's rule tests cover the firing)
    wait_until(
        lambda: _alert_states(prometheus_url, "ModelDataDrift") == {"pending"},
        30,
        "the ModelDataDrift alert pending in Prometheus",
    )
    groups = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"ModelDataDrift", "ModelPredictionDrift", "MonitoringStalled"} <= alerts


def test_retraining_is_due_once_per_cooldown_and_starts_when_its_labels_are_there(
    private_kafka: str, periods: PeriodRows, champion_version: str, monitoring_url: str
) -> None:
    before = len(_reports(monitoring_url))
    # more future rows: one full window, then one closed by age (MAX_SECONDS)
    rest = periods.future.iloc[3 * WINDOW_ROWS : 4 * WINDOW_ROWS + WINDOW_MIN_ROWS]
    _send(private_kafka, rest, champion_version, labels=False)
    wait_until(
        lambda: len(_reports(monitoring_url)) >= before + 2,
        60 + WINDOW_MAX_SECONDS,
        "two more windows",
    )
    assert [r["closed_by"] for r in _reports(monitoring_url)[:2]] == ["age", "rows"]
    status = httpx.get(f"{monitoring_url}/v1/status", timeout=5).json()["retrain"]
    assert status["in_cooldown"] is True
    # drift made a retrain due once; the labelled windows before had brought the labels its
    # gate needs (190 spam, 507 ham of scored messages), so it started at once, and only once
    events = [e["event"] for e in status["history"]]
    assert events.count("due") == 1 and events.count("triggered") == 1, status["history"]
    due = next(e for e in status["history"] if e["event"] == "due")
    assert due["detail"].startswith("evidence there: ")
    assert _sample(monitoring_url, "monitoring_retrain_triggers_total") == 1.0


def test_shadow_and_duplicate_predictions_are_not_counted_twice(
    private_kafka: str, periods: PeriodRows, champion_version: str, monitoring_url: str
) -> None:
    row = periods.future.iloc[0].copy()
    row["message_id"] = "monitoring-test-duplicate"
    producer = make_producer(private_kafka)
    served = _prediction(row, champion_version)
    for event in (served, served, _prediction(row, "99", served=False)):
        producer.send(TOPIC_PREDICTIONS, key=event.message_id, value=event.to_bytes())
    producer.flush(timeout=10)
    producer.close()

    def counted(outcome: str) -> float:
        labels = {"topic": TOPIC_PREDICTIONS, "outcome": outcome}
        return _sample(monitoring_url, "monitoring_events_total", labels) or 0.0

    wait_until(lambda: counted("shadow") >= 1, 30, "the shadow prediction counted")
    wait_until(lambda: counted("duplicate") >= 1, 30, "the duplicate prediction counted")
    assert counted("shadow") == 1 and counted("duplicate") == 1


def test_reports_are_listed_newest_first_and_served(monitoring_url: str) -> None:
    reports = _reports(monitoring_url)
    names = [r["name"] for r in reports]
    assert names == sorted(names, reverse=True)
    page = httpx.get(f"{monitoring_url}{reports[0]['url']}", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    missing = httpx.get(f"{monitoring_url}/v1/reports/../../etc/passwd.html", timeout=5)
    assert missing.status_code == 404
