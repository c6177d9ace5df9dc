"""The history of the targets: a JSON view for the dashboard's strips and scripts, and a page per target."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from app.checks.base import Stage, Status
from app.history import History
from app.web.deps import CurrentUser, PageUser, PodDep
from app.web.errors import problems
from app.web.pages import templates
from app.web.pod import Pod

router = APIRouter(tags=["history"])
STRIP_RUNS = 30  # the dashboard's strip
PAGE_RUNS = 500  # a target's page: at most what the history holds


class RunMark(BaseModel):
    run: int
    finished_at: datetime
    status: Status
    stage: Stage | None
    cause: str


class TargetHistory(BaseModel):
    name: str
    kind: str
    required: bool
    status: Status | None  # None: never checked
    checked_at: datetime | None
    changed_at: datetime | None  # the last status change (or the first check)
    failing_since: datetime | None
    flapping: bool
    runs: list[RunMark]  # oldest first


class HistoryDocument(BaseModel):
    next_run_at: datetime | None  # the next scheduled run; None without a schedule
    flap_changes: int
    flap_window_minutes: float
    targets: list[TargetHistory]


def target_history(pod: Pod, name: str, limit: int) -> TargetHistory:
    target = pod.runner.targets[name]
    history: History = pod.history
    state = history.states.get(name)
    now = datetime.now().astimezone()
    return TargetHistory(
        name=name,
        kind=target.kind,
        required=target.required,
        status=state.result.status if state else None,
        checked_at=state.checked_at if state else None,
        changed_at=state.changed_at if state else None,
        failing_since=state.failing_since if state else None,
        flapping=history.flapping(name, now),
        runs=[
            RunMark(run=r.id, finished_at=r.finished_at, status=m.status, stage=m.stage, cause=m.cause)
            for r, m in history.recent(name, limit)
        ],
    )


def history_document(pod: Pod, names: list[str] | None = None, limit: int = STRIP_RUNS) -> HistoryDocument:
    return HistoryDocument(
        next_run_at=pod.schedule.next_run if pod.schedule else None,
        flap_changes=pod.history.flap.changes,
        flap_window_minutes=pod.history.flap.window.total_seconds() / 60,
        targets=[target_history(pod, n, limit) for n in (names if names is not None else pod.runner.targets)],
    )


@router.get("/api/history", response_model=HistoryDocument, responses=problems(401))
async def all_history(pod: PodDep, user: CurrentUser) -> HistoryDocument:
    """Every target's recent runs, last change, failing-since and flapping; and the next scheduled run."""
    return history_document(pod)


@router.get("/api/targets/{name}/history", response_model=TargetHistory, responses=problems(401, 404))
async def one_history(pod: PodDep, user: CurrentUser, name: str) -> TargetHistory:
    """One target's runs, as many as the history holds."""
    return target_history(pod, _known(pod, name), PAGE_RUNS)


@router.get("/targets/{name}", response_class=HTMLResponse, include_in_schema=False)
async def target_page(request: Request, pod: PodDep, user: PageUser, name: str) -> Response:
    history = target_history(pod, _known(pod, name), PAGE_RUNS)
    state = pod.history.states.get(name)
    return templates.TemplateResponse(
        request,
        "target.html",
        {
            "user": user.name,
            "csrf": user.csrf,
            "target": pod.runner.targets[name],
            "history": history,
            "runs": list(reversed(history.runs)),  # newest first
            "latest": state.result if state else None,
            "flap": pod.history.flap,
        },
    )


def _known(pod: Pod, name: str) -> str:
    if name not in pod.runner.targets:
        raise HTTPException(404, f"no target named {name[:63]!r}; configured targets: {', '.join(pod.runner.targets)}")
    return name
