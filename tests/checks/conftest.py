"""Certificates and TLS servers shared by the tls, http and openai tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.certs import Certificates
from tests.checks.http_server import HttpServer, Reply


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_servers(certs: Certificates) -> Iterator[dict[str, HttpServer]]:
    """One HTTPS server per certificate case, all answering 200 'ok'."""
    cases = {
        "valid": certs.leaf("valid"),
        "leaf-only": certs.leaf("leaf-only", chain=False),
        "expired": certs.leaf("expired", days=(-30, -1)),
        "not-yet-valid": certs.leaf("not-yet-valid", days=(1, 30)),
        "wrong-host": certs.leaf("wrong-host", hosts=["elsewhere.test"]),
        "self-signed": certs.self_signed("self-signed"),
        "untrusted-root": certs.untrusted("untrusted-root"),
        "expiring": certs.leaf("expiring", days=(-1, 5)),
    }
    servers = {name: HttpServer(lambda _: Reply(200, b"ok"), cert) for name, cert in cases.items()}
    yield servers
    for server in servers.values():
        server.close()
