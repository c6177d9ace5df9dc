"""The data-store kinds that speak HTTP (s3, azure_blob) through a real proxy, through a real squid that inspects
TLS, and with the private CA bundle."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from app.checks import facts
from app.checks.base import Stage, Status
from app.results import Result
from app.runner import check_target
from tests.integration import test_azure_blob as blob
from tests.integration import test_cassandra as cassandra_kind
from tests.integration import test_postgres as pg_kind
from tests.integration import test_s3 as s3_kind
from tests.integration.s3_helpers import no_ambient_aws  # noqa: F401 - the autouse fixture, for these tests too
from tests.servers import free_port
from tests.services import squid
from tests.services.azurite import Azurite
from tests.services.cassandra import CassandraServer
from tests.services.postgres import PostgresServer
from tests.services.proxy import ForwardProxy
from tests.services.s3 import S3Server
from tests.services.squid import InspectingProxy

pytestmark = pytest.mark.integration

UNTRUSTED = "the chain ends in a root CA that is not trusted"  # squid's certificate, without its CA in the bundle


def names_the_inspection(result: Result, proxy: InspectingProxy) -> bool:
    """The failure says the chain came through the proxy, and the remediation starts with its inspection CA."""
    return result.cause == f"{UNTRUSTED} (through the proxy {proxy.url})" and result.remediation.startswith(
        "if the proxy inspects TLS, the platform must trust its CA: put it in the chart's caBundle"
    )


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "TESTPOD_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def inspecting(azurite_https: Azurite, s3_tls: S3Server) -> Iterator[InspectingProxy]:
    """squid inspecting TLS: it trusts the servers' own CAs, and the pod must trust squid's inspection CA."""
    assert azurite_https.ca_file and s3_tls.ca_file
    with squid.started(trusting=[azurite_https.ca_file, s3_tls.ca_file]) as proxy:
        yield proxy


def by_name(endpoint: str) -> str:
    """The endpoint named localhost: squid verifies a destination's certificate by name only, never by address."""
    return endpoint.replace("://127.0.0.1:", "://localhost:")


async def test_s3_goes_through_the_proxy_and_fails_naming_it_when_it_is_down(
    s3: S3Server, forward_proxy: ForwardProxy, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.open_url)
    result = await check_target(s3_kind.target(s3))
    assert result.status == Status.PASSED, result.cause
    assert result.facts[facts.PROXY] == forward_proxy.open_url
    assert [name for name, _ in s3_kind.steps(result)] == ["auth", "bucket", "write", "read", "delete"]

    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    down = await check_target(s3_kind.target(s3))
    assert (down.status, down.stage) == (Status.FAILED, Stage.AUTH)
    assert "proxy" in down.cause.lower()


async def test_s3_trusts_the_ca_bundle_and_a_ca_file_still_wins(
    s3_tls: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert s3_tls.ca_file and s3_tls.wrong_ca_file
    untrusted = await check_target(s3_kind.target(s3_tls, ca_file=None))
    assert (untrusted.status, untrusted.stage) == (Status.FAILED, Stage.TLS)
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", s3_tls.ca_file)
    trusted = await check_target(s3_kind.target(s3_tls, ca_file=None))
    assert trusted.status == Status.PASSED, trusted.cause
    wins = await check_target(s3_kind.target(s3_tls, ca_file=s3_tls.wrong_ca_file))
    assert (wins.status, wins.stage) == (Status.FAILED, Stage.TLS)
    assert "it would verify with the CA bundle (TESTPOD_CA_BUNDLE), which this target's ca_file replaces" in wins.cause


async def test_azure_blob_goes_through_the_proxys_tunnel(
    azurite_https: Azurite, forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # https, as Azure Blob always is: the SDK tunnels through the proxy with CONNECT
    assert azurite_https.ca_file
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy.open_url)
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", azurite_https.ca_file)
    container = f"probe-proxy-{free_port()}"
    azurite_https.service().create_container(container)
    try:
        result = await check_target(blob.target(azurite_https, container))
        assert result.status == Status.PASSED, result.cause
        assert result.facts[facts.PROXY] == forward_proxy.open_url
        assert "connect" not in blob.steps(result)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = await check_target(blob.target(azurite_https, container))
        assert direct.status == Status.PASSED, direct.cause
        assert direct.facts[facts.PROXY] == "direct (NO_PROXY)"
    finally:
        azurite_https.service().delete_container(container)


async def test_azure_blob_trusts_the_ca_bundle(azurite_https: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    assert azurite_https.ca_file
    container = f"probe-ca-{free_port()}"
    azurite_https.service().create_container(container)
    try:
        untrusted = await check_target(blob.target(azurite_https, container))
        assert (untrusted.status, untrusted.stage) == (Status.FAILED, Stage.TLS)
        monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(azurite_https.ca_file))
        trusted = await check_target(blob.target(azurite_https, container))
        assert trusted.status == Status.PASSED, trusted.cause
    finally:
        azurite_https.service().delete_container(container)


async def test_postgres_warns_about_a_proxy_it_cannot_use_and_trusts_the_ca_bundle(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    proxied = await check_target(pg_kind.target(postgres))
    assert proxied.status == Status.WARNING, proxied.cause
    assert proxied.cause.startswith("a proxy is set (HTTPS_PROXY/HTTP_PROXY) but NO_PROXY does not exclude")
    monkeypatch.setenv("NO_PROXY", postgres.host)
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", pg_kind.own_tls(postgres))
    bundled = await check_target(pg_kind.target(postgres, sslmode="verify-ca"))
    assert bundled.status == Status.PASSED, bundled.cause
    assert bundled.facts[facts.PROXY] == "direct (NO_PROXY)"
    assert postgres.wrong_ca_file
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", postgres.wrong_ca_file)
    untrusted = await check_target(pg_kind.target(postgres, sslmode="verify-ca"))
    assert (untrusted.status, untrusted.stage) == (Status.FAILED, Stage.TLS)
    assert untrusted.cause.endswith("; it does not verify with the CA bundle (TESTPOD_CA_BUNDLE) either")


async def test_cassandra_warns_about_a_proxy_it_cannot_use(
    cassandra: CassandraServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    proxied = await check_target(cassandra_kind.target(cassandra))
    assert proxied.status == Status.WARNING, proxied.cause
    assert f"NO_PROXY does not exclude {cassandra.host}:{cassandra.port}" in proxied.cause


async def test_s3_through_an_inspecting_proxy_passes_only_with_its_ca_in_the_bundle(
    s3_tls: S3Server, inspecting: InspectingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = dataclasses.replace(s3_tls, endpoint=by_name(s3_tls.endpoint))
    monkeypatch.setenv("HTTPS_PROXY", inspecting.url)
    untrusted = await check_target(s3_kind.target(store, ca_file=None))
    assert (untrusted.status, untrusted.stage) == (Status.FAILED, Stage.TLS)
    assert names_the_inspection(untrusted, inspecting), untrusted.cause
    monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(inspecting.ca_file))
    trusted = await check_target(s3_kind.target(store, ca_file=None))
    assert trusted.status == Status.PASSED, trusted.cause
    assert trusted.facts[facts.PROXY] == inspecting.url
    assert [name for name, _ in s3_kind.steps(trusted)] == ["auth", "bucket", "write", "read", "delete"]
    # the store's own CA as ca_file replaces the bundle: the certificate squid forged no longer verifies
    replaced = await check_target(s3_kind.target(store))
    assert (replaced.status, replaced.stage) == (Status.FAILED, Stage.TLS)
    assert names_the_inspection(replaced, inspecting), replaced.cause


async def test_azure_blob_through_an_inspecting_proxy_passes_only_with_its_ca_in_the_bundle(
    azurite_https: Azurite, inspecting: InspectingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = dataclasses.replace(azurite_https, host="localhost")
    container = f"probe-inspected-{free_port()}"
    azurite_https.service().create_container(container)
    try:
        monkeypatch.setenv("HTTPS_PROXY", inspecting.url)
        untrusted = await check_target(blob.target(account, container))
        assert (untrusted.status, untrusted.stage) == (Status.FAILED, Stage.TLS)
        assert names_the_inspection(untrusted, inspecting), untrusted.cause
        monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(inspecting.ca_file))
        trusted = await check_target(blob.target(account, container))
        assert trusted.status == Status.PASSED, trusted.cause
        assert trusted.facts[facts.PROXY] == inspecting.url
        # the account's own CA does not help: what the pod sees is squid's certificate
        monkeypatch.setenv("TESTPOD_CA_BUNDLE", str(azurite_https.ca_file))
        own = await check_target(blob.target(account, container))
        assert (own.status, own.stage) == (Status.FAILED, Stage.TLS)
        assert names_the_inspection(own, inspecting), own.cause
    finally:
        monkeypatch.delenv("HTTPS_PROXY")
        azurite_https.service().delete_container(container)
