"""The dashboard's gate-token page over a real app: list, create (shown once), revoke, behind the login and its
CSRF token, the same tokens as the JSON API, and hostile input refused as a form error, never echoed raw."""

from __future__ import annotations

import asyncio
import hashlib
import re

import httpx
import pytest

from app.tokens import MAX_TOKENS, NAME_RULE
from app.web.pod import Pod
from tests.servers import StallServer
from tests.web.helpers import MakeClient, bearer, login, tcp_target

PAGE = "/gate-tokens"
GATE = "/api/readiness-gate"
SECRET_FIELD = re.compile(r'<input id="new-token" class="secret" readonly value="(tpgate_[^"]+)"')


def create(client: httpx.Client, csrf: str, name: str) -> httpx.Response:
    return client.post(PAGE, data={"name": name, "csrf_token": csrf})


def listed(client: httpx.Client) -> list[str]:
    return re.findall(r'<tr data-token="([^"]+)">', client.get(PAGE).text)


def test_the_page_needs_a_session_and_a_gate_token_does_not_open_it(
    make_client: MakeClient, stall: StallServer
) -> None:
    client = make_client([tcp_target("db", stall.port)])
    for answer in (client.get(PAGE), client.post(PAGE, data={"name": "ci"}), client.post(f"{PAGE}/x/revoke")):
        assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    secret = client.post("/api/gate-tokens", json={"name": "ci"}, headers=bearer(client)).json()["token"]
    as_gate_token = client.get(PAGE, headers={"Authorization": f"Bearer {secret}"})
    assert (as_gate_token.status_code, as_gate_token.headers["location"]) == (303, "/login")

    login(client)
    for path in ("/", "/targets/db", PAGE):
        assert f'<a href="{PAGE}"' in client.get(path).text  # in the navigation of every page


def test_create_shows_the_token_once_and_the_gate_accepts_it(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    csrf = login(client)
    assert 'id="no-tokens"' in client.get(PAGE).text

    created = create(client, csrf, "deploy pipeline")
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    found = SECRET_FIELD.search(created.text)
    assert found, created.text
    secret = found.group(1)
    curl = 'curl -sS --fail-with-body -H "Authorization: Bearer ${TESTPOD_GATE_TOKEN}" '
    assert f'{curl}"http://testserver/api/readiness-gate?wait=60"' in created.text
    assert 'python -m app gate --url "http://testserver" --wait 60' in created.text  # the hook Job's form
    assert 'data-copy="new-token"' in created.text and "/static/tokens.js" in created.text

    gate = client.get(GATE, params={"wait": 10}, headers={"Authorization": f"Bearer {secret}"})
    assert gate.status_code == 200, gate.text

    page = client.get(PAGE)
    assert secret not in page.text and hashlib.sha256(secret.encode()).hexdigest() not in page.text
    assert "deploy pipeline" in page.text and "never" not in page.text  # its use above is shown
    api = client.get("/api/gate-tokens", headers=bearer(client)).json()
    assert [(t["name"], t["id"]) for t in api] == [("deploy pipeline", listed(client)[0])]  # the same tokens
    assert api[0]["last_used_at"] is not None


def test_revoke_stops_the_token_at_once(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    csrf = login(client)
    created = create(client, csrf, "old-job")
    found = SECRET_FIELD.search(created.text)
    assert found
    keep = create(client, csrf, "kept")
    assert keep.status_code == 201
    token_id = next(
        t["id"] for t in client.get("/api/gate-tokens", headers=bearer(client)).json() if t["name"] == "old-job"
    )

    revoked = client.post(f"{PAGE}/{token_id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 200, revoked.text
    assert "Revoked the gate token “old-job”" in revoked.text
    assert token_id not in listed(client) and len(listed(client)) == 1
    assert client.get(GATE, headers={"Authorization": f"Bearer {found.group(1)}"}).status_code == 401

    again = client.post(f"{PAGE}/{token_id}/revoke", data={"csrf_token": csrf})
    assert again.status_code == 404 and "may have been revoked already" in again.text


def test_changes_need_the_sessions_csrf_token(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    csrf = login(client)
    create(client, csrf, "ci")
    [token_id] = listed(client)
    for data in ({"name": "sneaky"}, {"name": "sneaky", "csrf_token": "forged"}):
        assert client.post(PAGE, data=data).status_code == 403
        assert client.post(f"{PAGE}/{token_id}/revoke", data=data).status_code == 403
    assert listed(client) == [token_id]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "x" * 64,
        "x" * 20_000,
        "tab\tname",
        "nul\x00name",
        "new\nline",
        "\u202egnp.exe",
        "-leading-hyphen",
        "café",
    ],
)
def test_a_hostile_name_is_a_form_error_never_echoed(make_client: MakeClient, stall: StallServer, name: str) -> None:
    client = make_client([tcp_target("db", stall.port)])
    csrf = login(client)
    answer = create(client, csrf, name)
    assert answer.status_code == 422, answer.text
    assert NAME_RULE in answer.text and 'role="alert"' in answer.text
    if name:
        assert name not in answer.text
    assert listed(client) == []


def test_oversized_and_odd_requests_are_4xx(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    csrf = login(client)
    assert create(client, csrf, "x" * 70_000).status_code == 413  # over the body limit
    missing = client.post(PAGE, data={"csrf_token": csrf})
    assert missing.status_code == 422 and NAME_RULE in missing.text
    raw = client.post(
        PAGE,
        content=f"csrf_token={csrf}&name=%FF%FE%00".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert raw.status_code == 422
    hostile_id = client.post(f"{PAGE}/%3Cscript%3Ealert(1)%3Cb%3E%00/revoke", data={"csrf_token": csrf})
    assert hostile_id.status_code == 404
    assert "<script>alert" not in hostile_id.text and "&lt;script&gt;alert(1)&lt;b&gt;\\x00" in hostile_id.text
    assert listed(client) == []


def test_too_many_tokens_is_a_form_error(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    csrf = login(client)
    pod: Pod = client.app.state.pod  # type: ignore[attr-defined]
    for i in range(MAX_TOKENS):
        asyncio.run(pod.gate_tokens.create(f"job-{i}"))
    answer = create(client, csrf, "one-more")
    assert answer.status_code == 409 and "revoke unused ones first" in answer.text
    assert len(listed(client)) == MAX_TOKENS
