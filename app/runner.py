"""Runs checks: each target in its own thread under a hard timeout, up to `concurrency` at once, one run at a time.

Blocking SDKs cannot be cancelled, so every check runs in a daemon thread of its own and the event loop
only waits for it until the deadline. A check that overruns is reported as failed at the stage it was in,
on time; its thread ends soon after because each SDK is given the remaining time as its own timeout.
A slot is given back when the thread really ends, not at the deadline, so the threads alive never exceed the
cap; a target waiting for a slot is pending, and its timeout counts from the moment it gets one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from app.checks.base import CheckFailed, Probe, Status, Target
from app.checks.net import NO_ANSWER
from app.results import Result, Run
from app.sanitization import clean_remote_text, redact, scrubbing

DEFAULT_CONCURRENCY = 32  # checks at once: each is a thread, and a pod has a CPU or two
OnResult = Callable[[Result], None]
log = logging.getLogger("app.runs")


async def check_target(target: Target, slots: asyncio.Semaphore | None = None) -> Result:
    """Check one target under its timeout, once it has one of `slots`. Never raises: every outcome is a Result."""
    if slots is not None:
        await slots.acquire()
    timeout = target.effective_timeout
    probe = Probe(deadline=time.monotonic() + timeout)
    secrets = target.secrets()
    outcome = _in_thread(target.name, target.check, probe, secrets)
    if slots is not None:
        outcome.add_done_callback(lambda _: slots.release())  # when the thread ends, even past its deadline
    done, _ = await asyncio.wait({outcome}, timeout=timeout)
    if done:
        failure = _failure_of(outcome.exception(), probe, secrets)
    else:  # only the runner's own deadline is a timeout; a TimeoutError the check raised is its own failure
        # what the thread raises after this no longer matters: retrieve it, so asyncio never prints it unredacted
        outcome.add_done_callback(lambda late: late.cancelled() or late.exception())
        step = probe.step_name or probe.stage.value
        failure = CheckFailed(probe.stage, f"{step} did not finish within {timeout:g} s", NO_ANSWER[probe.stage])
    return _result(target, probe, failure, secrets)


async def run_targets(
    targets: Sequence[Target],
    *,
    strict: bool = False,
    on_result: OnResult | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Run:
    """Check every target, up to `concurrency` at once; `on_result` sees each result as it lands."""
    started = datetime.now().astimezone()
    slots = asyncio.Semaphore(concurrency)

    async def one(target: Target) -> Result:
        result = await check_target(target, slots)
        if on_result is not None:
            on_result(result)
        return result

    results = await asyncio.gather(*(one(t) for t in targets))
    return Run(started_at=started, finished_at=datetime.now().astimezone(), strict=strict, results=results, pending=[])


class Runner:
    """Holds the configured targets and the latest run. Callers that ask while a run is in flight join it."""

    def __init__(
        self, targets: Sequence[Target], *, strict: bool = False, concurrency: int = DEFAULT_CONCURRENCY
    ) -> None:
        self.targets = {t.name: t for t in targets}
        self.strict = strict
        self.concurrency = concurrency
        self.state = 0  # changes whenever what current() returns changes: renderings are kept per state
        self.latest: Run | None = None
        self._task: asyncio.Task[Run] | None = None
        self._started: datetime | None = None
        self._selected: list[str] = []
        self._landed: dict[str, Result] = {}

    def select(self, names: Sequence[str] | None) -> list[Target]:
        """The targets named (all when None). Raises KeyError naming any unknown name."""
        if not names:
            return list(self.targets.values())
        unknown = [n for n in names if n not in self.targets]
        if unknown:
            raise KeyError(", ".join(unknown))
        return [self.targets[n] for n in dict.fromkeys(names)]

    def start(self, names: Sequence[str] | None = None) -> asyncio.Task[Run]:
        """Start a run in the background, or return the one in flight."""
        if self._task is not None and not self._task.done():
            return self._task
        selected = self.select(names)
        self._started = datetime.now().astimezone()
        self._selected = [t.name for t in selected]
        self._landed = {}
        self._task = asyncio.create_task(self._run(selected))
        self.state += 1
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def current(self) -> Run | None:
        """The run in flight with the results landed so far, else the latest finished run."""
        if not self.running or self._started is None:
            return self.latest
        order = {name: i for i, name in enumerate(self._selected)}
        landed = sorted(self._landed.values(), key=lambda r: order[r.name])
        pending = [n for n in self._selected if n not in self._landed]
        return Run(started_at=self._started, finished_at=None, strict=self.strict, results=landed, pending=pending)

    async def _run(self, targets: list[Target]) -> Run:
        try:
            run = await run_targets(targets, strict=self.strict, on_result=self._land, concurrency=self.concurrency)
            run = run.model_copy(update={"started_at": self._started or run.started_at})
            self.latest = run
            return run
        finally:
            self.state += 1

    def _land(self, result: Result) -> None:
        self._landed[result.name] = result
        self.state += 1


def warm_up(targets: Sequence[Target]) -> None:
    """Do ahead what the first run would otherwise do while the event loop answers probes, holding the GIL: import
    what the configured kinds import lazily (`module`, or `module:function` to call too), and load the system
    trust store the TLS steps share. Called in a thread before the server listens."""
    from app.checks.tls import client_context

    for entry in dict.fromkeys(name for target in targets for name in target.warm_imports):
        module, _, function = entry.partition(":")
        try:
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
        except Exception as error:  # the check itself will then fail and say why; warming is only a head start
            log.warning("could not prepare %s ahead of the first run: %s", entry, type(error).__name__)
    if targets:
        client_context()


def _failure_of(error: BaseException | None, probe: Probe, secrets: list[str]) -> CheckFailed | None:
    if error is None or isinstance(error, CheckFailed):
        return error
    # an SDK error the check does not classify: report it, never crash the run
    with scrubbing(secrets):
        message = clean_remote_text(str(error))
    return CheckFailed(
        probe.stage,
        f"{type(error).__name__}: {message}",
        f"unexpected error during the {probe.stage.value} stage; the cause is the library's own message",
    )


def _in_thread(name: str, function: Callable[[Probe], None], probe: Probe, secrets: list[str]) -> asyncio.Future[None]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(None)

    def work() -> None:
        error: BaseException | None = None
        try:
            with scrubbing(secrets):  # remote text is scrubbed before the check cuts it to length
                function(probe)
        except BaseException as raised:  # handed to the event loop, which decides what it means
            error = raised
        # the loop may have closed while this check overran its timeout: nobody waits for it any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=work, name=f"check-{name}", daemon=True).start()
    return future


def _result(target: Target, probe: Probe, failure: CheckFailed | None, secrets: list[str]) -> Result:
    def scrub(text: str) -> str:
        return redact(text, secrets)

    def scrub_value(value: Any) -> Any:
        return scrub(value) if isinstance(value, str) else value

    steps = list(probe.steps)
    if failure is not None and not (steps and steps[-1].status == Status.FAILED):
        steps.append(probe.hung_step(failure.cause))
    if failure is not None:
        status, stage, cause, remediation = Status.FAILED, failure.stage, failure.cause, failure.remediation
    elif probe.warnings:
        status, stage = Status.WARNING, probe.warnings[0][0]
        cause = "; ".join(w[1] for w in probe.warnings)
        remediation = "; ".join(w[2] for w in probe.warnings)
    else:
        status, stage, cause, remediation = Status.PASSED, None, "", ""
    duration = round((datetime.now().astimezone() - probe.started_at).total_seconds() * 1000, 2)
    return Result(
        name=target.name,
        kind=target.kind,
        required=target.required,
        description=target.description,
        status=status,
        stage=stage,
        cause=scrub(cause),
        remediation=scrub(remediation),
        duration_ms=duration,
        started_at=probe.started_at,
        steps=[s.model_copy(update={"detail": scrub(s.detail)}) for s in steps],
        facts={key: scrub_value(value) for key, value in dict(probe.facts).items()},
    )
