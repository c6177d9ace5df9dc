"""dns through the real resolver path: localhost here, and a zone we serve inside a network namespace of our own."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.checks.base import Stage, Status
from app.checks.dns import DnsTarget
from app.config import ConfigError, parse_targets
from app.results import Result
from tests.checks import run_check
from tests.checks.dns_sandbox import run_in_sandbox
from tests.services import unavailable

SANDBOX_TARGETS = [
    {"name": "pair", "kind": "dns", "host": "pair.test"},
    {
        "name": "pair-exact",
        "kind": "dns",
        "host": "pair.test",
        "expected_addresses": ["127.0.0.11", "0:0::1", "127.0.0.10"],
    },
    {"name": "pair-differs", "kind": "dns", "host": "pair.test", "expected_addresses": ["127.0.0.10", "127.0.0.99"]},
    {"name": "hosts-file", "kind": "dns", "host": "hosts-only.test"},
    {"name": "nxdomain", "kind": "dns", "host": "missing.test"},
    {"name": "no-records", "kind": "dns", "host": "empty.test"},
    {"name": "servfail", "kind": "dns", "host": "broken.test"},
    {"name": "silent", "kind": "dns", "host": "silent.test", "timeout": 0.5},
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    try:
        results = run_in_sandbox(SANDBOX_TARGETS, tmp_path_factory.mktemp("dns"))
    except RuntimeError as error:
        unavailable("network namespace for DNS tests", str(error))
    return {result.name: result for result in results}


def test_localhost_resolves_through_the_pods_resolver() -> None:
    result = run_check(DnsTarget(name="local", kind="dns", host="localhost"))
    assert result.status == Status.PASSED
    assert "127.0.0.1" in str(result.facts["ipv4"]).split(", ")
    assert result.steps[0].name == "resolve"
    assert "127.0.0.1" in result.steps[0].detail


def test_every_a_and_aaaa_answer_is_reported(sandbox: dict[str, Result]) -> None:
    result = sandbox["pair"]
    assert result.status == Status.PASSED
    assert set(str(result.facts["ipv4"]).split(", ")) == {"127.0.0.10", "127.0.0.11"}
    assert result.facts["ipv6"] == "::1"
    assert result.facts["address_count"] == 3
    assert set(result.steps[0].detail.split(", ")) == {"127.0.0.10", "127.0.0.11", "::1"}


def test_expected_addresses_match_as_a_set_in_any_notation(sandbox: dict[str, Result]) -> None:
    result = sandbox["pair-exact"]
    assert result.status == Status.PASSED
    assert [s.name for s in result.steps] == ["resolve", "expected addresses"]


def test_missing_and_unexpected_addresses_are_named(sandbox: dict[str, Result]) -> None:
    result = sandbox["pair-differs"]
    assert result.status == Status.FAILED
    assert result.stage == Stage.RESOLVE
    assert "missing 127.0.0.99" in result.cause
    assert "unexpected 127.0.0.11, ::1" in result.cause
    assert result.steps[-1].name == "expected addresses"


def test_names_from_the_hosts_file_resolve(sandbox: dict[str, Result]) -> None:
    assert sandbox["hosts-file"].status == Status.PASSED
    assert sandbox["hosts-file"].facts["ipv4"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("name", "cause", "remediation"),
    [
        ("nxdomain", "missing.test does not resolve: no such name (NXDOMAIN)", "check the name for typos"),
        ("no-records", "empty.test does not resolve: the name has no address records", "add an A or AAAA record"),
        ("servfail", "broken.test does not resolve: the DNS server failed to answer", "CoreDNS"),
    ],
)
def test_resolver_outcomes_are_told_apart(sandbox: dict[str, Result], name: str, cause: str, remediation: str) -> None:
    result = sandbox[name]
    assert result.status == Status.FAILED
    assert result.stage == Stage.RESOLVE
    assert cause in result.cause
    assert remediation in result.remediation


def test_a_dns_server_that_never_answers_times_out_at_resolve(sandbox: dict[str, Result]) -> None:
    result = sandbox["silent"]
    assert result.status == Status.FAILED
    assert result.stage == Stage.RESOLVE
    assert result.cause == "resolve did not finish within 0.5 s"
    assert result.duration_ms < 900


def test_config_rejects_an_address_that_is_not_one() -> None:
    with pytest.raises(
        ConfigError, match=r"targets\[0\]\.expected_addresses\[1\]: value is not a valid IPv4 or IPv6 address"
    ):
        parse_targets(
            "targets: [{name: a, kind: dns, host: x.test, expected_addresses: [127.0.0.1, not-an-ip]}]", "t.yaml", {}
        )


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,30}(\.[a-z][a-z0-9-]{0,30}){0,3}", fullmatch=True),
    addresses=st.lists(st.ip_addresses(), max_size=5),
)
def test_config_round_trip(host: str, addresses: list[Any]) -> None:
    entry = {"name": "d", "kind": "dns", "host": host, "expected_addresses": [str(a) for a in addresses]}
    (target,) = parse_targets(yaml.safe_dump({"targets": [entry]}), "targets.yaml", {})
    assert isinstance(target, DnsTarget)
    assert target.host == host
    assert target.expected_addresses == addresses
