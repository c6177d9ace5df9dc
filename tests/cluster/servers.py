"""Servers the pods reach, listening inside the node's namespace on the node's address.

    with postgres() as db: ...      # PostgreSQL 15 (Debian's), TLS on, one database and role; password rotation
    with s3() as store: ...         # moto's S3 server, one bucket
    with http_server() as url: ...  # a plain HTTP server answering 200
    with stalled_server() as url: ...  # accepts connections and never answers
    with registry() as mirror: ...  # CNCF distribution over TLS (a CA made here) with htpasswd auth

Each starts its process with `netns.command` (or binds its socket from inside the node), so nothing listens
outside the cluster's namespaces; setting the servers up goes through a Unix socket or from inside the node.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.certs import Certificates
from tests.cluster import netns, node
from tests.cluster.layout import NODE_IP, REGISTRY_PORT
from tests.servers import StallServer
from tests.services import registry as oci

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


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


@contextmanager
def stalled_server() -> Iterator[str]:
    with netns.inside_node():  # listening in the node's namespace; the accepting thread needs no namespace
        server = StallServer(NODE_IP)
    try:
        yield f"http://{NODE_IP}:{server.port}/"
    finally:
        server.close()


@dataclass(frozen=True)
class NodeRegistry:
    host: str  # host:port, as image references and pull Secrets name it
    user: str
    password: str
    ca_file: Path  # the CA that signed the registry's certificate (no one trusts it unless told)
    log: Path

    def docker_config(self, password: str | None = None) -> str:
        """The .dockerconfigjson a pull Secret holds for this registry (with another password when given)."""
        secret = self.password if password is None else password
        auth = base64.b64encode(f"{self.user}:{secret}".encode()).decode()
        return json.dumps({"auths": {self.host: {"username": self.user, "password": secret, "auth": auth}}})

    def pull_secret(self, namespace: str, name: str, password: str | None = None) -> None:
        """`kubectl create secret docker-registry` for this registry (or its replacement), as the platform's
        pull Secret is made; with another password when given."""
        manifest = node.kubectl(
            "-n",
            namespace,
            "create",
            "secret",
            "docker-registry",
            name,
            f"--docker-server={self.host}",
            f"--docker-username={self.user}",
            f"--docker-password={self.password if password is None else password}",
            "--dry-run=client",
            "-o",
            "yaml",
        )
        node.kubectl("apply", "-f", "-", input=manifest)

    def get(self, path: str) -> dict[str, Any]:
        """A JSON document from the registry's API (e.g. a manifest), signed in as `user`; from inside the node."""
        request = urllib.request.Request(f"https://{self.host}{path}", headers={"Accept": MANIFEST_TYPES})
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=self.ca_file)
        with netns.inside_node(), urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return dict(json.loads(answer.read()))

    def stored_size(self, repository: str, tag: str) -> int:
        """Bytes the registry holds for the image: its config and its (compressed) layers."""
        manifest = self.get(f"/v2/{repository}/manifests/{tag}")
        return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])

    def requests(self) -> list[dict[str, Any]]:
        """The registry's log entries for the requests it answered (URI, user agent, status, authenticated user)."""
        entries = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [entry for entry in entries if "http.response.status" in entry]

    def pulls(self) -> list[dict[str, Any]]:
        """The requests containerd made (a pull by the kubelet): manifests and the blobs it fetched."""
        return [entry for entry in self.requests() if entry.get("http.request.useragent", "").startswith("containerd/")]


@contextmanager
def registry() -> Iterator[NodeRegistry]:
    """The registry the image tests push to and the cluster pulls from: TLS with a CA made here, htpasswd auth."""
    if not oci.binary().exists():
        raise RuntimeError(f"the registry is not installed ({oci.MODULE}): python -m tests.services install registry")
    workdir = Path(tempfile.mkdtemp(prefix="airia-cluster-registry-"))
    host = f"{NODE_IP}:{REGISTRY_PORT}"
    password = "pull-" + secrets.token_urlsafe(16)
    server = NodeRegistry(host, "mirror-puller", password, workdir / "ca.pem", workdir / "registry.log")
    certs = Certificates(workdir / "certs", organisation="Mirror")
    shutil.copyfile(certs.ca_file, server.ca_file)
    cert = certs.leaf("registry", hosts=[NODE_IP])
    (workdir / "htpasswd").write_text(oci.htpasswd_line(server.user, server.password))
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json"},  # one line per request, with the user it authenticated
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
        "http": {"addr": host, "tls": {"certificate": str(cert.cert_file), "key": str(cert.key_file)}},
        "auth": {"htpasswd": {"realm": "mirror", "path": str(workdir / "htpasswd")}},
    }
    (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    with server.log.open("wb") as log:
        process = subprocess.Popen(
            netns.command([str(oci.binary()), "serve", str(workdir / "config.yml")]), stdout=log, stderr=log
        )
    try:
        context = ssl.create_default_context(cafile=server.ca_file)
        with netns.inside_node():
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"https://{host}/v2/", timeout=2, context=context)
                except urllib.error.HTTPError:
                    break  # 401: serving, and asking for credentials
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the registry did not start: {server.log.read_text()[-800:]}") from None
                    time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(15)
        shutil.rmtree(workdir, ignore_errors=True)
