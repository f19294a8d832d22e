"""The monitoring HTTP routes (port 8002): health, metrics, and the drift reports.

GET /healthz /readyz /metrics
GET /v1/status                 window, reference, last result, retraining state
GET /v1/reports?limit=50       saved window reports, newest first
GET /v1/reports/{name}         one report (Evidently HTML)

The handlers reach the app's `Monitor` through `request.app.state.monitor` (set by the
app factory), so the router holds no state of its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.monitoring.monitor import Monitor

router = APIRouter()


def get_monitor(request: Request) -> Monitor:
    """The monitor of the app serving this request."""
    monitor: Monitor = request.app.state.monitor
    return monitor


MonitorDep = Annotated[Monitor, Depends(get_monitor)]


@router.get("/healthz", responses={200: {"description": "The process serves requests."}})
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"description": "Consuming predictions and labels."},
        503: {"description": "Not consuming yet; `reason` says why."},
    },
)
def readyz(monitor: MonitorDep) -> JSONResponse:
    if monitor.consuming:
        return JSONResponse({"status": "ready"})
    return JSONResponse(
        {
            "status": "not ready",
            "reason": "not consuming yet: broker unreachable or joining "
            f"the group ({monitor.settings.kafka_bootstrap_servers})",
        },
        status_code=503,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
)
def metrics(monitor: MonitorDep) -> Response:
    return Response(generate_latest(monitor.metrics.registry), media_type=CONTENT_TYPE_LATEST)


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
        404: {"description": "No report of that name; GET /v1/reports lists them."},
    },
)
def get_report(name: str, monitor: MonitorDep) -> FileResponse:
    path = monitor.reports.path(name)
    if path is None:
        raise HTTPException(
            status_code=404, detail=f"no report named {name!r}; GET /v1/reports lists them"
        )
    return FileResponse(path, media_type="text/html")
