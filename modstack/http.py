"""Build and run a service's ASGI app the same way everywhere: a FastAPI app whose lifespan
starts and stops the service's worker, served by uvicorn on BIND_HOST and the port of the
service's own `<NAME>_ADDR`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from modstack.settings import CommonSettings, port_of


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


def service_app(
    title: str,
    summary: str,
    start: Callable[[], object],
    stop: Callable[[], object],
    **fastapi_options: Any,
) -> FastAPI:
    """A FastAPI app (version "1") whose lifespan calls `start` on startup and `stop`, in a
    worker thread, on shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        start()
        yield
        await run_in_threadpool(stop)

    return FastAPI(title=title, summary=summary, version="1", lifespan=lifespan, **fastapi_options)
