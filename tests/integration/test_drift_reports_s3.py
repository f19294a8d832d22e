"""Drift reports in object storage (MONITORING_REPORTS_S3_URL): saved to a real local S3 server
(s3rver), listed and served from it by a monitoring pod that never wrote them, pruned there,
and still saved and served from the pod's own folder while the server is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from modstack.processes import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from services.monitoring.drift.evidently_report import SCORE_COLUMN, DriftReference, WindowReport
from services.monitoring.reports import ReportStore
from tests.drift_data import FEATURES, corpus_with_features, fixture_corpus, split_periods
from tests.support.s3 import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]

BUCKET = "reports"
URL = f"s3://{BUCKET}/drift/"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> WindowReport:
    periods = split_periods(corpus_with_features(fixture_corpus(tmp_path_factory.mktemp("c"))))
    reference = DriftReference(
        periods.reference[[*FEATURES, SCORE_COLUMN]], text_descriptor_columns=FEATURES
    )
    return reference.evaluate(periods.future[[*FEATURES, SCORE_COLUMN]])


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server.in_folder(tmp_path_factory.mktemp("s3"), buckets=(BUCKET,)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's own variables, as compose and k8s set them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)


def _keys(prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_another_pod_lists_and_serves_what_one_pod_saved(
    report: WindowReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MONITORING_REPORTS_S3_URL", URL + "a/")
    writer = ReportStore(tmp_path / "pod-1")
    first = writer.save(report, 1, {"policy": "spam"})
    second = writer.save(report, 2, {"policy": "spam"})
    assert _keys("drift/a/") == sorted(
        f"drift/a/{name}{suffix}" for name in (first, second) for suffix in ("", ".json")
    )
    reader = ReportStore(tmp_path / "pod-2")  # a new pod: its folder is empty
    assert reader.names() == [second, first]
    (newest, _) = reader.listing(10)
    assert (newest["name"], newest["policy"]) == (second, "spam")
    assert newest["drift_share"] == report.result.drift_share
    served = reader.path(first)
    assert served is not None and served.parent == tmp_path / "pod-2"
    assert served.read_bytes() == (tmp_path / "pod-1" / first).read_bytes()
    assert reader.path("drift-20990101T000000000000Z-w000001.html") is None  # never saved
    assert reader.path("../etc/passwd") is None


def test_the_bucket_keeps_the_newest_reports_only(report: WindowReport, tmp_path: Path):
    store = ReportStore(tmp_path / "pod", keep=2, s3_url=URL + "b/")
    names = [store.save(report, i, {}) for i in range(3)]
    assert _keys("drift/b/") == sorted(
        f"drift/b/{name}{suffix}" for name in names[1:] for suffix in ("", ".json")
    )
    assert ReportStore(tmp_path / "other", s3_url=URL + "b/").names() == names[:0:-1]


def test_with_the_server_down_the_pod_saves_and_serves_its_own_copy(
    report: WindowReport, s3: S3Server, tmp_path: Path
):
    store = ReportStore(tmp_path / "pod", s3_url=URL + "c/")
    kept = store.save(report, 1, {})
    s3.kill()
    try:
        down = store.save(report, 2, {})
        assert store.names() == [down, kept]  # listed from the pod's folder meanwhile
        assert store.path(down) == tmp_path / "pod" / down
    finally:
        s3.start()
    assert store.names() == [kept]  # the bucket again: the report saved while it was down
    # stays in the pod only
