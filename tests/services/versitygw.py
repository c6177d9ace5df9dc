"""A real S3 implementation for the integration tests: versitygw (an S3 gateway over a POSIX directory), on 127.0.0.1.

moto's server (tests/services/s3.py) is an emulator: it accepts any signing region and never shows how a real
server behaves on the wire. versitygw does: it checks the signing region (400 AuthorizationHeaderMalformed naming
its own), answers a refused upload before reading the body, and serves virtual-hosted buckets under a domain.

`install()` builds `github.com/versity/versitygw/cmd/versitygw@VERSION` with `go install` into
`$XDG_CACHE_HOME/airia-test-pod/versitygw-VERSION/` (default `~/.cache/...`; about 2.5 minutes cold); once there,
a second run does nothing.

The session fixture `versitygw` starts one gateway over plain HTTP and yields an `S3Server` like moto's: the root
account as "admin", and users with only the rights of tests/services/s3.py's POLICIES, granted through a bucket
policy (versitygw has no IAM user policies; its default buckets reject ACLs). `versitygw_tls` starts a second
gateway over HTTPS with a generated certificate for 127.0.0.1, localhost, VIRTUAL_DOMAIN and *.VIRTUAL_DOMAIN.
`started(tls=...)` starts a private one, e.g. to stop it with SIGSTOP (a server that accepts and never answers);
both need this module's own build, and are skipped, saying why, when only an external gateway is given.

Environment override: `TESTPOD_TEST_VERSITYGW_ENDPOINT` (the URL of a versitygw started with the ROOT keys below
and `--virtual-domain s3.test`, e.g. from docker-compose.test.yml) makes `versitygw` provision and use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.certs import DEFAULT_HOSTS, Certificates
from tests.servers import free_port
from tests.services import unavailable
from tests.services.s3 import POLICIES, REGION, Keys, S3Server

VERSION = "v1.8.0"
MODULE = "github.com/versity/versitygw/cmd/versitygw"
ROOT = Keys("testpod-root", "testpod-root-secret")  # throwaway, the same in docker-compose.test.yml
VIRTUAL_DOMAIN = "s3.test"  # buckets are also served as <bucket>.s3.test (virtual-hosted style)
START_TIMEOUT = 30.0


def install_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "airia-test-pod" / f"versitygw-{VERSION}"


def executable() -> Path:
    return install_dir() / "versitygw"


def install() -> None:
    """versitygw built from the Go module proxy into the cache directory (needs Go)."""
    if executable().exists():
        return
    go = shutil.which("go")
    if go is None:
        raise SystemExit(f"Go 1.25 or later is needed to build versitygw {VERSION} (its go.mod asks for it)")
    environment = {**os.environ, "GOBIN": str(install_dir()), "CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
    subprocess.run([go, "install", f"{MODULE}@{VERSION}"], check=True, env=environment)


@pytest.fixture(scope="session")
def versitygw() -> Iterator[S3Server]:
    endpoint = os.environ.get("TESTPOD_TEST_VERSITYGW_ENDPOINT")
    if endpoint:
        endpoint = endpoint.rstrip("/")
        try:
            _wait_until_up(endpoint, None, None)
        except RuntimeError as error:
            unavailable("versitygw", f"{endpoint} (TESTPOD_TEST_VERSITYGW_ENDPOINT): {error}")
        server = provision(endpoint, None)
        try:
            yield server
        finally:
            remove(server)
        return
    with started(tls=False) as (server, _):
        yield server


@pytest.fixture(scope="session")
def versitygw_tls() -> Iterator[S3Server]:
    with started(tls=True) as (server, _):
        yield server


@contextmanager
def started(*, tls: bool) -> Iterator[tuple[S3Server, subprocess.Popen[bytes]]]:
    """A provisioned gateway of its own, on a free port; stopped (even if paused) and removed when the block ends."""
    if not executable().exists():
        if os.environ.get("TESTPOD_TEST_VERSITYGW_ENDPOINT"):
            pytest.skip("the external versitygw serves plain HTTP only, and this module's versitygw is not built")
        unavailable("versitygw", f"{executable()} is missing: run `python -m tests.services install versitygw`")
    workdir = Path(tempfile.mkdtemp(prefix="testpod-versitygw-"))
    (workdir / "data").mkdir()
    (workdir / "iam").mkdir()
    port = free_port()
    command = [str(executable()), "--access", ROOT.access_key_id, "--secret", ROOT.secret_access_key]
    command += ["--port", f"127.0.0.1:{port}", "--iam-dir", str(workdir / "iam"), "--virtual-domain", VIRTUAL_DOMAIN]
    ca_file = wrong_ca_file = None
    if tls:
        certificates = Certificates(workdir / "certs")
        leaf = certificates.leaf("versitygw", hosts=[*DEFAULT_HOSTS, VIRTUAL_DOMAIN, f"*.{VIRTUAL_DOMAIN}"])
        command += ["--cert", str(leaf.cert_file), "--key", str(leaf.key_file)]
        ca_file = str(certificates.ca_file)
        wrong_ca_file = str(Certificates(workdir / "other", "Unrelated").ca_file)
    command += ["posix", str(workdir / "data")]
    endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    log = workdir / "versitygw.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            _wait_until_up(endpoint, ca_file, process)
        except RuntimeError as error:
            unavailable("versitygw", f"{error}\n{log.read_text(errors='replace')[-2000:]}")
        server = provision(endpoint, ca_file)
        yield S3Server(endpoint, server.keys, server.bucket, None, ca_file, wrong_ca_file), process
    finally:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a paused gateway cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def client(server: S3Server, role: str = "admin", **options: Any) -> Any:
    """A boto3 S3 client as `role`, for arranging and inspecting test data."""
    import boto3

    keys = server.keys[role]
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        verify=server.ca_file or True,
        **options,
    )


def provision(endpoint: str, ca_file: str | None) -> S3Server:
    """A uniquely named bucket of the root account, a user per POLICIES role, and the bucket policy granting them."""
    from botocore.config import Config

    suffix = secrets.token_hex(4)
    bucket = f"testpod-{suffix}"
    keys = {"admin": ROOT}
    for role in POLICIES:
        if role != "admin":
            keys[role] = Keys(f"testpod-{role.replace('_', '-')}-{suffix}", secrets.token_urlsafe(24))
            account = f"<Account><Access>{keys[role].access_key_id}</Access>"
            account += f"<Secret>{keys[role].secret_access_key}</Secret><Role>user</Role></Account>"
            _admin(endpoint, ca_file, "/create-user", account.encode())
    server = S3Server(endpoint, keys, bucket, None, ca_file)
    root = client(server, config=Config(retries={"total_max_attempts": 1}))
    root.create_bucket(Bucket=bucket)
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    statements = [
        {"Effect": "Allow", "Principal": {"AWS": [keys[role].access_key_id]}, "Action": actions, "Resource": resources}
        for role, actions in POLICIES.items()
        if role != "admin"
    ]
    root.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return server


def remove(server: S3Server) -> None:
    """Remove what provision() made and the tests left on a shared gateway (a denied delete leaves its object)."""
    root = client(server)
    for item in root.list_objects_v2(Bucket=server.bucket).get("Contents", []):
        root.delete_object(Bucket=server.bucket, Key=item["Key"])
    root.delete_bucket(Bucket=server.bucket)
    for role, keys in server.keys.items():
        if role != "admin":
            _admin(server.endpoint, server.ca_file, f"/delete-user?access={keys.access_key_id}", b"")


def _admin(endpoint: str, ca_file: str | None, path: str, body: bytes) -> None:
    """versitygw's admin API, as its `versitygw admin` command calls it: a PATCH signed with the root keys."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="PATCH", url=endpoint + path, data=body)
    request.headers["X-Amz-Content-Sha256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(ROOT.access_key_id, ROOT.secret_access_key), "s3", REGION).add_auth(request)
    prepared = urllib.request.Request(endpoint + path, data=body, method="PATCH", headers=dict(request.headers))
    try:
        with urllib.request.urlopen(prepared, timeout=10, context=_context(ca_file)):
            pass
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"versitygw admin {path} answered {error.code}: {error.read()[:500]!r}") from None


def _context(ca_file: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


def _wait_until_up(endpoint: str, ca_file: str | None, process: subprocess.Popen[bytes] | None) -> None:
    """Until the gateway answers an HTTP request (an anonymous one: any status will do)."""
    started_at, last = time.monotonic(), ""
    while time.monotonic() - started_at < START_TIMEOUT:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"versitygw exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=2, context=_context(ca_file)):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.05)
    raise RuntimeError(f"no answer within {START_TIMEOUT:g} s ({last})")
