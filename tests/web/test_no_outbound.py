"""The pod makes no outbound call of its own, beyond its targets (what an air-gapped cluster needs).

A whole life of the server (start, first run, login, dashboard, API, reports, metrics, gate tokens, stop) runs
under strace, which records every connect(), sendto() and sendmsg() of every thread at the system-call level
(a C library's socket as well as Python's). Its targets are all on 127.0.0.1, so every address in the trace must
be loopback or a local socket.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.checks.http_server import HttpServer, Reply
from tests.servers import ClosedPort, StallServer
from tests.web.helpers import PASSWORD, SECRET_KEY, ServerProcess, bearer, login, tcp_target, write_targets

pytestmark = pytest.mark.slow

IPV4 = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
IPV6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"')
FAMILY = re.compile(r"sa_family=(AF_\w+)")
LOCAL_FAMILIES = {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK", "AF_UNSPEC"}  # the IP ones are checked below


def test_the_pod_calls_nothing_but_its_targets(tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: .ci/run installs it (Debian's strace)", pytrace=False)
    stall, closed = StallServer(), ClosedPort()
    trace = tmp_path / "trace"
    with HttpServer(lambda _: Reply(200, b"ok")) as web:
        targets = [
            tcp_target("hung", stall.port, timeout=1),
            tcp_target("closed", closed.port),
            {"name": "web", "kind": "http", "url": f"{web.url}/status"},
        ]
        server = ServerProcess(
            env={
                "TESTPOD_CONFIG": str(write_targets(tmp_path, targets)),
                "TESTPOD_AUTH_PASSWORD": PASSWORD,
                "TESTPOD_SECRET_KEY": SECRET_KEY,
            },
            log_path=tmp_path / "server.log",
            wrapper=["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace)],
        )
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                auth = bearer(client)
                assert client.post("/api/runs", headers=auth).status_code == 202
                csrf = login(client)
                for path in ("/", "/gate-tokens", "/metrics", "/api/results", "/targets/web"):
                    assert client.get(path, headers=auth).status_code == 200, path
                for report in ("json", "html", "junit"):
                    assert client.get("/api/report", params={"format": report}, headers=auth).status_code == 200
                made = client.post("/api/gate-tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf})
                assert made.status_code == 201, made.text
        finally:
            server.stop()
            stall.close()
            closed.close()

    lines = trace.read_text().splitlines()
    addresses = [
        (family, address, int(port))
        for family, pattern in (("v4", IPV4), ("v6", IPV6))
        for line in lines
        for port, address in pattern.findall(line)
    ]
    outbound = [a for a in addresses if not (a[1].startswith("127.") or a[1] in ("::1", "::ffff:127.0.0.1"))]
    assert not outbound, f"calls beyond loopback: {outbound}"
    families = {family for line in lines for family in FAMILY.findall(line)}
    assert families <= LOCAL_FAMILIES, families
    # the trace saw the server's own calls: the checks' connections to their targets are in it
    ports = {port for _, _, port in addresses}
    assert {stall.port, closed.port, web.port} <= ports, sorted(ports)
