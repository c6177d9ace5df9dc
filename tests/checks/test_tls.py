"""tls against real TLS servers on 127.0.0.1, one per certificate case from tests/certs.py."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.checks.base import Stage, Status
from app.checks.tls import TlsTarget
from app.config import ConfigError, parse_targets
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.http_server import HttpServer, Reply
from tests.servers import StallServer

FULL_CHAIN_REMEDIATION = (
    "the server does not send its intermediate certificate (or the CA is not trusted): "
    "configure the full chain on the server or set ca_file"
)


def tls_target(port: int, ca_file: Path | None, **fields: Any) -> TlsTarget:
    return TlsTarget(name="orders-tls", kind="tls", host="localhost", port=port, ca_file=ca_file, **fields)


def test_a_valid_chain_passes_and_reports_the_certificate(
    tls_servers: dict[str, HttpServer], certs: Certificates
) -> None:
    result = run_check(tls_target(tls_servers["valid"].port, certs.ca_file))

    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps] == ["resolve", "connect", "tls handshake", "certificate expiry"]
    assert result.facts["tls_version"] == "TLSv1.3"
    assert result.facts["tls_cipher"]
    assert result.facts["subject"] == "CN=localhost"
    assert result.facts["issuer"] == "CN=Test Intermediate CA"
    assert result.facts["names"] == "localhost, 127.0.0.1, ::1"
    assert result.facts["days_to_expiry"] in (363, 364)
    assert str(result.facts["not_after"]).startswith("20")


def test_an_ip_address_host_is_checked_against_ip_sans(tls_servers: dict[str, HttpServer], certs: Certificates) -> None:
    target = TlsTarget(
        name="by-ip", kind="tls", host="127.0.0.1", port=tls_servers["valid"].port, ca_file=certs.ca_file
    )
    assert run_check(target).status == Status.PASSED


@pytest.mark.parametrize(
    ("case", "cause", "evidence"),
    [
        ("leaf-only", "unable to get local issuer certificate", "issued by CN=Test Intermediate CA"),
        ("expired", "has expired", "valid from"),
        ("not-yet-valid", "is not valid yet", "valid from"),
        ("wrong-host", "not valid for localhost", "it names elsewhere.test"),
        ("self-signed", "self-signed certificate", "issued by CN=localhost"),
        ("untrusted-root", "root CA that is not trusted", "issued by CN=Rogue Intermediate CA"),
    ],
)
def test_each_certificate_problem_gets_its_own_diagnosis(
    tls_servers: dict[str, HttpServer], certs: Certificates, case: str, cause: str, evidence: str
) -> None:
    result = run_check(tls_target(tls_servers[case].port, certs.ca_file))

    assert result.status == Status.FAILED
    assert result.stage == Stage.TLS
    assert cause in result.cause
    assert evidence in result.cause
    assert result.steps[-1].name == "tls handshake"
    assert result.steps[-1].status == Status.FAILED
    assert result.facts["not_after"]  # the certificate, fetched without verifying it, is reported


def test_a_missing_intermediate_says_how_to_fix_the_chain(
    tls_servers: dict[str, HttpServer], certs: Certificates
) -> None:
    result = run_check(tls_target(tls_servers["leaf-only"].port, certs.ca_file))
    assert result.remediation == FULL_CHAIN_REMEDIATION


def test_an_expired_certificate_reports_negative_days_to_expiry(
    tls_servers: dict[str, HttpServer], certs: Certificates
) -> None:
    result = run_check(tls_target(tls_servers["expired"].port, certs.ca_file))
    assert result.facts["days_to_expiry"] == -2
    assert "renew" in result.remediation


def test_an_ip_mismatch_is_named_as_such(tls_servers: dict[str, HttpServer], certs: Certificates) -> None:
    target = TlsTarget(
        name="by-ip", kind="tls", host="127.0.0.1", port=tls_servers["wrong-host"].port, ca_file=certs.ca_file
    )
    result = run_check(target)
    assert "not valid for the IP address 127.0.0.1" in result.cause
    assert "IP address SAN" in result.remediation


def test_without_ca_file_the_system_store_does_not_trust_a_private_ca(tls_servers: dict[str, HttpServer]) -> None:
    result = run_check(tls_target(tls_servers["valid"].port, None))
    assert result.stage == Stage.TLS
    assert "unable to get local issuer certificate" in result.cause
    assert result.remediation == FULL_CHAIN_REMEDIATION


def test_server_name_is_the_name_verified(tls_servers: dict[str, HttpServer], certs: Certificates) -> None:
    port = tls_servers["wrong-host"].port
    assert run_check(tls_target(port, certs.ca_file, server_name="elsewhere.test")).status == Status.PASSED
    result = run_check(tls_target(tls_servers["valid"].port, certs.ca_file, server_name="elsewhere.test"))
    assert "not valid for elsewhere.test" in result.cause


def test_a_certificate_expiring_within_warn_days_is_a_warning(
    tls_servers: dict[str, HttpServer], certs: Certificates
) -> None:
    result = run_check(tls_target(tls_servers["expiring"].port, certs.ca_file))
    assert result.status == Status.WARNING
    assert result.stage == Stage.TLS
    assert "the certificate expires in 4 days" in result.cause
    assert "renew" in result.remediation

    quiet = run_check(tls_target(tls_servers["expiring"].port, certs.ca_file, warn_days=3))
    assert quiet.status == Status.PASSED


def test_min_version_rejects_a_server_capped_below_it(certs: Certificates) -> None:
    with HttpServer(lambda _: Reply(), certs.leaf("old-tls"), max_version=ssl.TLSVersion.TLSv1_2) as server:
        assert run_check(tls_target(server.port, certs.ca_file)).facts["tls_version"] == "TLSv1.2"
        result = run_check(tls_target(server.port, certs.ca_file, min_version="TLSv1.3"))
    assert result.stage == Stage.TLS
    assert "share no TLS version" in result.cause
    assert "TLSv1.3" in result.cause


def test_a_plain_http_port_does_not_speak_tls(certs: Certificates) -> None:
    with HttpServer(lambda _: Reply()) as server:
        result = run_check(tls_target(server.port, certs.ca_file))
    assert result.stage == Stage.TLS
    assert "does not speak TLS" in result.cause


@pytest.fixture
def hang_up_server() -> Iterator[int]:
    """Accepts, reads the ClientHello, and closes: a server rejecting this client mid-handshake."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(4096)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_server_that_hangs_up_mid_handshake(hang_up_server: int, certs: Certificates) -> None:
    result = run_check(tls_target(hang_up_server, certs.ca_file))
    assert result.stage == Stage.TLS
    assert "closed the connection during the TLS handshake" in result.cause


def test_a_port_that_never_handshakes_fails_at_tls_on_time(stall: StallServer, certs: Certificates) -> None:
    result = run_check(tls_target(stall.port, certs.ca_file, timeout=0.5))
    assert result.status == Status.FAILED
    assert result.stage == Stage.TLS
    assert "0.5 s" in result.cause or "before the timeout" in result.cause
    assert result.duration_ms < 900
    assert [s.name for s in result.steps] == ["resolve", "connect", "tls handshake"]


def test_a_closed_port_fails_at_connect(closed_port: int, certs: Certificates) -> None:
    result = run_check(tls_target(closed_port, certs.ca_file))
    assert result.stage == Stage.CONNECT
    assert "nothing listens on port" in result.remediation


def test_a_ca_file_without_certificates_fails_clearly(tls_servers: dict[str, HttpServer], tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    result = run_check(tls_target(tls_servers["valid"].port, not_pem))
    assert result.stage == Stage.TLS
    assert "holds no usable PEM certificate" in result.cause


def test_config_rejects_a_missing_ca_file_and_a_bad_version() -> None:
    text = """
targets:
  - {name: a, kind: tls, host: localhost, ca_file: /nonexistent/ca.pem}
  - {name: b, kind: tls, host: localhost, min_version: TLSv1.0}
  - {name: c, kind: tls, host: localhost, warn_days: -1}
"""
    with pytest.raises(ConfigError) as error:
        parse_targets(text, "targets.yaml", {})
    message = str(error.value)
    assert "targets[0].ca_file:" in message
    assert "targets[1].min_version:" in message
    assert "targets[2].warn_days:" in message


hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True)


@given(
    host=hostnames,
    port=st.integers(1, 65535),
    server_name=st.none() | hostnames,
    warn_days=st.integers(0, 3650),
    min_version=st.sampled_from(["TLSv1.2", "TLSv1.3"]),
)
def test_config_round_trip(host: str, port: int, server_name: str | None, warn_days: int, min_version: str) -> None:
    entry: dict[str, Any] = {
        "name": "t",
        "kind": "tls",
        "host": host,
        "port": port,
        "warn_days": warn_days,
        "min_version": min_version,
    }
    if server_name is not None:
        entry["server_name"] = server_name
    (target,) = parse_targets(yaml.safe_dump({"targets": [entry]}), "targets.yaml", {})
    assert target.model_dump(include=set(entry)) == entry
