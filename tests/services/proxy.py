"""A real forward proxy for the tests: Debian's tinyproxy on 127.0.0.1 (CONNECT, Basic auth, a destination filter).

The session fixture `forward_proxy` starts two: `open_url` takes anyone, `auth_url` wants USER / PASSWORD
(407 without them). Both refuse CONNECT to FILTERED_HOST with "403 Filtered", and answer a destination they
cannot reach with "500 Unable to connect".
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.services import unavailable

USER, PASSWORD = "egress", "pr0xy-s3cret"
FILTERED_HOST = "blocked.example"


@dataclass(frozen=True)
class ForwardProxy:
    open_url: str  # http://127.0.0.1:P, no credentials
    auth_url: str  # http://127.0.0.1:P, wants USER / PASSWORD

    @property
    def auth_url_with_credentials(self) -> str:
        return self.auth_url.replace("http://", f"http://{USER}:{PASSWORD}@")


def install() -> None:
    """tinyproxy from Debian (.ci/run installs it with the other packages)."""
    if shutil.which("tinyproxy") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "tinyproxy"], check=True)


def _start(directory: Path, auth: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # tinyproxy drops to nobody and reads the filter file after that
    (directory / "filter").write_text(f"{FILTERED_HOST}\n")
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 15",
        "MaxClients 50",
        "LogLevel Connect",
        f'Filter "{directory / "filter"}"',
        "FilterType fnmatch",
        "FilterURLs Off",
    ]
    if auth:
        lines.append(f"BasicAuth {USER} {PASSWORD}")
    config = directory / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n")
    for path in (config, directory / "filter"):
        path.chmod(0o644)
    log = (directory / "tinyproxy.log").open("wb")
    process = subprocess.Popen(["tinyproxy", "-d", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"tinyproxy did not listen on {port}: {(directory / 'tinyproxy.log').read_text()[-500:]}")


@pytest.fixture(scope="session")
def forward_proxy() -> Iterator[ForwardProxy]:
    if shutil.which("tinyproxy") is None:
        unavailable("tinyproxy", "not installed (apt-get install tinyproxy)")
    # not under pytest's temporary directory: that is private to root, and tinyproxy reads its filter as nobody
    base = Path(tempfile.mkdtemp(prefix="tinyproxy-"))
    base.chmod(0o755)
    started: list[subprocess.Popen[bytes]] = []
    try:
        open_process, open_port = _start(base / "open", auth=False)
        started.append(open_process)
        auth_process, auth_port = _start(base / "auth", auth=True)
        started.append(auth_process)
    except RuntimeError as error:
        for process in started:
            process.kill()
        unavailable("tinyproxy", str(error))
    try:
        yield ForwardProxy(open_url=f"http://127.0.0.1:{open_port}", auth_url=f"http://127.0.0.1:{auth_port}")
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
