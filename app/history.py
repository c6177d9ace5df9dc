"""What the pod remembers of past runs: the last runs (bounded by count and age) and, per target, its latest
result, when its status last changed, since when it has been failing and whether it is flapping.

Everything lives in memory; with a `Store` (app.store) every change is also written to an embedded database,
so the history survives a restart. A target's state is kept apart from the bounded list of runs, so "failing
since" stays right even after the run where it began has been pruned.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from app.checks.base import Stage, Status
from app.results import Result, Run, Verdict

if TYPE_CHECKING:
    from app.store import Store

Clock = Callable[[], datetime]


class Mark(BaseModel):
    """One target in one run: what a history strip shows."""

    model_config = ConfigDict(frozen=True)

    status: Status
    stage: Stage | None
    cause: str


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    started_at: datetime
    finished_at: datetime
    verdict: Verdict
    marks: dict[str, Mark]


class TargetState(BaseModel):
    """A target's memory across runs. `changes` holds the instants of recent status changes (flap window)."""

    model_config = ConfigDict(frozen=True)

    result: Result
    checked_at: datetime  # when the run that produced `result` finished
    changed_at: datetime  # the last status change, or when the target was first checked
    failing_since: datetime | None
    changes: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class Change:
    """A target whose status differs from its previous run's."""

    name: str
    before: Status | None  # None: never checked before
    after: Status
    result: Result


@dataclass(frozen=True)
class Flapping:
    changes: int  # status changes within `window`
    window: timedelta


class History:
    def __init__(
        self,
        *,
        max_runs: int = 200,
        max_age: timedelta = timedelta(days=7),
        flap: Flapping = Flapping(3, timedelta(hours=1)),
        store: Store | None = None,
        targets: Sequence[str] | None = None,
    ) -> None:
        self.max_runs, self.max_age = max_runs, max_age
        self.flap = flap
        self.store = store
        self.runs: deque[RunRecord] = deque(maxlen=max_runs)
        self.states: dict[str, TargetState] = {}
        if store is not None:
            known = set(targets) if targets is not None else None
            self.runs.extend(store.load_runs(max_runs))
            self.states = {n: s for n, s in store.load_states().items() if known is None or n in known}
        self._next_id = (self.runs[-1].id + 1) if self.runs else 1

    @property
    def recorded(self) -> int:
        """How many runs have been recorded (pruned ones included): changes with every run recorded."""
        return self._next_id - 1

    def record(self, run: Run) -> list[Change]:
        """Remember a finished run; returns the targets whose status changed."""
        finished = run.finished_at or run.started_at
        record = RunRecord(
            id=self._next_id,
            started_at=run.started_at,
            finished_at=finished,
            verdict=run.verdict or Verdict.NOT_READY,
            marks={r.name: Mark(status=r.status, stage=r.stage, cause=r.cause) for r in run.results},
        )
        self._next_id += 1
        self.runs.append(record)
        while self.runs and self.runs[0].finished_at < finished - self.max_age:
            self.runs.popleft()
        changes = [change for r in run.results if (change := self._update(r, finished)) is not None]
        if self.store is not None:
            self.store.save_run(record, [self.states[r.name] for r in run.results])
            self.store.prune_runs(self.runs[0].id if self.runs else record.id + 1)
        return changes

    def _update(self, result: Result, at: datetime) -> Change | None:
        previous = self.states.get(result.name)
        horizon = at - self.flap.window
        if previous is None:
            failing = at if result.status == Status.FAILED else None
            self.states[result.name] = TargetState(result=result, checked_at=at, changed_at=at, failing_since=failing)
            return Change(result.name, None, result.status, result)
        changed = previous.result.status != result.status
        recent = tuple(t for t in previous.changes if t > horizon) + ((at,) if changed else ())
        if result.status != Status.FAILED:
            failing = None
        else:
            failing = previous.failing_since if previous.result.status == Status.FAILED else at
        self.states[result.name] = TargetState(
            result=result,
            checked_at=at,
            changed_at=at if changed else previous.changed_at,
            failing_since=failing,
            changes=recent,
        )
        return Change(result.name, previous.result.status, result.status, result) if changed else None

    def flapping(self, name: str, now: datetime) -> bool:
        state = self.states.get(name)
        if state is None:
            return False
        return sum(t > now - self.flap.window for t in state.changes) >= self.flap.changes

    def recent(self, name: str, limit: int = 30) -> list[tuple[RunRecord, Mark]]:
        """The target's last `limit` runs, oldest first."""
        found: list[tuple[RunRecord, Mark]] = []
        for record in reversed(self.runs):
            mark = record.marks.get(name)
            if mark is not None:
                found.append((record, mark))
                if len(found) == limit:
                    break
        found.reverse()
        return found


def verdict_of(states: Sequence[TargetState], strict: bool) -> Verdict:
    """The verdict the latest result of each target adds up to."""
    blocking = {Status.FAILED, Status.WARNING} if strict else {Status.FAILED}
    failed = any(s.result.required and s.result.status in blocking for s in states)
    return Verdict.NOT_READY if failed else Verdict.READY
