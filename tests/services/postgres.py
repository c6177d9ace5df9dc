"""PostgreSQL 15 from Debian, started on 127.0.0.1 for the integration tests.

The session fixture `postgres` starts one server in a temporary directory (TLS on with a generated CA and
a certificate for `localhost` only, `hostssl` rules so plaintext clients are rejected with 28000,
scram-sha-256, fsync off), creates the roles and databases the tests need, yields a `PostgresServer`
and stops the server afterwards. `postgres_without_tls` does the same with ssl off (started only when
a test asks for it).

Environment overrides, to use a server that already runs (e.g. docker-compose.test.yml):
- `TESTPOD_TEST_POSTGRES_HOST` (setting it selects the external server), `TESTPOD_TEST_POSTGRES_PORT`
  (default 5432), `TESTPOD_TEST_POSTGRES_PASSWORD` (of the superuser `postgres`, default `postgres`).
The fixture then creates the same roles and databases there. Tests that need this module's own
certificate or `hostssl` rules are skipped against an external server, saying why.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.certs import Certificates
from tests.servers import free_port
from tests.services import unavailable

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"

# What the fixture creates (on its own server, or on an external one):
APP_DATABASE = "testpod"  # owned by APP_USER, pg_trgm installed
LEGACY_DATABASE = "testpod_legacy"  # owned by APP_USER: LATIN1, read-only by default (like a replica), no extensions
NODROP_DATABASE = "testpod_nodrop"  # owned by APP_USER; an event trigger refuses every DROP; no CONNECT for others
APP_USER = "testpod_app"  # may create tables in public of its databases
READER_USER = "testpod_reader"  # CONNECT + USAGE on public, no CREATE
LIMITED_USER = "testpod_limited"  # CONNECTION LIMIT 0: every login gets 53300


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    superuser_password: str
    user_password: str  # the password of every role above
    ca_file: str | None  # the CA that signed the server's certificate (None: unknown, external server)
    wrong_ca_file: str | None  # a CA that did not
    hostssl_only: bool  # plaintext connections are rejected by pg_hba (28000)
    tls: bool = True  # the server accepts TLS (found out by provisioning for an external server)


def install() -> None:
    """PostgreSQL 15 and its contrib extensions from Debian."""
    if (BIN / "postgres").exists() and Path("/usr/share/postgresql/15/extension/pg_trgm.control").exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql-15", "postgresql-contrib"],
        check=True,
        env=env,
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The main server: TLS required from every TCP client."""
    host = os.environ.get("TESTPOD_TEST_POSTGRES_HOST")
    if host:
        server = PostgresServer(
            host=host,
            port=int(os.environ.get("TESTPOD_TEST_POSTGRES_PORT", "5432")),
            superuser_password=os.environ.get("TESTPOD_TEST_POSTGRES_PASSWORD", "postgres"),
            user_password="u-" + secrets.token_urlsafe(18),
            ca_file=None,
            wrong_ca_file=None,
            hostssl_only=False,
        )
        yield dataclasses.replace(server, tls=_provision(server))
        return
    yield from local_server(tls=True)


@pytest.fixture(scope="session")
def postgres_without_tls() -> Iterator[PostgresServer]:
    """A second local server with ssl off, for what clients do when a server offers no TLS."""
    if os.environ.get("TESTPOD_TEST_POSTGRES_HOST"):
        pytest.skip("needs a local server with ssl off; TESTPOD_TEST_POSTGRES_HOST points at an external one")
    yield from local_server(tls=False)


def local_server(*, tls: bool) -> Iterator[PostgresServer]:
    if not (BIN / "postgres").exists():
        unavailable("postgres", f"{BIN} is missing: run `python -m tests.services install postgres`")
    workdir = Path(tempfile.mkdtemp(prefix="testpod-postgres-"))
    try:
        server = _start(workdir, tls=tls)
    except (OSError, subprocess.SubprocessError) as error:
        log = workdir / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable("postgres", f"{error}\n{tail}")
    try:
        _provision(server)
        yield server
    finally:
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(workdir / "data"), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(workdir, ignore_errors=True)


def _as_postgres(command: list[str]) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)


def _start(workdir: Path, *, tls: bool) -> PostgresServer:
    superuser_password = "s-" + secrets.token_urlsafe(18)
    (workdir / "pwfile").write_text(superuser_password + "\n")
    shutil.chown(workdir, "postgres", "postgres")
    private = [workdir / "pwfile"]
    options = ["-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={workdir}"]
    options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    if tls:
        certs = Certificates(workdir / "certs")
        server_cert = certs.leaf("server", hosts=["localhost"])  # not 127.0.0.1: the name-mismatch case needs it
        wrong_ca_file = Certificates(workdir / "other-certs", organisation="Unrelated").ca_file
        private.append(server_cert.key_file)
        options += ["-c ssl=on", f"-c ssl_cert_file={server_cert.cert_file}", f"-c ssl_key_file={server_cert.key_file}"]
        # TLS is required from TCP clients: a plaintext client matches no rule and gets 28000
        hba = "hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n"
    else:
        options.append("-c ssl=off")
        hba = "host all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
    for path in private:
        shutil.chown(path, "postgres", "postgres")
        path.chmod(0o600)
    data = workdir / "data"
    _as_postgres(
        [
            *(str(BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256"),
            *(f"--pwfile={workdir / 'pwfile'}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
        ]
    )
    (data / "pg_hba.conf").write_text("local all all trust\n" + hba)
    port = free_port()
    options.append(f"-c port={port}")
    _as_postgres(
        [
            *(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(workdir / "server.log"), "-w", "-t", "60", "start"),
            *("-o", " ".join(options)),
        ]
    )
    return PostgresServer(
        host="127.0.0.1",
        port=port,
        superuser_password=superuser_password,
        user_password="u-" + secrets.token_urlsafe(18),
        ca_file=str(certs.ca_file) if tls else None,
        wrong_ca_file=str(wrong_ca_file) if tls else None,
        hostssl_only=tls,
        tls=tls,
    )


def _provision(server: PostgresServer) -> bool:
    """Roles and databases for the tests; idempotent, so an external server can be reused. Says if TLS is on."""
    import pg8000.native

    # None: TLS when the server offers it, unverified (an external server's CA is unknown here)
    context: ssl.SSLContext | None = None
    if server.ca_file:
        context = ssl.create_default_context(cafile=server.ca_file)
        context.check_hostname = False  # the certificate names localhost; the fixture connects to the address

    def connect(database: str) -> pg8000.native.Connection:
        return pg8000.native.Connection(
            SUPERUSER,
            host=server.host,
            port=server.port,
            database=database,
            password=server.superuser_password,
            ssl_context=context,
            timeout=30,
        )

    try:
        admin = connect("postgres")
    except Exception as error:  # any reason the server is unusable ends the same way
        unavailable("postgres", f"cannot log in as {SUPERUSER} at {server.host}:{server.port}: {error}")
    password = server.user_password.replace("'", "''")
    with_password = f"LOGIN PASSWORD '{password}'"
    try:
        [[tls]] = admin.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        existing_roles = {row[0] for row in admin.run("SELECT rolname FROM pg_roles")}
        for role, options in (
            (APP_USER, with_password),
            (READER_USER, with_password),
            (LIMITED_USER, f"{with_password} CONNECTION LIMIT 0"),
        ):
            verb = "ALTER" if role in existing_roles else "CREATE"
            admin.run(f"{verb} ROLE {role} {options}")
        existing_databases = {row[0] for row in admin.run("SELECT datname FROM pg_database")}
        for database, options in (
            (APP_DATABASE, ""),
            (LEGACY_DATABASE, "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"),
            (NODROP_DATABASE, ""),
        ):
            if database not in existing_databases:
                admin.run(f"CREATE DATABASE {database} OWNER {APP_USER} {options}")
        admin.run(f"ALTER DATABASE {LEGACY_DATABASE} SET default_transaction_read_only = on")
        admin.run(f"REVOKE ALL ON DATABASE {APP_DATABASE} FROM PUBLIC")
        admin.run(f"REVOKE CONNECT ON DATABASE {NODROP_DATABASE} FROM PUBLIC")  # READER_USER gets 42501 there
        admin.run(f"GRANT CONNECT ON DATABASE {APP_DATABASE} TO {APP_USER}, {READER_USER}, {LIMITED_USER}")
    finally:
        admin.close()

    app = connect(APP_DATABASE)
    try:
        app.run("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        app.run(f"GRANT USAGE ON SCHEMA public TO {READER_USER}")
        app.run(f"REVOKE CREATE ON SCHEMA public FROM {READER_USER}")
    finally:
        app.close()

    nodrop = connect(NODROP_DATABASE)
    try:
        nodrop.run(
            "CREATE OR REPLACE FUNCTION refuse_drop() RETURNS event_trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'dropping is disabled in this database'; END $$"
        )
        if not nodrop.run("SELECT 1 FROM pg_event_trigger WHERE evtname = 'refuse_drop'"):
            nodrop.run("CREATE EVENT TRIGGER refuse_drop ON sql_drop EXECUTE FUNCTION refuse_drop()")
    finally:
        nodrop.close()
    return bool(tls)
