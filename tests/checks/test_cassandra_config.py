"""The cassandra kind's config: defaults, `${ENV}` references and precise messages for malformed targets."""

from __future__ import annotations

import time

import pytest

from app.checks.base import Probe, Stage
from app.checks.cassandra import CassandraTarget
from tests.checks.helpers import config_error, parse


@pytest.mark.parametrize(
    ("replication", "nodes", "warnings"),
    [
        ({"class": "NetworkTopologyStrategy", "eu": "3", "us": "3"}, {"eu": 3, "us": 4}, []),
        (
            {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "eu": "3"},
            {"eu": 3, "us": 3},
            ["keyspace airia has no replicas in data centre(s) us"],
        ),
        (
            {"class": "NetworkTopologyStrategy", "eu": "3", "old": "3"},
            {"eu": 3},
            ["keyspace airia replicates to old, which has no nodes in this cluster"],
        ),
        (
            {"class": "NetworkTopologyStrategy", "eu": "2", "us": "3/1"},
            {"eu": 3, "us": 3},
            ["keyspace airia keeps fewer than min_replication 3 replicas in eu=2"],
        ),
        (
            {"class": "SimpleStrategy", "replication_factor": "3"},
            {"eu": 3, "us": 3},
            ["keyspace airia uses SimpleStrategy, which ignores the cluster's 2 data centres"],
        ),
        (
            {"class": "SimpleStrategy", "replication_factor": "1"},
            {"eu": 1},
            ["keyspace airia keeps 1 replica(s), fewer than min_replication 3"],
        ),
        ({"class": "LocalStrategy"}, {"eu": 1}, []),
    ],
)
def test_replication_is_judged_against_the_data_centres(
    replication: dict[str, str], nodes: dict[str, int], warnings: list[str]
) -> None:
    cluster = CassandraTarget(name="events", kind="cassandra", contact_points=["h"], keyspace="airia")
    probe = Probe(deadline=time.monotonic() + 5)
    cluster._replication(probe, replication, nodes)
    assert [cause for _, cause, _ in probe.warnings] == warnings
    assert all(stage == Stage.OPERATION for stage, _, _ in probe.warnings)


def test_cosmos_replication_is_reported_not_judged() -> None:
    cosmos = CassandraTarget(
        name="cosmos", kind="cassandra", contact_points=["acct.cassandra.cosmos.azure.com"], keyspace="airia"
    )
    probe = Probe(deadline=time.monotonic() + 5)
    cosmos._replication(probe, {"class": "SimpleStrategy", "replication_factor": "1"}, {"West Europe": 1})
    assert probe.warnings == []
    assert probe.facts["replication"] == "SimpleStrategy replication_factor=1"


def test_config_with_defaults_and_env_password() -> None:
    [cluster] = parse(
        "targets:\n"
        "  - name: events\n"
        "    kind: cassandra\n"
        "    contact_points: [cassandra-0.cassandra, cassandra-1.cassandra]\n"
        "    username: airia\n"
        "    password: ${CASSANDRA_PASSWORD}\n"
        "    keyspace: airia\n"
    )
    assert isinstance(cluster, CassandraTarget)
    assert (cluster.port, cluster.consistency, cluster.tls, cluster.cosmos) == (9042, "LOCAL_QUORUM", False, False)
    assert (cluster.min_replication, cluster.create_keyspace, cluster.protocol_version) == (3, False, None)
    assert cluster.effective_timeout == 15.0
    assert cluster.secrets() == ["s3cret"]
    assert "s3cret" not in repr(cluster)


def test_cosmos_is_recognised_by_its_host_name() -> None:
    [cosmos] = parse(
        "targets:\n"
        "  - {name: cosmos, kind: cassandra, contact_points: [acct.cassandra.cosmos.azure.com], username: acct,\n"
        "     password: '${CASSANDRA_PASSWORD}', keyspace: airia}\n"
    )
    assert (cosmos.cosmos, cosmos.port, cosmos.tls, cosmos.protocol_version) == (True, 10350, True, 4)
    assert cosmos.tls_verify is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("contact_points: [h]", "targets[0].keyspace: required"),
        ("contact_points: [], keyspace: k", "targets[0].contact_points: List should have at least 1 item"),
        ("contact_points: ['h h'], keyspace: k", "targets[0].contact_points[0]: String should match"),
        ("contact_points: [h], keyspace: Airia-Events", "targets[0].keyspace: String should match"),
        ("contact_points: [h], keyspace: k, consistency: SERIAL", "targets[0].consistency: Input should be 'ONE'"),
        ("contact_points: [h], keyspace: k, port: 70000", "targets[0].port: must be 1-65535"),
        ("contact_points: [h], keyspace: k, protocol_version: 2", "targets[0].protocol_version: Input should be 3"),
        ("contact_points: [h], keyspace: k, min_replication: 0", "targets[0].min_replication: Input should be"),
        ("contact_points: [h], keyspace: k, ca_file: /nonexistent.pem", "targets[0].ca_file: Path does not point"),
        ("contact_points: [h], keyspace: k, replication: 3", "targets[0].replication: unknown key"),
        ("contact_points: [h], keyspace: k, username: u", "targets[0]: username and password go together"),
        ("contact_points: [h], keyspace: k, password: p", "targets[0]: username and password go together"),
        ("contact_points: [h], keyspace: k, cosmos: true, tls: false", "targets[0]: tls: Cosmos DB accepts TLS"),
        ("contact_points: [h], keyspace: k, server_name: h", "targets[0]: ca_file, server_name and tls_verify only"),
    ],
)
def test_malformed_config_names_target_and_field(fields: str, message: str) -> None:
    assert config_error(f"targets:\n  - {{name: events, kind: cassandra, {fields}}}\n").startswith(message)
