"""schemathesis against the app's own OpenAPI schema, authenticated, over a real server process:
no 5xx, and every response matches what the schema promises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.config import Settings
from app.main import create_app
from tests.servers import ClosedPort, StallServer
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME, ServerProcess, tcp_target, write_targets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    directory = tmp_path_factory.mktemp("schema")
    stall, closed = StallServer(), ClosedPort()
    targets = [tcp_target("open", stall.port), tcp_target("closed", closed.port, timeout=1)]
    env = {
        "TESTPOD_CONFIG": str(write_targets(directory, targets)),
        "TESTPOD_AUTH_PASSWORD": PASSWORD,
        "TESTPOD_SECRET_KEY": SECRET_KEY,
    }
    process = ServerProcess(env=env, log_path=directory / "server.log")
    process.start()
    token = httpx.post(f"{process.url}/api/token", data={"username": USERNAME, "password": PASSWORD}).json()
    try:
        yield process, {"Authorization": f"Bearer {token['access_token']}"}
    finally:
        process.stop()
        stall.close()
        closed.close()
        assert "unexpected" not in process.log(), process.log()  # the catch-all 500 handler never ran


# production mode serves no schema, so it comes from an identical app built in-process
SCHEMA = create_app(Settings(auth_password=PASSWORD, secret_key=SECRET_KEY, config=None)).openapi()
schema = schemathesis.openapi.from_dict(SCHEMA)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_honours_its_schema(case: Any, server: tuple[ServerProcess, dict[str, str]]) -> None:
    process, auth = server
    # the readiness gate answers 503 by design (not ready); its schema documents that answer
    excluded = [not_a_server_error] if case.path == "/api/readiness-gate" else []
    case.call_and_validate(base_url=process.url, headers=auth, excluded_checks=excluded)


def test_the_schema_documents_every_route_and_its_errors() -> None:
    paths = SCHEMA["paths"]
    for route in ("/api/token", "/api/runs", "/api/results", "/api/report", "/api/targets", "/health/live", "/metrics"):
        assert route in paths, route
    assert set(paths["/api/runs"]["post"]["responses"]) >= {"202", "401", "403", "404", "409", "422"}
    assert "OAuth2PasswordBearer" in SCHEMA["components"]["securitySchemes"]
