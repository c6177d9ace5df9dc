"""The pod's own status: probes for the kubelet, metrics for Prometheus, the version, the detailed health.

The probes and metrics are open (they hold no secrets and must work without a login); none of these
routes touches a target, so a hung customer service can never slow them down.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app import __version__
from app.metrics import CONTENT_TYPE
from app.web.deps import CurrentUser, PodDep
from app.web.errors import Problem

router = APIRouter(tags=["pod status"])


class ProbeState(BaseModel):
    status: str
    reason: str | None = None


class Version(BaseModel):
    version: str


@router.get("/health/live", response_model=ProbeState, response_model_exclude_none=True)
async def live() -> dict[str, str]:
    """Answers while the process serves requests."""
    return {"status": "alive"}


@router.get(
    "/health/ready", response_model=ProbeState, response_model_exclude_none=True, responses={503: {"model": ProbeState}}
)
async def ready(pod: PodDep) -> Any:
    """Ready once the config has loaded and validated; never depends on the targets' own health."""
    is_ready, body = pod.health.ready()
    return body if is_ready else JSONResponse(body, status_code=503)


@router.get(
    "/health/startup",
    response_model=ProbeState,
    response_model_exclude_none=True,
    responses={503: {"model": ProbeState}},
)
async def startup(pod: PodDep) -> Any:
    if not pod.health.started:
        return JSONResponse({"status": "starting"}, status_code=503)
    return {"status": "started"}


@router.get("/health", responses={401: {"model": Problem}})
def details(pod: PodDep, user: CurrentUser) -> dict[str, Any]:
    """Resource figures and run state (a thread of its own: disk figures can block on a slow volume)."""
    latest = pod.runner.latest
    return {
        **pod.health.details(),
        "targets_configured": len(pod.runner.targets),
        "run_in_progress": pod.runner.running,
        "last_run_finished_at": latest.finished_at.isoformat() if latest and latest.finished_at else None,
        "last_verdict": latest.verdict if latest else None,
    }


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(pod: PodDep) -> Response:
    """Prometheus text exposition."""
    return Response(await pod.metrics_text(), media_type=CONTENT_TYPE)


@router.get("/version", response_model=Version)
async def version() -> dict[str, str]:
    return {"version": __version__}
