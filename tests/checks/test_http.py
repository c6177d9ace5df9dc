"""http against a real HTTP(S) server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.checks.base import Stage, Status
from app.checks.http import MAX_BODY, HttpTarget
from app.config import ConfigError, parse_targets
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.http_server import HttpServer, Reply, Request
from tests.servers import StallServer

TOKEN = "s3cr3t-token-value-42"


def routes(request: Request) -> Reply:  # noqa: PLR0911 - the test server's routing, one return a route
    path = request.path
    if path == "/":
        return Reply(200, b"service ok", {"Content-Type": "text/plain"})
    if path.startswith("/status/"):
        status = int(path.removeprefix("/status/"))
        return Reply(status, f"status {status}\x1b[31m\nsecond line".encode())
    if path == "/redirect":
        return Reply(302, b"", {"Location": "/"})
    if path == "/to-echo":
        return Reply(307, b"", {"Location": "/echo"})
    if path == "/loop":
        return Reply(302, b"", {"Location": "/loop"})
    if path == "/echo":
        return Reply(200, json.dumps(request.headers).encode(), {"Content-Type": "application/json"})
    if path == "/big":
        return Reply(200, b"x" * (MAX_BODY + 500_000))
    return Reply(404, b"not found")


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    with HttpServer(routes) as running:
        yield running


@pytest.fixture(scope="module")
def https_server(certs: Certificates) -> Iterator[HttpServer]:
    with HttpServer(routes, certs.leaf("https")) as running:
        yield running


def http_target(url: str, **fields: Any) -> HttpTarget:
    return HttpTarget(name="api", kind="http", url=url, **fields)


def test_a_200_passes_with_its_facts(server: HttpServer) -> None:
    result = run_check(http_target(f"{server.url}/"))
    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps] == ["resolve", "connect", "http request", "status"]
    assert result.steps[2].detail == f"GET {server.url}/: 200 OK"
    assert result.facts["status"] == 200
    assert result.facts["server"] == "test-server/1.0"
    assert result.facts["content_type"] == "text/plain"
    assert result.facts["final_url"] == f"{server.url}/"
    assert result.facts["body_bytes"] == len(b"service ok")
    assert isinstance(result.facts["latency_ms"], float)
    assert result.facts["latency_ms"] > 0
    assert server.requests[-1].headers["user-agent"].startswith("airia-test-pod/")


def test_expect_status_takes_one_code_or_several(server: HttpServer) -> None:
    assert run_check(http_target(f"{server.url}/status/204", expect_status=204)).status == Status.PASSED
    assert run_check(http_target(f"{server.url}/status/418", expect_status=[200, 418])).status == Status.PASSED


@pytest.mark.parametrize(
    ("status", "stage", "remediation"),
    [
        (503, Stage.OPERATION, "the service behind it is down"),
        (404, Stage.OPERATION, "nothing is served at this path"),
        (401, Stage.AUTH, "wants credentials"),
        (403, Stage.PERMISSION, "not allowed here"),
        (409, Stage.OPERATION, "check the URL, the method and the headers"),
    ],
)
def test_an_unexpected_status_is_classified(server: HttpServer, status: int, stage: Stage, remediation: str) -> None:
    result = run_check(http_target(f"{server.url}/status/{status}"))
    assert result.status == Status.FAILED
    assert result.stage == stage
    assert result.cause.startswith(f"HTTP {status} ")
    assert ", expected 200: " in result.cause
    assert remediation in result.remediation
    assert result.steps[-1].name == "status"


def test_remote_text_is_cleaned_before_it_enters_a_result(server: HttpServer) -> None:
    result = run_check(http_target(f"{server.url}/status/500"))
    assert result.cause.endswith(": status 500 [31m second line")
    assert "\x1b" not in result.cause


def test_a_redirect_is_reported_unless_followed(server: HttpServer) -> None:
    stopped = run_check(http_target(f"{server.url}/redirect"))
    assert stopped.status == Status.FAILED
    assert "HTTP 302 Found, expected 200; it redirects to /" in stopped.cause
    assert "follow_redirects" in stopped.remediation

    followed = run_check(http_target(f"{server.url}/redirect", follow_redirects=True))
    assert followed.status == Status.PASSED
    assert followed.facts["redirects"] == 1
    assert followed.facts["final_url"] == f"{server.url}/"


SECRET_HEADERS = {"Authorization": f"Bearer {TOKEN}", "api-key": TOKEN, "X-Api-Key": TOKEN}


def test_configured_headers_stay_behind_when_a_redirect_leaves_the_origin(server: HttpServer) -> None:
    away = Reply(302, b"", {"Location": f"{server.url}/echo"})  # same host, another port: another origin
    with HttpServer(lambda _: away) as origin:
        server.requests.clear()
        result = run_check(http_target(f"{origin.url}/", headers=SECRET_HEADERS, follow_redirects=True))
        [first] = origin.requests
    assert result.status == Status.PASSED, result.cause
    assert (result.facts["redirects"], result.facts["final_url"]) == (1, f"{server.url}/echo")
    assert {name: first.headers[name.lower()] for name in SECRET_HEADERS} == SECRET_HEADERS
    [hop] = server.requests
    assert not {name.lower() for name in SECRET_HEADERS} & set(hop.headers)
    assert hop.headers["user-agent"].startswith("airia-test-pod/")  # the client's own headers still go


def test_configured_headers_follow_a_redirect_within_the_origin(server: HttpServer) -> None:
    server.requests.clear()
    result = run_check(http_target(f"{server.url}/to-echo", headers=SECRET_HEADERS, follow_redirects=True))
    assert result.status == Status.PASSED, result.cause
    assert [r.path for r in server.requests] == ["/to-echo", "/echo"]
    assert {name: server.requests[1].headers[name.lower()] for name in SECRET_HEADERS} == SECRET_HEADERS


def test_a_redirect_loop_fails(server: HttpServer) -> None:
    result = run_check(http_target(f"{server.url}/loop", follow_redirects=True))
    assert result.status == Status.FAILED
    assert result.cause == "too many redirects"


def test_the_body_must_match_expect_body(server: HttpServer) -> None:
    matched = run_check(http_target(f"{server.url}/", expect_body=r"service\s+ok"))
    assert matched.status == Status.PASSED
    assert matched.steps[-1].name == "body"

    missed = run_check(http_target(f"{server.url}/", expect_body="healthy"))
    assert missed.status == Status.FAILED
    assert missed.stage == Stage.OPERATION
    assert missed.cause == "the body does not match 'healthy': service ok"


def test_a_huge_body_is_read_only_up_to_the_limit(server: HttpServer) -> None:
    result = run_check(http_target(f"{server.url}/big"))
    assert result.status == Status.PASSED
    assert result.facts["body_bytes"] == MAX_BODY


def test_header_values_are_sent_but_never_shown(server: HttpServer) -> None:
    target = http_target(
        f"{server.url}/echo", headers={"Authorization": f"Bearer {TOKEN}", "X-Api-Key": TOKEN}, expect_body="nomatch"
    )
    result = run_check(target)
    assert server.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    assert server.requests[-1].headers["x-api-key"] == TOKEN
    assert result.status == Status.FAILED  # the echoed headers land in the cause ...
    assert "***" in result.cause
    assert TOKEN not in result.model_dump_json()  # ... redacted
    assert TOKEN not in repr(target)


def test_https_with_the_ca_file_passes(https_server: HttpServer, certs: Certificates) -> None:
    result = run_check(http_target(f"{https_server.url}/", ca_file=certs.ca_file))
    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps] == [
        "resolve",
        "load ca_file",
        "connect",
        "tls handshake",
        "http request",
        "status",
    ]
    assert result.facts["tls_version"] == "TLSv1.3"
    assert result.steps[3].detail.startswith("TLSv1.3, ")


def test_https_without_the_ca_file_fails_like_the_tls_kind(https_server: HttpServer) -> None:
    result = run_check(http_target(f"{https_server.url}/"))
    assert result.status == Status.FAILED
    assert result.stage == Stage.TLS
    assert "unable to get local issuer certificate" in result.cause
    assert "configure the full chain on the server or set ca_file" in result.remediation
    assert result.steps[-1].name == "tls handshake"


def test_an_expired_certificate_is_diagnosed_through_httpx(
    tls_servers: dict[str, HttpServer], certs: Certificates
) -> None:
    result = run_check(http_target(f"https://localhost:{tls_servers['expired'].port}/", ca_file=certs.ca_file))
    assert result.stage == Stage.TLS
    assert "has expired" in result.cause


def test_a_ca_file_without_certificates_fails_before_connecting(https_server: HttpServer, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    result = run_check(http_target(f"{https_server.url}/", ca_file=not_pem))
    assert result.stage == Stage.TLS
    assert "holds no usable PEM certificate" in result.cause
    assert [s.name for s in result.steps] == ["resolve", "load ca_file"]


def test_https_to_a_plain_http_port(server: HttpServer, certs: Certificates) -> None:
    result = run_check(http_target(f"https://127.0.0.1:{server.port}/", ca_file=certs.ca_file))
    assert result.stage == Stage.TLS
    assert "does not speak TLS" in result.cause


def test_plain_http_to_a_tls_port(https_server: HttpServer) -> None:
    result = run_check(http_target(f"http://127.0.0.1:{https_server.port}/"))
    assert result.status == Status.FAILED
    assert result.stage == Stage.OPERATION
    assert "broke off the HTTP exchange" in result.cause
    assert "http vs https" in result.remediation


def test_a_closed_port_fails_at_connect(closed_port: int) -> None:
    result = run_check(http_target(f"http://127.0.0.1:{closed_port}/"))
    assert result.stage == Stage.CONNECT
    assert result.cause == f"cannot connect to 127.0.0.1:{closed_port}: Connection refused"
    assert result.steps[-1].name == "connect"


def test_a_server_that_never_answers_fails_at_the_request_on_time(stall: StallServer) -> None:
    result = run_check(http_target(f"http://127.0.0.1:{stall.port}/", timeout=0.5))
    assert result.stage == Stage.OPERATION
    assert result.duration_ms < 900
    assert result.steps[-1].name == "http request"


def test_an_https_port_that_never_handshakes_fails_at_tls_on_time(stall: StallServer) -> None:
    result = run_check(http_target(f"https://127.0.0.1:{stall.port}/", timeout=0.5))
    assert result.stage == Stage.TLS
    assert result.duration_ms < 900


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("url", "ftp://example.test/", "targets[0].url: must be an http:// or https:// URL with a host"),
        ("url", "https://user:pw@example.test/", "targets[0].url: must not contain credentials"),
        ("url", "https://example.test:99999/", "targets[0].url: has an invalid port"),
        ("expect_status", 99, "targets[0].expect_status[0]: Input should be greater than or equal to 100"),
        ("expect_status", [], "targets[0].expect_status: must name at least one status code"),
        ("expect_body", "([a-z]", "targets[0].expect_body: not a valid regular expression"),
        ("headers", {"Bad Name": "x"}, "targets[0].headers: 'Bad Name' is not a valid header name"),
        ("headers", {"X-A": "a\nb"}, "targets[0].headers.X-A: may hold only printable ASCII"),
        ("method", "FETCH", "targets[0].method:"),
    ],
)
def test_config_errors_name_the_field(field: str, value: Any, message: str) -> None:
    entry = {"name": "api", "kind": "http", "url": "https://example.test/", field: value}
    with pytest.raises(ConfigError) as error:
        parse_targets(yaml.safe_dump({"targets": [entry]}), "t.yaml", {})
    assert str(error.value).startswith(message)


def test_a_header_secret_comes_from_the_environment() -> None:
    text = 'targets: [{name: api, kind: http, url: "https://example.test/", headers: {Authorization: "Bearer ${T}"}}]'
    (target,) = parse_targets(text, "t.yaml", {"T": TOKEN})
    assert set(target.secrets()) == {f"Bearer {TOKEN}", TOKEN}


header_values = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(
    path=st.from_regex(r"/[a-z0-9/_-]{0,30}", fullmatch=True),
    statuses=st.lists(st.integers(100, 599), min_size=1, max_size=4),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    headers=st.dictionaries(st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True), header_values, max_size=3),
)
def test_config_round_trip(path: str, statuses: list[int], method: str, headers: dict[str, str]) -> None:
    entry = {
        "name": "api",
        "kind": "http",
        "url": f"https://example.test{path}",
        "method": method,
        "expect_status": statuses,
        "headers": headers,
    }
    (target,) = parse_targets(yaml.safe_dump({"targets": [entry]}), "t.yaml", {})
    assert isinstance(target, HttpTarget)
    assert (target.url, target.method, target.expect_status) == (entry["url"], method, statuses)
    assert {k: v.get_secret_value() for k, v in target.headers.items()} == headers
    assert set(headers.values()) <= set(target.secrets())
