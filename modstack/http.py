"""One HTTP toolkit for every service: build, wire and run a service's FastAPI app the same way.

- `service_app`: a FastAPI app (version "1") whose lifespan starts and stops the service's
  worker, with `settings` on `app.state.settings` and the error handlers of
  `modstack.http_errors` installed (its table plus the service's domain exceptions).
- `AdminAuth` / `require_admin`: the admin guard, `Authorization: Bearer <ADMIN_TOKEN>`
  compared in constant time; 401 with `WWW-Authenticate` without it, 403 when it is wrong.
  `ADMIN_RESPONSES` documents both. `BearerCredentials` and `token_matches` are the pieces, for
  services with keys of their own (ingestion's client keys).
- `probe_router`: `/healthz`, `/readyz` and `/metrics` in one shape everywhere:
  `{"status": "ok" | "unavailable", "checks": {name: {"ok", "detail", "required"}}}` plus the
  service-specific fields its callers read; `/readyz` answers 503 when a required check fails.
- `serve`: uvicorn on BIND_HOST and the port of the service's own `<NAME>_ADDR`.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from modstack.http_errors import (
    Forbidden,
    Responses,
    Translation,
    Unauthorized,
    error_response,
    install_error_handlers,
)
from modstack.settings import CommonSettings, port_of

# The local stack's one client app of ingestion (the demo's replay and traffic) and its key;
# ingestion refuses the key when ENVIRONMENT=production.
DEV_CLIENT = "demo"
DEV_CLIENT_KEY = "dev-client-key"


# -- the app -----------------------------------------------------------------------------------


def serve(app: Any, settings: CommonSettings, addr: str, **uvicorn_options: Any) -> None:
    """Serve `app` (an app, or an import string with `factory=True`) until stopped."""
    uvicorn.run(
        app,
        host=settings.bind_host,
        port=port_of(addr),
        log_level=settings.log_level.lower(),
        # one log line per request costs ~10% of a core under load; metrics count requests
        access_log=False,
        **uvicorn_options,
    )


async def _call(function: Callable[[], object]) -> None:
    """Await `function()` if it is a coroutine function, else run it in a worker thread."""
    if inspect.iscoroutinefunction(function):
        await function()
    else:
        await run_in_threadpool(function)


def service_app(
    title: str,
    summary: str,
    *,
    settings: CommonSettings,
    start: Callable[[], object],
    stop: Callable[[], object],
    domain_errors: Mapping[type[Exception], Translation] | None = None,
    **fastapi_options: Any,
) -> FastAPI:
    """A FastAPI app (version "1") whose lifespan calls `start` on startup and `stop` on
    shutdown (a coroutine function is awaited; a plain `stop` runs in a worker thread, a plain
    `start` on the loop). `settings` go to `app.state.settings` (the admin guard reads them);
    `domain_errors` add the service's own exceptions to the error table."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if inspect.iscoroutinefunction(start):
            await start()
        else:
            start()  # e.g. a batcher that needs the running loop
        yield
        await _call(stop)

    app = FastAPI(title=title, summary=summary, version="1", lifespan=lifespan, **fastapi_options)
    app.state.settings = settings
    install_error_handlers(app, domain_errors or {})
    return app


# -- authentication ----------------------------------------------------------------------------

_BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def token_matches(given: str, expected: str | bytes) -> bool:
    """Whether `given` is `expected`, compared in constant time."""
    want = expected if isinstance(expected, bytes) else expected.encode()
    return secrets.compare_digest(given.encode(), want)


def require_admin(request: Request, credentials: BearerCredentials) -> None:
    """401 without `Authorization: Bearer <ADMIN_TOKEN>`, 403 with a wrong token."""
    settings: CommonSettings = request.app.state.settings
    if credentials is None:
        raise Unauthorized("admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>")
    if not token_matches(credentials.credentials, settings.admin_token.get_secret_value()):
        raise Forbidden("admin endpoint: the bearer token is not ADMIN_TOKEN")


AdminAuth = Annotated[None, Depends(require_admin)]
ADMIN_RESPONSES: Responses = {
    **error_response(Unauthorized, "no `Authorization: Bearer <ADMIN_TOKEN>`"),
    **error_response(Forbidden, "the bearer token is not ADMIN_TOKEN"),
}


# -- health, readiness, metrics ----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One dependency's state; a failing check that is not `required` degrades the service
    (it answers without it) instead of making it unready."""

    ok: bool
    detail: str
    required: bool = True


@dataclass(frozen=True)
class Readiness:
    """The checks, and the service-specific fields existing callers read (serving's
    `champion`, ...)."""

    checks: dict[str, Check]
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values() if check.required)


class CheckBody(BaseModel):
    ok: bool
    detail: str
    required: bool


class ReadyBody(BaseModel):
    """`/readyz`: every check, plus the service's own fields."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckBody]


class HealthBody(BaseModel):
    """`/healthz`: the process serves requests, plus the service's own fields."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok"]


ReadinessProbe = Callable[[Request], Awaitable[Readiness]]
HealthFields = Callable[[Request], dict[str, Any]]
# A registry to expose, or the exposition already rendered (bytes, content type)
MetricsSource = Callable[[Request], CollectorRegistry | tuple[bytes, str]]


def readiness_body(readiness: Readiness) -> dict[str, Any]:
    """The `/readyz` body for `readiness`."""
    return {
        "status": "ok" if readiness.ready else "unavailable",
        "checks": {name: vars(check) for name, check in readiness.checks.items()},
        **readiness.fields,
    }


def probe_router(
    *,
    ready: ReadinessProbe,
    metrics: MetricsSource,
    health: HealthFields | None = None,
    ready_means: str,
) -> APIRouter:
    """`/healthz` (liveness, plus `health(request)`'s fields), `/readyz` (`ready(request)`; 503
    when a required check fails; `ready_means` documents the 200) and `/metrics`."""
    router = APIRouter()

    @router.get(
        "/healthz",
        response_model=None,
        responses={200: {"model": HealthBody, "description": "The process serves requests."}},
    )
    async def healthz(request: Request) -> JSONResponse:
        fields = health(request) if health is not None else {}
        return JSONResponse(jsonable_encoder({"status": "ok", **fields}))

    @router.get(
        "/readyz",
        response_model=None,
        responses={
            200: {"model": ReadyBody, "description": ready_means},
            503: {"model": ReadyBody, "description": "Not ready: the failing checks say why."},
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        readiness = await ready(request)
        return JSONResponse(
            jsonable_encoder(readiness_body(readiness)),
            status_code=200 if readiness.ready else 503,
        )

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
    )
    def prometheus_metrics(request: Request) -> Response:
        source = metrics(request)
        if isinstance(source, tuple):
            data, content_type = source
        else:
            data, content_type = generate_latest(source), CONTENT_TYPE_LATEST
        return Response(data, media_type=content_type)

    return router
