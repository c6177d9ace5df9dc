"""The JSON API and the probes over a real app and real local targets (open, closed and black-holed ports)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from app import __version__
from app.cli import main as cli_main
from tests.servers import StallServer
from tests.web.helpers import BlackholePort, MakeClient, bearer, tcp_target, wait_for_verdict, write_targets


def test_probes_answer_without_login_and_say_little(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json() == {"status": "ready"}
    assert client.get("/health/startup").json() == {"status": "started"}
    assert client.get("/version").json() == {"version": __version__}


def test_run_all_returns_at_once_then_results_land(
    make_client: MakeClient, stall: StallServer, closed_port: int
) -> None:
    client = make_client([tcp_target("open", stall.port), tcp_target("closed", closed_port)])
    auth = bearer(client)
    assert client.get("/api/results", headers=auth).status_code == 404

    started = client.post("/api/runs", headers=auth)
    assert started.status_code == 202
    assert started.json()["verdict"] is None
    assert set(started.json()["pending"]) == {"open", "closed"}

    run = wait_for_verdict(client, auth)
    assert run["verdict"] == "not_ready"
    by_name = {r["name"]: r for r in run["results"]}
    assert by_name["open"]["status"] == "passed"
    closed = by_name["closed"]
    assert (closed["status"], closed["stage"]) == ("failed", "connect")
    assert "Connection refused" in closed["cause"]
    assert f"nothing listens on port {closed_port}" in closed["remediation"]
    assert [s["name"] for s in closed["steps"]] == ["resolve", "connect"]
    assert run["counts"] == {"total": 2, "passed": 1, "warning": 0, "failed": 1, "pending": 0}


def test_results_match_the_cli_json_document(
    make_client: MakeClient, stall: StallServer, tmp_path: Path, capsys: object
) -> None:
    targets = [tcp_target("open", stall.port)]
    client = make_client(targets)
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    api_document = wait_for_verdict(client, auth)

    cli_main(["check", "--config", str(write_targets(tmp_path, targets, "cli.yaml")), "--format", "json"])
    cli_document = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    assert list(api_document) == list(cli_document)
    assert api_document["version"] == cli_document["version"] == __version__
    assert list(api_document["results"][0]) == list(cli_document["results"][0])


def test_results_show_landed_and_pending_targets_during_a_run(
    make_client: MakeClient, blackhole: BlackholePort, closed_port: int
) -> None:
    client = make_client([tcp_target("quick", closed_port), tcp_target("hung", blackhole.port, timeout=3)])
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        run = client.get("/api/results", headers=auth).json()
        if run["results"]:
            break
        time.sleep(0.02)
    assert run["verdict"] is None
    assert [r["name"] for r in run["results"]] == ["quick"]
    assert run["pending"] == ["hung"]
    assert run["finished_at"] is None

    finished = wait_for_verdict(client, auth)
    hung = finished["results"][1]
    assert (hung["status"], hung["stage"]) == ("failed", "connect")
    # the socket's own timeout and the runner's deadline race; either way the cause says nothing answered
    assert "did not finish within 3 s" in hung["cause"] or "before the timeout" in hung["cause"]


def test_a_second_request_joins_the_run_in_flight(make_client: MakeClient, blackhole: BlackholePort) -> None:
    client = make_client([tcp_target("hung", blackhole.port, timeout=1)])
    auth = bearer(client)
    first = client.post("/api/runs", headers=auth).json()
    second = client.post("/api/runs", headers=auth).json()
    assert first["started_at"] == second["started_at"]
    wait_for_verdict(client, auth)
    metrics = client.get("/metrics").text
    assert 'testpod_runs_total{verdict="not_ready"} 1.0' in metrics


def test_run_one_target(make_client: MakeClient, stall: StallServer, closed_port: int) -> None:
    client = make_client([tcp_target("open", stall.port), tcp_target("closed", closed_port)])
    auth = bearer(client)
    started = client.post("/api/runs", params={"target": "open"}, headers=auth)
    assert started.status_code == 202
    assert started.json()["pending"] == ["open"]
    run = wait_for_verdict(client, auth)
    assert [r["name"] for r in run["results"]] == ["open"]
    assert run["verdict"] == "ready"


def test_unknown_target_is_a_precise_404(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    auth = bearer(client)
    for answer in (
        client.post("/api/runs", params={"target": "nope"}, headers=auth),
        client.get("/api/results", params={"target": "nope"}, headers=auth),
    ):
        assert answer.status_code == 404
        assert answer.json() == {"detail": "no target named 'nope'; configured targets: db"}


def test_results_for_one_target(make_client: MakeClient, stall: StallServer, closed_port: int) -> None:
    client = make_client([tcp_target("open", stall.port), tcp_target("closed", closed_port)])
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    one = client.get("/api/results", params={"target": "closed"}, headers=auth).json()
    assert [r["name"] for r in one["results"]] == ["closed"]
    assert one["verdict"] == "not_ready"


def test_targets_list_names_and_kinds_only(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port, required=False, description="main database")])
    answer = client.get("/api/targets", headers=bearer(client)).json()
    assert answer == [{"name": "db", "kind": "tcp", "required": False, "description": "main database", "timeout": 5.0}]


def test_reports_in_three_formats(make_client: MakeClient, closed_port: int) -> None:
    client = make_client([tcp_target("closed", closed_port, description="payments database")])
    auth = bearer(client)
    assert client.get("/api/report", headers=auth).status_code == 404
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)

    as_json = client.get("/api/report", params={"format": "json"}, headers=auth)
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["content-disposition"].startswith('attachment; filename="airia-test-pod-report-')
    assert json.loads(as_json.text)["results"][0]["stage"] == "connect"

    junit = ET.fromstring(client.get("/api/report", params={"format": "junit"}, headers=auth).content)
    failure = junit.find("./testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == "connect"

    html = client.get("/api/report", params={"format": "html"}, headers=auth)
    assert html.headers["content-type"].startswith("text/html")
    for expected in ("NOT READY", "closed", "payments database", "Remediation", "nothing listens on port", __version__):
        assert expected in html.text
    assert "<script" not in html.text and "<link" not in html.text  # self-contained and inert

    bad = client.get("/api/report", params={"format": "pdf"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "format"]


def test_a_broken_targets_file_keeps_the_pod_live_but_not_ready(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client([{"name": "db", "kind": "tcp", "host": "127.0.0.1", "port": 99999}])
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"
    assert "99999" not in ready.text  # the details are for the log and the logged-in dashboard
    auth = bearer(client)
    refused = client.post("/api/runs", headers=auth)
    assert refused.status_code == 409
    assert "targets[0].port: must be 1-65535" in refused.json()["detail"]
    assert client.get("/health", headers=auth).json()["config_error"] == "targets[0].port: must be 1-65535 (line 2)"
    assert "testpod_config_valid 0.0" in client.get("/metrics").text


def test_no_targets_file_is_an_empty_pod_that_says_how_to_configure(make_client: MakeClient) -> None:
    client = make_client(None)
    assert client.get("/health/ready").status_code == 200
    refused = client.post("/api/runs", headers=bearer(client))
    assert refused.status_code == 409
    assert "Helm values" in refused.json()["detail"]


def test_run_on_start_gives_a_verdict_without_a_click(make_client: MakeClient, closed_port: int) -> None:
    client = make_client([tcp_target("closed", closed_port)], run_on_start=True)
    run = wait_for_verdict(client, bearer(client))
    assert run["results"][0]["stage"] == "connect"


def test_strict_mode_makes_warnings_count(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)], strict=True)
    auth = bearer(client)
    assert client.post("/api/runs", headers=auth).json()["strict"] is True


def test_detailed_health_needs_a_login_and_never_touches_targets(
    make_client: MakeClient, blackhole: BlackholePort
) -> None:
    client = make_client([tcp_target("hung", blackhole.port, timeout=30)])
    assert client.get("/health").status_code == 401
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    started = time.perf_counter()
    details = client.get("/health", headers=auth).json()
    assert time.perf_counter() - started < 1
    assert details["version"] == __version__
    assert details["run_in_progress"] is True
    assert details["process"]["rss_bytes"] > 10_000_000
    assert details["process"]["threads"] >= 2
    assert details["disk"]["/"]["total_bytes"] > 0
    assert details["uptime_seconds"] >= 0


def test_every_bad_request_is_a_json_4xx(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    auth = bearer(client)
    cases = [
        (client.get("/no/such/page"), 404, "no such route: /no/such/page"),
        (client.delete("/api/runs", headers=auth), 405, "DELETE is not allowed on /api/runs"),
        (client.post("/api/token", data={"username": "admin"}), 422, None),
        (client.post("/api/runs", headers={"Authorization": "Bearer x"}), 401, None),
        (client.get("/api/results", params={"target": "x" * 64}, headers=auth), 422, None),
        (client.post("/api/token", content=b"\xff\xfe", headers={"content-type": "multipart/form-data"}), 400, None),
    ]
    for answer, status, detail in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert "detail" in body
        if detail is not None:
            assert body["detail"] == detail
        assert "Traceback" not in answer.text


def test_validation_errors_never_echo_the_input(make_client: MakeClient) -> None:
    client = make_client(None)
    answer = client.post("/api/token", data={"password": "hunter2-secret-value"})
    assert answer.status_code == 422
    assert answer.json() == {"detail": [{"loc": ["body", "username"], "msg": "Field required", "type": "missing"}]}
    assert "hunter2" not in answer.text


def test_request_bodies_are_size_limited(make_client: MakeClient) -> None:
    client = make_client(None)
    big = {"username": "admin", "password": "x" * 100_000}
    declared = client.post("/api/token", data=big)
    assert declared.status_code == 413
    assert declared.json() == {"detail": "request body larger than 65536 bytes"}

    def chunks() -> object:  # no Content-Length: the limit is enforced while the body streams in
        yield b"username=admin&password="
        for _ in range(20):
            yield b"y" * 8192

    streamed = client.post(
        "/api/token", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    assert streamed.json() == {"detail": "request body larger than 65536 bytes"}


def test_metrics_carry_per_target_status_duration_and_run_counts(
    make_client: MakeClient, stall: StallServer, closed_port: int
) -> None:
    client = make_client([tcp_target("open", stall.port), tcp_target("closed", closed_port, required=False)])
    before = client.get("/metrics")
    assert before.headers["content-type"].startswith("text/plain")
    assert "testpod_target_status{" not in before.text
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    text = client.get("/metrics").text
    for line in (
        'testpod_target_status{kind="tcp",status="passed",target="open"} 1.0',
        'testpod_target_status{kind="tcp",status="failed",target="open"} 0.0',
        'testpod_target_status{kind="tcp",status="failed",target="closed"} 1.0',
        'testpod_target_required{kind="tcp",target="closed"} 0.0',
        'testpod_runs_total{verdict="ready"} 1.0',
        "testpod_run_duration_seconds_count 1.0",
        "testpod_ready 1.0",
        "testpod_targets_configured 2.0",
        "testpod_run_in_progress 0.0",
        f'testpod_build_info{{version="{__version__}"}} 1.0',
    ):
        assert line in text, line
    assert 'testpod_target_duration_seconds{kind="tcp",target="open"}' in text
    assert "process_resident_memory_bytes" in text
    assert "python_gc_objects_collected_total" in text


def test_an_unexpected_error_is_a_json_500_without_a_trace(make_client: MakeClient) -> None:
    client = make_client(None)

    @client.app.get("/explode")  # type: ignore[attr-defined, untyped-decorator]
    async def explode() -> None:
        raise RuntimeError("internal detail that stays in the log")

    answer = client.get("/explode")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error; the pod's log has the details"}
    assert "internal detail" not in answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_run_is_rendered_once_per_state_not_once_per_request(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import report

    calls: dict[str, int] = {"json": 0, "html": 0}

    def counting(name: str) -> report.Renderer:
        renderer = report.RENDERERS[name]

        def render(run: Any) -> str:
            calls[name] += 1
            return renderer.render(run)

        return report.Renderer(render, renderer.media_type, renderer.extension)

    for name in calls:
        monkeypatch.setitem(report.RENDERERS, name, counting(name))
    client = make_client([{"name": "db", "kind": "tcp", "host": "127.0.0.1", "port": 1}])
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    while client.get("/health", headers=auth).json()["run_in_progress"]:
        time.sleep(0.01)
    calls.update(json=0, html=0)
    bodies = {client.get("/api/results", headers=auth).text for _ in range(20)}
    pages = {client.get("/api/report", params={"format": "html"}, headers=auth).text for _ in range(20)}
    assert len(bodies) == len(pages) == 1
    assert calls["json"] <= 1 and calls["html"] == 1  # once for this state of the run, then kept
    first = json.loads(bodies.pop())
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    second = client.get("/api/results", headers=auth).json()
    assert second["started_at"] != first["started_at"]  # a new state of the run is rendered anew
    assert calls["json"] >= 2
