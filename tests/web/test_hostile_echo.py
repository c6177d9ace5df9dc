"""Hostile servers echo every secret of their targets, raw, escaped and encoded, placed to straddle every length
limit; no fragment of 8 characters of any secret may reach any output: the API, the three reports, /metrics,
the dashboard, the CLI's three formats, or the log.

One local server per kind (and one as Google's token endpoint for the Vertex AI targets) speaks just enough of
its protocol to answer every request with an error quoting the secrets (the servers are told them, as a server
holding a leaked copy would be).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from app.cli import main as cli_main
from tests.checks.http_server import HttpServer, Reply, Request
from tests.web.helpers import PASSWORD, SECRET_KEY, ServerProcess, bearer, login, wait_for_verdict, write_targets

pytestmark = pytest.mark.slow
COPIES = 6  # targets per kind, each answered with another echo
LIMITS = (200, 300, 500)  # the lengths remote text is cut to
ENCODERS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "json": lambda s: json.dumps(s)[1:-1],
    "json-slash": lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
    "percent": lambda s: quote(s, safe=""),
    "form": quote_plus,
    "html": html.escape,
}


def service_account_key(private_key: str, token_uri: str) -> str:
    """A Google service account's JSON key; only its private key is secret (the e-mail is shown as the identity)."""
    key = {
        "type": "service_account",
        "project_id": "hostile-proj",
        "private_key_id": "k1",
        "private_key": private_key,
        "client_email": "probe@hostile-proj.iam.example",
        "token_uri": token_uri,
    }
    return json.dumps(key)


def rsa_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def planted(alphabet: str = "printable") -> str:
    """A unique secret with characters every encoding changes (or, for keys that must be base64, only those)."""
    token = uuid.uuid4().hex
    if alphabet == "base64":
        return base64.b64encode(bytes.fromhex(token) * 2).decode()
    return f'S/{token[:12]}+"q\\<&>={token[12:]}'


class Echoes:
    """Which echo the n-th request gets: every (secret, form, place) in turn, so the runs share them out."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self._order = itertools.cycle(
            [
                (secret, encode, limit - len(encode(secret)) // shift)
                for limit in LIMITS
                for shift in (1, 2, 4)
                for encode in ENCODERS.values()
                for secret in secrets
            ]
        )
        self._lock = threading.Lock()

    def message(self, raw: bool = False) -> str:
        with self._lock:
            secret, encode, offset = next(self._order)
        echoed = secret if raw else encode(secret)
        return "x" * max(offset, 0) + echoed + " was refused; all of them: " + " ".join(self.secrets)


def http_reply(echoes: Echoes, shape: str) -> Callable[[Request], Reply]:
    def reply(request: Request) -> Reply:
        message = echoes.message()
        if shape == "ai" and request.path.endswith("/token"):  # Google's OAuth token endpoint
            body = json.dumps({"error": "invalid_grant", "error_description": message}).encode()
            return Reply(400, body, {"Content-Type": "application/json"})
        if shape == "ai":  # where each provider puts its message: OpenAI, Anthropic, Google and Azure; Mistral, AWS
            document = {"error": {"message": message, "type": "invalid_request_error"}, "message": message}
            headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "ValidationException"}
            return Reply(400, json.dumps(document).encode(), headers)
        if shape in ("azure", "s3"):
            code = "AuthenticationFailed" if shape == "azure" else "AccessDenied"
            body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{html.escape(message)}</Message></Error>"
            headers = {"Content-Type": "application/xml", "x-ms-error-code": code} if shape == "azure" else {}
            return Reply(403, body.encode(), headers)
        if request.path.startswith("/redirect"):  # a Location is percent-encoded once, by the server
            echo = quote(echoes.message(raw=True))
            return Reply(302, b"", {"Location": f"/elsewhere?{request.path.partition('?')[2]}&echo={echo}"})
        return Reply(500, message.encode(), {"X-Echo": message.encode("ascii", "replace").decode()})

    return reply


class HostilePostgres:
    """Answers every startup with a FATAL ErrorResponse that quotes the secrets (sslmode=disable)."""

    def __init__(self, echoes: Echoes) -> None:
        self.echoes = echoes
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                (length,) = struct.unpack("!i", conn.recv(4))
                conn.recv(length - 4)
                fields = b"SFATAL\0VFATAL\0CXX000\0M" + self.echoes.message().encode() + b"\0\0"
                conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
            except OSError:
                return

    def close(self) -> None:
        self._sock.close()


class HostileCassandra:
    """Native protocol v4, just far enough to ask for a password and refuse it quoting the secrets."""

    def __init__(self, echoes: Echoes) -> None:
        self.echoes = echoes
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("!H", len(data)) + data

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as incoming:
            while header := incoming.read(9):
                if len(header) < 9:
                    return
                stream, opcode, length = struct.unpack("!hBi", header[2:9])
                incoming.read(length)
                if opcode == 0x05:  # OPTIONS -> SUPPORTED
                    body = struct.pack("!H", 2) + self._string("CQL_VERSION") + b"\0\1" + self._string("3.4.7")
                    opcode, body = 0x06, body + self._string("COMPRESSION") + b"\0\0"
                elif opcode == 0x01:  # STARTUP -> AUTHENTICATE
                    opcode, body = 0x03, self._string("org.apache.cassandra.auth.PasswordAuthenticator")
                else:  # AUTH_RESPONSE and anything else -> ERROR "bad credentials"
                    opcode, body = 0x00, struct.pack("!i", 0x0100) + self._string(self.echoes.message())
                try:
                    conn.sendall(struct.pack("!BBhBi", 0x84, 0, stream, opcode, len(body)) + body)
                except OSError:
                    return

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]]:
    """Targets of every kind with secrets, their servers, the environment that holds the secrets and the secrets
    no output may show a fragment of."""
    env = {
        "HTTP_TOKEN": planted(),
        "HTTP_KEY": planted(),
        "HTTP_QUERY": uuid.uuid4().hex,
        "AI_KEY": planted(),
        "AI_SIG": uuid.uuid4().hex,
        "AZ_KEY": planted("base64"),
        "AZ_SIG": quote(planted("base64"), safe=""),
        "S3_SECRET": planted(),
        "S3_TOKEN": planted(),
        "PG_PASSWORD": planted(),
        "CQL_PASSWORD": planted(),
        "ANTHROPIC_KEY": planted(),
        "GEMINI_KEY": planted(),
        "MISTRAL_KEY": planted(),
        "DI_KEY": planted(),
        "BEDROCK_SECRET": planted(),
        "BEDROCK_TOKEN": planted(),
        "GCP_PRIVATE_KEY": rsa_private_key(),
    }
    http_echo = Echoes([env["HTTP_TOKEN"], env["HTTP_KEY"], env["HTTP_QUERY"]])
    servers: list[Any] = [
        HttpServer(http_reply(http_echo, "http")),
        HttpServer(http_reply(Echoes([env["AI_KEY"], env["AI_SIG"]]), "openai")),
        HttpServer(http_reply(Echoes([env["AZ_KEY"]]), "azure")),
        HttpServer(http_reply(Echoes([env["AZ_SIG"]]), "azure")),
        HttpServer(http_reply(Echoes([env["S3_SECRET"], env["S3_TOKEN"]]), "s3")),
        HostilePostgres(Echoes([env["PG_PASSWORD"]])),
        HostileCassandra(Echoes([env["CQL_PASSWORD"]])),
        *(
            HttpServer(http_reply(Echoes([env[key]]), "ai"))
            for key in ("ANTHROPIC_KEY", "GEMINI_KEY", "MISTRAL_KEY", "DI_KEY")
        ),
        HttpServer(http_reply(Echoes([env["BEDROCK_SECRET"], env["BEDROCK_TOKEN"]]), "ai")),
        HttpServer(http_reply(Echoes([env["GCP_PRIVATE_KEY"]]), "ai")),
    ]
    web, ai, azure_key, azure_sas, s3, pg, cql, anthropic, gemini, mistral, di, bedrock, google = servers
    scanned = dict(env)
    env["GCP_KEY"] = service_account_key(env["GCP_PRIVATE_KEY"], f"{google.url}/token")
    vertex = {"provider": "vertex", "service_account_key": "${GCP_KEY}", "base_url": google.url}
    targets: list[dict[str, Any]] = []
    for i in range(COPIES):
        targets += [
            {
                "name": f"http-{i}",
                "kind": "http",
                "url": f"{web.url}/{'redirect' if i % 2 else 'status'}?access_token=${{HTTP_QUERY}}",
                "headers": {"Authorization": "Bearer ${HTTP_TOKEN}", "X-Api-Key": "${HTTP_KEY}"},
            },
            {
                "name": f"openai-{i}",
                "kind": "openai",
                "base_url": f"{ai.url}/v1?sig=${{AI_SIG}}",
                "api_key": "${AI_KEY}",
                "model": "gpt-test",
            },
            {
                "name": f"azure-{i}",
                "kind": "azure_blob",
                **(
                    {"account_name": "devstoreaccount1", "account_key": "${AZ_KEY}", "endpoint": f"{azure_key.url}/acc"}
                    if i % 2
                    else {"sas_url": f"{azure_sas.url}/acc/probe?sv=2024-01-01&sr=c&sp=rwdl&sig=${{AZ_SIG}}"}
                ),
                "container": "probe",
            },
            {
                "name": f"s3-{i}",
                "kind": "s3",
                "bucket": "probe-bucket",
                "endpoint_url": s3.url,
                "addressing_style": "path",
                "access_key_id": "AKIAHOSTILE",
                "secret_access_key": "${S3_SECRET}",
                "session_token": "${S3_TOKEN}",
            },
            {
                "name": f"postgres-{i}",
                "kind": "postgres",
                "host": "127.0.0.1",
                "port": pg.port,
                "database": "airia",
                "user": "airia",
                "password": "${PG_PASSWORD}",
                "sslmode": "disable",
            },
            {
                "name": f"cassandra-{i}",
                "kind": "cassandra",
                "contact_points": ["127.0.0.1"],
                "port": cql.port,
                "protocol_version": 4,
                "username": "airia",
                "password": "${CQL_PASSWORD}",
                "keyspace": "airia",
            },
            {
                "name": f"anthropic-{i}",
                "kind": "anthropic",
                "model": "claude-test",
                **({"base_url": anthropic.url, "api_key": "${ANTHROPIC_KEY}"} if i % 2 else vertex),
            },
            {
                "name": f"gemini-{i}",
                "kind": "gemini",
                "model": "gemini-test",
                **({"base_url": gemini.url, "api_key": "${GEMINI_KEY}"} if i % 2 else vertex),
            },
            {
                "name": f"mistral-{i}",
                "kind": "mistral",
                "base_url": f"{mistral.url}/v1",
                "api_key": "${MISTRAL_KEY}",
                "model": "mistral-test",
            },
            {
                "name": f"document-intelligence-{i}",
                "kind": "document_intelligence",
                "endpoint": di.url,
                "api_key": "${DI_KEY}",
            },
            {
                "name": f"bedrock-{i}",
                "kind": "bedrock",
                "region": "us-east-1",
                "model": "anthropic.claude-test",
                "endpoint_url": bedrock.url,
                "access_key_id": "AKIAHOSTILE",
                "secret_access_key": "${BEDROCK_SECRET}",
                "session_token": "${BEDROCK_TOKEN}",
            },
        ]
    yield targets, env, scanned
    for server in servers:
        server.close()


def fragments(secret: str, size: int = 8) -> set[str]:
    """Every 8-character run of letters and digits of the secret in each form it could be printed in (JSON, HTML
    and XML escape it): the random parts, not the escapes every planted secret shares."""
    runs = {run for encode in ENCODERS.values() for run in re.findall(r"[A-Za-z0-9]+", encode(secret))}
    return {run[i : i + size] for run in runs for i in range(len(run) - size + 1)}


def test_no_fragment_of_an_echoed_secret_reaches_any_output(
    hostile: tuple[list[dict[str, Any]], dict[str, str], dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    targets, env, scanned = hostile
    config = write_targets(tmp_path, targets)
    server_env = {"TESTPOD_CONFIG": str(config), "TESTPOD_AUTH_PASSWORD": PASSWORD, "TESTPOD_SECRET_KEY": SECRET_KEY}
    server = ServerProcess(env={**server_env, **env}, log_path=tmp_path / "server.log")
    server.start()  # it runs every target once at start-up
    outputs: dict[str, str] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            auth = bearer(client)
            wait_for_verdict(client, auth, timeout=120)
            while client.get("/health", headers=auth).json()["run_in_progress"]:
                time.sleep(0.05)
            run = client.get("/api/results", headers=auth).json()
            outputs["results"] = json.dumps(run)
            for fmt in ("json", "junit", "html"):
                outputs[f"{fmt} report"] = client.get("/api/report", params={"format": fmt}, headers=auth).text
            outputs["metrics"] = client.get("/metrics").text
            login(client)
            outputs["dashboard"] = client.get("/").text
    finally:
        server.stop()
    outputs["log"] = server.log()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for fmt in ("text", "json", "junit"):
        assert cli_main(["check", "--config", str(config), "--format", fmt]) == 1
        printed = capsys.readouterr()
        outputs[f"cli {fmt}"] = printed.out + printed.err

    # the echoes really came back: the causes that quote the server show the redaction, so the scan is not vacuous
    echoed = ("http", "openai", "azure_blob", "postgres", "cassandra")
    for kind in (*echoed, "anthropic", "gemini", "mistral", "document_intelligence", "bedrock"):
        causes = [r["cause"] for r in run["results"] if r["kind"] == kind]
        assert causes and any("***" in cause for cause in causes), (kind, causes)
    vertex = [r for r in run["results"] if r["kind"] in ("anthropic", "gemini") and int(r["name"][-1]) % 2 == 0]
    assert {(r["stage"], "***" in r["cause"]) for r in vertex} == {("auth", True)}  # the token endpoint's echo
    assert [r["stage"] for r in run["results"] if r["kind"] == "s3"] == ["permission"] * COPIES  # s3 quotes codes
    assert PASSWORD not in outputs["dashboard"] and "Run all" in outputs["dashboard"]
    for channel, text in outputs.items():
        for name, secret in scanned.items():
            found = [piece for piece in fragments(secret) if piece in text]
            at = text.find(found[0]) if found else 0
            assert not found, f"{name} leaked into the {channel}: {text[max(at - 200, 0) : at + 100]!r}"
