"""The schedule under a fake clock (no test sleeps through an interval); tests/web/test_history.py runs one for real."""

from __future__ import annotations

import asyncio
import itertools
import random

from app.checks.tcp import TcpTarget
from app.runner import Runner
from app.schedule import Schedule
from tests.servers import StallServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_runs_every_interval_with_jitter_inside_its_bounds() -> None:
    clock = FakeClock()
    started: list[float] = []

    async def start_run() -> None:
        started.append(clock.now)

    schedule = Schedule(60, start_run, jitter=0.1, clock=clock.time, sleep=clock.sleep)
    schedule.rng = random.Random(7)
    await schedule.loop(runs=50)
    assert len(started) == 50
    assert all(54 <= wait <= 66 for wait in clock.slept)
    assert len({round(w, 6) for w in clock.slept}) > 40  # jittered, not a fixed beat
    assert abs(started[-1] - 1_000_000.0 - sum(clock.slept)) < 1e-6
    assert schedule.next_at is None


async def test_next_run_is_known_while_waiting() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        await gate.wait()

    async def start_run() -> None:
        return None

    schedule = Schedule(30, start_run, jitter=0, clock=clock.time, sleep=sleep)
    task = asyncio.create_task(schedule.loop(runs=1))
    await asyncio.sleep(0)
    assert schedule.next_at == 1_000_000.0 + 30  # set before the clock moved
    assert schedule.next_run is not None and schedule.next_run.timestamp() == 1_000_030.0
    gate.set()
    await task


async def test_the_next_wait_starts_when_the_run_ends_so_runs_never_overlap() -> None:
    clock = FakeClock()
    spans: list[tuple[float, float]] = []

    async def slow_run() -> None:
        begin = clock.now
        await clock.sleep(90)  # longer than the interval
        spans.append((begin, clock.now))

    await Schedule(60, slow_run, jitter=0, clock=clock.time, sleep=clock.sleep).loop(runs=3)
    assert all(later[0] >= earlier[1] + 60 for earlier, later in itertools.pairwise(spans))


async def test_a_failing_run_does_not_end_the_schedule() -> None:
    clock = FakeClock()
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    await Schedule(10, broken, jitter=0, clock=clock.time, sleep=clock.sleep).loop(runs=3)
    assert calls == 3


async def test_a_scheduled_run_joins_the_run_in_flight(stall: StallServer) -> None:
    runner = Runner([TcpTarget(name="db", kind="tcp", host="127.0.0.1", port=stall.port)])
    clock = FakeClock()
    manual = runner.start()
    joined: list[object] = []

    async def start_run() -> None:
        task = runner.start()
        joined.append(task)
        await task

    await Schedule(5, start_run, jitter=0, clock=clock.time, sleep=clock.sleep).loop(runs=1)
    assert joined == [manual]  # the same task: one run, never two checks of a target at once
