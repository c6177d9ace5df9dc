"""postgres: a PostgreSQL server the platform can log in to, with the version, extensions and privileges it needs.

pg8000 is the driver because it reports the server's SQLSTATE for connect-time errors too (psycopg2 gives
`pgcode = None` for all of them), so every failure here is classified by code, never by message text.
The check opens the TCP connection and negotiates TLS itself (libpq's sslmode rules, with an
ssl.SSLContext) and hands the socket to pg8000, so each stage is its own step with its own timeout.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import ssl
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, StringConstraints, model_validator

from app.checks import facts
from app.checks.base import CheckFailed, Host, Port, Probe, Stage, Target, elapsed_ms
from app.checks.net import NO_ANSWER, connect, resolve
from app.checks.tls import HANDSHAKE_STEP, client_context, tls_failure
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from pg8000.native import Connection

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[^\x00]+$")]
ExtensionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,63}$")]

_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
_UNTRUSTED = {18, 19, 20, 21, 27}  # X509_V_ERR_* codes meaning "no trusted CA signed this chain"
_HOSTNAME_MISMATCH, _IP_MISMATCH = 62, 64
_SIMPLE_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

HBA_REMEDIATION = (
    "the server's pg_hba.conf (or the managed service's firewall / allowed-IP list) has no rule for this client: "
    "allow-list the pod's egress address for this user and database, and use the sslmode the rule needs "
    "(a hostssl rule or require_secure_transport needs sslmode require or stronger); the role also needs LOGIN"
)
# SQLSTATE of a refused start-up → (stage, cause, remediation); {user}, {database}, {quoted_user},
# {quoted_database} and {message} are filled in
_STARTUP_ERRORS: dict[str, tuple[Stage, str, str]] = {
    "28P01": (
        Stage.AUTH,
        "password authentication failed for user {user}",
        "check user and password (the secret the pod is given); the password may have been rotated "
        "or the role may not exist",
    ),
    "28000": (Stage.AUTH, "the server rejected the connection: {message}", HBA_REMEDIATION),
    "53300": (
        Stage.AUTH,
        "the server refuses new connections: {message}",
        "too many connections are open: raise max_connections or the role's / database's CONNECTION "
        "LIMIT, or put a pooler (PgBouncer) in front and close leaked sessions",
    ),
    "57P03": (
        Stage.AUTH,
        "the server is not accepting connections right now: {message}",
        "the server is starting, shutting down or in recovery: wait for it, and check failover status",
    ),
    "3D000": (
        Stage.OPERATION,
        "database {database} does not exist on the server",
        "create it (CREATE DATABASE {quoted_database} OWNER {quoted_user};) or correct the database field",
    ),
    "42501": (
        Stage.PERMISSION,
        "user {user} may not connect to database {database}: {message}",
        "run GRANT CONNECT ON DATABASE {quoted_database} TO {quoted_user}; as the database owner",
    ),
}
_STARTUP_REFUSED = (
    Stage.AUTH,
    "the server refused the session: {message} (SQLSTATE {code})",
    "look up the SQLSTATE in the PostgreSQL documentation (Appendix A) and check the server's log",
)


class PostgresTarget(Target):
    default_timeout: ClassVar[float] = 10.0
    warm_imports: ClassVar[tuple[str, ...]] = ("pg8000.native", "scramp")

    kind: Literal["postgres"]
    host: Host
    port: Port = 5432
    database: Identifier
    user: Identifier
    password: SecretStr | None = None
    sslmode: SslMode = "require"
    sslrootcert: Annotated[str, StringConstraints(min_length=1)] | None = None
    schema_: Identifier = Field("public", alias="schema")  # `schema` would shadow a BaseModel method
    min_version: Annotated[str, StringConstraints(pattern=r"^\d{1,3}(\.\d{1,4})?$")] | None = None
    extensions: list[ExtensionName] = Field(default_factory=list)
    write_test: bool = True

    @model_validator(mode="after")
    def _root_cert_needs_verification(self) -> PostgresTarget:
        if self.sslrootcert is not None and self.sslmode in ("disable", "allow", "prefer"):
            raise ValueError(
                f"sslrootcert is only used with sslmode require, verify-ca or verify-full; "
                f"sslmode {self.sslmode} never verifies the server"
            )
        return self

    def check(self, probe: Probe) -> None:
        probe.facts["sslmode"] = self.sslmode
        addresses = resolve(probe, self.host, self.port)
        # libpq's order of attempts: allow tries plaintext first, prefer falls back to plaintext
        attempts = {"disable": [False], "allow": [False, True], "prefer": [True, False]}.get(self.sslmode, [True])
        connection, sock = self._session(probe, addresses, attempts)
        if self.sslmode in ("allow", "prefer") and probe.facts[facts.TLS_VERSION] == "none":
            probe.warn(
                Stage.TLS,
                "the connection is not encrypted: the server did not negotiate TLS",
                "turn on ssl on the server and set sslmode: require (or verify-full) in this target",
            )
        try:
            self._database(probe, connection, sock)
            major = self._version(probe, connection, sock)
            if self.extensions:
                self._extensions(probe, connection, sock, major)
            privileges = self._schema(probe, connection, sock)
            if self.write_test:
                self._round_trip(probe, connection, sock, privileges)
            self._latency(probe, connection, sock)
        finally:
            _close(connection)

    # --- connection: TCP, TLS, start-up -------------------------------------------------------------

    def _session(self, probe: Probe, addresses: list[str], attempts: list[bool]) -> tuple[Connection, socket.socket]:
        """Log in, trying TLS or plaintext in libpq's order: any failure but the last attempt's moves on."""
        first: CheckFailed | None = None
        for number, use_tls in enumerate(attempts, start=1):
            sock = connect(probe, self.host, self.port, addresses)
            try:
                if use_tls:
                    sock = self._tls(probe, sock)
                else:
                    probe.facts[facts.TLS_VERSION] = "none"
                return self._startup(probe, sock), sock
            except CheckFailed as failure:
                sock.close()
                if number == len(attempts):
                    raise _both_attempts(first, failure, use_tls) from None
                first = failure
            except BaseException:
                sock.close()
                raise
        raise AssertionError("the last attempt either connects or raises")  # pragma: no cover

    def _tls(self, probe: Probe, sock: socket.socket) -> socket.socket:
        """The socket after PostgreSQL's SSLRequest and a TLS handshake (unchanged when allow/prefer meet no TLS)."""
        with probe.step(HANDSHAKE_STEP, Stage.TLS):
            context = self._ssl_context()
            sock.settimeout(probe.remaining())
            try:
                sock.sendall(_SSL_REQUEST)
                answer = sock.recv(1)
            except OSError as error:
                raise tls_failure(error, self.host) from None
            if answer == b"N":
                if self.sslmode in ("allow", "prefer"):  # the server has no TLS: libpq carries on unencrypted
                    probe.note(f"the server offers no TLS; continuing unencrypted as sslmode={self.sslmode} does")
                    probe.facts[facts.TLS_VERSION] = "none"
                    return sock
                raise CheckFailed(
                    Stage.TLS,
                    f"the server does not accept TLS connections (sslmode {self.sslmode} requires TLS)",
                    "turn on ssl on the server (ssl = on, with a certificate); only on a trusted network "
                    "set sslmode: disable or prefer",
                )
            if answer != b"S":
                raise CheckFailed(
                    Stage.TLS,
                    "the server did not answer the SSL request the way PostgreSQL does",
                    f"check that {self.host}:{self.port} is a PostgreSQL server and not another service",
                )
            try:
                tls_sock = context.wrap_socket(sock, server_hostname=self.host)
            except ssl.SSLCertVerificationError as error:
                raise self._verify_failure(error) from None
            except OSError as error:  # the handshake itself failed: diagnosed like every kind that speaks TLS
                raise tls_failure(error, self.host) from None
            version, cipher = tls_sock.version() or "unknown", (tls_sock.cipher() or ("unknown",))[0]
            probe.note(f"{version}, {cipher}")
            probe.facts[facts.TLS_VERSION] = version
            probe.facts[facts.TLS_CIPHER] = cipher
            return tls_sock

    def _ssl_context(self) -> ssl.SSLContext:
        """libpq's sslmode as a shared context: require with a root certificate behaves like verify-ca."""
        if self.sslmode not in ("verify-ca", "verify-full") and self.sslrootcert is None:
            return client_context(verify=False)
        try:
            return client_context(
                Path(self.sslrootcert) if self.sslrootcert else None, check_hostname=self.sslmode == "verify-full"
            )
        except CheckFailed as failure:  # named by this kind's field, with the reason the file was refused
            error = failure.__cause__
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or type(error).__name__
            raise CheckFailed(
                Stage.TLS,
                f"cannot read sslrootcert {self.sslrootcert}: {reason}",
                "mount the CA bundle (PEM) into the pod at that path, e.g. from a ConfigMap or Secret volume",
            ) from None

    def _verify_failure(self, error: ssl.SSLCertVerificationError) -> CheckFailed:
        """tls_failure's diagnosis, except where this kind's own fields are the fix: host, sslmode, sslrootcert."""
        reason = clean_remote_text(error.verify_message or error.reason or "verification failed")
        if error.verify_code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
            return CheckFailed(
                Stage.TLS,
                f"the server's certificate does not name {self.host} ({reason})",
                "set host to a name the certificate was issued for, or use sslmode: verify-ca, "
                "which checks the CA but not the name",
            )
        if error.verify_code in _UNTRUSTED:
            trust = f"sslrootcert {self.sslrootcert}" if self.sslrootcert else "the system trust store"
            return CheckFailed(
                Stage.TLS,
                f"the server's certificate is not signed by a CA in {trust} ({reason})",
                "set sslrootcert to your provider's CA bundle (e.g. the RDS global bundle, the Azure DigiCert "
                "root) or to the CA that signed the server's certificate",
            )
        return tls_failure(error, self.host)

    def _startup(self, probe: Probe, sock: socket.socket) -> Connection:
        """Authenticate and open the session."""
        import pg8000.native
        from pg8000.exceptions import DatabaseError, InterfaceError
        from scramp import ScramException  # type: ignore[import-untyped]

        refused: CheckFailed | None = None
        with probe.step("auth", Stage.AUTH):
            sock.settimeout(probe.remaining())
            try:
                connection = pg8000.native.Connection(
                    self.user,
                    host=self.host,
                    database=self.database,
                    # pg8000 cannot run SCRAM without a password; an empty one gets the server's own refusal
                    password=self.password.get_secret_value() if self.password else "",
                    sock=sock,
                    ssl_context=False,  # TLS, when wanted, is already on the socket
                    application_name="airia-test-pod",
                )
            except DatabaseError as error:
                code, message = _server_error(error)
                refused = self._startup_failure(code, message)
                if refused.stage == Stage.AUTH:
                    raise refused from None
                # the server authenticated the user and then refused the database: that step fails below
                probe.note(f"authenticated as {self.user}")
            except InterfaceError as error:
                raise _interface_failure(Stage.AUTH, error, "the login") from None
            except TimeoutError:
                raise _timeout(Stage.AUTH, "the login") from None
            except ScramException as error:  # the SCRAM exchange did not verify
                raise CheckFailed(
                    Stage.AUTH,
                    f"SCRAM authentication failed: {clean_remote_text(str(error))}",
                    "the server's SCRAM proof did not verify: check that host points at the real server "
                    "and not a proxy that rewrites the login",
                ) from None
            else:
                probe.note(f"as {self.user}")
        if refused is not None:
            with probe.step("database", refused.stage):
                raise refused
        return connection

    def _startup_failure(self, code: str, message: str) -> CheckFailed:
        if code == "28P01" and self.password is None:
            return CheckFailed(
                Stage.AUTH,
                f"the server requires a password for user {self.user} and this target has none",
                "set password (from a Secret: password: ${ENV_NAME}) or allow this client without one in pg_hba.conf",
            )
        stage, cause, remediation = _STARTUP_ERRORS.get(code, _STARTUP_REFUSED)
        values = {
            "user": self.user,
            "database": self.database,
            "quoted_user": _quote(self.user),
            "quoted_database": _quote(self.database),
            "message": message,
            "code": code,
        }
        return CheckFailed(stage, cause.format(**values), remediation.format(**values))

    # --- what the platform needs once connected -------------------------------------------------------

    def _database(self, probe: Probe, connection: Connection, sock: socket.socket) -> None:
        with probe.step("database", Stage.OPERATION):
            [[database, user, encoding]] = _execute(
                connection,
                sock,
                probe,
                "SELECT current_database(), current_user, pg_encoding_to_char(encoding) "
                "FROM pg_database WHERE datname = current_database()",
            )
            probe.note(f"{database} as {user}, {encoding}")
            probe.facts.update(database=database, user=user, encoding=encoding)
        if encoding != "UTF8":
            probe.warn(
                Stage.OPERATION,
                f"database {database} uses encoding {encoding}, not UTF8",
                "create the platform's database with ENCODING 'UTF8' so every character round-trips",
            )

    def _version(self, probe: Probe, connection: Connection, sock: socket.socket) -> int:
        with probe.step("version", Stage.OPERATION):
            [[number, text]] = _execute(
                connection,
                sock,
                probe,
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
            )
            number = int(number)
            version = (number // 10000, number % 10000) if number >= 100000 else (number // 10000, number // 100 % 100)
            probe.facts["server_version"] = clean_remote_text(text, 100)
            probe.note(clean_remote_text(text, 100))
            if self.min_version is not None:
                wanted = tuple(int(part) for part in self.min_version.split("."))
                if version < wanted:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"server version {version[0]}.{version[1]} is older than the required {self.min_version}",
                        f"upgrade the server to PostgreSQL {self.min_version} or newer",
                    )
        return version[0]

    def _extensions(self, probe: Probe, connection: Connection, sock: socket.socket, major: int) -> None:
        with probe.step("extensions", Stage.OPERATION):
            available = {
                row[0]
                for row in _execute(
                    connection,
                    sock,
                    probe,
                    "SELECT name FROM pg_available_extensions WHERE name = ANY(:names)",
                    names=self.extensions,
                )
            }
            installed = {
                row[0]: row[1]
                for row in _execute(
                    connection,
                    sock,
                    probe,
                    "SELECT extname, extversion FROM pg_extension WHERE extname = ANY(:names)",
                    names=self.extensions,
                )
            }
            for name in self.extensions:
                if name not in available:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"extension {name} is not available on this server",
                        f"install the package that provides it for PostgreSQL {major} on the server (managed "
                        f"services: allow it in their extension settings, e.g. Azure's azure.extensions), "
                        f"then run CREATE EXTENSION {_quote(name)}; in database {self.database} "
                        "as its owner or a superuser",
                    )
                if name not in installed:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"extension {name} is available but not installed in database {self.database}",
                        f"run CREATE EXTENSION IF NOT EXISTS {_quote(name)}; in database {self.database} "
                        "as its owner or a superuser",
                    )
            summary = ", ".join(f"{name} {installed[name]}" for name in self.extensions)
            probe.note(summary)
            probe.facts["extensions"] = summary

    def _schema(self, probe: Probe, connection: Connection, sock: socket.socket) -> dict[str, bool]:
        """The schema exists; returns which of USAGE and CREATE the user holds on it."""
        with probe.step("schema", Stage.OPERATION):
            rows = _execute(
                connection,
                sock,
                probe,
                "SELECT has_schema_privilege(oid, 'USAGE'), has_schema_privilege(oid, 'CREATE') "
                "FROM pg_namespace WHERE nspname = :schema",
                schema=self.schema_,
            )
            if not rows:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"schema {self.schema_} does not exist in database {self.database}",
                    f"create it (CREATE SCHEMA {_quote(self.schema_)} AUTHORIZATION {_quote(self.user)};) "
                    "or correct the schema field",
                )
            [[usage, create]] = rows
            granted = [name for name, held in (("USAGE", usage), ("CREATE", create)) if held]
            probe.note(f"{self.schema_}: {', '.join(granted) or 'no privileges'}")
            probe.facts["schema"] = self.schema_
        return {"USAGE": bool(usage), "CREATE": bool(create)}

    def _round_trip(
        self, probe: Probe, connection: Connection, sock: socket.socket, privileges: dict[str, bool]
    ) -> None:
        """Create, fill, read and drop a scratch table in one transaction: a failure rolls it all back."""
        from pg8000.exceptions import DatabaseError

        table = f"{_quote(self.schema_)}.{_quote('airia_scratch_' + secrets.token_hex(6))}"
        token = secrets.token_hex(16)
        # the table name is generated here and quoted; the only value goes in as a parameter
        statements = [
            ("CREATE TABLE", f"CREATE TABLE {table} (id integer PRIMARY KEY, payload text NOT NULL)"),
            ("INSERT", f"INSERT INTO {table} (id, payload) VALUES (1, :token)"),  # noqa: S608
            ("SELECT", f"SELECT payload FROM {table} WHERE id = 1"),  # noqa: S608
            ("DROP TABLE", f"DROP TABLE {table}"),
        ]
        with probe.step("round trip", Stage.OPERATION):
            start = time.perf_counter()
            _execute(connection, sock, probe, "BEGIN")
            committed = False
            try:
                for verb, sql in statements:
                    try:
                        rows = _execute(connection, sock, probe, sql, **({"token": token} if ":token" in sql else {}))
                    except DatabaseError as error:
                        raise self._statement_failure(verb, *_server_error(error), privileges) from None
                    if verb == "SELECT" and rows != [[token]]:
                        raise CheckFailed(
                            Stage.OPERATION,
                            "the row read back differs from the row written",
                            "check for triggers, rules or a proxy that rewrites queries on this database",
                        )
                _execute(connection, sock, probe, "COMMIT")
                committed = True
            finally:
                if not committed:
                    _rollback(connection)
            elapsed = elapsed_ms(start)
            probe.note(f"create / insert / select / drop in {self.schema_}: {elapsed} ms")
            probe.facts["round_trip_ms"] = elapsed

    def _statement_failure(self, verb: str, code: str, message: str, privileges: dict[str, bool]) -> CheckFailed:
        if code == "42501":
            missing = [name for name in ("USAGE", "CREATE") if not privileges[name]]
            needed = " and ".join(missing) if missing else "the privileges"
            grant = f"GRANT {', '.join(missing) or 'USAGE, CREATE'} ON SCHEMA {_quote(self.schema_)}"
            return CheckFailed(
                Stage.PERMISSION,
                f"{verb} denied: user {self.user} lacks {needed} on schema {self.schema_} ({message})",
                f"run {grant} TO {_quote(self.user)}; as the schema owner (the platform creates its own tables)",
            )
        if code == "25006":
            return CheckFailed(
                Stage.PERMISSION,
                f"{verb} refused: the session is read-only ({message})",
                "point host at the primary, not a read replica, and check default_transaction_read_only",
            )
        return CheckFailed(
            Stage.OPERATION,
            f"{verb} failed in the scratch table: {message} (SQLSTATE {code})",
            "check the server's log and any event triggers or policies on this database; "
            "nothing was left behind (the round trip runs in one transaction)",
        )

    def _latency(self, probe: Probe, connection: Connection, sock: socket.socket) -> None:
        with probe.step("latency", Stage.OPERATION):
            timings = []
            for _ in range(5):
                start = time.perf_counter()
                _execute(connection, sock, probe, "SELECT 1")
                timings.append((time.perf_counter() - start) * 1000)
            median = round(statistics.median(timings), 2)
            probe.note(f"median of 5 × SELECT 1: {median} ms")
            probe.facts[facts.LATENCY_MS] = median


def _both_attempts(first: CheckFailed | None, retry: CheckFailed, retry_tls: bool) -> CheckFailed:
    """The failure to report after a retry with or without TLS, joining both causes as libpq does.

    A retry refused only for its transport (pg_hba has no rule for it: 28000) or at TLS says nothing about
    why the first attempt failed, e.g. a wrong password on the TLS attempt of sslmode prefer: the first
    failure is the one to fix.
    """
    if first is None or not (retry.stage == Stage.TLS or retry.remediation == HBA_REMEDIATION):
        return retry
    how = "over TLS" if retry_tls else "without TLS"
    return CheckFailed(first.stage, f"{first.cause}; the retry {how}: {retry.cause}", first.remediation)


def _execute(connection: Connection, sock: socket.socket, probe: Probe, sql: str, **params: Any) -> Any:
    """One statement under the time the runner has left; a stall becomes a failure at the current stage."""
    from pg8000.exceptions import InterfaceError

    sock.settimeout(probe.remaining())
    try:
        return connection.run(sql, **params)
    except TimeoutError:
        raise _timeout(probe.stage, "the query") from None
    except InterfaceError as error:
        raise _interface_failure(probe.stage, error, "the query") from None


def _server_error(error: Exception) -> tuple[str, str]:
    """SQLSTATE and message of an ErrorResponse (pg8000 passes the server's fields as a dict)."""
    fields = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    return str(fields.get("C", "")), clean_remote_text(str(fields.get("M", error)))


def _interface_failure(stage: Stage, error: Exception, what: str) -> CheckFailed:
    if isinstance(error.__cause__, TimeoutError):
        return _timeout(stage, what)
    if error.__cause__ is not None or str(error) == "network error":
        return CheckFailed(
            stage,
            f"the server closed the connection during {what}",
            "check the server's log: it may be overloaded, restarting, or a proxy in between cut the connection",
        )
    return CheckFailed(
        stage,
        f"{what} failed: {clean_remote_text(str(error))}",
        "the server asks for something this target does not provide: check password and the server's "
        "authentication method (pg8000 supports password, md5 and scram-sha-256)",
    )


def _timeout(stage: Stage, what: str) -> CheckFailed:
    return CheckFailed(stage, f"no answer to {what} before the timeout", NO_ANSWER[stage])


def _quote(identifier: str) -> str:
    """An identifier as SQL text: bare when it is plain lower-case, else double-quoted."""
    if _SIMPLE_IDENTIFIER.match(identifier):
        return identifier
    return '"' + identifier.replace('"', '""') + '"'


def _rollback(connection: Connection) -> None:
    with contextlib.suppress(Exception):  # a broken connection rolls back on the server by itself
        connection.run("ROLLBACK")


def _close(connection: Connection) -> None:
    with contextlib.suppress(Exception):  # closing a connection that already broke is not news
        connection.close()
