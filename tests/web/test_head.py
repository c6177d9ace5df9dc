"""HEAD on every GET route answers as GET would, without a body: load balancers probe with HEAD."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.routing import APIRoute

from app.web import api, pages, status
from tests.servers import StallServer
from tests.web.helpers import PASSWORD, SECRET_KEY, MakeClient, ServerProcess, bearer, login, tcp_target, write_targets


def get_paths() -> list[str]:
    routes = [*status.router.routes, *api.router.routes, *pages.router.routes]
    return sorted(r.path for r in routes if isinstance(r, APIRoute) and "GET" in r.methods)


def test_every_get_route_answers_head_like_get(make_client: MakeClient) -> None:
    client = make_client([tcp_target("db", 1)])
    login(client)  # the cookie, for the pages
    auth = bearer(client)
    paths = get_paths()
    assert {"/", "/health/live", "/api/results", "/metrics", "/api/report"} <= set(paths)
    for path in [*paths, "/static/app.css"]:
        got, head = client.get(path, headers=auth), client.head(path, headers=auth)
        assert head.status_code == got.status_code != 405, path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
        assert head.content == b"", path


def test_head_on_a_route_without_get_is_still_refused(make_client: MakeClient) -> None:
    client = make_client([tcp_target("db", 1)])
    refused = client.head("/api/runs", headers=bearer(client))
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    assert refused.content == b""


def test_a_real_server_sends_head_answers_without_a_body(tmp_path: Path) -> None:
    stall = StallServer()
    env = {
        "TESTPOD_CONFIG": str(write_targets(tmp_path, [tcp_target("db", stall.port)])),
        "TESTPOD_AUTH_PASSWORD": PASSWORD,
        "TESTPOD_SECRET_KEY": SECRET_KEY,
    }
    server = ServerProcess(env=env, log_path=tmp_path / "server.log")
    try:
        server.start()
        with httpx.Client(base_url=server.url) as client:
            auth = bearer(client)
            for path in ["/health/live", "/health/ready", "/metrics", "/version", "/api/results", "/api/report"]:
                head = client.head(path, headers=auth)
                assert head.status_code == client.get(path, headers=auth).status_code == 200, path
                assert head.content == b"", path
    finally:
        server.stop()
        stall.close()
