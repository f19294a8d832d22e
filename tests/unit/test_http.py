"""The core HTTP toolkit on a toy app: the admin guard, the error table, the probes."""

from __future__ import annotations

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr

from modstack.http import (
    ADMIN_RESPONSES,
    AdminAuth,
    Check,
    Readiness,
    probe_router,
    service_app,
)
from modstack.http_errors import (
    STATUS,
    Conflict,
    NotFound,
    TooManyRequests,
    Unprocessable,
    error_response,
)
from modstack.settings import CommonSettings

TOKEN = "unit-test-admin-token"


class Refusal(Exception):
    """A domain exception the toy service maps to 409."""


def make_client(ready: bool = True) -> TestClient:
    registry = CollectorRegistry()
    Counter("toy_requests", "requests", registry=registry).inc()

    async def readiness(_: Request) -> Readiness:
        return Readiness(
            {
                "store": Check(ready, "answers" if ready else "down"),
                "cache": Check(False, "cold", required=False),
            },
            {"version": "7"},
        )

    app = service_app(
        "toy",
        "a toy service",
        settings=CommonSettings(admin_token=SecretStr(TOKEN)),
        start=lambda: None,
        stop=lambda: None,
        domain_errors={Refusal: Conflict},
    )
    app.include_router(
        probe_router(
            ready=readiness,
            metrics=lambda _: registry,
            health=lambda _: {"version": "7"},
            ready_means="the store answers",
        )
    )

    @app.get("/admin", responses=ADMIN_RESPONSES)
    def admin(_admin: AdminAuth) -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/missing", responses=error_response(NotFound, "never there"))
    def missing() -> None:
        raise NotFound("nothing here")

    @app.get("/invalid")
    def invalid() -> None:
        raise Unprocessable([{"loc": ["body", "x"], "msg": "bad", "type": "value_error"}])

    @app.get("/slow-down")
    def slow_down() -> None:
        raise TooManyRequests("over the rate", {"Retry-After": "3"})

    @app.get("/refused")
    def refused() -> None:
        raise Refusal("not in this state")

    @app.get("/bug")
    def bug() -> None:
        raise ValueError("a server bug, not the client's fault")

    return TestClient(app, raise_server_exceptions=False)


def test_admin_guard_401_without_a_token_403_with_a_wrong_one() -> None:
    with make_client() as client:
        missing = client.get("/admin")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.get("/admin", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        assert "ADMIN_TOKEN" in wrong.json()["detail"]
        right = client.get("/admin", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200 and right.json() == {"ok": "yes"}


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/missing", 404, "nothing here"),
        ("/invalid", 422, [{"loc": ["body", "x"], "msg": "bad", "type": "value_error"}]),
        ("/refused", 409, "not in this state"),
    ],
)
def test_domain_errors_answer_their_status_and_detail(path: str, status: int, detail) -> None:
    with make_client() as client:
        response = client.get(path)
        assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_an_error_carries_its_headers() -> None:
    with make_client() as client:
        response = client.get("/slow-down")
        assert response.status_code == 429 and response.headers["retry-after"] == "3"


def test_a_bare_value_error_is_a_500_that_leaks_no_message() -> None:
    with make_client() as client:
        response = client.get("/bug")
        assert response.status_code == 500
        assert "ValueError" in response.json()["detail"]
        assert "server bug" not in response.json()["detail"]


def test_every_error_class_has_a_status_and_only_server_side_ones_are_5xx() -> None:
    assert STATUS[NotFound] == 404 and STATUS[Conflict] == 409
    client_errors = {cls.__name__ for cls, status in STATUS.items() if status < 500}
    assert client_errors == {
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "Conflict",
        "ContentTooLarge",
        "Unprocessable",
        "TooManyRequests",
    }


def test_probes_share_one_shape() -> None:
    with make_client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "version": "7"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "checks": {
                "store": {"ok": True, "detail": "answers", "required": True},
                "cache": {"ok": False, "detail": "cold", "required": False},
            },
            "version": "7",
        }
        assert "toy_requests_total 1.0" in client.get("/metrics").text


def test_readyz_is_503_when_a_required_check_fails() -> None:
    with make_client(ready=False) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["checks"]["store"] == {"ok": False, "detail": "down", "required": True}


def test_the_openapi_documents_the_errors_and_probes() -> None:
    with make_client() as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert {"200", "401", "403"} <= set(paths["/admin"]["get"]["responses"])
        assert "404" in paths["/missing"]["get"]["responses"]
        assert {"200", "503"} <= set(paths["/readyz"]["get"]["responses"])
        assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
