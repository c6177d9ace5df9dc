"""`python -m app gate`: what a pipeline step or a hook Job pays for one answer, and how closely --timeout holds.

    python -m tests.benchmarks.bench_gate_cli

Starts the real server on 127.0.0.1 with one reachable target, creates a gate token, then runs the command as a
process REPEATS times against fresh results (start-up included), and against a server that accepts and never
answers with --timeout 1 and 3. Only loopback servers; every call is bounded. Prints figures, asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.servers import stall_server
from tests.web.helpers import PASSWORD, ROOT, SECRET_KEY, USERNAME, ServerProcess, tcp_target, write_targets

REPEATS = 10


def gate(url: str, token: str, *args: str) -> tuple[int, float]:
    env = {"PATH": os.environ.get("PATH", ""), "TESTPOD_GATE_TOKEN": token}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "app", "gate", "--url", url, *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    return done.returncode, time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as directory, stall_server() as target:
        env = {
            "TESTPOD_AUTH_PASSWORD": PASSWORD,
            "TESTPOD_SECRET_KEY": SECRET_KEY,
            "TESTPOD_RUN_ON_START": "false",
            "TESTPOD_CONFIG": str(write_targets(Path(directory), [tcp_target("db", target.port)])),
        }
        server = ServerProcess(env=env, log_path=Path(directory) / "server.log")
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                login = client.post("/api/token", data={"username": USERNAME, "password": PASSWORD})
                auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
                token = client.post("/api/gate-tokens", json={"name": "bench"}, headers=auth).json()["token"]
            code, first = gate(server.url, token, "--wait", "10")
            print(f"first call, the pod runs the target (--wait 10): exit {code} in {first * 1000:.0f} ms")
            times = []
            for _ in range(REPEATS):
                code, seconds = gate(server.url, token)
                assert code == 0
                times.append(seconds)
            print(
                f"fresh results, {REPEATS} processes: median {statistics.median(times) * 1000:.0f} ms, "
                f"max {max(times) * 1000:.0f} ms (interpreter start-up included)"
            )
        finally:
            server.stop()
    with stall_server() as silent:
        for timeout in ("1", "3"):
            code, seconds = gate(f"http://127.0.0.1:{silent.port}", "tpgate_x", "--timeout", timeout)
            print(f"silent server, --timeout {timeout}: exit {code} after {seconds:.2f} s")


if __name__ == "__main__":
    main()
