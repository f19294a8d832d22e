"""The rollout run of `python -m loadtests.bench.serving --rollout`: the full path at the
closed-loop load during a 50 % shadow rollout of a copy of the champion, for the CPU cost of
a rollout. The registry is restored afterwards."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from loadtests.bench.serving_runs import LocustSetup, PlannedRun, RunResult, Target, measure
from modstack.policy import DEFAULT_POLICY
from modstack.waits import wait_until

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from rich.console import Console

    from modstack.registry.rollout import RolloutStore
    from services.serving.settings import ServingSettings

CHALLENGER_LOAD_TIMEOUT_S = 120.0


def _model_id(source: ModelVersion, uri: str) -> str | None:
    """The logged model a copy of `source` must name: MLflow 3 sources are "models:/<id>"."""
    model_id: str | None = getattr(source, "model_id", None)
    if model_id:
        return model_id
    return uri.split("/", 1)[1] if uri.startswith("models:/") else None


def set_rollout(settings: ServingSettings, champion: str) -> tuple[RolloutStore, str]:
    """A copy of the champion registered as challenger, in a 50 % shadow rollout: the
    champion answers everyone, the challenger also scores half the senders (off the request
    path, through the same batcher). Returns the rollout store and the copy's version."""
    from modstack.registry.aliases import get_client
    from modstack.registry.rollout import RolloutState, RolloutStore

    client = get_client(settings.mlflow_tracking_uri)
    source = client.get_model_version(settings.serving_model_name, champion)
    if source.source is None:
        raise RuntimeError(f"champion v{champion} has no source to copy")
    copy = client.create_model_version(
        settings.serving_model_name,
        source=source.source,
        run_id=source.run_id,
        model_id=_model_id(source, source.source),
        tags={"bench-serving": "copy of the champion for the rollout CPU run"},
    )
    version = str(copy.version)
    client.set_registered_model_alias(settings.serving_model_name, "challenger", version)
    store = RolloutStore(client, settings.serving_model_name)
    store.save(
        RolloutState(
            rollout_id=f"bench-{uuid.uuid4().hex[:6]}",
            challenger_version=version,
            champion_version=champion,
            weight_percent=50.0,
            mode="shadow",
            status="paused",  # active for routing, never moved by a canary controller
            reason="bench-serving: CPU per request during a 50 % shadow rollout",
        )
    )
    return store, version


def clear_rollout(settings: ServingSettings, store: RolloutStore, version: str) -> None:
    """End the benchmark's rollout and delete the copy of the champion."""
    from modstack.registry.aliases import get_client
    from modstack.registry.rollout import RolloutState

    client = get_client(settings.mlflow_tracking_uri)
    store.save(RolloutState(status="rolled_back", reason="bench-serving finished"))
    client.delete_registered_model_alias(settings.serving_model_name, "challenger")
    client.delete_model_version(settings.serving_model_name, version)


def _serves_challenger(serving: str, version: str) -> bool:
    health: dict[str, Any] = httpx.get(f"{serving}/healthz", timeout=5.0).json()
    spam = health["policies"][DEFAULT_POLICY]
    return str(spam.get("challenger")) == version and bool(spam.get("rollout"))


def rollout_run(
    settings: ServingSettings,
    version: str,
    serving: Target,
    users: int,
    setup: LocustSetup,
    console: Console,
) -> RunResult:
    """The closed-loop run during a 50 % shadow rollout of a copy of champion `version`."""
    console.print("rollout: a copy of the champion in a 50 % shadow rollout")
    store, copy_version = set_rollout(settings, version)
    try:
        wait_until(
            lambda: _serves_challenger(serving.host, copy_version),
            CHALLENGER_LOAD_TIMEOUT_S,
            f"serving with the rollout's challenger v{copy_version}",
            interval_s=1.0,
        )
        time.sleep(2 * settings.serving_poll_interval_s + 1)  # every worker has polled
        result = measure(PlannedRun("full", f"rollout-closed-{users}", users, None), serving, setup)
        console.print(f"      {result}")
        return result
    finally:
        clear_rollout(settings, store, copy_version)
