"""Secrets never leave the pod: plant unique ones, make servers echo them back in failures, scan every channel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.checks.http_server import HttpServer, Reply, Request
from tests.servers import StallServer
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME, ServerProcess, login, wait_for_verdict, write_targets

pytestmark = pytest.mark.slow


def echo_credentials(request: Request) -> Reply:
    """A server that quotes the caller's credentials in its error: the worst case for leaking them."""
    token = request.headers.get("authorization", "")
    return Reply(
        500, f"denied for {token} (api key {request.headers.get('x-api-key', '')})".encode(), {"X-Seen": token}
    )


@pytest.fixture
def echo_server() -> Iterator[HttpServer]:
    with HttpServer(echo_credentials) as server:
        yield server


def test_planted_secrets_appear_in_no_output(
    tmp_path: Path, echo_server: HttpServer, stall: StallServer, closed_port: int
) -> None:
    token, api_key, pg_password = (f"planted-{name}-{uuid.uuid4().hex}" for name in ("token", "key", "pg"))
    targets = [
        {
            "name": "echoing-api",
            "kind": "http",
            "url": f"{echo_server.url}/v1/status",
            "headers": {"Authorization": "Bearer ${API_TOKEN}", "X-Api-Key": "${API_KEY}"},
        },
        {
            "name": "echoing-body",
            "kind": "http",
            "url": f"{echo_server.url}/health",
            "expect_status": 500,
            "expect_body": "never-there",
            "headers": {"Authorization": "Bearer ${API_TOKEN}"},
        },
        {
            "name": "hung-db",
            "kind": "postgres",
            "host": "127.0.0.1",
            "port": stall.port,
            "database": "airia",
            "user": "airia",
            "password": "${PG_PASSWORD}",
            "timeout": 1,
        },
        {
            "name": "closed-db",
            "kind": "postgres",
            "host": "127.0.0.1",
            "port": closed_port,
            "database": "airia",
            "user": "airia",
            "password": "${PG_PASSWORD}",
        },
    ]
    env = {
        "TESTPOD_CONFIG": str(write_targets(tmp_path, targets)),
        "TESTPOD_AUTH_PASSWORD": PASSWORD,
        "TESTPOD_SECRET_KEY": SECRET_KEY,
        "API_TOKEN": token,
        "API_KEY": api_key,
        "PG_PASSWORD": pg_password,
    }
    server = ServerProcess(env=env, log_path=tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, follow_redirects=False, timeout=10) as client:
            csrf = login(client)
            client.post("/api/runs", headers={"X-CSRF-Token": csrf})
            run = wait_for_verdict(client, {})
            outputs = {
                "results": client.get("/api/results").text,
                "one result": client.get("/api/results", params={"target": "echoing-api"}).text,
                "targets": client.get("/api/targets").text,
                "json report": client.get("/api/report", params={"format": "json"}).text,
                "junit report": client.get("/api/report", params={"format": "junit"}).text,
                "html report": client.get("/api/report", params={"format": "html"}).text,
                "dashboard": client.get("/").text,
                "metrics": client.get("/metrics").text,
                "health": client.get("/health").text,
            }
    finally:
        server.stop()
    outputs["log"] = server.log()

    # the secrets really went out and really came back, so the scan below is not vacuous
    assert any(token in r.headers.get("authorization", "") for r in echo_server.requests)
    by_name = {r["name"]: r for r in run["results"]}
    assert by_name["echoing-api"]["stage"] == "operation"
    assert "denied for *** (api key ***)" in by_name["echoing-api"]["cause"]
    assert "***" in by_name["echoing-body"]["cause"]
    assert by_name["hung-db"]["status"] == by_name["closed-db"]["status"] == "failed"

    for channel, text in outputs.items():
        for secret in (token, api_key, pg_password, PASSWORD, SECRET_KEY):
            assert secret not in text, f"a planted secret leaked into the {channel}"
        assert "planted-" not in text, f"part of a planted secret leaked into the {channel}"
    assert USERNAME in outputs["dashboard"]  # the scan read real pages, not error stubs
