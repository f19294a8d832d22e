"""Run a service's ASGI app the same way everywhere: uvicorn on BIND_HOST and the port of the
service's own `<NAME>_ADDR`."""

from __future__ import annotations

from typing import Any

import uvicorn

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
