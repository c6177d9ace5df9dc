"""The postgres kind against a real PostgreSQL 15 on 127.0.0.1 (tests/services/postgres.py), every path for real."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app import report
from app.checks.base import Stage, Status
from app.checks.postgres import PostgresTarget
from app.results import Result
from app.runner import check_target, run_targets
from tests.certs import Certificates, ServerCert
from tests.servers import StallServer
from tests.services import postgres as service
from tests.services.postgres import PostgresServer

pytestmark = pytest.mark.integration


def target(server: PostgresServer, **fields: Any) -> PostgresTarget:
    values: dict[str, Any] = {
        "name": "db",
        "kind": "postgres",
        "host": server.host,
        "port": server.port,
        "database": service.APP_DATABASE,
        "user": service.APP_USER,
        "password": server.user_password,
        "sslmode": "require" if server.tls else "disable",
    }
    values.update(fields)
    return PostgresTarget.model_validate(values)


def own_tls(server: PostgresServer) -> str:
    """This module's CA file; an external server was not started with it."""
    if server.ca_file is None:
        pytest.skip("the external PostgreSQL server was not started with this module's certificate")
    return server.ca_file


def tls_on(server: PostgresServer) -> None:
    if not server.tls:
        pytest.skip("the external PostgreSQL server does not accept TLS")


def hostssl_only(server: PostgresServer) -> None:
    if not server.hostssl_only:
        pytest.skip("the external PostgreSQL server accepts plaintext clients (no hostssl-only pg_hba rules)")


def scratch_tables(server: PostgresServer, database: str) -> list[str]:
    import pg8000.native

    connection = pg8000.native.Connection(
        service.SUPERUSER,
        host=server.host,
        port=server.port,
        database=database,
        password=server.superuser_password,
        ssl_context=None,
        timeout=10,
    )
    try:
        return [
            row[0] for row in connection.run("SELECT tablename FROM pg_tables WHERE tablename LIKE 'airia_scratch_%'")
        ]
    finally:
        connection.close()


def steps(result: Result) -> list[tuple[str, Status]]:
    return [(step.name, step.status) for step in result.steps]


# --- passing ---------------------------------------------------------------------------------------


async def test_verify_full_passes_every_step_and_leaves_nothing_behind(postgres: PostgresServer) -> None:
    ca_file = own_tls(postgres)
    result = await check_target(
        target(
            postgres,
            host="localhost",
            sslmode="verify-full",
            sslrootcert=ca_file,
            min_version="15",
            extensions=["pg_trgm"],
        )
    )
    assert result.status == Status.PASSED, result.cause
    assert [name for name, _ in steps(result)] == [
        "resolve",
        "connect",
        "tls handshake",
        "auth",
        "database",
        "version",
        "extensions",
        "schema",
        "round trip",
        "latency",
    ]
    assert result.facts["tls_version"] == "TLSv1.3"
    assert result.facts["server_version"].startswith("15.")
    assert result.facts["database"] == service.APP_DATABASE
    assert result.facts["user"] == service.APP_USER
    assert result.facts["encoding"] == "UTF8"
    assert str(result.facts["extensions"]).startswith("pg_trgm ")
    assert result.facts["round_trip_ms"] > 0
    assert result.facts["latency_ms"] > 0
    assert scratch_tables(postgres, service.APP_DATABASE) == []


@pytest.mark.parametrize("sslmode", ["require", "verify-ca"])
async def test_ip_address_with_modes_that_do_not_check_the_name(postgres: PostgresServer, sslmode: str) -> None:
    tls_on(postgres)
    ca_file = own_tls(postgres) if sslmode == "verify-ca" else None
    rootcert = {"sslrootcert": ca_file} if sslmode == "verify-ca" else {}
    result = await check_target(target(postgres, host="127.0.0.1", sslmode=sslmode, **rootcert))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["tls_version"] == "TLSv1.3"


async def test_prefer_uses_tls_when_the_server_offers_it(postgres: PostgresServer) -> None:
    tls_on(postgres)
    result = await check_target(target(postgres, sslmode="prefer"))
    assert result.status == Status.PASSED, result.cause
    assert str(result.facts["tls_version"]).startswith("TLS")


async def test_allow_retries_over_tls_when_plaintext_is_refused(postgres: PostgresServer) -> None:
    hostssl_only(postgres)
    result = await check_target(target(postgres, sslmode="allow"))
    assert result.status == Status.PASSED, result.cause
    assert steps(result)[:6] == [
        ("resolve", Status.PASSED),
        ("connect", Status.PASSED),
        ("auth", Status.FAILED),  # the plaintext attempt, refused by pg_hba
        ("connect", Status.PASSED),
        ("tls handshake", Status.PASSED),
        ("auth", Status.PASSED),
    ]
    assert result.facts["tls_version"] == "TLSv1.3"


async def test_allow_continues_unencrypted_when_the_server_has_no_tls(postgres_without_tls: PostgresServer) -> None:
    # a failed plaintext attempt (here: no password) makes allow retry with TLS; the server answers N
    result = await check_target(target(postgres_without_tls, sslmode="allow", password=None))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert [name for name, _ in steps(result)] == ["resolve", "connect", "auth", "connect", "tls handshake", "auth"]
    assert steps(result)[4] == ("tls handshake", Status.PASSED)
    assert result.cause == f"the server requires a password for user {service.APP_USER} and this target has none"


async def test_read_only_role_passes_without_the_write_test(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, user=service.READER_USER, write_test=False))
    assert result.status == Status.PASSED, result.cause
    assert "round trip" not in [name for name, _ in steps(result)]


# --- failing, classified by SQLSTATE -----------------------------------------------------------------


async def test_wrong_password_is_28p01_at_auth(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, password="not-the-password"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == f"password authentication failed for user {service.APP_USER}"
    assert "password" in result.remediation


async def test_prefer_reports_the_wrong_password_of_its_tls_attempt_not_the_plaintext_refusal(
    postgres: PostgresServer,
) -> None:
    hostssl_only(postgres)
    result = await check_target(target(postgres, sslmode="prefer", password="not-the-password"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert [(name, status) for name, status in steps(result) if name in ("tls handshake", "auth")] == [
        ("tls handshake", Status.PASSED),
        ("auth", Status.FAILED),  # 28P01 over TLS
        ("auth", Status.FAILED),  # 28000: pg_hba has no rule for plaintext
    ]
    first, retry = result.cause.split("; the retry without TLS: ")
    assert first == f"password authentication failed for user {service.APP_USER}"
    assert retry.startswith("the server rejected the connection: no pg_hba.conf entry")
    assert "password" in result.remediation and "pg_hba" not in result.remediation


async def test_allow_reports_the_wrong_password_of_its_tls_retry(postgres: PostgresServer) -> None:
    hostssl_only(postgres)
    result = await check_target(target(postgres, sslmode="allow", password="not-the-password"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == f"password authentication failed for user {service.APP_USER}"


async def test_plaintext_client_rejected_by_pg_hba_is_28000_with_allow_list_advice(postgres: PostgresServer) -> None:
    hostssl_only(postgres)
    result = await check_target(target(postgres, sslmode="disable"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.facts["tls_version"] == "none"
    assert "no pg_hba.conf entry" in result.cause and "no encryption" in result.cause
    assert "allow-list the pod's egress address" in result.remediation and "sslmode" in result.remediation


async def test_missing_database_is_3d000_after_a_successful_login(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, database="no_such_db"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert steps(result)[-2:] == [("auth", Status.PASSED), ("database", Status.FAILED)]
    assert result.cause == "database no_such_db does not exist on the server"
    assert "CREATE DATABASE no_such_db OWNER testpod_app;" in result.remediation


async def test_no_connect_privilege_is_42501_at_permission(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, user=service.READER_USER, database=service.NODROP_DATABASE))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert "may not connect" in result.cause
    assert f"GRANT CONNECT ON DATABASE {service.NODROP_DATABASE} TO {service.READER_USER};" in result.remediation


async def test_connection_limit_reached_is_53300(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, user=service.LIMITED_USER))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert "too many connections" in result.cause
    assert "max_connections" in result.remediation and "CONNECTION LIMIT" in result.remediation


async def test_role_without_create_fails_the_round_trip_naming_the_privilege(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, user=service.READER_USER))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-1] == ("round trip", Status.FAILED)
    assert result.cause.startswith("CREATE TABLE denied: user testpod_reader lacks CREATE on schema public")
    assert "GRANT CREATE ON SCHEMA public TO testpod_reader;" in result.remediation
    assert scratch_tables(postgres, service.APP_DATABASE) == []


async def test_failure_after_create_rolls_the_scratch_table_back(postgres: PostgresServer) -> None:
    # an event trigger in this database refuses DROP: create, insert and select have run when it fails
    result = await check_target(target(postgres, database=service.NODROP_DATABASE))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == (
        "DROP TABLE failed in the scratch table: dropping is disabled in this database (SQLSTATE P0001)"
    )
    assert "nothing was left behind" in result.remediation
    assert scratch_tables(postgres, service.NODROP_DATABASE) == []


async def test_extension_not_packaged_on_the_server_is_named(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, extensions=["pg_trgm", "vector"]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == "extension vector is not available on this server"
    assert "PostgreSQL 15" in result.remediation and "CREATE EXTENSION vector;" in result.remediation


async def test_extension_available_but_not_installed_gives_the_sql(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, database=service.LEGACY_DATABASE, extensions=["pg_trgm"]))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == f"extension pg_trgm is available but not installed in database {service.LEGACY_DATABASE}"
    assert "CREATE EXTENSION IF NOT EXISTS pg_trgm;" in result.remediation


async def test_read_only_session_fails_the_round_trip_at_permission(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, database=service.LEGACY_DATABASE))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.cause.startswith("CREATE TABLE refused: the session is read-only")
    assert "primary" in result.remediation and "default_transaction_read_only" in result.remediation


async def test_database_not_in_utf8_is_a_warning(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, database=service.LEGACY_DATABASE, write_test=False))
    assert (result.status, result.stage) == (Status.WARNING, Stage.OPERATION)
    assert result.facts["encoding"] == "LATIN1"
    assert result.cause == f"database {service.LEGACY_DATABASE} uses encoding LATIN1, not UTF8"


async def test_no_password_configured_for_a_server_that_wants_one(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, password=None))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == f"the server requires a password for user {service.APP_USER} and this target has none"


async def test_server_older_than_the_minimum(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, min_version="99.1"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause.startswith("server version 15.") and result.cause.endswith("older than the required 99.1")


async def test_missing_schema(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, schema="Platform"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == f"schema Platform does not exist in database {service.APP_DATABASE}"
    assert 'CREATE SCHEMA "Platform" AUTHORIZATION testpod_app;' in result.remediation


# --- TLS ----------------------------------------------------------------------------------------------


async def test_verify_full_against_the_wrong_ca(postgres: PostgresServer) -> None:
    own_tls(postgres)
    result = await check_target(
        target(postgres, host="localhost", sslmode="verify-full", sslrootcert=postgres.wrong_ca_file)
    )
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause.startswith(
        f"the server's certificate is not signed by a CA in sslrootcert {postgres.wrong_ca_file}"
    )
    assert "sslrootcert" in result.remediation


async def test_verify_full_with_a_name_the_certificate_lacks(postgres: PostgresServer) -> None:
    ca_file = own_tls(postgres)
    result = await check_target(target(postgres, host="127.0.0.1", sslmode="verify-full", sslrootcert=ca_file))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause.startswith("the server's certificate does not name 127.0.0.1")
    assert "verify-ca" in result.remediation


async def test_require_with_a_root_certificate_verifies_the_ca_but_not_the_name(postgres: PostgresServer) -> None:
    ca_file = own_tls(postgres)
    # libpq: require with sslrootcert behaves like verify-ca (the certificate names localhost, not 127.0.0.1)
    verified = await check_target(target(postgres, host="127.0.0.1", sslmode="require", sslrootcert=ca_file))
    assert verified.status == Status.PASSED, verified.cause
    refused = await check_target(
        target(postgres, host="127.0.0.1", sslmode="require", sslrootcert=postgres.wrong_ca_file)
    )
    assert (refused.status, refused.stage) == (Status.FAILED, Stage.TLS)
    assert refused.cause.startswith(
        f"the server's certificate is not signed by a CA in sslrootcert {postgres.wrong_ca_file}"
    )


def test_tls_contexts_are_shared_and_read_the_trust_store_once(postgres: PostgresServer) -> None:
    ca_file = own_tls(postgres)
    contexts = {
        mode: target(postgres, sslmode=mode, sslrootcert=ca_file)._ssl_context()
        for mode in ("require", "verify-ca", "verify-full")
    }
    again = target(postgres, name="other", sslmode="verify-full", sslrootcert=ca_file)._ssl_context()
    assert again is contexts["verify-full"]
    assert contexts["require"] is contexts["verify-ca"]  # libpq: require with a root certificate is verify-ca
    assert [(c.verify_mode, c.check_hostname) for c in (contexts["verify-ca"], contexts["verify-full"])] == [
        (ssl.CERT_REQUIRED, False),
        (ssl.CERT_REQUIRED, True),
    ]
    unverified = target(postgres, sslmode="require")._ssl_context()
    assert (unverified.verify_mode, unverified.check_hostname) == (ssl.CERT_NONE, False)


async def test_an_expired_certificate_reads_as_the_tls_kind_says_it(tmp_path: Path) -> None:
    certs = Certificates(tmp_path)
    with TlsFront(certs.leaf("expired", hosts=["localhost"], days=(-30, -1))) as front:
        result = await check_target(
            PostgresTarget(
                name="db",
                kind="postgres",
                host="localhost",
                port=front.port,
                database="d",
                user="u",
                sslmode="verify-full",
                sslrootcert=str(certs.ca_file),
            )
        )
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause == "the certificate (or one in its chain) has expired"
    assert result.remediation.startswith("renew it and reload the server")


async def test_unreadable_root_certificate(postgres: PostgresServer) -> None:
    result = await check_target(target(postgres, sslmode="verify-ca", sslrootcert="/nonexistent/ca.pem"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause == "cannot read sslrootcert /nonexistent/ca.pem: No such file or directory"


# --- network ------------------------------------------------------------------------------------------


async def test_closed_port_fails_at_connect(postgres: PostgresServer, closed_port: int) -> None:
    result = await check_target(target(postgres, host="127.0.0.1", port=closed_port))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert "Connection refused" in result.cause


@pytest.mark.parametrize(("sslmode", "stage"), [("require", Stage.TLS), ("disable", Stage.AUTH)])
async def test_stalled_server_fails_on_time_at_the_stage_it_hung(
    postgres: PostgresServer, stall: StallServer, sslmode: str, stage: Stage
) -> None:
    start = time.monotonic()
    result = await check_target(target(postgres, host="127.0.0.1", port=stall.port, sslmode=sslmode, timeout=1))
    elapsed = time.monotonic() - start
    assert (result.status, result.stage) == (Status.FAILED, stage)
    assert 1.0 <= elapsed < 1.5
    assert "1 s" in result.cause or "before the timeout" in result.cause


# --- secrets and config -----------------------------------------------------------------------------


async def test_password_never_appears_in_any_output(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    planted = "Planted-Secret-7f3a9c1e"
    caplog.set_level(logging.DEBUG)
    targets = [
        target(postgres, name="wrong-password", password=planted),
        target(postgres, name="no-database", password=planted, database=f"db_{planted}"),
        target(postgres, name="no-create", user=service.READER_USER, password=planted),
        target(postgres, name="no-tls", password=planted, sslmode="verify-full", sslrootcert="/nonexistent"),
    ]
    run = await run_targets(targets)
    assert [r.status for r in run.results] == [Status.FAILED] * 4
    outputs = [run.model_dump_json(), report.to_json(run), report.to_text(run), report.to_junit(run), caplog.text]
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err]
    for output in outputs:
        assert planted not in output


class TlsFront:
    """Answers PostgreSQL's SSLRequest with S and offers `cert` in the handshake that follows: a server
    certificate case for the postgres check without a PostgreSQL server of its own."""

    def __init__(self, cert: ServerCert) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.cert_file, cert.key_file)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                conn.recv(8)
                conn.sendall(b"S")
                self._context.wrap_socket(conn, server_side=True).close()

    def __enter__(self) -> TlsFront:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone may not
        self._listener.close()


# --- a server without TLS -----------------------------------------------------------------------------


async def test_require_fails_at_tls_when_the_server_has_no_tls(postgres_without_tls: PostgresServer) -> None:
    result = await check_target(target(postgres_without_tls, sslmode="require"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause == "the server does not accept TLS connections (sslmode require requires TLS)"
    assert "ssl = on" in result.remediation


async def test_prefer_carries_on_unencrypted_with_a_warning(postgres_without_tls: PostgresServer) -> None:
    result = await check_target(target(postgres_without_tls, sslmode="prefer"))
    assert (result.status, result.stage) == (Status.WARNING, Stage.TLS)
    assert result.facts["tls_version"] == "none"
    assert result.cause == "the connection is not encrypted: the server did not negotiate TLS"
    assert "round trip" in [name for name, _ in steps(result)]


async def test_disable_passes_without_tls_and_without_warning(postgres_without_tls: PostgresServer) -> None:
    result = await check_target(target(postgres_without_tls, sslmode="disable"))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["tls_version"] == "none"
