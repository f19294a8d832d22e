"""The drift reference of the current champion: the sample its training run logged
(`model_contract.REFERENCE_ARTIFACT`) and the feature columns its metadata declares."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import Model

from features.text import TEXT_FEATURE_NAMES
from modstack.names import ALIAS_CHAMPION, REGISTERED_MODEL
from modstack.registry.aliases import get_alias_version
from modstack.registry.contract import META_FEATURE_COLUMNS, REFERENCE_ARTIFACT

log = logging.getLogger(__name__)


class ReferenceUnavailable(RuntimeError):
    """No champion, or the champion's run has no reference sample (says which)."""


@dataclass(frozen=True)
class ChampionReference:
    """What `DriftReference` is built from."""

    model_version: str
    run_id: str
    frame: pd.DataFrame
    feature_columns: list[str]
    text_descriptor_columns: list[str]


def champion_version(client: MlflowClient) -> str | None:
    """The version `champion` points at now (one registry call)."""
    return get_alias_version(ALIAS_CHAMPION, client)


def load_reference(client: MlflowClient, version: str) -> ChampionReference:
    """Download the reference sample and feature contract of one model version."""
    model_version = client.get_model_version(REGISTERED_MODEL, version)
    run_id = model_version.run_id
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=client.tracking_uri
        )
    except Exception as exc:  # MlflowException or an OSError from the artifact store
        raise ReferenceUnavailable(
            f"{REGISTERED_MODEL} v{version} (run {run_id}) has no {REFERENCE_ARTIFACT}: "
            f"train it with `make train`, which logs the reference sample ({exc})"
        ) from exc
    frame = pd.read_parquet(path)
    feature_columns = _declared_feature_columns(client, version)
    if feature_columns is None:
        feature_columns = [c for c in frame.columns if c not in ("score", "label")]
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        log.warning("reference of v%s lacks declared features %s: not monitored", version, missing)
        feature_columns = [c for c in feature_columns if c in frame.columns]
    text = set(TEXT_FEATURE_NAMES)
    return ChampionReference(
        model_version=version,
        run_id=run_id or "",
        frame=frame,
        feature_columns=feature_columns,
        text_descriptor_columns=[c for c in feature_columns if c in text],
    )


def _declared_feature_columns(client: MlflowClient, version: str) -> list[str] | None:
    """`feature_columns` from the model's MLmodel metadata (only that small file is fetched)."""
    uri = client.get_model_version_download_uri(REGISTERED_MODEL, version)
    try:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{uri.rstrip('/')}/MLmodel", tracking_uri=client.tracking_uri
        )
    except Exception as exc:  # an older layout: fall back to the reference's columns
        log.warning(
            "cannot read MLmodel of v%s (%s); monitoring the reference's columns", version, exc
        )
        return None
    metadata = Model.load(path).metadata or {}
    columns = metadata.get(META_FEATURE_COLUMNS)
    return list(columns) if columns else None
