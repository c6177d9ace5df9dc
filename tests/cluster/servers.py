"""Servers the pods reach, listening inside the node's namespace on the node's address.

    with postgres() as db: ...      # PostgreSQL 15 (Debian's), TLS on, one database and role; password rotation
    with s3() as store: ...         # moto's S3 server, one bucket
    with http_server() as url: ...  # a plain HTTP server answering 200

Each starts its process with `netns.command` (or binds its socket from inside the node), so nothing listens
outside the cluster's namespaces; setting the servers up goes through a Unix socket or from inside the node.
"""

from __future__ import annotations

import http.server
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.certs import Certificates
from tests.cluster import netns
from tests.cluster.layout import NODE_IP

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class NodePostgres:
    host: str
    port: int
    database: str
    user: str
    password: str
    socket_dir: Path

    def sql(self, statement: str) -> str:
        """Run SQL as the superuser over the Unix socket (files are not namespaced)."""
        result = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout

    def rotate_password(self) -> str:
        self.password = "rotated-" + secrets.token_urlsafe(12)
        self.sql(f"ALTER ROLE {self.user} PASSWORD '{self.password}'")
        return self.password


def _as_postgres(command: list[str]) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)


@contextmanager
def postgres() -> Iterator[NodePostgres]:
    workdir = Path(tempfile.mkdtemp(prefix="airia-cluster-postgres-"))
    shutil.chown(workdir, "postgres", "postgres")
    data = workdir / "data"
    port = 5432
    try:
        _as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        certs = Certificates(workdir / "certs")
        cert = certs.leaf("server", hosts=[NODE_IP])
        for path in (workdir / "certs", cert.cert_file, cert.key_file):
            shutil.chown(path, "postgres", "postgres")
        (data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 0.0.0.0/0 scram-sha-256\n")
        options = [
            f"-c listen_addresses={NODE_IP}",
            f"-c port={port}",
            f"-c unix_socket_directories={workdir}",
            "-c ssl=on",
            f"-c ssl_cert_file={cert.cert_file}",
            f"-c ssl_key_file={cert.key_file}",
            "-c fsync=off",
        ]
        subprocess.run(
            netns.command(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(workdir / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                    "-o",
                    " ".join(options),
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        server = NodePostgres(NODE_IP, port, "airia", "airia_app", "initial-" + secrets.token_urlsafe(12), workdir)
        server.sql(f"CREATE ROLE {server.user} LOGIN PASSWORD '{server.password}'")
        server.sql(f"CREATE DATABASE {server.database} OWNER {server.user}")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class NodeS3:
    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str


@contextmanager
def s3() -> Iterator[NodeS3]:
    port = 9000
    endpoint = f"http://{NODE_IP}:{port}"
    log = tempfile.NamedTemporaryFile(prefix="airia-cluster-s3-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        netns.command([sys.executable, "-m", "moto.server", "-H", NODE_IP, "-p", str(port)]),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with netns.inside_node():
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"moto's server did not start: {Path(log.name).read_text()}") from None
                    time.sleep(0.2)
            import boto3

            store = NodeS3(endpoint, "airia-artifacts", "airia-readiness", "s3-" + secrets.token_urlsafe(16))
            boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id=store.access_key_id,
                aws_secret_access_key=store.secret_access_key,
            ).create_bucket(Bucket=store.bucket)
        yield store
    finally:
        process.terminate()
        process.wait(15)
        log.close()
        os.unlink(log.name)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def http_server() -> Iterator[str]:
    with netns.inside_node():  # the listening socket is created, and stays, in the node's namespace
        server = http.server.ThreadingHTTPServer((NODE_IP, 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{NODE_IP}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
