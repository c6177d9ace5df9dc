"""Apache Cassandra 5.0 from Maven Central jars, started on 127.0.0.1 for the integration tests.

`install()` resolves `org.apache.cassandra:cassandra-all` (the version pinned in cassandra_files/pom.xml) and its
runtime dependencies with Maven into `$XDG_CACHE_HOME/airia-test-pod/cassandra-<version>/lib` (default
`~/.cache/...`); once there, a second run does nothing.

The session fixture `cassandra` starts one node in a temporary directory: `CassandraDaemon` in the foreground
with the JVM flags Cassandra's own launcher passes on Java 17, a 1 GB heap, free native and storage ports,
PasswordAuthenticator + CassandraAuthorizer, and a native port that speaks both plain CQL and TLS (a generated
certificate for localhost / 127.0.0.1). It waits for a real CQL login (at most 120 s), creates the keyspaces and
roles below, yields a `CassandraServer`, then stops the node and removes its data.

Environment:
- `TESTPOD_TEST_CASSANDRA_HOST` (setting it selects a node that already runs, e.g. from docker-compose.test.yml)
  and `TESTPOD_TEST_CASSANDRA_PORT` (default 9042), superuser cassandra/cassandra; the fixture creates the same
  keyspaces and roles there. Tests that need this module's TLS certificate are skipped against it, saying why.
- `JAVA_HOME`: the JDK that runs the node (default: `java` on PATH; Java 17 works).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from app.checks.cassandra import SCRATCH_TABLE
from tests.certs import Certificates
from tests.servers import free_port
from tests.services import unavailable

FILES = Path(__file__).parent / "cassandra_files"
POM = FILES / "pom.xml"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
START_TIMEOUT = 120.0
SUPERUSER = "cassandra"

# What the fixture creates (on its own node, or on an external one); every keyspace has replication factor 1
# in the node's data centre, except RF3_KEYSPACE (3: a single node cannot serve QUORUM or LOCAL_QUORUM there)
APP_KEYSPACE = "testpod"
RF3_KEYSPACE = "testpod_rf3"
READONLY_KEYSPACE = "testpod_readonly"  # the scratch table exists; READER_USER may only SELECT
NOTABLE_KEYSPACE = "testpod_notable"  # no scratch table; READER_USER may only SELECT, so creating it is denied
APP_USER = "testpod_app"  # ALL on APP_KEYSPACE and RF3_KEYSPACE, CREATE on all keyspaces
READER_USER = "testpod_reader"

# From conf/jvm17-server.options, conf/jvm-server.options and bin/cassandra.in.sh of the 5.0 release
_EXPORTS = [
    "java.base/jdk.internal.misc",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.management/com.sun.jmx.remote.security",
    "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server",
    "java.sql/java.sql",
    "java.base/java.lang.ref",
    "jdk.unsupported/sun.misc",
    "jdk.attach/sun.tools.attach",
    "jdk.compiler/com.sun.tools.javac.file",
]
_OPENS = [
    "java.base/java.lang.module",
    "java.base/jdk.internal.loader",
    "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect",
    "java.base/jdk.internal.math",
    "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar",
    "jdk.management/com.sun.management.internal",
    "java.base/sun.nio.ch",
    "java.base/java.io",
    "java.base/java.lang.reflect",
    "java.base/java.lang",
    "java.base/java.util",
    "java.base/java.nio",
    "jdk.compiler/com.sun.tools.javac",
]
_PROPERTIES = [
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Djava.net.preferIPv4Stack=true",
    "-Dchronicle.analytics.disable=true",
    "-Dcassandra-foreground=yes",  # else the daemon closes stdout and stderr
    "-Dcassandra.superuser_setup_delay_ms=0",  # the cassandra superuser exists as soon as CQL listens
    "-Dcassandra.test.flush_local_schema_changes=false",
]


@dataclass(frozen=True)
class CassandraServer:
    host: str
    port: int
    data_centre: str
    superuser_password: str
    user_password: str  # of APP_USER and READER_USER
    ca_file: str | None  # the CA that signed the node's certificate (None: an external node, TLS unknown)
    started_in: float | None  # seconds from launch to the first successful login (None: external)

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A driver session as the superuser, for arranging and inspecting test data."""
        with _session(self.host, self.port, SUPERUSER, self.superuser_password, timeout=30) as session:
            yield session


def version() -> str:
    """The cassandra-all version the pom pins."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    element = ET.parse(POM).getroot().find("m:dependencies/m:dependency/m:version", namespace)
    if element is None or not element.text:
        raise RuntimeError(f"{POM} pins no cassandra-all version")
    return element.text.strip()


def lib_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "airia-test-pod" / f"cassandra-{version()}" / "lib"


def install() -> None:
    """Cassandra's jars from Maven Central (needs Java and Maven)."""
    lib = lib_dir()
    if (lib / f"cassandra-all-{version()}.jar").exists():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SystemExit("Maven (mvn) is needed to fetch Cassandra's jars: apt-get install maven")
    staging = lib.with_name("lib.partial")  # renamed into place only when complete
    shutil.rmtree(staging, ignore_errors=True)
    command = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM), f"{DEPENDENCY_PLUGIN}:copy-dependencies"]
    subprocess.run([*command, f"-DoutputDirectory={staging}", "-DincludeScope=runtime"], check=True)
    staging.rename(lib)


@pytest.fixture(scope="session")
def cassandra() -> Iterator[CassandraServer]:
    host = os.environ.get("TESTPOD_TEST_CASSANDRA_HOST")
    if host:
        port = int(os.environ.get("TESTPOD_TEST_CASSANDRA_PORT", "9042"))
        user_password = "u-" + secrets.token_urlsafe(18)
        yield _provision(host, port, SUPERUSER, user_password, ca_file=None, started_in=None)
        return
    yield from local_server()


def local_server() -> Iterator[CassandraServer]:
    """Start a node of our own, provision it, yield it, and stop it (its data removed) when resumed."""
    lib = lib_dir()
    if not (lib / f"cassandra-all-{version()}.jar").exists():
        unavailable("cassandra", f"{lib} has no Cassandra jars: run `python -m tests.services install cassandra`")
    workdir = Path(tempfile.mkdtemp(prefix="testpod-cassandra-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        try:
            process, port, ca_file, started_in = _start(workdir, lib)
            user_password = "u-" + secrets.token_urlsafe(18)
            server = _provision("127.0.0.1", port, SUPERUSER, user_password, ca_file=ca_file, started_in=started_in)
        except Exception as error:  # any cause: the test must fail (or skip) with the node's own log
            log = workdir / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            unavailable("cassandra", f"{type(error).__name__}: {error}\n{tail}")
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _start(workdir: Path, lib: Path) -> tuple[subprocess.Popen[bytes], int, str, float]:
    """Launch the node and wait for a working login; returns the process, native port, CA file and start time."""
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else shutil.which("java")
    if java is None:
        raise RuntimeError("no java on PATH (and JAVA_HOME is not set): Cassandra 5.0 needs Java 11 or 17")
    certificates = Certificates(workdir / "certs")
    node = certificates.leaf("node")
    keystore = workdir / "certs" / "node-keystore.pem"  # PEMBasedSslContextFactory: the key, then the chain
    keystore.write_bytes(node.key_file.read_bytes() + node.cert_file.read_bytes())
    keystore.chmod(0o600)
    native_port, storage_port = free_port(), free_port()
    conf = workdir / "conf"
    conf.mkdir()
    template = string.Template((FILES / "cassandra.yaml").read_text())
    (conf / "cassandra.yaml").write_text(
        template.substitute(
            native_port=native_port, storage_port=storage_port, data=workdir / "data", keystore=keystore
        )
    )
    shutil.copy(FILES / "logback.xml", conf / "logback.xml")
    jamm = next(lib.glob("jamm-*.jar"), None)
    if jamm is None:
        raise RuntimeError(f"{lib} has no jamm agent jar: rerun `python -m tests.services install cassandra`")
    command = [
        str(java),
        *(f"--add-exports={module}=ALL-UNNAMED" for module in _EXPORTS),
        *(f"--add-opens={module}=ALL-UNNAMED" for module in _OPENS),
        *_PROPERTIES,
        "-ea",
        "-Xss256k",
        "-Xms1g",
        "-Xmx1g",
        # a test node lives for minutes: the C1 compiler alone and the serial collector halve its start-up on 2 cores
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        f"-javaagent:{jamm}",
        f"-Dcassandra.config={(conf / 'cassandra.yaml').as_uri()}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        f"-Dcassandra.logdir={workdir / 'logs'}",
        "-cp",
        f"{conf}:{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    started = time.monotonic()
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    try:
        _wait_for_login(process, native_port, started)
    except BaseException:
        _stop(process)
        raise
    return process, native_port, str(certificates.ca_file), round(time.monotonic() - started, 1)


def _wait_for_login(process: subprocess.Popen[bytes], port: int, started: float) -> None:
    """Until the superuser can log in: the port opens first, the superuser role appears just after."""
    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable

    last = "the native port never opened"
    while time.monotonic() - started < START_TIMEOUT:
        if process.poll() is not None:
            raise RuntimeError(f"Cassandra exited with status {process.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            with _session("127.0.0.1", port, SUPERUSER, SUPERUSER, timeout=5):
                return
        except (OSError, DriverException, NoHostAvailable) as error:  # e.g. the superuser is not there yet
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.5)
    raise RuntimeError(f"no CQL login within {START_TIMEOUT:g} s ({last})")


def _provision(  # noqa: PLR0913 - the server's coordinates and credentials
    host: str, port: int, superuser_password: str, user_password: str, *, ca_file: str | None, started_in: float | None
) -> CassandraServer:
    """Keyspaces and roles the tests rely on; idempotent, so an external node can be reused."""
    with _session(host, port, SUPERUSER, superuser_password, timeout=60) as session:
        data_centre = str(session.execute("SELECT data_center FROM system.local").one().data_center)

        def keyspace(name: str, factor: int) -> None:
            session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = "
                f"{{'class': 'NetworkTopologyStrategy', '{data_centre}': {factor}}}"
            )

        for name in (APP_KEYSPACE, READONLY_KEYSPACE, NOTABLE_KEYSPACE):
            keyspace(name, 1)
        keyspace(RF3_KEYSPACE, 3)
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {READONLY_KEYSPACE}.{SCRATCH_TABLE} (id uuid PRIMARY KEY, payload blob)"
        )
        for role in (APP_USER, READER_USER):
            # an existing role (external node) gets this session's password; Cassandra 5 allows one change per 5 s
            exists = session.execute("SELECT role FROM system_auth.roles WHERE role = %s", [role]).one()
            verb = "ALTER" if exists else "CREATE"
            session.execute(f"{verb} ROLE {role} WITH LOGIN = true AND PASSWORD = %s", [user_password])
        session.execute(f"GRANT CREATE ON ALL KEYSPACES TO {APP_USER}")
        for name in (APP_KEYSPACE, RF3_KEYSPACE):
            session.execute(f"GRANT ALL PERMISSIONS ON KEYSPACE {name} TO {APP_USER}")
        for name in (READONLY_KEYSPACE, NOTABLE_KEYSPACE):
            session.execute(f"GRANT SELECT ON KEYSPACE {name} TO {READER_USER}")
    return CassandraServer(host, port, data_centre, superuser_password, user_password, ca_file, started_in)


@contextmanager
def _session(host: str, port: int, user: str, password: str, *, timeout: float) -> Iterator[Any]:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import ConstantReconnectionPolicy

    cluster = Cluster(
        [host],
        port=port,
        auth_provider=PlainTextAuthProvider(user, password),
        connect_timeout=timeout,
        control_connection_timeout=timeout,
        reconnection_policy=ConstantReconnectionPolicy(1.0, max_attempts=0),
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
    )
    try:
        session = cluster.connect()
        session.default_timeout = timeout
        yield session
    finally:
        cluster.shutdown()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
