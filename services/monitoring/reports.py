"""Each window's Evidently HTML report with a JSON summary next to it, listed newest first.

Saved under {DATA_DIR}/reports; with MONITORING_REPORTS_S3_URL (`s3://bucket/prefix/`, compose
and k8s) also in object storage, which is then what lists and serves them: the local folder is
only the pod's cache, so a restarted or rescheduled monitoring pod still serves every report.
The S3 endpoint and keys are boto3's own variables (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from modstack.settings import CommonSettings
from services.monitoring.drift.evidently_report import WindowReport

log = logging.getLogger(__name__)

# what a bucket that is down, refuses or lacks a key raises
S3_ERRORS = (BotoCoreError, ClientError, OSError)
_NAME = re.compile(r"^drift-\d{8}T\d{12}Z-w\d{6}\.html$")


class ReportStorageSettings(CommonSettings):
    """Where reports are kept beyond the pod: empty = the local folder only."""

    monitoring_reports_s3_url: str = ""


@dataclass
class ReportStore:
    """HTML reports plus `<name>.json` summaries in one folder (and a bucket), pruned to `keep`.

    `s3_url`: None reads MONITORING_REPORTS_S3_URL; "" keeps reports in the folder only.
    """

    directory: Path
    keep: int = 500
    s3_url: str | None = None
    _bucket: _Bucket | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        url = self.s3_url
        if url is None:
            url = ReportStorageSettings().monitoring_reports_s3_url
        if url:
            self._bucket = _Bucket(url)

    def save(self, report: WindowReport, window_index: int, extra: dict[str, Any]) -> str:
        """Write one window's report; returns its file name."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"drift-{stamp}Z-w{window_index:06d}.html"
        summary = {"name": name, "created_at": datetime.now(UTC).isoformat()}
        summary |= report.result.summary() | extra
        # Summary first, HTML last and renamed into place: a report is listed (by its HTML
        # name) only once both files are complete.
        (self.directory / f"{name}.json").write_text(json.dumps(summary, indent=1))
        partial = report.save_html(self.directory / f".{name}.partial")
        os.replace(partial, self.directory / name)
        if self._bucket is not None:
            # the same order in the bucket; a failed upload leaves the pod's copy to serve
            try:
                self._bucket.put(f"{name}.json", self.directory / f"{name}.json")
                self._bucket.put(name, self.directory / name)
            except S3_ERRORS as exc:  # any S3 error: keep the local copy
                log.warning("drift report %s not uploaded to %s: %s", name, self._bucket, exc)
        self._prune()
        return name

    def names(self) -> list[str]:
        """Report file names, newest first (the name starts with its UTC time)."""
        if self._bucket is not None:
            try:
                return sorted((n for n in self._bucket.names() if _NAME.match(n)), reverse=True)
            except S3_ERRORS as exc:  # the bucket unreachable: list the cache
                log.warning("listing %s failed (%s): listing this pod's copies", self._bucket, exc)
        return self._local_names()

    def listing(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` reports with their summaries."""
        items = []
        for name in self.names()[:limit]:
            sidecar = self._fetched(f"{name}.json")
            try:
                summary = json.loads(sidecar.read_text()) if sidecar else {"name": name}
            except (OSError, ValueError):
                summary = {"name": name}
            summary.pop("features", None)  # per-feature detail is in the HTML and the JSON file
            items.append(summary)
        return items

    def path(self, name: str) -> Path | None:
        """The file of a listed report, or None (names outside the pattern never resolve)."""
        if not _NAME.match(name):
            return None
        return self._fetched(name)

    def _fetched(self, name: str) -> Path | None:
        """The local copy of `name`, downloaded from the bucket when the pod lacks it."""
        path = self.directory / name
        if path.is_file():
            return path
        if self._bucket is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            return self._bucket.get(name, path)
        except S3_ERRORS as exc:  # missing or unreachable: not served
            log.info("report file %s not fetched from %s: %s", name, self._bucket, exc)
            return None

    def _local_names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(
            (p.name for p in self.directory.iterdir() if _NAME.match(p.name)), reverse=True
        )

    def _prune(self) -> None:
        for name in self._local_names()[self.keep :]:
            (self.directory / name).unlink(missing_ok=True)
            (self.directory / f"{name}.json").unlink(missing_ok=True)
        if self._bucket is None:
            return
        try:
            for name in self.names()[self.keep :]:
                self._bucket.delete(name, f"{name}.json")
        except S3_ERRORS as exc:  # pruned again after the next report
            log.warning("pruning %s failed: %s", self._bucket, exc)


class _Bucket:
    """One prefix of an S3 bucket (boto3 takes the endpoint and keys from its own env vars)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(
                f"MONITORING_REPORTS_S3_URL must look like s3://bucket/prefix/: {url!r}"
            )
        import boto3

        self.bucket = parsed.netloc
        self.prefix = parsed.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.client = boto3.client("s3")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def put(self, name: str, path: Path) -> None:
        content_type = "text/html" if name.endswith(".html") else "application/json"
        with path.open("rb") as body:
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + name, Body=body, ContentType=content_type
            )

    def get(self, name: str, path: Path) -> Path:
        partial = path.with_name(f".{path.name}.download")
        self.client.download_file(self.bucket, self.prefix + name, str(partial))
        os.replace(partial, path)
        return path

    def names(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        return [
            item["Key"][len(self.prefix) :] for page in pages for item in page.get("Contents", [])
        ]

    def delete(self, *names: str) -> None:
        self.client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": self.prefix + name} for name in names], "Quiet": True},
        )
