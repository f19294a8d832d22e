"""The rollout state round-trips through the real MLflow registry as `rollout.*` tags."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from modstack.names import REGISTERED_MODEL
from modstack.registry.rollout import (
    HISTORY_TAG_PREFIX,
    STATE_TAG,
    TAG_VALUE_MAX_CHARS,
    RolloutStore,
)
from services.canary import state_machine as cc

pytestmark = pytest.mark.integration

POLICY = cc.RolloutPolicy(steps=(10, 100), interval_s=5)


@pytest.fixture
def store(mlflow_tracking_uri) -> RolloutStore:
    client = MlflowClient(tracking_uri=mlflow_tracking_uri, registry_uri=mlflow_tracking_uri)
    name = f"{REGISTERED_MODEL}-store-test"
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return RolloutStore(client, model_name=name)


def test_a_model_without_rollout_tags_is_idle(store):
    fresh = RolloutStore(store.client, model_name="never-registered-model")
    assert fresh.load().status == "idle"


def test_state_and_history_round_trip_and_a_new_rollout_replaces_the_history(store):
    first = cc.start(store.load(), "7", "6", POLICY, actor="test")
    first = cc.pause(first, "test", "x" * 20_000)  # a reason far beyond one tag value
    saved = store.save(first)
    loaded = store.load()
    assert (loaded.challenger_version, loaded.status, loaded.revision) == (
        "7",
        "paused",
        saved.revision,
    )
    assert [e.action for e in loaded.history] == ["start", "pause"]
    tags = store.client.get_registered_model(store.model_name).tags
    assert all(len(v) <= TAG_VALUE_MAX_CHARS for k, v in tags.items() if k.startswith("rollout."))
    assert STATE_TAG in tags

    second = cc.start(cc.abort(loaded, "test"), "8", "6", POLICY, actor="test")
    store.save(second)
    history_tags = [
        k
        for k in store.client.get_registered_model(store.model_name).tags
        if k.startswith(HISTORY_TAG_PREFIX)
    ]
    assert len(history_tags) == 1  # the previous rollout's three events are gone
    assert store.load().challenger_version == "8"
