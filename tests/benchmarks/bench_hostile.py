"""Hostile input and a stalled event loop, measured: the figures issue "hostile input" asks for.

    python -m tests.benchmarks.bench_hostile [--seconds 10] [--only first-run,flood,threads,config]

- `/health/live` p50 / p99 / max while the first run of a fresh `python -m app serve` checks one target of
  every kind (the SDK imports of that run used to stall the loop);
- `/health/live` while 20 authenticated clients (wrk, loopback, bounded in time) flood `/api/results`, the HTML
  report and `/metrics`;
- the peak number of threads while 1,000 targets are checked (cap `max_concurrent_checks`, default 32);
- the time to reject each hostile targets file, in-process and as `python -m app check` (exit 2).

Every server is local (stall servers, closed ports, 127.0.0.1). Budgets: probe p99 ≤ 20 ms during the first run
on an idle machine; threads ≤ the cap + 10; every hostile file rejected in ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from app.checks.tls import TlsTarget
from app.config import MAX_CONFIG_BYTES, ConfigError, load_targets
from app.runner import DEFAULT_CONCURRENCY, run_targets
from tests.servers import StallServer, free_port
from tests.test_config_hostile import BILLION_LAUGHS
from tests.web.helpers import PASSWORD, ROOT, SECRET_KEY, USERNAME, ServerProcess, write_targets


def every_kind(stall: StallServer, closed: int) -> list[dict[str, object]]:
    """One target of each kind, against a server that never answers or a closed port, so each check fails fast."""
    local = "127.0.0.1"
    closed_url = f"http://{local}:{closed}"
    return [
        {"name": "tcp", "kind": "tcp", "host": local, "port": closed},
        {"name": "dns", "kind": "dns", "host": "localhost"},
        {"name": "tls", "kind": "tls", "host": local, "port": closed},
        {"name": "http", "kind": "http", "url": f"http://{local}:{closed}/"},
        {"name": "openai", "kind": "openai", "base_url": f"http://{local}:{closed}/v1", "api_key": "k", "model": "m"},
        {
            "name": "pg",
            "kind": "postgres",
            "host": local,
            "port": closed,
            "database": "d",
            "user": "u",
            "password": "p",
        },
        {"name": "cassandra", "kind": "cassandra", "contact_points": [local], "port": closed, "keyspace": "k"},
        {
            "name": "blob",
            "kind": "azure_blob",
            "account_name": "devstoreaccount1",
            "account_key": "a2V5",
            "endpoint": f"http://{local}:{closed}/devstoreaccount1",
            "container": "probe",
        },
        {
            "name": "bucket",
            "kind": "s3",
            "bucket": "probe",
            "endpoint_url": f"http://{local}:{stall.port}",
            "access_key_id": "a",
            "secret_access_key": "b",
            "timeout": 3,
        },
        {"name": "anthropic", "kind": "anthropic", "base_url": closed_url, "api_key": "k", "model": "m"},
        {"name": "gemini", "kind": "gemini", "base_url": closed_url, "api_key": "k", "model": "m"},
        {"name": "mistral", "kind": "mistral", "base_url": closed_url, "api_key": "k", "model": "m"},
        {"name": "di", "kind": "document_intelligence", "endpoint": closed_url, "api_key": "k"},
        {
            "name": "bedrock",
            "kind": "bedrock",
            "region": "us-east-1",
            "model": "m",
            "endpoint_url": f"http://{local}:{stall.port}",
            "access_key_id": "a",
            "secret_access_key": "b",
            "timeout": 3,
        },
    ]


def latencies(url: str, until: threading.Event, gap: float = 0.005) -> list[float]:
    """Sequential GETs of `url` until `until` is set; milliseconds each."""
    taken: list[float] = []
    with httpx.Client(timeout=10) as client:
        while not until.is_set():
            started = time.perf_counter()
            client.get(url)
            taken.append((time.perf_counter() - started) * 1000)
            time.sleep(gap)
    return taken


def summary(taken: list[float]) -> str:
    ordered = sorted(taken)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms over {len(ordered)}"


def probe_in_background(url: str, done: threading.Event) -> tuple[threading.Thread, list[float]]:
    measured: list[float] = []
    prober = threading.Thread(target=lambda: measured.extend(latencies(url, done)))
    prober.start()
    return prober, measured


def first_run(directory: Path, starts: int) -> None:
    stall, closed = StallServer(), free_port()
    try:
        for _ in range(starts):
            env = {
                "TESTPOD_CONFIG": str(write_targets(directory, every_kind(stall, closed))),
                "TESTPOD_AUTH_PASSWORD": PASSWORD,
                "TESTPOD_SECRET_KEY": SECRET_KEY,
            }
            process = ServerProcess(env=env, log_path=directory / "first-run.log")
            process.start(wait_for="/health/startup")  # the kubelet's liveness probes begin here
            assert httpx.get(f"{process.url}/health/ready").status_code == 200, process.log()
            done = threading.Event()
            prober, measured = probe_in_background(f"{process.url}/health/live", done)
            with httpx.Client(base_url=process.url, timeout=10) as client:
                token = client.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).json()
                auth = {"Authorization": f"Bearer {token['access_token']}"}
                while client.get("/api/results", headers=auth).json().get("finished_at") is None:
                    time.sleep(0.05)
            done.set()
            prober.join()
            process.stop()
            print(f"/health/live during the first run (every kind): {summary(measured)} (budget p99 ≤ 20 ms)")
    finally:
        stall.close()


def flood(directory: Path, seconds: int) -> None:
    stall = StallServer()
    targets = [{"name": f"t{i}", "kind": "tcp", "host": "127.0.0.1", "port": stall.port} for i in range(50)]
    env = {
        "TESTPOD_CONFIG": str(write_targets(directory, targets)),
        "TESTPOD_AUTH_PASSWORD": PASSWORD,
        "TESTPOD_SECRET_KEY": SECRET_KEY,
    }
    process = ServerProcess(env=env, log_path=directory / "flood.log")
    process.start()
    try:
        with httpx.Client(base_url=process.url, timeout=10) as client:
            token = client.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).json()
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            while client.get("/api/results", headers=auth).json().get("finished_at") is None:
                time.sleep(0.05)
        header = f"Authorization: Bearer {token['access_token']}"
        done = threading.Event()
        idle_done = threading.Event()
        timer = threading.Timer(2, idle_done.set)
        timer.start()
        quiet = latencies(f"{process.url}/health/live", idle_done)
        prober, measured = probe_in_background(f"{process.url}/health/live", done)
        paths = ["/api/results", "/api/report?format=html", "/metrics"]
        loads = [
            subprocess.Popen(
                ["wrk", "-t1", "-c7", f"-d{seconds}s", "-H", header, f"{process.url}{path}"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for path in paths
        ]
        outs = [load.communicate()[0] for load in loads]
        done.set()
        prober.join()
        rates = [line.split()[-1] for out in outs for line in out.splitlines() if line.startswith("Requests/sec")]
        print(f"/health/live idle: {summary(quiet)}")
        print(
            f"/health/live while 21 connections flood {', '.join(paths)} for {seconds} s "
            f"({' / '.join(rates)} req/s): {summary(measured)}"
        )
    finally:
        process.stop()
        stall.close()


def threads() -> None:
    stall = StallServer()  # every TLS handshake hangs until the check's own 0.5 s timeout
    targets = [TlsTarget(name=f"t{i}", kind="tls", host="127.0.0.1", port=stall.port, timeout=0.5) for i in range(1000)]
    baseline, peak = threading.active_count(), 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, threading.active_count())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    run = asyncio.run(run_targets(targets))
    took = time.perf_counter() - started
    done.set()
    sampler.join()
    stall.close()
    extra = peak - baseline - 1  # less the sampler itself
    print(
        f"1,000 tls targets that hang: peak {extra} check threads above the {baseline} already running, cap "
        f"{DEFAULT_CONCURRENCY} (budget ≤ cap + 10); run took {took:.2f} s, {run.counts.failed} timed out as expected"
    )


def loop_gaps(warm: bool) -> None:
    """In this (fresh) process: each kind's first check alone, and the longest the event loop went without a turn
    meanwhile, with or without the server's warm-up. Less noisy than probing over HTTP on a shared machine."""
    import yaml

    from app.config import parse_targets
    from app.runner import check_target, warm_up

    stall, closed = StallServer(), free_port()
    targets = parse_targets(yaml.safe_dump({"targets": every_kind(stall, closed)}), "bench", {})
    if warm:
        warm_up(targets)

    async def first_check(target: object) -> float:
        gaps: list[float] = []
        finished = asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not finished.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await check_target(target)  # type: ignore[arg-type]
        finished.set()
        await ticker
        return max(gaps) * 1000

    async def all_kinds() -> list[str]:
        return [f"{t.kind} {await first_check(t):.0f}" for t in targets]

    print(f"longest loop stall (ms) per kind's first check, {'with' if warm else 'without'} warm-up:")
    print("  " + ", ".join(asyncio.run(all_kinds())))
    stall.close()


def hostile_files(directory: Path) -> dict[str, str]:
    item = "  - {name: t, kind: tcp, host: h, port: 1}\n"
    return {
        "billion laughs": BILLION_LAUGHS,
        "deep flow nesting (20k)": "targets: " + "[" * 20_000 + "]" * 20_000 + "\n",
        "integer of 50k digits": "targets:\n  - {name: a, kind: tcp, host: h, port: " + "9" * 50_000 + "}\n",
        "duplicate key": "targets:\n  - {name: a, kind: tcp, host: h, port: 1, port: 2}\n",
        "recursive alias": "a: &a [*a]\n",
        "2,001 targets": "targets:\n" + item * 2001,
        "largest accepted size, all valid": "targets:\n"
        + "".join(
            f"  - {{name: t{i}, kind: tcp, host: 127.0.0.1, port: 80, description: {'d' * 90}}}\n"
            for i in range(MAX_CONFIG_BYTES // 150)
        )[: MAX_CONFIG_BYTES - 20].rsplit("\n", 1)[0]
        + "\n",
    }


def config(directory: Path) -> None:
    for name, text in hostile_files(directory).items():
        path = directory / "hostile.yaml"
        path.write_text(text)
        started = time.perf_counter()
        try:
            load_targets(path)
            outcome = "loaded"
        except ConfigError as error:
            outcome = str(error).splitlines()[0][:70]
        in_process = time.perf_counter() - started
        if outcome == "loaded":  # the CLI would go on to check them
            print(f"{name:34} {len(text):>8} B: {in_process * 1000:7.1f} ms in-process, loaded")
            continue
        started = time.perf_counter()
        code = subprocess.run(
            [sys.executable, "-m", "app", "check", "--config", str(path)], cwd=ROOT, capture_output=True, check=False
        ).returncode
        cli = time.perf_counter() - started
        print(f"{name:34} {len(text):>8} B: {in_process * 1000:7.1f} ms in-process, CLI exit {code} in {cli:.2f} s")
        print(f"{'':34} -> {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_hostile")
    parser.add_argument("--seconds", type=int, default=10, help="duration of the flood")
    parser.add_argument("--starts", type=int, default=3, help="fresh servers whose first run is measured")
    parser.add_argument("--only", default="config,threads,loop-gaps,first-run,flood")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    if not chosen & {"loop-gaps-warm", "loop-gaps-cold"}:
        print(f"machine: {os.cpu_count()} cores, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if "config" in chosen:
            config(directory)
        if "threads" in chosen:
            threads()
        for warm in (False, True):
            if "loop-gaps" in chosen:  # each in a fresh interpreter: the first run is what is measured
                flag = "loop-gaps-warm" if warm else "loop-gaps-cold"
                subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_hostile", "--only", flag], check=True)
            if f"loop-gaps-{'warm' if warm else 'cold'}" in chosen:
                loop_gaps(warm)
        if "first-run" in chosen:
            first_run(directory, args.starts)
        if "flood" in chosen:
            flood(directory, args.seconds)


if __name__ == "__main__":
    main()
