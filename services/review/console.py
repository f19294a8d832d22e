"""The moderators' web console: server-rendered Jinja2 pages (autoescaped), htmx for partial
refreshes, console.js for the keyboard and the actions (which call the JSON API with the
session's CSRF token). No page is in the OpenAPI document: the API is the contract.

    GET  /login, POST /login, POST /logout
    GET  /queue (and /queue/rows, the htmx fragment), /items/{id}
    GET  /audit, /audit.csv (admins), /stats
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from modstack.http_errors import Forbidden
from modstack.policy import catalogue
from services.review.accounts import LockedOut
from services.review.api import ItemId, audit_rows, csv_response, item_out, live_claim, stats_of
from services.review.auth import (
    PageAdmin,
    PageSession,
    Session,
    close_session,
    login_form_ok,
    open_session,
    same,
    session_of,
    set_login_cookie,
)
from services.review.state import ServicesDep

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def age(seconds: float) -> str:
    """A short age for people: 42s, 3m 5s, 2h 10m, 3d 4h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = age
    return env


ENV = _environment()
router = APIRouter(include_in_schema=False)


def render(
    name: str, session: Session | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    html = ENV.get_template(name).render(
        session=session, policies=catalogue().by_name.values(), **context
    )
    return HTMLResponse(html, status_code=status_code)


def _safe_next(target: str) -> str:
    """Only a path of this site (no scheme, no //host) is a place to go after login."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/queue"


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/queue", status_code=303)


@router.get("/login")
def login_page(
    request: Request, services: ServicesDep, next: Annotated[str, Query()] = "/queue"
) -> Response:
    if session_of(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(services, next, None, 200)


def _login_form(services: Any, next_path: str, error: str | None, status_code: int) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        "login.html", None, status_code, next=_safe_next(next_path), error=error, csrf=token
    )
    set_login_cookie(services, response, token)
    return response


@router.post("/login")
def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/queue",
) -> Response:
    if not login_form_ok(request, csrf):
        return _login_form(services, next, "The form expired: sign in again.", 403)
    try:
        actor = services.accounts.login(username, password)
    except LockedOut as exc:
        return _login_form(services, next, str(exc), 429)
    if actor is None:
        return _login_form(services, next, "Wrong username or password.", 401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    open_session(services, response, actor)
    return response


@router.post("/logout")
def logout(session: PageSession, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    if not same(csrf, session.csrf):
        raise Forbidden("missing or wrong CSRF token")
    response = RedirectResponse("/login", status_code=303)
    close_session(response)
    return response


def _queue_rows(services: Any, session: Session, policy: str | None) -> list[dict[str, Any]]:
    now = services.queue.clock()
    rows = services.queue.pending(
        session.actor, policy or None, services.settings.review_list_limit
    )
    return [{"item": item_out(r, now, preview=True), "holder": live_claim(r, now)} for r in rows]


def _policy_filter(policy: str) -> str | None:
    return policy if policy in catalogue().by_name else None


@router.get("/queue")
def queue_page(
    session: PageSession, services: ServicesDep, policy: Annotated[str, Query()] = ""
) -> Response:
    chosen = _policy_filter(policy)
    return render(
        "queue.html",
        session,
        rows=_queue_rows(services, session, chosen),
        chosen=chosen or "",
        lease_s=services.settings.review_lease_s,
    )


@router.get("/queue/rows")
def queue_rows(
    session: PageSession, services: ServicesDep, policy: Annotated[str, Query()] = ""
) -> Response:
    return render(
        "queue_rows.html", session, rows=_queue_rows(services, session, _policy_filter(policy))
    )


@router.get("/items/{item_id}")
def item_page(item_id: ItemId, session: PageSession, services: ServicesDep) -> Response:
    now = services.queue.clock()
    row = services.queue.get(item_id)
    history = [item_out(h, now, preview=True) for h in services.queue.history(row)]
    wave = services.queue.wave(row, session.actor) if row["status"] == "pending" else []
    return render(
        "item.html",
        session,
        item=item_out(row, now),
        holder=live_claim(row, now),
        history=history,
        wave=len(wave),
    )


@router.get("/audit")
def audit_page(session: PageAdmin, services: ServicesDep) -> Response:
    return render("audit.html", session, rows=audit_rows(services, 500, 0))


@router.get("/audit.csv")
def audit_csv_page(_session: PageAdmin, services: ServicesDep) -> Response:
    return csv_response(audit_rows(services, 100_000, 0))


@router.get("/stats")
def stats_page(session: PageSession, services: ServicesDep) -> Response:
    return render("stats.html", session, stats=stats_of(services))
