"""The `spam-classifier` registry as serving, the canary and the pipelines see it: aliases only.

`champion` serves; `challenger` is a version that passed the quality gate and may be rolled out.
Promotion keeps the outgoing champion in the registered-model tag `previous_champion` so a
rollback can move `champion` back. No stages (deprecated in MLflow 3).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from modstack.names import ALIAS_CHALLENGER, ALIAS_CHAMPION, REGISTERED_MODEL
from modstack.settings import get_settings

TAG_PREVIOUS_CHAMPION = "previous_champion"
TAG_LAST_CHANGE = "last_alias_change"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done in the current state (says why)."""


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI as set now (tests set it per session), else the settings' default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or get_settings().mlflow_tracking_uri


def get_client(uri: str | None = None) -> MlflowClient:
    """A client for the tracking server (the http URI: artifacts go through the server)."""
    return MlflowClient(tracking_uri=uri or tracking_uri(), registry_uri=uri or tracking_uri())


def _is_not_found(error: MlflowException) -> bool:
    return error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def get_alias_version(
    alias: str, client: MlflowClient | None = None, model: str = REGISTERED_MODEL
) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    client = client or get_client()
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as error:
        if _is_not_found(error):
            return None
        raise


def _note_change(client: MlflowClient, text: str, model: str = REGISTERED_MODEL) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_registered_model_tag(model, TAG_LAST_CHANGE, f"{stamp} {text}")


def set_challenger(
    version: str, client: MlflowClient | None = None, model: str = REGISTERED_MODEL
) -> None:
    """Point `challenger` at a version (which must exist and must not be the champion)."""
    client = client or get_client()
    client.get_model_version(model, str(version))  # fails clearly if missing
    if get_alias_version(ALIAS_CHAMPION, client, model=model) == str(version):
        raise RegistryError(f"version {version} is already the champion")
    client.set_registered_model_alias(model, ALIAS_CHALLENGER, str(version))
    _note_change(client, f"challenger -> v{version}", model=model)


def clear_challenger(client: MlflowClient | None = None, model: str = REGISTERED_MODEL) -> None:
    """Remove the `challenger` alias (no-op when there is none)."""
    client = client or get_client()
    if get_alias_version(ALIAS_CHALLENGER, client, model=model) is not None:
        client.delete_registered_model_alias(model, ALIAS_CHALLENGER)
        _note_change(client, "challenger cleared", model=model)


def promote_challenger(
    reason: str, client: MlflowClient | None = None, model: str = REGISTERED_MODEL
) -> str:
    """Move `champion` to the challenger's version and remove `challenger`; returns the version.

    The outgoing champion (if any) is kept in the registered-model tag `previous_champion`.
    """
    client = client or get_client()
    challenger = get_alias_version(ALIAS_CHALLENGER, client, model=model)
    if challenger is None:
        raise RegistryError(f"{model} has no {ALIAS_CHALLENGER} to promote")
    champion = get_alias_version(ALIAS_CHAMPION, client, model=model)
    if champion is not None:
        client.set_registered_model_tag(model, TAG_PREVIOUS_CHAMPION, champion)
    client.set_registered_model_alias(model, ALIAS_CHAMPION, challenger)
    client.delete_registered_model_alias(model, ALIAS_CHALLENGER)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(model, challenger, "promoted_at", stamp)
    client.set_model_version_tag(model, challenger, "promotion_reason", reason)
    _note_change(client, f"champion v{champion} -> v{challenger}: {reason}", model=model)
    return challenger


def rollback_champion(
    reason: str = "rollback", client: MlflowClient | None = None, model: str = REGISTERED_MODEL
) -> str:
    """Move `champion` back to `previous_champion`; returns the version now serving.

    The rolled-back version is tagged `rolled_back` and `previous_champion` is cleared, so a
    second rollback cannot bounce back to the bad version.
    """
    client = client or get_client()
    tags = client.get_registered_model(model).tags
    previous = tags.get(TAG_PREVIOUS_CHAMPION)
    if not previous:
        raise RegistryError(f"{model} has no {TAG_PREVIOUS_CHAMPION} to roll back to")
    current = get_alias_version(ALIAS_CHAMPION, client, model=model)
    client.set_registered_model_alias(model, ALIAS_CHAMPION, previous)
    client.delete_registered_model_tag(model, TAG_PREVIOUS_CHAMPION)
    if current is not None:
        client.set_model_version_tag(model, current, "rolled_back", reason)
    _note_change(client, f"champion v{current} -> v{previous} (rollback: {reason})", model=model)
    return previous


def resolve_version(
    alias_or_version: str, client: MlflowClient | None = None, model: str = REGISTERED_MODEL
) -> str:
    """'champion' / 'challenger' / '7' -> the version number as a string."""
    if str(alias_or_version).isdigit():
        return str(alias_or_version)
    version = get_alias_version(alias_or_version, client, model=model)
    if version is None:
        raise RegistryError(f"{model} has no alias {alias_or_version!r}")
    return version


def load_model(
    alias_or_version: str, client: MlflowClient | None = None, model: str = REGISTERED_MODEL
) -> tuple[Any, dict[str, Any]]:
    """Load a version (by alias or number) as the sklearn model plus its metadata.

    The metadata holds the model-contract keys (thresholds, feature_service, feature_columns)
    and, added here, `model_version` and `run_id`.
    """
    client = client or get_client()
    version = resolve_version(alias_or_version, client, model=model)
    model_version = client.get_model_version(model, version)
    # download through this client's server: no process-wide mlflow.set_tracking_uri side effect
    local_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(model, version),
        tracking_uri=client.tracking_uri,
    )
    loaded = mlflow.sklearn.load_model(local_dir)
    metadata = dict(Model.load(local_dir).metadata or {})
    metadata["model_version"] = version
    metadata["run_id"] = model_version.run_id
    return loaded, metadata
