"""Monitoring's retraining hand-off to the real canary controller: the rollout starts and the
rollout history names monitoring as the actor (what `make demo` shows after a retrain)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import mlflow
import pytest
import uvicorn
from pydantic import SecretStr
from sklearn.dummy import DummyClassifier

from modstack.names import ALIAS_CHAMPION, REGISTERED_MODEL
from modstack.processes import http_ok
from modstack.registry.aliases import get_client
from modstack.registry.rollout import RolloutStore
from modstack.waits import free_port, wait_until
from services.canary.app import create_app
from services.canary.settings import CanarySettings
from services.monitoring.retrain import ROLLOUT_ACTOR, start_rollout
from services.monitoring.settings import MonitoringSettings

pytestmark = pytest.mark.integration

TOKEN = "retrain-test-token"


def _register(mlflow_tracking_uri: str) -> str:
    mlflow.set_tracking_uri(mlflow_tracking_uri)
    mlflow.set_experiment("monitoring-retrain-test")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            DummyClassifier(strategy="prior").fit([[0], [1]], [0, 1]),
            name="model",
            registered_model_name=REGISTERED_MODEL,
            serialization_format="cloudpickle",
        )
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def versions(mlflow_tracking_uri: str) -> tuple[str, str]:
    """(champion, freshly trained candidate)."""
    champion, candidate = _register(mlflow_tracking_uri), _register(mlflow_tracking_uri)
    get_client(mlflow_tracking_uri).set_registered_model_alias(
        REGISTERED_MODEL, ALIAS_CHAMPION, champion
    )
    return champion, candidate


@pytest.fixture(scope="module")
def canary_addr(mlflow_tracking_uri: str, versions) -> Iterator[str]:
    """The real canary controller app (stepping loop off) on a free port."""
    port = free_port()
    settings = CanarySettings(
        mlflow_tracking_uri=mlflow_tracking_uri,
        admin_token=SecretStr(TOKEN),
        canary_label_join=False,
        canary_metrics_urls=f"http://127.0.0.1:{free_port()}/metrics",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, run_loop=False), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    addr = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{addr}/healthz"), 30, f"canary app at {addr}")
    yield addr
    server.should_exit = True
    thread.join(timeout=10)


def test_retrained_challenger_rollout_is_recorded_with_monitoring_as_actor(
    mlflow_tracking_uri: str, versions, canary_addr: str
) -> None:
    _, candidate = versions
    settings = MonitoringSettings(canary_addr=canary_addr, admin_token=SecretStr(TOKEN))
    start_rollout(settings, candidate, "retrained on drift: test")
    try:
        state = RolloutStore(get_client(mlflow_tracking_uri)).load()
        assert state.status == "progressing" and state.challenger_version == candidate
        first = state.history[0]
        assert (first.action, first.actor) == ("start", ROLLOUT_ACTOR)
    finally:
        httpx.post(
            f"{canary_addr}/v1/rollout/abort",
            json={"reason": "test over", "actor": "test"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        ).raise_for_status()


def test_a_refused_rollout_names_the_controller(canary_addr: str, versions) -> None:
    settings = MonitoringSettings(canary_addr=canary_addr, admin_token=SecretStr("wrong"))
    with pytest.raises(RuntimeError, match=f"canary controller at {canary_addr} refused"):
        start_rollout(settings, versions[1], "retrained on drift: test")
