"""cassandra: an Apache Cassandra cluster (or Azure Cosmos DB for Apache Cassandra) the platform can use.

Steps: reach a contact point (resolve, TCP connect), the TLS handshake (done by the check itself so a
certificate problem is named by its verify code), the CQL login, cluster facts (name, version, data centres,
nodes up and down), the keyspace (created only with `create_keyspace: true`), its replication against the
cluster's data centres, then a write / read / delete round trip of a uniquely keyed row at the configured
consistency. Failures are classified by the driver's exception types (AuthenticationFailed, Unauthorized,
Unavailable, ReadTimeout / WriteTimeout, OperationTimedOut ...), never by message text.

The scratch table `<keyspace>.airia_test_pod_scratch (id uuid PRIMARY KEY, payload blob)` is created when missing,
since the platform creates its own tables and CREATE is a permission worth proving. It is never dropped (a DROP
makes snapshots and schema churn); each row is written with a 10-minute TTL, so even a check cut short leaves
nothing behind for long.

"Production-like" replication is explicit: `min_replication` (default 3) is the replication factor every data
centre should hold; less is a warning, as is a data centre of the cluster that the keyspace does not replicate
to. Set `min_replication: 1` for a single-node development cluster.

Azure Cosmos DB for Apache Cassandra (`cosmos: true`, or a contact point under `.cassandra.cosmos.azure.*`):
- port 10350, TLS always, verified (its certificate is publicly trusted), protocol v4 (it has no v5);
- replication is managed by the service (four replicas in every region), so the keyspace's replication map is
  reported, not judged;
- the round trip uses only CQL Cosmos DB supports: IF NOT EXISTS DDL, INSERT ... USING TTL, SELECT and DELETE by
  full primary key; no NOT IN, ALLOW FILTERING, lightweight transactions, BATCH or TRUNCATE;
- a throttled request (Overloaded, its "request rate is large" 429) fails at the operation stage and asks for
  more RU/s.

The driver's libev event loop is used (its wheels bundle libev); asyncore only where that extension was not built.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, FilePath, SecretStr, StringConstraints, model_validator

from app.checks.base import CheckFailed, Host, Port, Probe, Stage, Target
from app.checks.net import NO_ANSWER, connect, connect_failure, resolve
from app.checks.tls import client_context, handshake_step
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from cassandra.cluster import Cluster, Session

Consistency = Literal["ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"]
CqlName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]  # unquoted, so lower case

SCRATCH_TABLE = "airia_test_pod_scratch"
SCRATCH_TTL_SECONDS = 600
COSMOS_PORT = 10350
_COSMOS_HOST = re.compile(r"\.cassandra\.cosmos\.azure\.[a-z.]+$", re.IGNORECASE)


class CassandraTarget(Target):
    default_timeout: ClassVar[float] = 15.0
    warm_imports: ClassVar[tuple[str, ...]] = ("cassandra.cluster", "cassandra.policies", "cassandra.io.libevreactor")

    kind: Literal["cassandra"]
    contact_points: Annotated[list[Host], Field(min_length=1, max_length=20)]
    port: Port = 9042
    username: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    password: SecretStr | None = None
    keyspace: CqlName
    local_dc: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    consistency: Consistency = "LOCAL_QUORUM"
    tls: bool = False
    tls_verify: bool = True  # chain and hostname; off only for a throwaway test cluster
    ca_file: FilePath | None = None  # PEM bundle to trust instead of the system store
    server_name: Host | None = None  # the name the nodes' certificates carry; default: the contact point
    protocol_version: Literal[3, 4, 5] | None = None  # default: negotiated (Cosmos DB: 4)
    cosmos: bool = False
    create_keyspace: bool = False
    min_replication: Annotated[int, Field(ge=1, le=10)] = 3

    @model_validator(mode="before")
    @classmethod
    def _cosmos_defaults(cls, data: Any) -> Any:
        """Cosmos DB (named, or recognised by its host name) listens on 10350, with TLS, speaking protocol v4."""
        if not isinstance(data, dict):
            return data
        hosts = data.get("contact_points")
        detected = isinstance(hosts, list) and any(isinstance(h, str) and _COSMOS_HOST.search(h) for h in hosts)
        if not data.get("cosmos", detected):
            return data
        return {"port": COSMOS_PORT, "tls": True, "protocol_version": 4, **data, "cosmos": True}

    @model_validator(mode="after")
    def _consistent(self) -> CassandraTarget:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both, or neither for a cluster without auth")
        if self.cosmos and not self.tls:
            raise ValueError("tls: Cosmos DB accepts TLS connections only; remove tls: false")
        if not self.tls and (self.ca_file or self.server_name or not self.tls_verify):
            raise ValueError("ca_file, server_name and tls_verify only apply with tls: true")
        return self

    def check(self, probe: Probe) -> None:
        host, sock = self._reach(probe)
        with sock:
            if self.tls:
                handshake_step(
                    probe, sock, host, ca_file=self.ca_file, verify=self.tls_verify, server_name=self.server_name
                )
        probe.facts["tls"] = self.tls
        cluster = self._cluster(probe, host)
        try:
            session = self._login(probe, cluster)
            data_centres = self._cluster_facts(probe, cluster, session)
            replication = self._keyspace(probe, session, data_centres)
            self._replication(probe, replication, data_centres)
            self._round_trip(probe, session)
        finally:
            cluster.shutdown()

    # --- reaching the cluster -------------------------------------------------------------------------

    def _reach(self, probe: Probe) -> tuple[str, socket.socket]:
        """The first contact point that resolves and accepts a connection; the others that fail are warnings."""
        failures: list[CheckFailed] = []
        for host in self.contact_points:
            try:
                sock = connect(probe, host, self.port, resolve(probe, host, self.port))
            except CheckFailed as failure:
                failures.append(failure)
                continue
            for unusable in failures:
                probe.warn(unusable.stage, f"contact point unusable: {unusable.cause}", unusable.remediation)
            return host, sock
        raise failures[0]

    def _cluster(self, probe: Probe, host: str) -> Cluster:
        """A driver cluster that fails fast: timeouts from the time left, no retries, no reconnection."""
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy, FallthroughRetryPolicy

        profile = ExecutionProfile(
            load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=self.local_dc),
            retry_policy=FallthroughRetryPolicy(),
            consistency_level=ConsistencyLevel.name_to_value[self.consistency],
            request_timeout=probe.remaining(),
        )
        options: dict[str, Any] = {}
        if self.protocol_version is not None:
            options["protocol_version"] = self.protocol_version
        if self.username is not None and self.password is not None:
            options["auth_provider"] = PlainTextAuthProvider(self.username, self.password.get_secret_value())
        if self.tls:
            options["ssl_context"] = client_context(self.ca_file, verify=self.tls_verify)
            options["ssl_options"] = {"server_hostname": self.server_name or host}
        return Cluster(
            contact_points=list(self.contact_points),
            port=self.port,
            connection_class=_connection_class(),
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=probe.remaining(),
            control_connection_timeout=probe.remaining(),
            max_schema_agreement_wait=max(int(probe.remaining()), 1),
            reconnection_policy=ConstantReconnectionPolicy(1.0, max_attempts=0),
            # the check reads system_schema itself; the driver's schema and token maps would only slow it down
            schema_metadata_enabled=False,
            token_metadata_enabled=False,
            **options,
        )

    def _login(self, probe: Probe, cluster: Cluster) -> Session:
        from cassandra.cluster import NoHostAvailable

        with probe.step("login", Stage.AUTH):
            try:
                session = cluster.connect()
            except NoHostAvailable as error:
                raise self._login_failure(cluster, error) from None
            who = f"as {self.username}" if self.username else "without credentials"
            probe.note(f"{who}, protocol v{cluster.protocol_version}")
        probe.facts["protocol_version"] = cluster.protocol_version
        return session

    def _login_failure(self, cluster: Cluster, error: Any) -> CheckFailed:
        """What kept the driver from opening a session, from the per-host errors NoHostAvailable carries."""
        from cassandra import AuthenticationFailed, OperationTimedOut
        from cassandra.connection import ConnectionException

        hosts = list(cluster.metadata.all_hosts())
        data_centres = sorted({h.datacenter for h in hosts if h.datacenter})
        if self.local_dc and data_centres and self.local_dc not in data_centres:
            return CheckFailed(
                Stage.CONNECT,
                f"local_dc {self.local_dc} is not a data centre of this cluster (it has {', '.join(data_centres)})",
                "set local_dc to the data centre the platform's pods should use, spelled as nodetool status shows it",
            )
        per_host = dict(error.errors) if isinstance(error.errors, Mapping) else {}
        errors = list(per_host.values())
        for cause in errors:
            if isinstance(cause, AuthenticationFailed):
                if self.username is None:
                    return CheckFailed(
                        Stage.AUTH,
                        "the cluster requires authentication and no username is configured",
                        "set username and password (Cosmos DB: the account name and its primary key)",
                    )
                return CheckFailed(
                    Stage.AUTH,
                    f"login as {self.username} refused: {clean_remote_text(str(cause))}",
                    "check the username and password (Cosmos DB: the account name and its primary or secondary "
                    "key); the role needs LOGIN = true",
                )
        for endpoint, cause in per_host.items():
            if isinstance(cause, OperationTimedOut):
                return CheckFailed(
                    Stage.AUTH,
                    "the node accepted the connection but did not complete the CQL handshake in time",
                    f"check that port {self.port} is the native transport port (9042; Cosmos DB 10350), and the "
                    "node's load and logs",
                )
            if isinstance(cause, ConnectionException):
                return CheckFailed(
                    Stage.AUTH,
                    f"the node closed the connection during the CQL handshake: {clean_remote_text(str(cause))}",
                    "if the nodes require client TLS set tls: true; otherwise check the node's logs",
                )
            if isinstance(cause, OSError):  # name the node that failed, which may not be the first contact point
                return connect_failure(str(getattr(endpoint, "address", endpoint)), self.port, cause)
        reasons = "; ".join(f"{type(c).__name__}: {clean_remote_text(str(c))}" for c in errors) or str(error)
        return CheckFailed(
            Stage.AUTH,
            f"no CQL session could be opened ({reasons})",
            "check the nodes' logs and that the contact points are nodes of this cluster",
        )

    # --- the cluster and the keyspace ---------------------------------------------------------------

    def _cluster_facts(self, probe: Probe, cluster: Cluster, session: Session) -> dict[str, int]:
        """Cluster name, version and nodes; returns the number of nodes in each data centre."""
        with probe.step("cluster", Stage.CONNECT):
            local = self._read_system(
                session, probe, "SELECT cluster_name, release_version, data_center FROM system.local"
            )
            row = local.one()
            hosts = list(cluster.metadata.all_hosts())
            up = sorted(str(h.endpoint) for h in hosts if h.is_up)
            # False once the driver saw it fail; None for nodes it never connects to (other data centres)
            down = sorted(str(h.endpoint) for h in hosts if h.is_up is False)
            data_centres = Counter(str(h.datacenter) for h in hosts if h.datacenter)
            probe.note(f"{row.cluster_name}, {row.release_version}, {len(up)} up, {len(down)} down")
        probe.facts.update(
            cluster_name=row.cluster_name,
            release_version=row.release_version,
            data_centres=", ".join(sorted(data_centres)),
            local_dc=self.local_dc or row.data_center,
            nodes_up=len(up),
            nodes_down=len(down),
        )
        if down:
            probe.warn(
                Stage.CONNECT,
                f"{len(down)} of {len(hosts)} nodes are down: {', '.join(down[:5])}",
                "bring them back (nodetool status shows the ring); until then quorum reads and writes may fail",
            )
        return dict(data_centres)

    def _keyspace(self, probe: Probe, session: Session, data_centres: dict[str, int]) -> dict[str, str]:
        """The keyspace's replication map, creating the keyspace first when allowed."""
        with probe.step("keyspace", Stage.OPERATION):
            replication = self._replication_map(session, probe)
            if replication is None:
                # min_replication in every data centre, but never more replicas than it has nodes
                factors = ", ".join(
                    f"{_cql_text(dc)}: {min(self.min_replication, nodes)}" for dc, nodes in sorted(data_centres.items())
                )
                create = (
                    f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = "
                    f"{{'class': 'NetworkTopologyStrategy', {factors}}}"
                )
                if not self.create_keyspace:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"keyspace {self.keyspace} does not exist",
                        f"create it ({create}), or set create_keyspace: true to let this check create it",
                    )
                grant = f"CREATE ON ALL KEYSPACES TO {self._role}"
                self._execute(session, probe, create, action="create the keyspace", grant=grant)
                replication = self._replication_map(session, probe)
                if replication is None:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"keyspace {self.keyspace} was created but is not visible yet",
                        "the nodes do not agree on the schema: check nodetool describecluster",
                    )
                probe.facts["keyspace_created"] = True
                probe.note("created")
            else:
                probe.note("exists")
        return replication

    def _replication_map(self, session: Session, probe: Probe) -> dict[str, str] | None:
        row = self._read_system(
            session,
            probe,
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            [self.keyspace],
        ).one()
        return None if row is None else dict(row.replication)

    def _replication(self, probe: Probe, replication: dict[str, str], nodes: dict[str, int]) -> None:
        """Warn about a keyspace whose replicas would not survive a node loss or that misses a data centre."""
        with probe.step("replication", Stage.OPERATION):
            data_centres = set(nodes)
            strategy = replication.get("class", "").rsplit(".", 1)[-1]
            factors = {dc: _factor(rf) for dc, rf in replication.items() if dc != "class"}
            described = ", ".join(f"{dc}={rf}" for dc, rf in sorted(factors.items()))
            probe.note(f"{strategy} {described}".strip())
            probe.facts["replication"] = f"{strategy} {described}".strip()
            if self.cosmos:
                probe.note("managed by Cosmos DB (four replicas in every region); not judged")
                return
            alter = f"ALTER KEYSPACE {self.keyspace} WITH replication = {{...}}, then run nodetool repair"
            if strategy == "SimpleStrategy":
                rf = factors.get("replication_factor", 0)
                if len(data_centres) > 1:
                    probe.warn(
                        Stage.OPERATION,
                        f"keyspace {self.keyspace} uses SimpleStrategy, which ignores the cluster's "
                        f"{len(data_centres)} data centres",
                        f"switch to NetworkTopologyStrategy with a factor per data centre: {alter}",
                    )
                if rf < self.min_replication:
                    probe.warn(
                        Stage.OPERATION,
                        f"keyspace {self.keyspace} keeps {rf} replica(s), fewer than min_replication "
                        f"{self.min_replication}",
                        f"raise its replication factor ({alter}), or set min_replication: {rf} for a "
                        "development cluster",
                    )
                return
            if strategy != "NetworkTopologyStrategy":
                return  # LocalStrategy, EverywhereStrategy: nothing to compare
            missing = sorted(data_centres - factors.keys())
            if missing:
                probe.warn(
                    Stage.OPERATION,
                    f"keyspace {self.keyspace} has no replicas in data centre(s) {', '.join(missing)}",
                    f"add them to its replication map ({alter}) if the platform runs there",
                )
            unknown = sorted(factors.keys() - data_centres)
            if unknown:
                probe.warn(
                    Stage.OPERATION,
                    f"keyspace {self.keyspace} replicates to {', '.join(unknown)}, which has no nodes in this cluster",
                    f"fix the data centre names in its replication map ({alter}); nodetool status shows them",
                )
            low = sorted(f"{dc}={rf}" for dc, rf in factors.items() if rf < self.min_replication)
            if low:
                probe.warn(
                    Stage.OPERATION,
                    f"keyspace {self.keyspace} keeps fewer than min_replication {self.min_replication} replicas "
                    f"in {', '.join(low)}",
                    f"raise the factors ({alter}), or lower min_replication for a development cluster",
                )

    # --- the round trip -----------------------------------------------------------------------------

    def _round_trip(self, probe: Probe, session: Session) -> None:
        from cassandra.query import SimpleStatement

        table = f"{self.keyspace}.{SCRATCH_TABLE}"
        with probe.step("scratch table", Stage.OPERATION):
            exists = self._read_system(
                session,
                probe,
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
                [self.keyspace, SCRATCH_TABLE],
            ).one()
            if exists is None:
                create = f"CREATE TABLE IF NOT EXISTS {table} (id uuid PRIMARY KEY, payload blob)"
                grant = f"CREATE ON KEYSPACE {self.keyspace} TO {self._role}"
                self._execute(session, probe, create, action="create the scratch table", grant=grant)
                probe.note(f"{table} created")
            else:
                probe.note(f"{table} exists")

        row_id, payload = uuid.uuid4(), os.urandom(64)
        level = self._consistency_level()

        def statement(cql: str) -> SimpleStatement:
            return SimpleStatement(cql, consistency_level=level)

        grant_modify = f"MODIFY ON KEYSPACE {self.keyspace} TO {self._role}"
        grant_select = f"SELECT ON KEYSPACE {self.keyspace} TO {self._role}"
        with probe.step("write", Stage.OPERATION), probe.timed("write_ms"):
            insert = statement(f"INSERT INTO {table} (id, payload) VALUES (%s, %s) USING TTL {SCRATCH_TTL_SECONDS}")  # noqa: S608
            self._execute(session, probe, insert, [row_id, payload], action="write", grant=grant_modify)
            probe.note(f"at {self.consistency}")
        with probe.step("read", Stage.OPERATION):
            with probe.timed("read_ms"):
                select = statement(f"SELECT payload FROM {table} WHERE id = %s")  # noqa: S608
                row = self._execute(session, probe, select, [row_id], action="read", grant=grant_select).one()
            if row is None or row.payload != payload:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"the row written at {self.consistency} was {'not found' if row is None else 'different'} "
                    f"when read back at {self.consistency}",
                    "use a consistency level where reads see writes (LOCAL_QUORUM for both), and check the nodes' "
                    "clocks (NTP)",
                )
            probe.note(f"at {self.consistency}, payload matches")
        with probe.step("delete", Stage.OPERATION), probe.timed("delete_ms"):
            delete = statement(f"DELETE FROM {table} WHERE id = %s")  # noqa: S608
            self._execute(session, probe, delete, [row_id], action="delete", grant=grant_modify)
            probe.note(f"at {self.consistency}")
        probe.facts["consistency"] = self.consistency

    # --- running statements -------------------------------------------------------------------------

    @property
    def _role(self) -> str:
        return self.username or "<role>"

    def _consistency_level(self) -> int:
        from cassandra import ConsistencyLevel

        return int(ConsistencyLevel.name_to_value[self.consistency])

    def _read_system(self, session: Session, probe: Probe, query: str, parameters: Any = None) -> Any:
        """A read of the system tables; its failures are classified like the round trip's own statements."""
        grant = f"SELECT ON KEYSPACE system_schema TO {self._role}"
        return self._execute(session, probe, query, parameters, action="read the system tables", grant=grant)

    def _execute(
        self, session: Session, probe: Probe, query: Any, parameters: Any = None, *, action: str, grant: str
    ) -> Any:
        """Execute one statement with the time left; a driver error becomes a failure at its stage."""
        try:
            return session.execute(query, parameters, timeout=probe.remaining())
        except Exception as error:
            for kind, stage, cause, remediation in _statement_errors():
                if isinstance(error, kind):
                    values = {
                        "action": action,
                        "grant": grant,
                        "consistency": self.consistency,
                        "message": _server_message(error),
                        "required": getattr(error, "required_replicas", "?"),
                        "alive": getattr(error, "alive_replicas", "?"),
                    }
                    raise CheckFailed(stage, cause.format(**values), remediation.format(**values)) from None
            raise


@functools.cache
def _statement_errors() -> tuple[tuple[type[Exception], Stage, str, str], ...]:
    """Driver errors of a statement → (stage, cause, remediation), first match wins; {action}, {grant},
    {consistency}, {message}, {required} and {alive} are filled in."""
    from cassandra import OperationTimedOut, RequestValidationException, Timeout, Unauthorized, Unavailable
    from cassandra.cluster import NoHostAvailable
    from cassandra.protocol import OverloadedErrorMessage

    return (
        (Unauthorized, Stage.PERMISSION, "{action} denied: {message}", "GRANT {grant}"),
        (
            Unavailable,
            Stage.OPERATION,
            "{action} at {consistency} needs {required} live replica(s), only {alive} alive",
            "bring the down replicas back, or match the keyspace's replication factor to the nodes in each data "
            "centre (a single node cannot serve {consistency} with replication factor 3), or lower consistency",
        ),
        (  # ReadTimeout, WriteTimeout: the coordinator gave up on its replicas
            Timeout,
            Stage.OPERATION,
            "{action} at {consistency}: replicas did not answer the coordinator in time ({message})",
            "a replica is overloaded or unreachable from the others: check nodetool status and the nodes' logs",
        ),
        (OperationTimedOut, Stage.OPERATION, "{action}: no answer before the timeout", NO_ANSWER[Stage.OPERATION]),
        (
            OverloadedErrorMessage,
            Stage.OPERATION,
            "{action}: the cluster is overloaded ({message})",
            "Cosmos DB: raise the provisioned throughput (RU/s); Cassandra: check the nodes' load",
        ),
        (  # InvalidRequest, ConfigurationException, SyntaxException
            RequestValidationException,
            Stage.OPERATION,
            "{action} rejected: {message}",
            f"if {SCRATCH_TABLE} exists with other columns, drop it and let the check recreate it; on Cosmos DB "
            "check that the keyspace's API is Cassandra",
        ),
        (
            NoHostAvailable,
            Stage.CONNECT,
            "{action}: no node available",
            "every node became unreachable during the check: check the nodes and the network",
        ),
    )


def _connection_class() -> type:
    """libev when its extension is built (the driver's wheels bundle it), else asyncore (Python 3.11 still has it)."""
    from cassandra import DependencyException

    try:
        from cassandra.io.libevreactor import LibevConnection

        return LibevConnection  # type: ignore[no-any-return]
    except (ImportError, DependencyException):  # the module raises DependencyException when libevwrapper is absent
        from cassandra.io.asyncorereactor import AsyncoreConnection

        return AsyncoreConnection  # type: ignore[no-any-return]


def _factor(value: str) -> int:
    """A replication factor as stored: '3', or '3/1' with transient replicas (Cassandra 4+)."""
    try:
        return int(str(value).split("/", 1)[0])
    except ValueError:
        return 0


def _cql_text(value: str) -> str:
    """A CQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _server_message(error: Exception) -> str:
    return clean_remote_text(str(getattr(error, "message", None) or error))
