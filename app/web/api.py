"""The JSON API: tokens for scripts, the targets, runs, results and reports. Everything but /api/token needs a login."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response, status
from pydantic import BaseModel

from app import report
from app.auth import LoginRejected, LoginThrottled
from app.results import Run
from app.web.deps import AuthenticatorDep, CurrentUser, PodDep
from app.web.errors import problems
from app.web.pod import Pod

router = APIRouter(prefix="/api", tags=["api"])

TargetQuery = Annotated[str | None, Query(max_length=63, description="one target's name; all targets when omitted")]


class RunDocument(Run):
    """A run as `python -m app check --format json` prints it."""

    version: str


class TargetInfo(BaseModel):
    name: str
    kind: str
    required: bool
    description: str
    timeout: float


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


@router.post("/token", response_model=Token, responses=problems(401, 429))
def token(
    request: Request,
    authenticator: AuthenticatorDep,
    username: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=1024)],
) -> Token:
    """OAuth2 password grant: a Bearer token for scripts (`Authorization: Bearer <token>`)."""
    client = request.client.host if request.client else "unknown"
    try:
        authenticator.authenticate(username, password, client)
    except LoginThrottled as error:
        raise HTTPException(429, str(error), headers={"Retry-After": str(error.retry_after)}) from None
    except LoginRejected as error:
        raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None
    issued = authenticator.issue()
    return Token(access_token=issued.token, expires_in=issued.max_age)


@router.post("/token/revoke", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403))
async def revoke_token(authenticator: AuthenticatorDep, user: CurrentUser) -> Response:
    """Revoke the token this request authenticates with (a script's Bearer token, or the browser's session)."""
    authenticator.revoke(user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/targets", response_model=list[TargetInfo], responses=problems(401))
async def targets(pod: PodDep, user: CurrentUser) -> list[TargetInfo]:
    """The configured targets (names and kinds only: connection fields and secrets stay in the pod)."""
    return [
        TargetInfo(
            name=t.name, kind=t.kind, required=t.required, description=t.description, timeout=t.effective_timeout
        )
        for t in pod.runner.targets.values()
    ]


@router.post(
    "/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunDocument,
    responses=problems(401, 403, 404, 409),
)
async def start_run(pod: PodDep, user: CurrentUser, target: TargetQuery = None) -> Response:
    """Start a run of every target (or of one) and return at once; while a run is in flight, join it."""
    pod.refresh()
    if pod.health.config_error is not None:
        raise HTTPException(409, f"the targets file is invalid, so nothing can run:\n{pod.health.config_error}")
    if not pod.runner.targets:
        raise HTTPException(409, "no targets are configured: set `targets:` in the Helm values (or TESTPOD_CONFIG)")
    names = [_known(pod, target)] if target is not None else None
    pod.start_run(names)
    return _document(await _rendered(pod, "results", _to_json), status.HTTP_202_ACCEPTED)


@router.get("/results", response_model=RunDocument, responses=problems(401, 404))
async def results(pod: PodDep, user: CurrentUser, target: TargetQuery = None) -> Response:
    """The latest run; while one is in flight, the results landed so far and the targets still `pending`."""
    if target is None:
        return _document(await _rendered(pod, "results", _to_json))
    name = _known(pod, target)

    def one_target(run: Run) -> bytes:
        only = {"results": [r for r in run.results if r.name == name], "pending": [p for p in run.pending if p == name]}
        return _to_json(run.model_copy(update=only))

    return _document(await _rendered(pod, f"results:{name}", one_target))


ReportFormat = Literal["json", "junit", "html"]


@router.get(
    "/report",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}, "application/xml": {}, "text/html": {}}},
        **problems(401, 404),
    },
)
async def download_report(pod: PodDep, user: CurrentUser, format: ReportFormat = "html") -> Response:
    """The latest run as a file to attach to a support ticket (secrets are redacted from every result)."""
    renderer = report.RENDERERS[format]
    run, body = await _rendered_run(pod, f"report:{format}", lambda run: renderer.render(run).encode())
    stamp = (run.finished_at or run.started_at).strftime("%Y%m%d-%H%M%S")
    filename = f"airia-test-pod-report-{stamp}.{renderer.extension}"
    return Response(
        body, media_type=renderer.media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


def _to_json(run: Run) -> bytes:
    # the exact text `check --format json` prints, so scripts can treat both the same way
    return report.RENDERERS["json"].render(run).encode()


async def _rendered_run(pod: Pod, name: str, render: Callable[[Run], bytes]) -> tuple[Run, bytes]:
    rendered = await pod.rendered(name, render)
    if rendered is None:
        raise HTTPException(404, "no run yet: start one with POST /api/runs")
    return rendered


async def _rendered(pod: Pod, name: str, render: Callable[[Run], bytes]) -> bytes:
    return (await _rendered_run(pod, name, render))[1]


def _known(pod: Pod, name: str) -> str:
    if name not in pod.runner.targets:
        known = ", ".join(pod.runner.targets) or "none"
        raise HTTPException(404, f"no target named {name!r}; configured targets: {known}")
    return name


def _document(body: bytes, status_code: int = 200) -> Response:
    return Response(body, status_code=status_code, media_type="application/json")
