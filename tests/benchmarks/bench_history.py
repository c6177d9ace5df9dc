"""Continuous-readiness figures: memory of a full history, the cost of recording a run (in memory and in the
embedded database), the longest event-loop stall while runs are recorded with the embedded database, and the
readiness gate's answer time over a real server process.

    python -m tests.benchmarks.bench_history

Only loopback servers are used; every loop is bounded. Prints figures, asserts nothing.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from app.checks.base import Stage, Status
from app.history import History
from app.results import Result, Run
from app.store import Store
from tests.servers import stall_server
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME, ServerProcess, tcp_target, write_targets

T0 = datetime(2026, 1, 1).astimezone()


def a_run(index: int, targets: int) -> Run:
    at = T0 + timedelta(minutes=index)
    results = [
        Result(
            name=f"target-{t}",
            kind="postgres",
            required=True,
            status=Status.FAILED if (index + t) % 7 == 0 else Status.PASSED,
            stage=Stage.AUTH if (index + t) % 7 == 0 else None,
            cause="password authentication failed for user airia" if (index + t) % 7 == 0 else "",
            remediation="",
            duration_ms=12.5,
            started_at=at,
            steps=[],
            facts={},
        )
        for t in range(targets)
    ]
    return Run(started_at=at, finished_at=at + timedelta(seconds=2), strict=False, results=results, pending=[])


def memory(max_runs: int, targets: int) -> None:
    runs = [a_run(i, targets) for i in range(max_runs * 2)]
    gc.collect()
    tracemalloc.start()
    history = History(max_runs=max_runs, max_age=timedelta(days=3650))
    for run in runs:
        history.record(run)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"history of {max_runs} runs x {targets} targets: {held / 1024:.0f} KiB ({held / max_runs:.0f} B per run)")


def record_cost(targets: int, count: int = 300) -> None:
    runs = [a_run(i, targets) for i in range(count)]
    in_memory = History(max_runs=200)
    start = time.perf_counter()
    for run in runs:
        in_memory.record(run)
    memory_ms = (time.perf_counter() - start) / count * 1000
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "history.sqlite3")
        persisted = History(max_runs=200, store=store)
        timings = []
        for run in runs:
            start = time.perf_counter()
            persisted.record(run)
            timings.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        store.close()  # applies what is still queued
        drain_ms = (time.perf_counter() - start) * 1000
        store = Store(Path(directory) / "history.sqlite3")
        size = (Path(directory) / "history.sqlite3").stat().st_size
        start = time.perf_counter()
        History(max_runs=200, store=store)
        load_ms = (time.perf_counter() - start) * 1000
        store.close()
    print(
        f"record a run of {targets} targets: {memory_ms:.3f} ms in memory; with sqlite, on the caller's thread, "
        f"median {statistics.median(timings):.2f} ms, p95 {sorted(timings)[int(len(timings) * 0.95)]:.2f} ms "
        f"({count} back to back; the writer finished {drain_ms:.0f} ms after the last); "
        f"reload 200 runs at start-up {load_ms:.1f} ms; file {size / 1024:.0f} KiB"
    )


def loop_stalls(targets: int, count: int = 300, rounds: int = 3, spacing: float = 0.005, tick: float = 0.001) -> None:
    """Record runs on the event loop, as the pod does when a run finishes, while a ticker measures how late
    the loop wakes it: the lateness is what every other request and probe waits. The same with the history in
    memory only is the floor (the machine's own scheduling noise is in both)."""
    runs = [a_run(i, targets) for i in range(count)]
    gc.collect()
    gc.freeze()  # the runs prepared here are not the pod's: a full collection scanning them would stall the loop

    async def measure(store: Store | None) -> tuple[list[float], list[float]]:
        history = History(max_runs=200, store=store)
        stalls: list[float] = []
        calls: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                start = time.perf_counter()
                await asyncio.sleep(tick)
                stalls.append(max(0.0, time.perf_counter() - start - tick) * 1000)

        ticking = asyncio.create_task(ticker())
        for run in runs:
            start = time.perf_counter()
            history.record(run)
            calls.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(spacing)
        done.set()
        await ticking
        return stalls, calls

    for label in ("memory only", "sqlite"):
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as directory:
                store = Store(Path(directory) / "history.sqlite3") if label == "sqlite" else None
                stalls, calls = asyncio.run(measure(store))
                start = time.perf_counter()
                if store is not None:
                    store.close()  # applies what is still queued
                close_ms = (time.perf_counter() - start) * 1000
            print(
                f"event loop, {count} runs of {targets} targets recorded, {label}: record() median "
                f"{statistics.median(calls):.3f} ms, p95 {sorted(calls)[int(count * 0.95)]:.3f} ms, "
                f"max {max(calls):.2f} ms; loop lateness p99 {sorted(stalls)[int(len(stalls) * 0.99)]:.2f} ms, "
                f"longest stall {max(stalls):.2f} ms; close {close_ms:.1f} ms"
            )
    gc.unfreeze()


def gate_latency(requests: int = 300) -> None:
    with tempfile.TemporaryDirectory() as directory, stall_server() as stall:
        targets = [tcp_target(f"t{i}", stall.port) for i in range(20)]
        env = {
            "TESTPOD_CONFIG": str(write_targets(Path(directory), targets)),
            "TESTPOD_AUTH_PASSWORD": PASSWORD,
            "TESTPOD_SECRET_KEY": SECRET_KEY,
        }
        server = ServerProcess(env=env, log_path=Path(directory) / "server.log")
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                token = client.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).json()
                auth = {"Authorization": f"Bearer {token['access_token']}"}
                gate = client.post("/api/gate-tokens", json={"name": "bench"}, headers=auth).json()["token"]
                headers = {"Authorization": f"Bearer {gate}"}
                client.get("/api/readiness-gate", params={"wait": 20}, headers=headers)
                timings = []
                for _ in range(requests):
                    start = time.perf_counter()
                    client.get("/api/readiness-gate", headers=headers)
                    timings.append((time.perf_counter() - start) * 1000)
        finally:
            server.stop()
    print(
        f"readiness gate over 20 targets, {requests} requests: median {statistics.median(timings):.2f} ms, "
        f"p95 {sorted(timings)[int(requests * 0.95)]:.2f} ms"
    )


if __name__ == "__main__":
    memory(200, 20)
    memory(2000, 20)
    record_cost(20)
    loop_stalls(20)
    gate_latency()
