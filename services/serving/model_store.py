"""Registered model versions on local disk: download once, load from disk, survive a registry
outage.

Layout under `{DATA_DIR}/model_cache`: `versions/<version>/` is the MLflow model directory as
the registry serves it; `aliases.json` is the last alias -> version map that loaded
successfully. A restart with the registry down serves what `aliases.json` names.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modstack.names import REGISTERED_MODEL
from modstack.registry.contract import (
    META_FEATURE_COLUMNS,
    META_FEATURE_SERVICE,
    TEXT_COLUMNS,
    Thresholds,
)
from services.serving.hot_path import (
    model_frame,
    predict_proba_fast,
    prepare_for_serving,
    selectors_replaced,
    vectorizers_cached,
)

log = logging.getLogger(__name__)


class ModelContractError(ValueError):
    """A model version does not carry what serving needs (thresholds, feature contract)."""


@dataclass(frozen=True)
class LoadedModel:
    """One registered model version, ready to score.

    `model` is the pipeline as registered; `serving_model` is the same fitted pipeline with the
    model-only work precomputed (`hot_path.prepare_for_serving`), which the hot path scores.
    """

    version: str
    model: Any = field(repr=False)
    thresholds: Thresholds
    feature_service: str
    feature_columns: tuple[str, ...]
    source: str  # "registry" (downloaded now) or "cache" (loaded from disk)
    serving_model: Any = field(default=None, repr=False)

    def score(self, subject: str, body: str, features: Mapping[str, float | None]) -> float:
        """P(spam) for one message."""
        return self.score_batch([subject], [body], [features])[0]

    def score_batch(
        self,
        subjects: Sequence[str],
        bodies: Sequence[str],
        features: Sequence[Mapping[str, float | None]],
    ) -> list[float]:
        """P(spam) for a batch of messages, in one model call."""
        frame = model_frame(subjects, bodies, features, TEXT_COLUMNS, self.feature_columns)
        model = self.serving_model if self.serving_model is not None else self.model
        proba = predict_proba_fast(model, frame)
        return [float(p) for p in proba[:, 1]]


def contract_from_metadata(metadata: Mapping[str, Any] | None) -> tuple[Thresholds, str, tuple]:
    """Thresholds, feature service and feature columns from a model's MLflow metadata."""
    if not metadata:
        raise ModelContractError("model has no metadata (see modstack/registry/contract.py)")
    missing = [
        k for k in ("thresholds", META_FEATURE_SERVICE, META_FEATURE_COLUMNS) if k not in metadata
    ]
    if missing:
        raise ModelContractError(
            f"model metadata lacks {missing} (see modstack/registry/contract.py)"
        )
    return (
        Thresholds.from_metadata(metadata),
        str(metadata[META_FEATURE_SERVICE]),
        tuple(str(c) for c in metadata[META_FEATURE_COLUMNS]),
    )


def load_model_dir(path: Path, version: str, source: str) -> LoadedModel:
    """Load an MLflow sklearn model directory and check it against the model contract."""
    import mlflow.sklearn
    from mlflow.models import Model

    thresholds, feature_service, columns = contract_from_metadata(Model.load(str(path)).metadata)
    model = mlflow.sklearn.load_model(str(path))
    if not hasattr(model, "predict_proba"):
        raise ModelContractError(f"model version {version} has no predict_proba")
    serving_model = prepare_for_serving(model)
    log.info(
        "version %s prepared for serving: %d feature selectors as fixed column indices, "
        "%d text vectorizers with a per-word cache",
        version,
        selectors_replaced(serving_model),
        vectorizers_cached(serving_model),
    )
    return LoadedModel(version, model, thresholds, feature_service, columns, source, serving_model)


class ModelCache:
    """Downloads model versions from the registry into a local folder and loads them.

    Args:
        root: the cache folder (`{DATA_DIR}/model_cache`).
        client: an `mlflow.MlflowClient` for the registry.
    """

    def __init__(self, root: Path, client: Any, model_name: str = REGISTERED_MODEL) -> None:
        self.root = root
        self.client = client
        self.model_name = model_name
        self.versions_dir = root / "versions"
        self.aliases_file = root / "aliases.json"

    def version_dir(self, version: str) -> Path:
        """Where version `version` lives on disk."""
        return self.versions_dir / str(version)

    def has(self, version: str) -> bool:
        """True when the version is fully downloaded (the rename below is the commit point)."""
        return (self.version_dir(version) / "MLmodel").is_file()

    def fetch(self, version: str) -> Path:
        """Download a version unless it is already on disk; returns its folder.

        Several workers share the cache folder and start together: an exclusive file lock
        makes one download while the others wait and then find it on disk (without it, a
        second download replaced the folder while the first worker was loading from it).
        """
        target = self.version_dir(version)
        if self.has(version):
            return target
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with (self.versions_dir / ".download.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self.has(version):
                    return target
                return self._download(version, target)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _download(self, version: str, target: Path) -> Path:
        import mlflow.artifacts

        # Download into a temp folder next to the target and rename: a crash mid-download
        # never leaves a half model that a later restart would trust.
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.versions_dir))
        try:
            # through this client's server, without a process-wide mlflow.set_tracking_uri
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=self.client.get_model_version_download_uri(self.model_name, version),
                dst_path=str(staging),
                tracking_uri=self.client.tracking_uri,
            )
            shutil.rmtree(target, ignore_errors=True)
            os.replace(local, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("downloaded %s version %s to %s", self.model_name, version, target)
        return target

    def load(self, version: str) -> LoadedModel:
        """Load a version, downloading it first when it is not on disk."""
        source = "cache" if self.has(version) else "registry"
        return load_model_dir(self.fetch(version), version, source)

    def load_cached(self, version: str) -> LoadedModel:
        """Load a version from disk only (registry unreachable)."""
        if not self.has(version):
            raise FileNotFoundError(f"model version {version} is not in {self.versions_dir}")
        return load_model_dir(self.version_dir(version), version, "cache")

    def remember_aliases(self, aliases: Mapping[str, str]) -> None:
        """Record the alias -> version map that is being served (atomic replace)."""
        self.root.mkdir(parents=True, exist_ok=True)
        # one temporary file per process: the serving workers share this cache, and with one
        # shared name a worker's os.replace moved another's file away (FileNotFoundError, the
        # registry poll failed and that worker kept serving the old aliases)
        tmp = self.aliases_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(aliases), indent=2, sort_keys=True))
        os.replace(tmp, self.aliases_file)

    def remembered_aliases(self) -> dict[str, str]:
        """The last alias -> version map served, or {} on a first start."""
        try:
            return {str(k): str(v) for k, v in json.loads(self.aliases_file.read_text()).items()}
        except FileNotFoundError:
            return {}

    def prune(self, keep: set[str]) -> None:
        """Delete cached versions not in `keep` (the versions served or about to be)."""
        if not self.versions_dir.is_dir():
            return
        for child in self.versions_dir.iterdir():
            if child.is_dir() and not child.name.startswith(".") and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
