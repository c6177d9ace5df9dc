"""The readiness gate over a real app and real local targets, and the gate tokens that can read it and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from app.checks.base import Status
from app.results import Result, Run
from app.web.pod import Pod
from tests.servers import StallServer
from tests.web.helpers import MakeClient, bearer, login, tcp_target, wait_for_verdict

GATE = "/api/readiness-gate"


def test_gate_starts_a_run_when_asked_to_wait_and_answers_ready(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    auth = bearer(client)

    never = client.get(GATE, headers=auth)
    assert never.status_code == 503
    assert never.json()["verdict"] is None
    assert never.json()["reason"].startswith("never checked: db (pass wait=SECONDS")

    ready = client.get(GATE, params={"wait": 10}, headers=auth)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert (body["ready"], body["verdict"], body["stale"], body["failing"]) == (True, "ready", False, [])
    assert body["targets"] == ["db"]
    assert 0 <= body["age_seconds"] < 5
    assert ready.headers["cache-control"] == "no-store"


def test_gate_names_failing_required_targets_and_honours_a_subset(
    make_client: MakeClient, stall: StallServer, closed_port: int
) -> None:
    client = make_client(
        [
            tcp_target("db", stall.port),
            tcp_target("cache", closed_port),
            tcp_target("extra", closed_port, required=False),
        ]
    )
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)

    answer = client.get(GATE, headers=auth)
    assert answer.status_code == 503
    body = answer.json()
    assert (body["ready"], body["verdict"], body["stale"]) == (False, "not_ready", False)
    assert [(f["name"], f["status"], f["stage"]) for f in body["failing"]] == [("cache", "failed", "connect")]
    assert "Connection refused" in body["failing"][0]["cause"]
    assert body["reason"] == "1 required target(s) not ready: cache"

    subset = client.get(GATE, params=[("target", "db"), ("target", "extra")], headers=auth)
    assert subset.status_code == 200
    assert subset.json()["targets"] == ["db", "extra"]

    unknown = client.get(GATE, params={"target": "nope"}, headers=auth)
    assert unknown.status_code == 404
    assert "no target named 'nope'" in unknown.json()["detail"]
    assert client.get(GATE, params={"max_age": -1}, headers=auth).status_code == 422
    assert client.get(GATE, params={"wait": 3600}, headers=auth).status_code == 422


def test_a_run_of_one_target_keeps_the_others_in_the_gate(
    make_client: MakeClient, stall: StallServer, closed_port: int
) -> None:
    client = make_client([tcp_target("db", stall.port), tcp_target("cache", closed_port)])
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    client.post("/api/runs", params={"target": "db"}, headers=auth)
    wait_for_verdict(client, auth)
    assert [f["name"] for f in client.get(GATE, headers=auth).json()["failing"]] == ["cache"]


def test_stale_results_answer_503_unless_a_new_run_finishes_in_time(
    make_client: MakeClient, stall: StallServer
) -> None:
    client = make_client([tcp_target("db", stall.port)])
    auth = bearer(client)
    client.post("/api/runs", headers=auth)
    wait_for_verdict(client, auth)
    pod: Pod = client.app.state.pod  # type: ignore[attr-defined]
    first = pod.history.states["db"].checked_at

    stale = client.get(GATE, params={"max_age": 0.001}, headers=auth)
    assert stale.status_code == 503
    body = stale.json()
    assert (body["stale"], body["verdict"], body["ready"]) == (True, "ready", False)
    assert body["reason"].startswith("results older than 0.001 s: db")

    refreshed = client.get(GATE, params={"max_age": 60, "wait": 10}, headers=auth)
    assert refreshed.status_code == 200
    assert pod.history.states["db"].checked_at == first  # fresh enough: no new run was started

    # a max age shorter than a run: the run started for this request counts as fresh, and only one is started
    runs = len(pod.history.runs)
    renewed = client.get(GATE, params={"max_age": 0.001, "wait": 10}, headers=auth)
    assert renewed.status_code == 200, renewed.text
    assert len(pod.history.runs) == runs + 1
    assert pod.history.states["db"].checked_at > first


def _result(name: str, status: Status) -> Result:
    now = datetime.now().astimezone()
    return Result(
        name=name,
        kind="tls",
        required=True,
        status=status,
        stage=None,
        cause="certificate expires in 5 days" if status == Status.WARNING else "",
        remediation="",
        duration_ms=1.0,
        started_at=now - timedelta(seconds=1),
        steps=[],
        facts={},
    )


def test_strict_gate_blocks_on_warnings(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("cert", stall.port)])
    auth = bearer(client)
    pod: Pod = client.app.state.pod  # type: ignore[attr-defined]
    now = datetime.now().astimezone()
    pod.history.record(
        Run(started_at=now, finished_at=now, strict=False, results=[_result("cert", Status.WARNING)], pending=[])
    )

    assert client.get(GATE, headers=auth).status_code == 200
    strict = client.get(GATE, params={"strict": "true"}, headers=auth)
    assert strict.status_code == 503
    assert strict.json()["failing"][0]["status"] == "warning"
    assert strict.json()["strict"] is True


def test_gate_token_reads_the_gate_and_nothing_else(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    auth = bearer(client)
    assert client.get(GATE).status_code == 401

    created = client.post("/api/gate-tokens", json={"name": "ci pipeline"}, headers=auth)
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    token_id = created.json()["id"]
    gate_auth = {"Authorization": f"Bearer {secret}"}
    assert client.get(GATE, params={"wait": 10}, headers=gate_auth).status_code == 200

    for method, path in [
        ("GET", "/api/results"),
        ("GET", "/api/targets"),
        ("POST", "/api/runs"),
        ("GET", "/api/report"),
        ("GET", "/api/gate-tokens"),
        ("POST", "/api/gate-tokens"),
        ("DELETE", f"/api/gate-tokens/{token_id}"),
        ("GET", "/health"),
    ]:
        answer = client.request(method, path, headers=gate_auth, json={"name": "x"})
        assert answer.status_code == 401, (method, path, answer.text)
    page = client.get("/", headers=gate_auth)
    assert page.status_code == 303 and page.headers["location"] == "/login"

    listed = client.get("/api/gate-tokens", headers=auth).json()
    assert [(t["id"], t["name"]) for t in listed] == [(token_id, "ci pipeline")]
    assert "token" not in listed[0]
    assert secret not in client.get("/api/gate-tokens", headers=auth).text

    assert client.delete(f"/api/gate-tokens/{token_id}", headers=auth).status_code == 204
    revoked = client.get(GATE, headers=gate_auth)
    assert revoked.status_code == 401
    assert "unknown or was revoked" in revoked.json()["detail"]
    assert client.delete(f"/api/gate-tokens/{token_id}", headers=auth).status_code == 404


def test_gate_tokens_need_the_admin_and_csrf(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    assert client.post("/api/gate-tokens", json={"name": "ci"}).status_code == 401
    csrf = login(client)
    assert client.post("/api/gate-tokens", json={"name": "ci"}).status_code == 403
    assert client.post("/api/gate-tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf}).status_code == 201
    bad = client.post("/api/gate-tokens", json={"name": "<script>"}, headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 422
    assert client.get(GATE).status_code == 503  # the admin's session reads the gate too


def test_gate_tokens_and_history_survive_a_restart(make_client: MakeClient, stall: StallServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = make_client([tcp_target("db", stall.port)], data_dir=data)
    auth = bearer(client)
    secret = client.post("/api/gate-tokens", json={"name": "ci"}, headers=auth).json()["token"]
    assert client.get(GATE, params={"wait": 10}, headers=auth).status_code == 200
    client.__exit__(None, None, None)
    assert (data / "history.sqlite3").is_file()

    again = make_client([tcp_target("db", stall.port)], data_dir=data)
    answer = again.get(GATE, headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200, answer.text  # the result from before the restart, still fresh
    pod: Pod = again.app.state.pod  # type: ignore[attr-defined]
    assert len(pod.history.runs) == 1


def test_a_token_change_the_volume_refuses_is_a_503_that_changes_nothing(
    make_client: MakeClient, stall: StallServer, tmp_path: Path
) -> None:
    client = make_client([tcp_target("db", stall.port)], data_dir=tmp_path / "data")
    auth = bearer(client)
    kept = client.post("/api/gate-tokens", json={"name": "ci"}, headers=auth).json()
    pod: Pod = client.app.state.pod  # type: ignore[attr-defined]
    assert pod.gate_tokens.store is not None
    database = pod.gate_tokens.store._db
    database.execute("CREATE TRIGGER full BEFORE INSERT ON gate_tokens BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    database.execute("CREATE TRIGGER stuck BEFORE DELETE ON gate_tokens BEGIN SELECT RAISE(ABORT, 'read-only'); END")
    created = client.post("/api/gate-tokens", json={"name": "new"}, headers=auth)
    assert created.status_code == 503 and "was not created" in created.json()["detail"], created.text
    revoked = client.delete(f"/api/gate-tokens/{kept['id']}", headers=auth)
    assert revoked.status_code == 503 and "nothing changed" in revoked.json()["detail"], revoked.text
    assert [t["name"] for t in client.get("/api/gate-tokens", headers=auth).json()] == ["ci"]
    assert client.get(GATE, headers={"Authorization": f"Bearer {kept['token']}"}).status_code != 401  # still valid
