"""Alert channels in a running pod: one that stalls or refuses never delays a run or a probe, and is counted."""

from __future__ import annotations

import socket
import time
from concurrent.futures import wait

import pytest

from tests.servers import StallServer
from tests.web.helpers import MakeClient, bearer, tcp_target, wait_for_verdict

SECRET_PATH = "/hooks/T0/B0/very-secret-path"


def test_a_stalled_or_failing_channel_delays_nothing_and_is_counted(
    make_client: MakeClient, stall: StallServer, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = socket.create_server(("127.0.0.1", 0))
    port = flaky.getsockname()[1]
    client = make_client(
        [tcp_target("db", port, timeout=2)],
        alert_webhook_url=f"http://127.0.0.1:{stall.port}{SECRET_PATH}",  # accepts, never answers
        alert_slack_webhook_url=f"http://127.0.0.1:{closed_port}{SECRET_PATH}",  # refused
        dashboard_url="https://pod.example",
    )
    pod = client.app.state.pod  # type: ignore[attr-defined]
    for channel in pod.alerts.channels:
        object.__setattr__(channel, "timeout", 1.0)
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    flaky.close()

    started = time.monotonic()
    client.post("/api/runs", headers=auth)
    run = wait_for_verdict(client, auth)
    assert run["verdict"] == "not_ready"
    assert time.monotonic() - started < 1.0  # the stalled channel holds no one up
    live = time.monotonic()
    assert client.get("/health/live").status_code == 200
    assert time.monotonic() - live < 0.5

    wait(pod.alerts.pending, timeout=5)
    metrics = client.get("/metrics").text
    assert 'testpod_notifications_total{channel="webhook",outcome="failed"} 1.0' in metrics
    assert 'testpod_notifications_total{channel="slack",outcome="failed"} 1.0' in metrics
    assert SECRET_PATH not in caplog.text
