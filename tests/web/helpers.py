"""Shared by the web tests and the web benchmark: app and server-process builders, a black-holed port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from tests.servers import free_port

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
USERNAME = "admin"
PASSWORD = "test-pod-login-4f9d1c"
SECRET_KEY = "unit-signing-key-7Hq2Zr9WmX4pLs8TbV1cN6yD3"

MakeClient = Callable[..., "TestClient"]  # the make_client fixture: targets, base_url, settings overrides


def write_targets(directory: Path, targets: list[dict[str, Any]], name: str = "targets.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump({"targets": targets}), encoding="utf-8")
    return path


def tcp_target(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "tcp", "host": "127.0.0.1", "port": port, **extra}


class BlackholePort:
    """A port whose SYNs are dropped, so a TCP connect hangs until its timeout, like a firewalled service.

    A listener with a backlog of 0 that never accepts: once its accept queue holds one connection, the
    kernel drops further SYNs. Everything stays on 127.0.0.1.
    """

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)

    def close(self) -> None:
        self._filler.close()
        self._listener.close()


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
LOGIN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: httpx.Client, username: str = USERNAME, password: str = PASSWORD) -> str:
    """Log in through the form like a browser; returns the session's CSRF token from the dashboard."""
    form = client.get("/login")
    token = LOGIN_FIELD.search(form.text)
    assert token, form.text
    answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token.group(1)})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    dashboard = client.get("/")
    csrf = CSRF_META.search(dashboard.text)
    assert csrf, dashboard.text
    return csrf.group(1)


def bearer(client: httpx.Client, password: str = PASSWORD) -> dict[str, str]:
    answer = client.post("/api/token", data={"username": USERNAME, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def wait_for_verdict(client: httpx.Client, headers: dict[str, str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get("/api/results", headers=headers)
        if answer.status_code == 200 and answer.json()["verdict"] is not None:
            return dict(answer.json())
        time.sleep(0.05)
    raise AssertionError(f"no verdict within {timeout} s")


@dataclass
class ServerProcess:
    """`python -m app serve` on a free loopback port, its stderr kept in a file."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    wrapper: list[str] = field(default_factory=list)  # a command the server runs under, e.g. strace's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_for: str = "/health/ready") -> float:
        """Start and wait until `wait_for` answers 200; returns the seconds it took."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESTPOD_") or k.startswith("TESTPOD_TEST_")}
        env.update({"PORT": str(self.port), "TESTPOD_HOST": "127.0.0.1", **self.env})
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", "app", "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - started < 20:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}{wait_for}", timeout=0.5).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        self.stop()
        raise AssertionError(f"{wait_for} not 200 within 20 s:\n{self.log()}")

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.kill(self._server_pid(self.process.pid), signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def _server_pid(self, pid: int) -> int:
        """The server's own process: under a wrapper, the wrapper's child (the wrapper ends when it does)."""
        if not self.wrapper:
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")
