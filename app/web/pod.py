"""What every request works with: one runner over the validated targets, the pod's health and its metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.alerts import Alerts
from app.health import PodHealth
from app.history import History, verdict_of
from app.metrics import Metrics
from app.results import Run, Verdict
from app.runner import Runner
from app.schedule import Schedule
from app.tokens import GateTokens

log = logging.getLogger("app.runs")


@dataclass
class Pod:
    runner: Runner
    health: PodHealth
    metrics: Metrics
    history: History = field(default_factory=History)
    gate_tokens: GateTokens = field(default_factory=GateTokens)
    schedule: Schedule | None = None
    alerts: Alerts | None = None
    _observed: asyncio.Task[Run] | None = field(default=None, repr=False)

    def start_run(self, names: Sequence[str] | None = None) -> asyncio.Task[Run]:
        """Start a run, or join the one in flight; each run is recorded in the metrics and the log once."""
        task = self.runner.start(names)
        if task is not self._observed:
            self._observed = task
            task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Run]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # the runner turns every check failure into a result; this is a bug
            log.error("run crashed: %s: %s", type(error).__name__, error)
            return
        run = task.result()
        self._remember(run)
        self.metrics.observe(run)
        counts = run.counts
        log.info(
            "run finished: %s, %d passed, %d warning, %d failed of %d in %.2f s",
            (run.verdict or "unknown").replace("_", " "),
            counts.passed,
            counts.warning,
            counts.failed,
            counts.total,
            (run.duration_ms or 0) / 1000,
        )
        for result in run.results:
            if result.status != "passed":
                optional = "" if result.required else " (optional)"
                log.info("  %s %s%s at %s: %s", result.status, result.name, optional, result.stage, result.cause)

    def _remember(self, run: Run) -> None:
        """Add the run to the history, and tell the alert channels what changed."""
        strict = self.runner.strict
        before = verdict_of(list(self.history.states.values()), strict) if self.history.states else None
        changes = self.history.record(run)
        if self.alerts is None:
            return
        states = [s for name, s in self.history.states.items() if name in self.runner.targets]
        failing = [s for s in states if verdict_of([s], strict) == Verdict.NOT_READY]
        self.alerts.after_run(changes, before, verdict_of(states, strict), failing)
