"""The proxy environment (HTTPS_PROXY / HTTP_PROXY / NO_PROXY) as every kind honours it, and the proxy kind, against
a real tinyproxy on 127.0.0.1 (CONNECT, 407, a filtered destination) and a real squid that inspects TLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.checks import facts
from app.checks.base import Stage, Status
from app.checks.http import HttpTarget
from app.checks.openai import OpenaiTarget
from app.checks.proxy import ProxyTarget
from app.checks.proxy_env import ProxySettings, botocore_proxies, redacted
from app.checks.tcp import TcpTarget
from app.results import Result
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.helpers import config_error
from tests.checks.http_server import HttpServer, Reply
from tests.checks.openai_server import KEY, OpenAiServer
from tests.services import squid
from tests.services.proxy import FILTERED_HOST, PASSWORD, USER, ForwardProxy
from tests.services.squid import InspectingProxy

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, "TESTPOD_CA_BUNDLE", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def plain() -> Iterator[HttpServer]:
    with HttpServer(lambda _: Reply(200, b"ok")) as server:
        yield server


@pytest.fixture(scope="module")
def secure(certs: Certificates) -> Iterator[HttpServer]:
    with HttpServer(lambda _: Reply(200, b"ok"), certs.leaf("proxied")) as server:
        yield server


@pytest.fixture(scope="module")
def inspecting(certs: Certificates) -> Iterator[InspectingProxy]:
    """squid bumping every tunnel; it trusts the CA of `secure` (and of `tls_servers`)."""
    with squid.started(trusting=[certs.ca_file]) as proxy:
        yield proxy


def use_proxy(monkeypatch: pytest.MonkeyPatch, url: str, no_proxy: str = "") -> None:
    monkeypatch.setenv("HTTPS_PROXY", url)
    monkeypatch.setenv("http_proxy", url)
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)


def http(url: str, **fields: Any) -> HttpTarget:
    return HttpTarget(name="web", kind="http", url=url, **fields)


def proxy_target(**fields: Any) -> ProxyTarget:
    return ProxyTarget(name="egress", kind="proxy", **fields)


def shown(result: Result) -> str:
    return json.dumps(result.model_dump(mode="json"))


# --- NO_PROXY matching: one set of rules for every kind -------------------------------------------------------


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "excluded"),
    [
        ("*", "anything.example", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        (".example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("EXAMPLE.com.", "Api.Example.COM", 443, True),
        # documentation ranges (RFC 5737): the matcher is pure, nothing is sent anywhere
        ("198.51.100.0/24", "198.51.100.7", 443, True),
        ("198.51.100.0/24", "198.51.101.1", 443, False),
        ("198.51.100.0/24", "doc.example", 443, False),  # a name is not resolved to match a range
        ("fd00::/8", "fd12::1", 443, True),
        ("fd00::/8", "[fd12::1]", 443, True),
        ("192.0.2.3", "192.0.2.3", 80, True),
        ("registry.corp:5000", "registry.corp", 5000, True),
        ("registry.corp:5000", "registry.corp", 443, False),
        ("[::1]:8080", "::1", 8080, True),
        ("a.test, b.test ,c.test", "c.test", 443, True),
        ("not-a-cidr/99", "192.0.2.1", 443, False),
    ],
)
def test_no_proxy_rules(no_proxy: str, host: str, port: int, excluded: bool) -> None:
    settings = ProxySettings.from_env({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": no_proxy})
    assert settings.excludes(host, port) is excluded


def test_lower_case_wins_a_bare_host_is_http_and_credentials_never_show() -> None:
    settings = ProxySettings.from_env(
        {"HTTPS_PROXY": "http://upper:1", "https_proxy": "u:p@proxy.corp:3128", "NO_PROXY": "internal"}
    )
    assert settings.for_url("https://api.example/") == "http://u:p@proxy.corp:3128"
    assert settings.route("https://api.example/") == "http://proxy.corp:3128"
    assert settings.route("https://svc.internal/") == "direct (NO_PROXY)"
    assert settings.route("http://api.example/") == "direct"  # no HTTP_PROXY: plain http goes directly
    assert redacted("http://u:p@[fd00::1]:3128") == "http://[fd00::1]:3128"
    assert botocore_proxies("https://s3.internal/b", settings) == {}
    assert botocore_proxies("https://s3.amazonaws.com/b", settings) == {
        "http": "http://u:p@proxy.corp:3128",
        "https": "http://u:p@proxy.corp:3128",
    }


# --- http and openai through a real proxy ---------------------------------------------------------------------


def test_http_goes_through_the_proxy_and_says_so(
    forward_proxy: ForwardProxy, plain: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, forward_proxy.open_url)
    result = run_check(http(plain.url))
    assert result.status == Status.PASSED, result.cause
    assert result.facts[facts.PROXY] == forward_proxy.open_url
    assert "resolve" not in [s.name for s in result.steps]  # the proxy resolves the name, not the pod
    assert "tinyproxy" in plain.requests[-1].headers.get("via", "")


def test_https_tunnels_through_the_proxy_with_the_handshake_as_its_own_step(
    forward_proxy: ForwardProxy, secure: HttpServer, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, forward_proxy.open_url)
    result = run_check(http(secure.url, ca_file=certs.ca_file))
    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps] == [
        "load ca_file",
        "connect",
        "http request",
        "tls handshake",
        "http request",
        "status",
    ]
    assert result.facts[facts.TLS_VERSION] == "TLSv1.3"
    assert result.facts[facts.PROXY] == forward_proxy.open_url


def test_no_proxy_sends_the_request_directly(
    forward_proxy: ForwardProxy, plain: HttpServer, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, f"http://127.0.0.1:{closed_port}", no_proxy="localhost,127.0.0.0/8")
    result = run_check(http(plain.url))
    assert result.status == Status.PASSED, result.cause
    assert result.facts[facts.PROXY] == "direct (NO_PROXY)"


def test_a_proxy_that_is_down_fails_at_connect_naming_the_proxy(
    plain: HttpServer, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port
    use_proxy(monkeypatch, f"http://127.0.0.1:{port}")
    result = run_check(http(plain.url))
    assert result.status == Status.FAILED
    assert result.stage == Stage.CONNECT
    assert result.cause == f"the proxy: cannot connect to 127.0.0.1:{port}: Connection refused"
    assert result.remediation.startswith("check HTTPS_PROXY / HTTP_PROXY")


def test_proxy_authentication_is_named_for_tunnels_and_plain_requests(
    forward_proxy: ForwardProxy, plain: HttpServer, secure: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, forward_proxy.auth_url)
    tunnel = run_check(http(secure.url))
    assert (tunnel.status, tunnel.stage) == (Status.FAILED, Stage.AUTH)
    assert "refused CONNECT to 127.0.0.1" in tunnel.cause
    assert "407" in tunnel.cause
    assert "user and password in the proxy URL" in tunnel.remediation
    forwarded = run_check(http(plain.url))
    assert (forwarded.status, forwarded.stage) == (Status.FAILED, Stage.AUTH)
    assert forwarded.cause.startswith("HTTP 407")
    assert "proxy" in forwarded.remediation


def test_proxy_credentials_from_the_url_work_and_never_show(
    forward_proxy: ForwardProxy, secure: HttpServer, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, forward_proxy.auth_url_with_credentials)
    result = run_check(http(secure.url, ca_file=certs.ca_file))
    assert result.status == Status.PASSED, result.cause
    assert PASSWORD not in shown(result)
    assert result.facts[facts.PROXY] == forward_proxy.auth_url


def test_a_destination_the_proxy_forbids_is_a_permission_failure(
    forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, forward_proxy.open_url)
    result = run_check(http(f"https://{FILTERED_HOST}/"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.cause == (
        f"the proxy 127.0.0.1:{forward_proxy.open_url.rsplit(':', 1)[1]} refused CONNECT to {FILTERED_HOST}:443: "
        "403 Filtered"
    )


def test_openai_goes_through_the_proxy(forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    use_proxy(monkeypatch, forward_proxy.open_url)
    with OpenAiServer() as server:
        target = OpenaiTarget(name="llm", kind="openai", base_url=f"{server.url}/v1", api_key=KEY, model="gpt-test")
        result = run_check(target)
        assert result.status == Status.PASSED, result.cause
        assert result.facts[facts.PROXY] == forward_proxy.open_url
        assert "tinyproxy" in server.requests[0].headers.get("via", "")


def test_http_through_an_inspecting_proxy_passes_only_with_its_ca_in_the_bundle(
    inspecting: InspectingProxy, secure: HttpServer, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, inspecting.url)
    url = f"https://localhost:{secure.port}/"  # by name: squid does not verify a destination by its address
    untrusted = run_check(http(url))
    assert (untrusted.status, untrusted.stage) == (Status.FAILED, Stage.TLS)
    assert untrusted.cause == f"the chain ends in a root CA that is not trusted (through the proxy {inspecting.url})"
    assert "caBundle (TESTPOD_CA_BUNDLE)" in untrusted.remediation
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(inspecting.ca_file))
    trusted = run_check(http(url))
    assert trusted.status == Status.PASSED, trusted.cause
    assert trusted.facts[facts.PROXY] == inspecting.url
    assert "squid" in secure.requests[-1].headers.get("via", "")  # squid read the request and sent it on itself
    # the destination's own CA does not help: what the pod sees is squid's certificate
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(certs.ca_file))
    own = run_check(http(url))
    assert (own.status, own.stage) == (Status.FAILED, Stage.TLS)
    assert own.cause == f"the chain ends in a root CA that is not trusted (through the proxy {inspecting.url})"
    assert "caBundle (TESTPOD_CA_BUNDLE)" in own.remediation


def test_http_through_an_inspecting_proxy_names_what_the_proxy_could_not_reach(
    inspecting: InspectingProxy, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, inspecting.url)
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(inspecting.ca_file))
    result = run_check(http(f"https://localhost:{closed_port}/"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause.startswith("HTTP 503 Service Unavailable, expected 200")
    assert result.cause.endswith("; the proxy in between says: ERR_CONNECT_FAIL 111"), result.cause
    assert result.remediation.startswith("a proxy or ingress on the way answered for the service it could not reach")


# --- kinds that connect directly warn ---------------------------------------------------------------------------


def test_tcp_warns_when_a_proxy_is_set_and_its_host_is_not_excluded(
    plain: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, "http://proxy.invalid:3128")
    result = run_check(TcpTarget(name="db", kind="tcp", host="127.0.0.1", port=plain.port))
    assert result.status == Status.WARNING
    assert f"NO_PROXY does not exclude 127.0.0.1:{plain.port}" in result.cause
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    excluded = run_check(TcpTarget(name="db", kind="tcp", host="127.0.0.1", port=plain.port))
    assert excluded.status == Status.PASSED
    assert excluded.facts[facts.PROXY] == "direct (NO_PROXY)"


# --- the proxy kind -----------------------------------------------------------------------------------------------


def destination(server: HttpServer) -> str:
    return f"localhost:{server.port}"


def test_the_proxy_kind_opens_tunnels_and_verifies_tls_through_them(
    forward_proxy: ForwardProxy, secure: HttpServer, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_proxy(monkeypatch, forward_proxy.open_url, no_proxy=".cluster.local,198.51.100.1,198.51.100.0/24")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "198.51.100.1")
    target = proxy_target(
        destinations=[destination(secure)],
        ca_file=certs.ca_file,
        pod_cidr="198.51.100.128/25",
        service_cidr="198.51.100.0/25",
    )
    result = run_check(target)
    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps] == [
        "resolve",
        "connect",
        f"CONNECT {destination(secure)}",
        f"tls handshake {destination(secure)}",
        "NO_PROXY",
    ]
    assert result.facts[facts.PROXY] == forward_proxy.open_url


def test_the_proxy_kind_names_a_407_and_passes_with_credentials(
    forward_proxy: ForwardProxy, secure: HttpServer, certs: Certificates
) -> None:
    common = {"url": forward_proxy.auth_url, "destinations": [destination(secure)], "ca_file": certs.ca_file}
    refused = run_check(proxy_target(**common))
    assert (refused.status, refused.stage) == (Status.FAILED, Stage.AUTH)
    assert "407 Proxy Authentication Required" in refused.cause
    wrong = run_check(proxy_target(**common, username=USER, password="wrong"))
    assert wrong.stage == Stage.AUTH, wrong.cause
    accepted = run_check(proxy_target(**common, username=USER, password=PASSWORD))
    assert accepted.status == Status.WARNING  # the proxy works, but the pod's environment does not name it
    assert accepted.cause.startswith("HTTPS_PROXY / HTTP_PROXY are not set in this pod")
    assert PASSWORD not in shown(accepted)


def test_the_proxy_kind_reports_the_proxys_own_reason_per_destination(
    forward_proxy: ForwardProxy, closed_port: int
) -> None:
    closed = closed_port
    result = run_check(proxy_target(url=forward_proxy.open_url, destinations=[f"127.0.0.1:{closed}"]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert result.cause.endswith(f"refused CONNECT to 127.0.0.1:{closed}: 500 Unable to connect")
    filtered = run_check(proxy_target(url=forward_proxy.open_url, destinations=[f"{FILTERED_HOST}:443"]))
    assert (filtered.stage, filtered.cause.rsplit(": ", 1)[1]) == (Stage.PERMISSION, "403 Filtered")


def test_the_proxy_kind_names_the_inspecting_ca(
    inspecting: InspectingProxy, secure: HttpServer, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = f"issued by {inspecting.issuer}, likely the proxy's TLS inspection"
    result = run_check(proxy_target(url=inspecting.url, destinations=[destination(secure)], service_domain=None))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert issued in result.cause
    assert "caBundle (TESTPOD_CA_BUNDLE)" in result.remediation
    assert result.facts["intercepted_localhost"] == inspecting.issuer
    # once the platform trusts the inspection CA through the bundle, the tunnel works and says it is inspected
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(inspecting.ca_file))
    use_proxy(monkeypatch, inspecting.url, no_proxy=".cluster.local")
    trusted = run_check(proxy_target(destinations=[destination(secure)]))
    assert trusted.status == Status.PASSED, trusted.steps
    assert trusted.facts["intercepted_localhost"] == inspecting.issuer, trusted.steps
    assert [(step.name, step.detail) for step in trusted.steps if destination(secure) in step.name] == [
        (f"CONNECT {destination(secure)}", "tunnel open"),
        (f"tls handshake {destination(secure)}", "does not verify with the system trust store alone"),
        (
            f"tls handshake {destination(secure)} with the CA bundle",
            f"verifies only through the CA bundle: issued by {inspecting.issuer}, the proxy's TLS inspection or a "
            "private CA",
        ),
        (f"HEAD {destination(secure)} through the inspection", "answered 200 OK"),
    ]
    # a bundle without the inspection CA: still named as the likely inspection
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(certs.ca_file))
    other = run_check(proxy_target(destinations=[destination(secure)]))
    assert (other.status, other.stage) == (Status.FAILED, Stage.TLS), other.steps
    assert issued in other.cause


def test_the_proxy_kind_names_what_an_inspecting_proxy_could_not_reach(
    inspecting: InspectingProxy, tls_servers: dict[str, HttpServer], closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # squid opens the tunnel and shakes hands itself before it tries the destination: only its answer tells
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(inspecting.ca_file))
    proxy = inspecting.url.removeprefix("http://")
    closed = f"localhost:{closed_port}"
    down = run_check(proxy_target(url=inspecting.url, destinations=[closed], service_domain=None))
    assert (down.status, down.stage) == (Status.FAILED, Stage.CONNECT)
    assert down.cause == (
        f"the proxy {proxy} inspects TLS to {closed} but did not reach it: it answered HEAD / with 503 Service "
        "Unavailable (ERR_CONNECT_FAIL 111)"
    )
    assert down.remediation.startswith(f"the proxy itself could not connect to {closed}, or did not trust")
    assert down.facts["intercepted_localhost"] == inspecting.issuer
    # a destination whose certificate squid does not trust (its root is not among the CAs squid was given)
    rogue = f"localhost:{tls_servers['untrusted-root'].port}"
    distrusted = run_check(proxy_target(url=inspecting.url, destinations=[rogue], service_domain=None))
    assert (distrusted.status, distrusted.stage) == (Status.FAILED, Stage.CONNECT)
    assert distrusted.cause == (
        f"the proxy {proxy} inspects TLS to {rogue} but did not reach it: it answered HEAD / with 503 Service "
        "Unavailable (ERR_SECURE_CONNECT_FAIL 0)"
    )


def test_no_proxy_must_cover_the_cluster(forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    use_proxy(monkeypatch, forward_proxy.open_url, no_proxy=".svc.cluster.local,198.51.100.128/25")
    target = proxy_target(api_server="198.51.100.1:443", pod_cidr="198.51.100.128/25", service_cidr="198.51.100.0/25")
    result = run_check(target)
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause.startswith(
        "NO_PROXY does not exclude the API server 198.51.100.1:443, the service range 198.51.100.0/25:"
    )


def test_the_proxy_kind_needs_a_proxy_and_refuses_credentials_in_its_url() -> None:
    result = run_check(proxy_target())
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert result.cause.startswith("no proxy to check")
    message = config_error("targets:\n- {name: p, kind: proxy, url: 'http://u:p@proxy:3128'}\n")
    assert "must not contain credentials" in message
    assert "must be host:port" in config_error("targets:\n- {name: p, kind: proxy, destinations: [example.com]}\n")
