"""The outcome of checking one target (Result) and of checking a set of targets once (Run).

Both are frozen and hold only JSON types, so every output channel can serialise them as they are.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

from app.checks.base import Scalar, Stage, Status, Step


class Verdict(StrEnum):
    READY = "ready"
    NOT_READY = "not_ready"


class Result(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    required: bool
    status: Status
    stage: Stage | None
    cause: str
    remediation: str
    duration_ms: float
    started_at: datetime
    steps: list[Step]
    facts: dict[str, Scalar]
    description: str = ""


class Counts(BaseModel):
    model_config = ConfigDict(frozen=True)

    total: int
    passed: int
    warning: int
    failed: int
    pending: int


class Run(BaseModel):
    """One run. While it is in flight `pending` names the targets still running and `verdict` is null."""

    model_config = ConfigDict(frozen=True)

    started_at: datetime
    finished_at: datetime | None
    strict: bool
    results: list[Result]
    pending: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> Verdict | None:
        if self.pending:
            return None
        blocking = {Status.FAILED, Status.WARNING} if self.strict else {Status.FAILED}
        failed = any(r.required and r.status in blocking for r in self.results)
        return Verdict.NOT_READY if failed else Verdict.READY

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> Counts:
        def count(status: Status) -> int:
            return sum(r.status == status for r in self.results)

        return Counts(
            total=len(self.results) + len(self.pending),
            passed=count(Status.PASSED),
            warning=count(Status.WARNING),
            failed=count(Status.FAILED),
            pending=len(self.pending),
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_ms(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds() * 1000, 2)
