"""The TLS-inspecting squid of the tests: how long it takes to start and stop, and what a check through it costs.

    python -m tests.benchmarks.bench_inspecting_proxy

Starts squid (tests/services/squid.py) STARTS times, timing until it accepts connections and until it has exited
after SIGTERM. Then, through one squid, runs the proxy kind (two bumped tunnels, without and with the CA bundle,
then a HEAD / through the second) and the http kind REPEATS times each, and the http kind directly for
comparison. Only loopback servers; every loop is bounded. Prints figures, asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app.checks.base import Status, Target
from app.checks.http import HttpTarget
from app.checks.proxy import ProxyTarget
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.http_server import HttpServer, Reply
from tests.services import squid

STARTS = 5
REPEATS = 20


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def show(label: str, seconds: list[float]) -> None:
    milliseconds = sorted(1000 * s for s in seconds)
    print(
        f"{label:<44} median {statistics.median(milliseconds):7.1f} ms   max {milliseconds[-1]:7.1f} ms"
        f"   (n={len(milliseconds)})"
    )


def checks(target: Target) -> list[float]:
    def once() -> None:
        result = run_check(target)
        if result.status != Status.PASSED:
            raise SystemExit(f"{target.name} did not pass: {result.cause}")

    return [timed(once) for _ in range(REPEATS)]


def main() -> None:
    certs = Certificates(Path(tempfile.mkdtemp(prefix="bench-squid-")))
    starts, stops = [], []
    for _ in range(STARTS):
        began = time.perf_counter()
        with squid.started(trusting=[certs.ca_file]):
            starts.append(time.perf_counter() - began)
            stopping = time.perf_counter()
        stops.append(time.perf_counter() - stopping)
    show("squid start (until it accepts connections)", starts)
    show("squid stop (SIGTERM until it has exited)", stops)

    with HttpServer(lambda _: Reply(200, b"ok"), certs.leaf("destination")) as server:
        url = f"https://localhost:{server.port}/"
        os.environ["TESTPOD_CA_BUNDLE"] = str(certs.ca_file)
        show("http, direct", checks(HttpTarget(name="direct", kind="http", url=url)))
        with squid.started(trusting=[certs.ca_file]) as proxy:
            os.environ["TESTPOD_CA_BUNDLE"] = str(proxy.ca_file)
            os.environ["HTTPS_PROXY"] = proxy.url
            show("http through squid (bumped)", checks(HttpTarget(name="inspected", kind="http", url=url)))
            destination = f"localhost:{server.port}"
            target = ProxyTarget(name="egress", kind="proxy", destinations=[destination], service_domain=None)
            show("proxy kind, one bumped destination", checks(target))


if __name__ == "__main__":
    main()
