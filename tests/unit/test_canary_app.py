"""Canary controller API without the outside world: the token guard and the plain endpoints."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.canary.app import create_app
from services.canary.settings import CanarySettings

TOKEN = "unit-test-token"


@pytest.fixture
def client() -> TestClient:
    settings = CanarySettings(
        admin_token=TOKEN,
        mlflow_tracking_uri="http://127.0.0.1:9",  # never reached by these tests
        canary_label_join=False,
    )
    return TestClient(create_app(settings, run_loop=False))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/rollout"),
        ("POST", "/v1/rollout/start"),
        ("POST", "/v1/rollout/promote"),
        ("POST", "/v1/rollout/abort"),
        ("POST", "/v1/rollout/pause"),
        ("POST", "/v1/rollout/resume"),
    ],
)
def test_rollout_endpoints_refuse_a_missing_or_wrong_token(client, method, path):
    missing = client.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403


def test_unknown_action_is_a_404_that_lists_the_actions(client):
    response = client.post("/v1/rollout/launch", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert "promote, abort, pause or resume" in response.json()["detail"]


def test_start_rejects_a_version_that_is_not_a_number(client):
    response = client.post(
        "/v1/rollout/start",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"challenger_version": "x"},
    )
    assert response.status_code == 422


def test_start_rejects_steps_that_do_not_increase_before_touching_the_registry(client):
    # the registry (port 9) is never reached: the body is refused first
    response = client.post(
        "/v1/rollout/start",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"challenger_version": "3", "steps": [50, 25]},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "steps"]


def test_metrics_expose_the_canary_contract_names(client):
    text = client.get("/metrics").text
    for name in (
        "canary_weight_percent",
        "canary_rollbacks_total",
        "canary_promotions_total",
        'canary_check_failures_total{check="score_psi"}',
        'canary_status_info{status="idle"}',
    ):
        assert name in text
    assert client.get("/healthz").json() == {"status": "ok"}


def test_settings_refuse_decreasing_steps():
    with pytest.raises(ValueError, match="steps must increase"):
        CanarySettings(canary_steps="50,25")
