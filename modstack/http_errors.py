"""The exceptions a route raises to answer an error, and the one table that gives their status.

A route raises `NotFound("no report named 'x'")`; the handler `install_error_handlers` adds
answers `{"detail": ...}` with the status this module's table gives it (and the exception's
headers). A service adds its own domain exceptions to the table (`RolloutConflict` -> 409).
Anything not in the table, a bare `ValueError` included, is a server bug: 500, logged, with a
detail that names the exception type only. A client error is never guessed from a built-in
exception type.

`error_response` builds the OpenAPI `responses=` entry for an exception from the same table,
so what a route documents and what it answers cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

log = logging.getLogger(__name__)


class HTTPError(Exception):
    """An error answer: `detail` (a string, or pydantic-style error dicts) and headers."""

    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, detail: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail
        self.headers = {**self.default_headers, **(headers or {})}


class BadRequest(HTTPError):
    """The request cannot be read (e.g. a body that is not JSON)."""


class Unauthorized(HTTPError):
    """No (valid) credentials: the client should authenticate."""

    default_headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(HTTPError):
    """Credentials sent, but they do not grant this."""


class NotFound(HTTPError):
    """What the request names does not exist."""


class Conflict(HTTPError):
    """Not possible in the current state of what the request names."""


class ContentTooLarge(HTTPError):
    """The body, or an event made from it, is over a limit."""


class Unprocessable(HTTPError):
    """The body is well-formed but invalid; `detail` names the fields."""


class TooManyRequests(HTTPError):
    """The client is over its rate limit (send Retry-After)."""


class Failed(HTTPError):
    """A server-side failure the route expected, counted and logged itself (e.g. a model that
    fails on one message); unexpected ones are left to the catch-all."""


class Unavailable(HTTPError):
    """A dependency (broker, registry, model) is not there yet; the client may retry."""


# The table: every error answer's status comes from here, nowhere else.
STATUS: Mapping[type[HTTPError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    ContentTooLarge: 413,
    Unprocessable: 422,
    TooManyRequests: 429,
    Failed: 500,
    Unavailable: 503,
}

# What a service maps its own domain exceptions to: one of the classes above (the detail is
# the exception's text) or a function that builds the answer from the exception.
Translation = type[HTTPError] | Callable[[Exception], HTTPError]


def status_of(error: HTTPError) -> int:
    """The status the table gives `error` (its nearest listed class)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _as_http_error(exc: Exception, translate: Translation) -> HTTPError:
    if isinstance(translate, type):
        return translate(str(exc))
    return translate(exc)


def _answer(error: HTTPError) -> JSONResponse:
    return JSONResponse(
        {"detail": error.detail}, status_code=status_of(error), headers=error.headers
    )


def install_error_handlers(app: FastAPI, domain: Mapping[type[Exception], Translation]) -> None:
    """Answer `HTTPError`s and the service's `domain` exceptions by the table; anything else
    is a 500 whose detail names the exception type (the server logs the traceback)."""

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPError)
        return _answer(exc)

    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        # registered for the domain classes only: one of them is in the exception's MRO
        translate = next(domain[cls] for cls in type(exc).__mro__ if cls in domain)
        return _answer(_as_http_error(exc, translate))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so uvicorn logs the traceback as well
        log.error("500 on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        detail = f"internal server error ({type(exc).__name__}); the service log has the details"
        return JSONResponse({"detail": detail}, status_code=500)

    app.add_exception_handler(HTTPError, http_error)
    for cls in domain:
        app.add_exception_handler(cls, domain_error)
    app.add_exception_handler(Exception, unexpected)


# -- the OpenAPI side --------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """What every error answer carries: what was wrong."""

    detail: Any


Responses = dict[int | str, dict[str, Any]]
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def error_response(
    error: type[HTTPError],
    description: str,
    model: type[BaseModel] = ErrorBody,
    *,
    inline_json: bool = False,
    **extra: Any,
) -> Responses:
    """The `responses=` entry documenting that a route answers `error` (status from the table).

    `inline_json` is for a route whose `response_class` is not JSON (an HTML page): FastAPI
    would document `model` under that media type, while the error is JSON."""
    if inline_json:
        schema = model.model_json_schema()
        content = {"application/json": {"schema": schema}}
        return {STATUS[error]: {"description": description, "content": content, **extra}}
    return {STATUS[error]: {"model": model, "description": description, **extra}}
