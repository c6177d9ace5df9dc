"""Scheduled runs: every `interval` seconds, give or take a random jitter, start a run of every target.

A scheduled run goes through the runner's single flight, so it joins a run already in flight instead of
overlapping it, and a target is never checked twice at once. The next run is timed from the end of the
last one, so a run longer than the interval never makes runs pile up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

log = logging.getLogger("app.schedule")

Sleep = Callable[[float], Awaitable[None]]
StartRun = Callable[[], Awaitable[object]]


class Schedule:
    def __init__(
        self,
        interval: float,
        start_run: StartRun,
        *,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval, self.jitter = interval, jitter
        self.start_run = start_run
        self.clock, self.sleep = clock, sleep
        self.rng = random.Random()  # noqa: S311 - spreading load, not a secret; tests seed it
        self.next_at: float | None = None  # epoch seconds of the next scheduled run

    def delay(self) -> float:
        """The wait before the next run: the interval ± up to `jitter` of it."""
        spread = self.interval * self.jitter
        return max(0.0, self.interval + self.rng.uniform(-spread, spread))

    @property
    def next_run(self) -> datetime | None:
        return None if self.next_at is None else datetime.fromtimestamp(self.next_at, UTC)

    async def loop(self, runs: int | None = None) -> None:
        """Run forever (or `runs` times, for tests)."""
        done = 0
        while runs is None or done < runs:
            wait = self.delay()
            self.next_at = self.clock() + wait
            await self.sleep(wait)
            try:
                await self.start_run()
            except Exception as error:  # a crashed run must not end the schedule; the runner logs it too
                log.error("scheduled run failed: %s: %s", type(error).__name__, error)
            done += 1
        self.next_at = None
