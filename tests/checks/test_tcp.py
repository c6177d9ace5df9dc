"""tcp against real sockets on 127.0.0.1 (and an unknown name inside the DNS sandbox)."""

from __future__ import annotations

import pytest

from app.checks.base import Stage, Status
from app.checks.tcp import TcpTarget
from tests.checks import run_check
from tests.checks.dns_sandbox import run_in_sandbox
from tests.servers import StallServer
from tests.services import unavailable


def test_a_listening_port_passes_even_when_it_never_speaks(stall: StallServer) -> None:
    result = run_check(TcpTarget(name="silent", kind="tcp", host="127.0.0.1", port=stall.port))
    assert result.status == Status.PASSED
    assert [s.name for s in result.steps] == ["resolve", "connect"]
    assert result.facts["connected_to"] == f"127.0.0.1:{stall.port}"


def test_a_name_resolves_before_connecting(stall: StallServer) -> None:
    result = run_check(TcpTarget(name="by-name", kind="tcp", host="localhost", port=stall.port))
    assert result.status == Status.PASSED
    assert "127.0.0.1" in str(result.facts["addresses"])


def test_a_closed_port_is_refused_at_connect(closed_port: int) -> None:
    result = run_check(TcpTarget(name="closed", kind="tcp", host="127.0.0.1", port=closed_port))
    assert result.status == Status.FAILED
    assert result.stage == Stage.CONNECT
    assert result.cause == f"cannot connect to 127.0.0.1:{closed_port}: Connection refused"
    assert (
        result.remediation
        == f"the host answered but nothing listens on port {closed_port}: check the port and that it runs"
    )


def test_an_unknown_name_fails_at_resolve(tmp_path_factory: pytest.TempPathFactory) -> None:
    target = {"name": "unknown", "kind": "tcp", "host": "missing.test", "port": 443}
    try:
        (result,) = run_in_sandbox([target], tmp_path_factory.mktemp("tcp-dns"))
    except RuntimeError as error:
        unavailable("network namespace for DNS tests", str(error))
    assert result.status == Status.FAILED
    assert result.stage == Stage.RESOLVE
    assert "missing.test does not resolve" in result.cause
    assert [s.name for s in result.steps] == ["resolve"]
