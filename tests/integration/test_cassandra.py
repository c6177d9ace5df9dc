"""The cassandra kind against a real Cassandra 5.0 node on 127.0.0.1 (tests/services/cassandra.py), for real."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app import report
from app.checks.base import Stage, Status
from app.checks.cassandra import SCRATCH_TABLE, CassandraTarget
from app.results import Result
from app.runner import check_target, run_targets
from tests.servers import StallServer
from tests.services import cassandra as service
from tests.services.cassandra import CassandraServer

pytestmark = pytest.mark.integration


def target(server: CassandraServer, **fields: Any) -> CassandraTarget:
    values: dict[str, Any] = {
        "name": "cluster",
        "kind": "cassandra",
        "contact_points": [server.host],
        "port": server.port,
        "username": service.APP_USER,
        "password": server.user_password,
        "keyspace": service.APP_KEYSPACE,
        "min_replication": 1,
    }
    values.update(fields)
    return CassandraTarget.model_validate(values)


def own_tls(server: CassandraServer) -> str:
    """This module's CA file; an external node was not started with its certificate."""
    if server.ca_file is None:
        pytest.skip("the external Cassandra node was not started with this module's TLS certificate")
    return server.ca_file


def steps(result: Result) -> list[str]:
    return [step.name for step in result.steps]


def scratch_rows(server: CassandraServer, keyspace: str) -> int:
    with server.session() as session:
        return int(session.execute(f"SELECT count(*) FROM {keyspace}.{SCRATCH_TABLE}").one()[0])


@pytest.fixture
def new_keyspace(cassandra: CassandraServer) -> Iterator[str]:
    name = f"testpod_new_{uuid.uuid4().hex[:12]}"
    yield name
    with cassandra.session() as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}")


# --- passing ---------------------------------------------------------------------------------------


async def test_round_trip_passes_every_step_and_leaves_no_row(cassandra: CassandraServer) -> None:
    result = await check_target(target(cassandra))
    assert result.status == Status.PASSED, result.cause
    assert steps(result) == [
        "resolve",
        "connect",
        "login",
        "cluster",
        "keyspace",
        "replication",
        "scratch table",
        "write",
        "read",
        "delete",
    ]
    facts = result.facts
    assert facts["cluster_name"] and str(facts["release_version"]).startswith("5.0.")
    assert (facts["data_centres"], facts["local_dc"]) == (cassandra.data_centre, cassandra.data_centre)
    assert (facts["nodes_up"], facts["nodes_down"]) == (1, 0)
    assert facts["replication"] == f"NetworkTopologyStrategy {cassandra.data_centre}=1"
    assert facts["consistency"] == "LOCAL_QUORUM"
    assert facts["protocol_version"] == 5
    assert facts["tls"] is False
    assert all(float(facts[key]) > 0 for key in ("write_ms", "read_ms", "delete_ms"))  # type: ignore[arg-type]
    assert scratch_rows(cassandra, service.APP_KEYSPACE) == 0


async def test_production_replication_threshold_warns_on_a_single_replica(cassandra: CassandraServer) -> None:
    result = await check_target(target(cassandra, min_replication=3))
    assert (result.status, result.stage) == (Status.WARNING, Stage.OPERATION)
    assert f"fewer than min_replication 3 replicas in {cassandra.data_centre}=1" in result.cause
    assert "ALTER KEYSPACE testpod" in result.remediation and "min_replication" in result.remediation
    assert steps(result)[-1] == "delete"  # a warning, not a stop: the round trip still ran


async def test_create_keyspace_creates_it_with_what_the_cluster_can_hold(
    cassandra: CassandraServer, new_keyspace: str
) -> None:
    result = await check_target(target(cassandra, keyspace=new_keyspace, create_keyspace=True, min_replication=3))
    # three replicas wanted, one node: it is created with one, and the check says that is below the threshold
    assert (result.status, result.stage) == (Status.WARNING, Stage.OPERATION), result.cause
    assert result.facts["keyspace_created"] is True
    assert result.facts["replication"] == f"NetworkTopologyStrategy {cassandra.data_centre}=1"
    keyspace_step = next(s for s in result.steps if s.name == "keyspace")
    assert keyspace_step.detail == "created"
    assert scratch_rows(cassandra, new_keyspace) == 0


async def test_tls_verified_against_the_ca_with_protocol_v4(cassandra: CassandraServer) -> None:
    ca_file = own_tls(cassandra)
    result = await check_target(
        target(cassandra, tls=True, ca_file=ca_file, server_name="localhost", protocol_version=4)
    )
    assert result.status == Status.PASSED, result.cause
    assert steps(result)[:4] == ["resolve", "connect", "tls handshake", "login"]
    assert result.facts["tls_version"] == "TLSv1.3"
    assert (result.facts["tls"], result.facts["protocol_version"]) == (True, 4)


async def test_cosmos_mode_uses_tls_and_v4_and_leaves_replication_to_the_service(cassandra: CassandraServer) -> None:
    ca_file = own_tls(cassandra)
    cosmos = target(cassandra, cosmos=True, ca_file=ca_file, min_replication=3)
    assert (cosmos.tls, cosmos.protocol_version, cosmos.port) == (True, 4, cassandra.port)
    result = await check_target(cosmos)
    # replication factor 1 < 3 would warn on Cassandra; Cosmos DB manages replicas itself
    assert result.status == Status.PASSED, result.cause
    replication = next(s for s in result.steps if s.name == "replication")
    assert "managed by Cosmos DB" in replication.detail


async def test_contact_point_that_refuses_is_a_warning_when_another_works(cassandra: CassandraServer) -> None:
    if cassandra.host != "127.0.0.1":
        pytest.skip("needs the node on 127.0.0.1 only, so that ::1 refuses")
    result = await check_target(target(cassandra, contact_points=["::1", "127.0.0.1"]))
    assert (result.status, result.stage) == (Status.WARNING, Stage.CONNECT), result.cause
    assert result.cause.startswith(f"contact point unusable: cannot connect to ::1:{cassandra.port}")
    assert steps(result)[:4] == ["resolve", "connect", "resolve", "connect"]
    assert steps(result)[-1] == "delete"


async def test_consistency_one_succeeds_where_quorum_cannot(cassandra: CassandraServer) -> None:
    result = await check_target(target(cassandra, keyspace=service.RF3_KEYSPACE, consistency="ONE"))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["consistency"] == "ONE"


# --- failing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("consistency", ["LOCAL_QUORUM", "QUORUM", "ALL"])
async def test_consistency_not_achievable_fails_at_operation(cassandra: CassandraServer, consistency: str) -> None:
    result = await check_target(target(cassandra, keyspace=service.RF3_KEYSPACE, consistency=consistency))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert steps(result)[-1] == "write"
    required = 3 if consistency == "ALL" else 2
    assert result.cause == f"write at {consistency} needs {required} live replica(s), only 1 alive"
    assert "replication factor" in result.remediation and "lower consistency" in result.remediation


async def test_wrong_password_fails_at_auth(cassandra: CassandraServer) -> None:
    result = await check_target(target(cassandra, password="not-the-password"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert steps(result)[-1] == "login"
    assert result.cause.startswith(f"login as {service.APP_USER} refused")
    assert "Bad credentials" in result.cause
    assert "LOGIN = true" in result.remediation


async def test_no_credentials_for_a_cluster_that_requires_them(cassandra: CassandraServer) -> None:
    result = await check_target(target(cassandra, username=None, password=None))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "the cluster requires authentication and no username is configured"


async def test_missing_keyspace_fails_and_says_how_to_create_it(cassandra: CassandraServer) -> None:
    result = await check_target(target(cassandra, keyspace="testpod_missing"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == "keyspace testpod_missing does not exist"
    assert result.remediation == (
        "create it (CREATE KEYSPACE IF NOT EXISTS testpod_missing WITH replication = {'class': "
        f"'NetworkTopologyStrategy', '{cassandra.data_centre}': 1}}), or set create_keyspace: true to let this check "
        "create it"
    )


async def test_read_only_role_fails_the_write_at_permission(cassandra: CassandraServer) -> None:
    reader = target(cassandra, username=service.READER_USER, keyspace=service.READONLY_KEYSPACE)
    result = await check_target(reader)
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-1] == "write"
    assert result.cause.startswith("write denied:") and "has no MODIFY permission" in result.cause
    assert result.remediation == f"GRANT MODIFY ON KEYSPACE {service.READONLY_KEYSPACE} TO {service.READER_USER}"


async def test_role_without_create_cannot_make_the_scratch_table(cassandra: CassandraServer) -> None:
    reader = target(cassandra, username=service.READER_USER, keyspace=service.NOTABLE_KEYSPACE)
    result = await check_target(reader)
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-1] == "scratch table"
    assert "has no CREATE permission" in result.cause
    assert result.remediation == f"GRANT CREATE ON KEYSPACE {service.NOTABLE_KEYSPACE} TO {service.READER_USER}"


async def test_role_without_create_cannot_create_a_keyspace(cassandra: CassandraServer, new_keyspace: str) -> None:
    reader = target(cassandra, username=service.READER_USER, keyspace=new_keyspace, create_keyspace=True)
    result = await check_target(reader)
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.cause.startswith("create the keyspace denied:")
    assert result.remediation == f"GRANT CREATE ON ALL KEYSPACES TO {service.READER_USER}"


async def test_unknown_local_dc_fails_at_connect_naming_the_real_ones(cassandra: CassandraServer) -> None:
    result = await check_target(target(cassandra, local_dc="dc-nowhere"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert result.cause == (
        f"local_dc dc-nowhere is not a data centre of this cluster (it has {cassandra.data_centre})"
    )


async def test_untrusted_certificate_fails_at_tls(cassandra: CassandraServer) -> None:
    own_tls(cassandra)
    result = await check_target(target(cassandra, tls=True))  # the system store does not know the test CA
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert "unable to get local issuer certificate" in result.cause
    assert "ca_file" in result.remediation


async def test_certificate_for_another_name_fails_at_tls(cassandra: CassandraServer) -> None:
    ca_file = own_tls(cassandra)
    result = await check_target(target(cassandra, tls=True, ca_file=ca_file, server_name="cassandra.example.com"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause == "the certificate is not valid for cassandra.example.com"


async def test_unverified_tls_passes_with_a_warning(cassandra: CassandraServer) -> None:
    own_tls(cassandra)
    result = await check_target(target(cassandra, tls=True, tls_verify=False))
    assert (result.status, result.stage) == (Status.WARNING, Stage.TLS), result.cause
    assert result.cause == f"the certificate of {cassandra.host} is not verified (tls_verify: false)"


async def test_closed_port_fails_at_connect(cassandra: CassandraServer, closed_port: int) -> None:
    result = await check_target(target(cassandra, port=closed_port))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert result.cause == f"cannot connect to {cassandra.host}:{closed_port}: Connection refused"


@pytest.mark.parametrize(("tls", "stage", "step"), [(False, Stage.AUTH, "login"), (True, Stage.TLS, "tls handshake")])
async def test_stalled_node_fails_on_time_at_the_stage_it_hung(
    cassandra: CassandraServer, stall: StallServer, tls: bool, stage: Stage, step: str
) -> None:
    start = time.monotonic()
    result = await check_target(target(cassandra, contact_points=["127.0.0.1"], port=stall.port, tls=tls, timeout=2))
    elapsed = time.monotonic() - start
    assert (result.status, result.stage) == (Status.FAILED, stage)
    assert steps(result)[-1] == step
    assert 1.5 <= elapsed < 2.5


# --- replication judgement (Cassandra refuses unknown data centres and one node has only one: pure cases) ---


# --- secrets and config -----------------------------------------------------------------------------


async def test_password_never_appears_in_any_output(
    cassandra: CassandraServer,
    stall: StallServer,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    planted = "Planted-Secret-c4554nd7a"
    caplog.set_level(logging.DEBUG)
    targets = [
        target(cassandra, name="wrong-password", password=planted),
        target(cassandra, name="reader", username=service.READER_USER, password=planted),
        target(cassandra, name="closed", password=planted, port=closed_port),
        target(cassandra, name="stalled", password=planted, port=stall.port, timeout=1),
    ]
    run = await run_targets(targets)
    assert [r.status for r in run.results] == [Status.FAILED] * 4
    assert [r.stage for r in run.results] == [Stage.AUTH, Stage.AUTH, Stage.CONNECT, Stage.AUTH]
    outputs = [run.model_dump_json(), report.to_json(run), report.to_text(run), report.to_junit(run), caplog.text]
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err, repr(targets)]
    for output in outputs:
        assert planted not in output
