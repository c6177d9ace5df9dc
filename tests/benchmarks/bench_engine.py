"""Engine figures: a run of 50 stalled targets against its timeout, and CLI start-up.

    python -m tests.benchmarks.bench_engine

Only loopback servers are used; every loop is bounded. Prints figures, asserts nothing (see the issue notes).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.checks.tls import TlsTarget
from app.runner import run_targets
from tests.servers import StallServer, stall_server

REPO = Path(__file__).resolve().parents[2]
REPEATS = 7


def stalled_run(count: int = 50, timeout: float = 1.0) -> None:
    servers = [StallServer() for _ in range(count)]
    try:
        targets = [
            TlsTarget(name=f"stalled-{i}", kind="tls", host="127.0.0.1", port=s.port, timeout=timeout)
            for i, s in enumerate(servers)
        ]
        start = time.perf_counter()
        run = asyncio.run(run_targets(targets))
        wall = time.perf_counter() - start
    finally:
        for server in servers:
            server.close()
    stages = {r.stage for r in run.results}
    print(
        f"{count} tls targets on stall servers, timeout {timeout:g} s: wall {wall:.3f} s "
        f"(ratio {wall / timeout:.2f}); all failed: {run.counts.failed == count}; stages: {sorted(map(str, stages))}"
    )


def wall_times(argv: list[str]) -> list[float]:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, capture_output=True, check=False, timeout=60)
        times.append(time.perf_counter() - start)
    return times


def cli_start_up() -> None:
    help_times = wall_times([sys.executable, "-m", "app", "check", "--help"])
    with stall_server() as a, stall_server() as b, stall_server() as c, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "targets.yaml"
        config.write_text(
            "targets:\n"
            + "".join(
                f"  - {{name: t{i}, kind: tcp, host: 127.0.0.1, port: {s.port}}}\n" for i, s in enumerate((a, b, c))
            )
        )
        run_times = wall_times([sys.executable, "-m", "app", "check", "--config", str(config)])
    for label, times in (("check --help", help_times), ("check of 3 local tcp targets", run_times)):
        print(f"{label}: median {statistics.median(times):.3f} s, max {max(times):.3f} s over {REPEATS} runs")


if __name__ == "__main__":
    stalled_run()
    cli_start_up()
