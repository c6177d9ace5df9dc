"""The private CA bundle (TESTPOD_CA_BUNDLE): trusted by every kind besides the system store; ca_file still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.checks.base import Stage, Status
from app.checks.http import HttpTarget
from app.checks.tls import TlsTarget
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.http_server import HttpServer


@pytest.fixture(autouse=True)
def no_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTPOD_CA_BUNDLE", raising=False)


def tls(server: HttpServer, **fields: object) -> TlsTarget:
    return TlsTarget.model_validate({"name": "cert", "kind": "tls", "host": "localhost", "port": server.port, **fields})


def test_a_private_ca_verifies_only_with_the_bundle_and_says_so(
    tls_servers: dict[str, HttpServer], certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tls_servers["valid"]
    without = run_check(tls(server))
    assert (without.status, without.stage) == (Status.FAILED, Stage.TLS)
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(certs.ca_file))
    bundled = run_check(tls(server))
    assert bundled.status == Status.PASSED, bundled.cause
    assert bundled.facts["trusted_by"] == "ca bundle"
    assert run_check(tls(server, ca_file=certs.ca_file)).facts["trusted_by"] == "ca_file"
    assert run_check(HttpTarget(name="web", kind="http", url=server.url)).status == Status.PASSED


def test_a_ca_file_wins_and_the_failure_says_the_bundle_would_verify(
    tls_servers: dict[str, HttpServer], certs: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(certs.ca_file))
    other = Certificates(tmp_path / "other", organisation="Other")
    result = run_check(tls(tls_servers["valid"], ca_file=other.ca_file))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause == (
        "no trusted CA issued the certificate (unable to get local issuer certificate); it would verify with the "
        "CA bundle (TESTPOD_CA_BUNDLE), which this target's ca_file replaces: remove ca_file or add that CA to it; "
        "issued by CN=Test Intermediate CA"
    )


def test_a_chain_the_bundle_does_not_cover_says_so(
    tls_servers: dict[str, HttpServer], certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(certs.ca_file))
    result = run_check(tls(tls_servers["self-signed"]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert "it does not verify with the CA bundle (TESTPOD_CA_BUNDLE) either" in result.cause


def test_a_bundle_that_is_not_pem_is_named(
    tls_servers: dict[str, HttpServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "bundle.pem"
    broken.write_text("not a certificate\n")
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(broken))
    result = run_check(tls(tls_servers["valid"]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause.startswith(f"the CA bundle {broken} (TESTPOD_CA_BUNDLE) holds no usable PEM certificate")
    assert "caBundle" in result.remediation


def test_the_http_kind_says_what_the_bundle_would_do(
    tls_servers: dict[str, HttpServer], certs: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(certs.ca_file))
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    other = Certificates(tmp_path / "other", organisation="Other")
    valid = tls_servers["valid"].url
    replaced = run_check(HttpTarget(name="web", kind="http", url=valid, ca_file=other.ca_file))
    assert (replaced.status, replaced.stage) == (Status.FAILED, Stage.TLS)
    assert "; it would verify with the CA bundle (TESTPOD_CA_BUNDLE), which this target's ca_file replaces" in (
        replaced.cause
    )
    uncovered = run_check(HttpTarget(name="web", kind="http", url=tls_servers["self-signed"].url))
    assert (uncovered.status, uncovered.stage) == (Status.FAILED, Stage.TLS)
    assert uncovered.cause.endswith("; it does not verify with the CA bundle (TESTPOD_CA_BUNDLE) either")
