"""Who is asking: a signed session cookie (the console) or a personal API token (scripts).

- The session cookie holds the username and the session's CSRF token, signed with
  REVIEW_SESSION_SECRET (itsdangerous, timestamped: older than REVIEW_SESSION_MAX_AGE_S is no
  session). HttpOnly, SameSite=Strict, Secure when REVIEW_COOKIE_SECURE.
- Every state-changing request made with the cookie must carry the session's CSRF token: the
  `X-CSRF-Token` header (console.js sends it on every fetch and htmx request) or a `csrf`
  form field. A Bearer token needs none: a browser never sends it on its own.
- The login form, before any session exists, carries a token that must match a short-lived
  signed cookie (double submit), so a foreign page cannot log a browser in.

Pages without a session redirect to /login; the JSON API answers 401 without credentials or
with an unknown token, 403 with a missing CSRF token or a role that may not.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from modstack.http import BearerCredentials
from modstack.http_errors import Forbidden, Unauthorized
from services.review.queue import Actor
from services.review.state import Services, get_services

SESSION_COOKIE = "review_session"
LOGIN_COOKIE = "review_login"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_FORM_MAX_AGE_S = 3600
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Session:
    """A signed-in console user and the CSRF token of their session."""

    actor: Actor
    csrf: str


class LoginRequired(Exception):
    """A console page without a session: answered with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _serializer(services: Services, salt: str) -> URLSafeTimedSerializer:
    secret = services.settings.review_session_secret.get_secret_value()
    return URLSafeTimedSerializer(secret, salt=salt)


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


# -- sessions ----------------------------------------------------------------------------------


def open_session(services: Services, response: Response, actor: Actor) -> None:
    """Sign `actor` in: a fresh session cookie with a fresh CSRF token."""
    value = _serializer(services, "session").dumps(
        {"u": actor.username, "c": secrets.token_urlsafe(24)}
    )
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=services.settings.review_session_max_age_s,
        httponly=True,
        samesite="strict",
        secure=services.settings.review_cookie_secure,
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")


def close_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def session_of(request: Request) -> Session | None:
    """The request's valid session, or None (no cookie, bad signature, too old, no account)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    services = get_services(request)
    try:
        data: Any = _serializer(services, "session").loads(
            raw, max_age=services.settings.review_session_max_age_s
        )
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str):
        return None
    actor = services.accounts.by_name(data["u"])
    if actor is None:
        return None
    return Session(actor, str(data.get("c", "")))


def set_login_cookie(services: Services, response: Response, token: str) -> None:
    """The signed cookie the login form's `token` must match."""
    response.set_cookie(
        LOGIN_COOKIE,
        _serializer(services, "login").dumps(token),
        max_age=LOGIN_FORM_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=services.settings.review_cookie_secure,
        path="/login",
    )


def login_form_ok(request: Request, given: str) -> bool:
    raw = request.cookies.get(LOGIN_COOKIE)
    if not raw:
        return False
    try:
        expected = _serializer(get_services(request), "login").loads(
            raw, max_age=LOGIN_FORM_MAX_AGE_S
        )
    except BadSignature:
        return False
    return isinstance(expected, str) and same(given, expected)


# -- dependencies ------------------------------------------------------------------------------


def api_actor(request: Request, credentials: BearerCredentials) -> Actor:
    """The JSON API's caller: a personal token (Bearer), else the session (with the CSRF
    header on a state-changing request)."""
    services = get_services(request)
    if credentials is not None:
        actor = services.accounts.by_token(credentials.credentials)
        if actor is None:
            raise Unauthorized("unknown API token: send `Authorization: Bearer <personal token>`")
        return actor
    session = session_of(request)
    if session is None:
        raise Unauthorized(
            "sign in to the console, or send `Authorization: Bearer <personal token>`"
        )
    if request.method not in SAFE_METHODS and not same(
        request.headers.get(CSRF_HEADER), session.csrf
    ):
        raise Forbidden(f"missing or wrong CSRF token: send the {CSRF_HEADER} header")
    return session.actor


def api_admin(actor: Annotated[Actor, Depends(api_actor)]) -> Actor:
    if not actor.is_admin:
        raise Forbidden(f"{actor.username} is a {actor.role}: this needs an admin")
    return actor


def page_session(request: Request) -> Session:
    """A console page's session; without one, a redirect to the login page."""
    session = session_of(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(quote(target, safe="/"))
    return session


def page_admin(session: Annotated[Session, Depends(page_session)]) -> Session:
    if not session.actor.is_admin:
        raise Forbidden(f"{session.actor.username} is a {session.actor.role}: admins only")
    return session


ApiActor = Annotated[Actor, Depends(api_actor)]
ApiAdmin = Annotated[Actor, Depends(api_admin)]
PageSession = Annotated[Session, Depends(page_session)]
PageAdmin = Annotated[Session, Depends(page_admin)]
