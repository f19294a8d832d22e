"""The monitoring HTTP routes (port 8002): health, metrics, and the drift reports.

GET /healthz /readyz /metrics
GET /v1/status                 window, reference, last result, retraining state
GET /v1/reports?limit=50       saved window reports, newest first
GET /v1/reports/{name}         one report (Evidently HTML)

The handlers reach the app's `Monitor` through `request.app.state.monitor` (set by the
app factory), so the router holds no state of its own. Health, readiness and metrics come from
`modstack.http.probe_router`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from modstack.http import Check, Readiness, probe_router
from modstack.http_errors import NotFound, error_response
from services.monitoring.monitor import Monitor

router = APIRouter()


def get_monitor(request: Request) -> Monitor:
    """The monitor of the app serving this request."""
    monitor: Monitor = request.app.state.monitor
    return monitor


MonitorDep = Annotated[Monitor, Depends(get_monitor)]


async def readiness(request: Request) -> Readiness:
    """Ready once the consumer reads predictions and labels."""
    monitor = get_monitor(request)
    if monitor.consuming:
        consumer = Check(True, "consuming predictions and labels")
    else:
        consumer = Check(
            False,
            "not consuming yet: broker unreachable or joining "
            f"the group ({monitor.settings.kafka_bootstrap_servers})",
        )
    return Readiness({"consumer": consumer})


router.include_router(
    probe_router(
        ready=readiness,
        metrics=lambda request: get_monitor(request).metrics.registry,
        ready_means="Consuming predictions and labels.",
    )
)


@router.get("/v1/status")
def status(monitor: MonitorDep) -> dict[str, Any]:
    return monitor.status()


@router.get("/v1/reports")
def list_reports(
    monitor: MonitorDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many, newest first")] = 50,
) -> dict[str, Any]:
    items = monitor.reports.listing(limit)
    for item in items:
        item["url"] = f"/v1/reports/{item['name']}"
    return {"directory": str(monitor.reports.directory.resolve()), "reports": items}


@router.get(
    "/v1/reports/{name}",
    response_class=HTMLResponse,
    responses={
        200: {"description": "The Evidently report.", "content": {"text/html": {}}},
        **error_response(
            NotFound, "No report of that name; GET /v1/reports lists them.", inline_json=True
        ),
    },
)
def get_report(name: str, monitor: MonitorDep) -> FileResponse:
    path = monitor.reports.path(name)
    if path is None:
        raise NotFound(f"no report named {name!r}; GET /v1/reports lists them")
    return FileResponse(path, media_type="text/html")
