"""What every request works with: one runner over the validated targets, the pod's health and its metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from app.checks.base import Target
from app.config import ConfigError
from app.health import PodHealth
from app.metrics import Metrics
from app.results import Run
from app.runner import Runner
from app.sanitization import scrub_logs

log = logging.getLogger("app.runs")


class Renderings:
    """What the API serves, rendered once per state of the run (off the event loop) and shared by every request.

    Twenty clients polling results, reports and metrics cost one rendering per change, not one per request.
    """

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Hashable, asyncio.Future[bytes]]] = {}

    async def get(self, state: Hashable, name: str, render: Callable[[], bytes]) -> bytes:
        kept = self._kept.get(name)
        if kept is None or kept[0] != state:  # the first asker renders; the others await the same future
            rendering = asyncio.ensure_future(asyncio.to_thread(render))
            rendering.add_done_callback(lambda done: self._forget_failed(name, done))
            self._kept[name] = kept = (state, rendering)
        return await asyncio.shield(kept[1])

    def _forget_failed(self, name: str, done: asyncio.Future[bytes]) -> None:
        if (done.cancelled() or done.exception() is not None) and self._kept.get(name, (None, None))[1] is done:
            del self._kept[name]


METRICS_MAX_AGE = 1.0  # seconds; the process figures in /metrics may be this old, Prometheus scrapes far less often


@dataclass
class Pod:
    runner: Runner
    health: PodHealth
    metrics: Metrics
    reload: Callable[[], list[Target]] | None = None  # reads the targets file again, secrets as they are now
    renderings: Renderings = field(default_factory=Renderings, repr=False)
    _observed: asyncio.Task[Run] | None = field(default=None, repr=False)

    def refresh(self) -> None:
        """Load the targets again before a run, so a rotated secret is what the run uses.

        A file or secret that no longer resolves makes the pod not ready, naming the problem, until it does again.
        """
        if self.reload is None or self.runner.running:
            return
        try:
            targets = self.reload()
        except ConfigError as error:
            if self.health.config_error is None:
                log.error("the targets no longer load; the pod is not ready until they do:\n%s", error)
            self.health.config_error = str(error)
            return
        scrub_logs(secret for target in targets for secret in target.secrets())  # a rotated secret is one more
        self.runner.targets = {t.name: t for t in targets}
        self.health.config_error = None

    async def rendered(self, name: str, render: Callable[[Run], bytes]) -> tuple[Run, bytes] | None:
        """The current run and `render(run)`, rendered once for this state of the run; None before any run."""
        state = self.runner.state
        run = self.runner.current()
        if run is None:
            return None
        return run, await self.renderings.get(state, name, lambda: render(run))

    async def metrics_text(self) -> bytes:
        state = (self.runner.state, self.metrics.observed, int(time.monotonic() / METRICS_MAX_AGE))
        return await self.renderings.get(state, "metrics", self.metrics.render)

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
