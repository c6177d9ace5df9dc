"""Web service figures: start-up to ready, health probes under load while 20 checks hang, memory over 100 runs.

    python -m tests.benchmarks.bench_web [--seconds 10] [--runs 100]

Each server is a real `python -m app serve` on a free loopback port; targets are local (stall servers, closed
ports). The load comes from wrk (Debian package `wrk`). Prints figures and the budgets they are held to.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from tests.servers import StallServer, free_port
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME, ServerProcess, tcp_target, write_targets

STARTS = 7
STALLED = 20


def server(directory: Path, targets: list[dict[str, object]]) -> ServerProcess:
    env = {
        "TESTPOD_CONFIG": str(write_targets(directory, targets)),
        "TESTPOD_AUTH_PASSWORD": PASSWORD,
        "TESTPOD_SECRET_KEY": SECRET_KEY,
        "TESTPOD_RUN_ON_START": "false",
    }
    return ServerProcess(env=env, log_path=directory / "server.log")


def stalled_tls(servers: list[StallServer], timeout: float) -> list[dict[str, object]]:
    """TLS targets whose servers accept and never answer: each check hangs in its handshake."""
    return [
        {"name": f"stalled-{i}", "kind": "tls", "host": "127.0.0.1", "port": s.port, "timeout": timeout}
        for i, s in enumerate(servers)
    ]


def client_for(process: ServerProcess) -> httpx.Client:
    answer = httpx.post(f"{process.url}/api/token", data={"username": USERNAME, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    return httpx.Client(base_url=process.url, headers=headers, timeout=10)


def start_up(directory: Path) -> None:
    stalls = [StallServer() for _ in range(STALLED)]
    try:
        times, cpu = [], []
        for _ in range(STARTS):
            process = server(directory, stalled_tls(stalls, 60))
            times.append(process.start())
            assert process.process is not None
            used = psutil.Process(process.process.pid).cpu_times()
            cpu.append(used.user + used.system)
            process.stop()
    finally:
        for stall in stalls:
            stall.close()
    print(
        f"start to /health/ready 200 ({STALLED} targets configured): median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s, max {max(times):.3f} s over {STARTS} starts (budget 1.5 s); "
        f"CPU used by then: median {statistics.median(cpu):.3f} s"
    )


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float, int]:
    """Requests/s, p99 latency in ms and non-2xx count from `wrk --latency` (one thread: the server needs a core)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, p99, int(errors.group(1)) if errors else 0


def probes_under_load(directory: Path, seconds: int) -> None:
    stalls = [StallServer() for _ in range(STALLED)]
    process = server(directory, stalled_tls(stalls, 600))
    process.start()
    try:
        with client_for(process) as client:
            client.post("/api/runs")
            time.sleep(0.5)
            pending = len(client.get("/api/results").json()["pending"])
            for path, connections in (("/health/live", 8), ("/health/ready", 8), ("/health/live", 32)):
                rate, p99, errors = wrk(f"{process.url}{path}", seconds, connections)
                print(
                    f"{path} under wrk ({connections} connections, {seconds} s) with {pending} checks hung mid-run: "
                    f"{rate:,.0f} req/s, p99 {p99:.2f} ms, {errors} errors (budget ≥ 1,000 req/s, p99 ≤ 20 ms)"
                )
            still = len(client.get("/api/results").json()["pending"])
            print(f"  checks still hung after the load: {still} of {STALLED}")
    finally:
        process.stop()
        for stall in stalls:
            stall.close()


def memory(directory: Path, runs: int) -> None:
    stall = StallServer()
    targets = [tcp_target(f"open-{i}", stall.port) for i in range(10)]
    targets += [tcp_target(f"closed-{i}", free_port()) for i in range(10)]
    process = server(directory, targets)
    process.start()
    assert process.process is not None
    pid = psutil.Process(process.process.pid)
    try:
        time.sleep(0.5)
        idle = pid.memory_info().rss
        with client_for(process) as client:

            def one_run() -> None:
                started = client.post("/api/runs").json()["started_at"]
                while True:
                    run = client.get("/api/results").json()
                    if run["started_at"] == started and run["verdict"] is not None:
                        return
                    time.sleep(0.005)

            one_run()
            warm = pid.memory_info().rss
            began = time.perf_counter()
            for _ in range(runs):
                one_run()
            took = time.perf_counter() - began
            client.get("/metrics")
            after = pid.memory_info().rss
    finally:
        process.stop()
        stall.close()
    mb = 1024 * 1024
    print(f"RSS idle: {idle / mb:.1f} MB (budget 120 MB)")
    print(
        f"RSS after 1 run: {warm / mb:.1f} MB; after {runs} more runs of {len(targets)} targets "
        f"({took:.1f} s): {after / mb:.1f} MB, growth {100 * (after - warm) / warm:+.1f}% (budget +10%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_web")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk load")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start_up(directory)
        probes_under_load(directory, args.seconds)
        memory(directory, args.runs)


if __name__ == "__main__":
    main()
