"""The readiness gate: one GET that answers 200 when the targets are ready and 503 when not, for curl, CI jobs
and GitOps hooks; and the admin's routes that create, list and revoke the gate tokens it accepts.

The gate reads each target's latest result from the history, so a run of one target never hides the others.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.checks.base import Stage, Status
from app.history import TargetState, verdict_of
from app.results import Verdict
from app.tokens import NAME_RULE, GateToken, TokenName, TokenNotSaved, TooManyTokens
from app.web.deps import CurrentUser, GateReader, PodDep
from app.web.errors import problems
from app.web.pod import Pod

router = APIRouter(prefix="/api", tags=["gate"])


class Failing(BaseModel):
    name: str
    kind: str
    status: Status
    stage: Stage | None
    cause: str


class GateAnswer(BaseModel):
    ready: bool
    verdict: Verdict | None  # of the results the gate looked at; None when a target was never checked
    stale: bool
    reason: str
    checked_at: datetime | None  # the oldest of those results
    age_seconds: float | None
    strict: bool
    targets: list[str]
    failing: list[Failing]  # required targets that block readiness, with where and why


class GateOptions(BaseModel):
    """The gate's query parameters."""

    target: list[str] | None = Field(None, max_length=100, description="only these targets (repeatable)")
    max_age: float = Field(300, gt=0, le=7 * 24 * 3600, description="seconds a result stays fresh")
    wait: float = Field(
        0, ge=0, le=300, description="seconds to wait for a new run when results are stale; 0: answer now"
    )
    strict: bool | None = Field(None, description="warnings block too; default: the pod's setting")


@router.get("/readiness-gate", response_model=GateAnswer, responses={503: {"model": GateAnswer}, **problems(401, 404)})
async def readiness_gate(pod: PodDep, reader: GateReader, options: Annotated[GateOptions, Query()]) -> JSONResponse:
    """200 when every (chosen) required target last passed within `max_age` seconds, else 503 saying why."""
    if options.wait:
        pod.refresh()  # a run the gate starts uses the targets file and its secrets as they are now
    if pod.health.config_error is not None:
        raise HTTPException(503, "the targets file is invalid, so nothing can run; see the dashboard")
    if not pod.runner.targets:
        raise HTTPException(503, "no targets are configured")
    names = _names(pod, options.target)
    if options.strict is None:
        options = options.model_copy(update={"strict": pod.runner.strict})
    asked, deadline = time.time(), time.monotonic() + options.wait
    # a run in flight may not cover the stale targets: join it, then start one that does; never more
    for _ in range(2):
        stale, remaining = _stale(pod, names, options.max_age, asked), deadline - time.monotonic()
        if not stale or remaining <= 0:
            break
        done, _ = await asyncio.wait({pod.start_run(stale)}, timeout=remaining)
        if not done:
            break
    return _answer(pod, names, _stale(pod, names, options.max_age, asked), options)


def _names(pod: Pod, chosen: list[str] | None) -> list[str]:
    if not chosen:
        return list(pod.runner.targets)
    unknown = [n for n in chosen if n not in pod.runner.targets]
    if unknown:
        known = ", ".join(pod.runner.targets)
        raise HTTPException(404, f"no target named {', '.join(map(repr, unknown))}; configured targets: {known}")
    return list(dict.fromkeys(chosen))


def _stale(pod: Pod, names: list[str], max_age: float, asked: float) -> list[str]:
    """The targets never checked, or last checked more than `max_age` s ago and not since the request came in."""
    now = time.time()
    states = pod.history.states

    def fresh(name: str) -> bool:
        checked = states[name].checked_at.timestamp()
        return now - checked <= max_age or checked >= asked

    return [n for n in names if n not in states or not fresh(n)]


def _answer(pod: Pod, names: list[str], stale: list[str], options: GateOptions) -> JSONResponse:
    strict, max_age, waited = bool(options.strict), options.max_age, options.wait > 0
    states: list[TargetState] = [pod.history.states[n] for n in names if n in pod.history.states]
    never = [n for n in names if n not in pod.history.states]
    verdict = None if never else verdict_of(states, strict)
    blocking = {Status.FAILED, Status.WARNING} if strict else {Status.FAILED}
    failing = [
        Failing.model_validate(s.result.model_dump(include={"name", "kind", "status", "stage", "cause"}))
        for s in states
        if s.result.required and s.result.status in blocking
    ]
    oldest = min((s.checked_at for s in states), default=None)
    hint = "the new run did not finish in time" if waited else "pass wait=SECONDS to start a run and wait for it"
    if never:
        reason = f"never checked: {', '.join(never)} ({hint})"
    elif stale:
        reason = f"results older than {max_age:g} s: {', '.join(stale)} ({hint})"
    elif failing:
        reason = f"{len(failing)} required target(s) not ready: {', '.join(f.name for f in failing)}"
    else:
        reason = "every required target is ready"
    ready = not stale and verdict == Verdict.READY
    answer = GateAnswer(
        ready=ready,
        verdict=verdict,
        stale=bool(stale),
        reason=reason,
        checked_at=oldest,
        age_seconds=round(time.time() - oldest.timestamp(), 3) if oldest else None,
        strict=strict,
        targets=names,
        failing=failing,
    )
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(answer.model_dump(mode="json"), status_code=code, headers={"Cache-Control": "no-store"})


class NewGateToken(BaseModel):
    name: TokenName = Field(description=NAME_RULE)


class CreatedGateToken(GateToken):
    token: str  # shown this once; only its digest is kept


@router.get("/gate-tokens", response_model=list[GateToken], responses=problems(401))
async def list_gate_tokens(pod: PodDep, user: CurrentUser) -> list[GateToken]:
    """The gate tokens (names and ids; the tokens themselves are never shown again)."""
    return pod.gate_tokens.list()


@router.post(
    "/gate-tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedGateToken,
    responses=problems(400, 401, 403, 409),
)
async def create_gate_token(pod: PodDep, user: CurrentUser, body: NewGateToken) -> Any:
    """A token that reads the readiness gate and nothing else: put it in a CI secret."""
    try:
        token, secret = await pod.gate_tokens.create(body.name)
    except TooManyTokens as error:
        raise HTTPException(409, str(error)) from None
    except TokenNotSaved as error:
        raise HTTPException(503, str(error)) from None
    return CreatedGateToken(**token.model_dump(), token=secret)


@router.delete("/gate-tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 404))
async def revoke_gate_token(pod: PodDep, user: CurrentUser, token_id: str) -> None:
    """Revoke a gate token: it stops working at once."""
    try:
        revoked = await pod.gate_tokens.revoke(token_id)
    except TokenNotSaved as error:
        raise HTTPException(503, str(error)) from None
    if not revoked:
        raise HTTPException(404, f"no gate token with id {token_id!r}")
