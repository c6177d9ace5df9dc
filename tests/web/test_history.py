"""Scheduled runs for real, the history they leave, and how it shows on the API, the metrics and the pages."""

from __future__ import annotations

import time

from tests.servers import StallServer
from tests.web.conftest import MakeClient
from tests.web.helpers import bearer, tcp_target


def test_a_real_one_second_schedule_runs_and_shows_its_next_run(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)], schedule_seconds=1, schedule_jitter=0)
    auth = bearer(client)
    pod = client.app.state.pod  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while len(pod.history.runs) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pod.history.runs) >= 2
    first, second = list(pod.history.runs)[:2]
    assert (second.started_at - first.finished_at).total_seconds() >= 0.9
    metrics = client.get("/metrics").text
    assert "testpod_next_run_timestamp_seconds " in metrics
    assert client.get("/api/results", headers=auth).json()["verdict"] == "ready"
