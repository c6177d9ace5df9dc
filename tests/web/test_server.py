"""The real server process: `python -m app serve` on a free loopback port, as the pod and a newcomer run it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import StallServer
from tests.web.helpers import (
    PASSWORD,
    SECRET_KEY,
    USERNAME,
    BlackholePort,
    ServerProcess,
    login,
    tcp_target,
    wait_for_verdict,
    write_targets,
)

pytestmark = pytest.mark.slow

BASE_ENV = {"TESTPOD_AUTH_PASSWORD": PASSWORD, "TESTPOD_SECRET_KEY": SECRET_KEY, "TESTPOD_RUN_ON_START": "false"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(env={}, log_path=tmp_path / "server.log")
    yield process
    process.stop()


def test_start_log_in_run_read_and_stop(
    server: ServerProcess, tmp_path: Path, stall: StallServer, closed_port: int
) -> None:
    config = write_targets(tmp_path, [tcp_target("open", stall.port), tcp_target("closed", closed_port)])
    server.env.update({**BASE_ENV, "TESTPOD_CONFIG": str(config)})
    server.start()
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=5) as client:
        csrf = login(client)
        assert client.post("/api/runs", headers={"X-CSRF-Token": csrf}).status_code == 202
        run = wait_for_verdict(client, {})
    assert run["verdict"] == "not_ready"
    assert {r["name"]: r["status"] for r in run["results"]} == {"open": "passed", "closed": "failed"}
    assert server.stop() == -signal.SIGTERM  # uvicorn shuts down cleanly, then re-raises the signal it caught
    log = server.log()
    assert "Application shutdown complete" in log
    assert "loaded 2 targets" in log
    assert "run finished: not ready, 1 passed, 0 warning, 1 failed of 2" in log
    assert "failed closed at connect: cannot connect to 127.0.0.1" in log
    assert PASSWORD not in log and SECRET_KEY not in log


def test_without_a_password_one_is_generated_and_printed_once(server: ServerProcess) -> None:
    server.env.update({"TESTPOD_SECRET_KEY": SECRET_KEY})
    server.start()
    log = server.log()
    assert log.count("password: ") == 1
    password = log.split("password: ")[1].split()[0]
    with httpx.Client(base_url=server.url, timeout=5) as client:
        answer = client.post("/api/token", data={"username": USERNAME, "password": password})
        assert answer.status_code == 200
    assert server.log().count(password) == 1


def test_refuses_to_start_with_a_short_secret_key(server: ServerProcess) -> None:
    server.env.update({"TESTPOD_AUTH_PASSWORD": PASSWORD, "TESTPOD_SECRET_KEY": "short"})
    with pytest.raises(AssertionError, match="server exited with 2"):
        server.start()
    assert "TESTPOD_SECRET_KEY is shorter than 32 characters" in server.log()
    assert "Traceback" not in server.log()


def test_a_broken_targets_file_keeps_it_live_not_ready_and_logged(server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "targets.yaml"
    config.write_text("targets:\n  - name: db\n    kind: tcp\n    host: 127.0.0.1\n    port: seventy\n")
    server.env.update({**BASE_ENV, "TESTPOD_CONFIG": str(config)})
    server.start(wait_for="/health/live")
    for _ in range(3):
        assert httpx.get(f"{server.url}/health/ready").status_code == 503
        time.sleep(0.1)
    assert "targets[0].port: Input should be a valid integer" in server.log()


def test_health_probes_stay_fast_while_twenty_targets_hang(server: ServerProcess, tmp_path: Path) -> None:
    holes = [BlackholePort() for _ in range(20)]
    try:
        targets = [tcp_target(f"hung-{i}", hole.port, timeout=60) for i, hole in enumerate(holes)]
        server.env.update({**BASE_ENV, "TESTPOD_CONFIG": str(write_targets(tmp_path, targets))})
        server.start()
        with httpx.Client(base_url=server.url, timeout=5) as client:
            token = client.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).json()
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            assert client.post("/api/runs", headers=auth).status_code == 202
            time.sleep(0.3)  # every check is now blocked in connect()
            run = client.get("/api/results", headers=auth).json()
            assert len(run["pending"]) == 20

            slowest = 0.0
            for _ in range(50):
                for path in ("/health/live", "/health/ready", "/health/startup"):
                    started = time.perf_counter()
                    answer = client.get(path)
                    slowest = max(slowest, time.perf_counter() - started)
                    assert answer.status_code == 200
            # the checks hang for 60 s: a probe that waited on them would take seconds (latency figures: bench_web)
            assert slowest < 1.0, f"slowest probe took {slowest * 1000:.1f} ms"
            assert len(client.get("/api/results", headers=auth).json()["pending"]) == 20  # still hung
    finally:
        for hole in holes:
            hole.close()


@pytest.mark.parametrize("trusted", [True, False])
def test_cookies_are_secure_behind_a_trusted_tls_proxy_only(server: ServerProcess, trusted: bool) -> None:
    server.env.update(BASE_ENV)
    if trusted:
        server.env["TESTPOD_FORWARDED_ALLOW_IPS"] = "127.0.0.1"
    server.start()
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    with httpx.Client(base_url=server.url, headers=proxy, timeout=5) as client:
        form = client.get("/login")
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        # the login cookie is Secure now, so it only travels over the proxy's https: hand it back ourselves
        # (double submit: the cookie holds the same token as the form)
        assert "; secure" in form.headers["set-cookie"].lower() or not trusted
        cookie = {"Cookie": f"testpod_login={token}"}
        answer = client.post(
            "/login", data={"username": USERNAME, "password": PASSWORD, "csrf_token": token}, headers=cookie
        )
    assert answer.status_code == 303
    session = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("testpod_session="))
    assert ("; secure" in session.lower()) is trusted
    assert ("strict-transport-security" in answer.headers) is trusted
