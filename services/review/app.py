"""The review service's app: the JSON API, the console pages, the static files, the probes,
and the security headers every answer carries (a strict Content-Security-Policy: scripts and
styles from this origin only, nothing inline, no frames)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from modstack.http import Check, Readiness, probe_router, service_app
from modstack.http_errors import Conflict, Forbidden, NotFound
from modstack.kafka import broker_reachable
from services.review import api, console
from services.review.auth import LoginRequired
from services.review.queue import ClaimConflict, ItemNotFound, NotPermitted
from services.review.settings import ReviewSettings
from services.review.state import Services, get_services

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


async def readiness(request: Request) -> Readiness:
    """Ready when the database answers; the broker is reported (labels wait in the outbox)."""
    services = get_services(request)
    bootstrap = services.settings.kafka_bootstrap_servers
    try:
        await run_in_threadpool(services.queue.depth)
        database = Check(True, services.engine.url.render_as_string(hide_password=True))
    except Exception as exc:  # any driver error means the same: not ready
        database = Check(False, f"{type(exc).__name__}: {exc}")
    reachable = await run_in_threadpool(broker_reachable, bootstrap, 2.0)
    broker = Check(reachable, f"{bootstrap} {'answers' if reachable else 'unreachable'}", False)
    return Readiness(
        {"database": database, "broker": broker}, {"consuming": services.worker.consuming}
    )


def metrics_of(request: Request) -> object:
    services = get_services(request)
    services.metrics.observe_depth(services.queue.depth())
    return services.metrics.registry


async def _to_login(request: Request, exc: Exception) -> Response:
    """A page without a session goes to the login page; an htmx fragment request (the queue's
    refresh) is told to send the whole page there instead of swapping the login form in."""
    assert isinstance(exc, LoginRequired)
    target = f"/login?next={exc.next_path}"
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def create_app(settings: ReviewSettings | None = None) -> FastAPI:
    settings = settings or ReviewSettings()
    services = Services(settings)
    app = service_app(
        "ModStack review",
        "The moderators' queue, console and API; appeals; moderator labels to labels.v1.",
        settings=settings,
        start=services.start,
        stop=services.close,
        domain_errors={ItemNotFound: NotFound, ClaimConflict: Conflict, NotPermitted: Forbidden},
        # the interactive docs load scripts from a CDN, which the CSP forbids
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.add_exception_handler(LoginRequired, _to_login)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.include_router(api.router)
    app.include_router(console.router)
    app.include_router(
        probe_router(
            ready=readiness,
            metrics=metrics_of,  # type: ignore[arg-type]
            health=lambda request: {"consuming": get_services(request).worker.consuming},
            ready_means="The database answers (the broker's state is reported, not required).",
        )
    )
    app.mount("/static", StaticFiles(directory=console.STATIC), name="static")
    return app
