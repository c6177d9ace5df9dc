"""Scheduled runs for real, the history they leave, and how it shows on the API, the metrics and the pages."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from fastapi.testclient import TestClient

from tests.servers import StallServer
from tests.web.helpers import MakeClient, bearer, login, tcp_target, wait_for_verdict


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
    assert client.get("/api/history", headers=auth).json()["next_run_at"] is not None


def _run(client: TestClient, auth: dict[str, str], target: str | None = None) -> None:
    client.post("/api/runs", params={"target": target} if target else None, headers=auth)
    wait_for_verdict(client, auth)


def test_history_api_page_and_metrics(make_client: MakeClient, stall: StallServer, tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel completes connects; the test stops and restarts it
    port = listener.getsockname()[1]
    client = make_client([tcp_target("db", stall.port), tcp_target("flaky", port, description="<b>x</b>")])
    auth = bearer(client)
    _run(client, auth)
    listener.close()
    _run(client, auth, "flaky")
    again = socket.create_server(("127.0.0.1", port))
    try:
        _run(client, auth, "flaky")
    finally:
        again.close()
    _run(client, auth, "flaky")

    document = client.get("/api/history", headers=auth).json()
    assert document["next_run_at"] is None
    by_name = {t["name"]: t for t in document["targets"]}
    assert [m["status"] for m in by_name["db"]["runs"]] == ["passed"]
    flaky = by_name["flaky"]
    assert [m["status"] for m in flaky["runs"]] == ["passed", "failed", "passed", "failed"]
    assert flaky["runs"][1]["stage"] == "connect" and "refused" in flaky["runs"][1]["cause"]
    assert flaky["flapping"] is True  # 3 changes within the hour
    assert flaky["failing_since"] == flaky["changed_at"] == flaky["runs"][-1]["finished_at"]
    assert by_name["db"]["flapping"] is False and by_name["db"]["failing_since"] is None

    one = client.get("/api/targets/flaky/history", headers=auth).json()
    assert one["runs"] == flaky["runs"]
    assert client.get("/api/targets/nope/history", headers=auth).status_code == 404
    assert client.get("/api/history").status_code == 401

    metrics = client.get("/metrics").text
    assert 'testpod_target_flapping{kind="tcp",target="flaky"} 1.0' in metrics
    assert 'testpod_target_flapping{kind="tcp",target="db"} 0.0' in metrics
    assert 'testpod_target_last_change_timestamp_seconds{kind="tcp",target="flaky"}' in metrics
    assert "testpod_next_run_timestamp_seconds" not in metrics  # no schedule

    login(client)
    page = client.get("/targets/flaky")
    assert page.status_code == 200
    assert page.text.count('<tr data-status="') == 4
    assert "Failing since" in page.text and ">flapping<" in page.text
    assert "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text
    assert client.get("/targets/nope").status_code == 404
    dashboard = client.get("/")
    assert 'href="/targets/flaky"' in dashboard.text and "/static/history.js" in dashboard.text


def test_reports_carry_the_history_of_their_targets_when_asked(
    make_client: MakeClient, stall: StallServer, closed_port: int
) -> None:
    client = make_client([tcp_target("db", stall.port), tcp_target("cache", closed_port)])
    auth = bearer(client)
    _run(client, auth)
    _run(client, auth)
    _run(client, auth, "db")

    plain = client.get("/api/report", params={"format": "json"}, headers=auth).json()
    assert "history" not in plain
    document = client.get("/api/report", params={"format": "json", "history": "true"}, headers=auth).json()
    assert list(document["history"]) == ["db"]  # the latest run covered only db
    assert [m["status"] for m in document["history"]["db"]["runs"]] == ["passed"] * 3

    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    junit = client.get("/api/report", params={"format": "junit", "history": "true"}, headers=auth).text
    root = ET.fromstring(junit)
    cases = {c.get("name"): c for c in root.iter("testcase")}
    history = {p.get("name"): p.get("value") for p in cases["cache"].iter("property")}
    assert history["history"] == "failed failed failed"
    assert history["failing_since"] and history["flapping"] == "false"

    html = client.get("/api/report", params={"format": "html", "history": "true"}, headers=auth).text
    assert "History: last change" in html and "failing since" in html
    assert "History:" not in client.get("/api/report", params={"format": "html"}, headers=auth).text
