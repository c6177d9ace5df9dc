"""An S3-compatible server for the integration tests: moto in server mode, with authentication enforced.

MinIO cannot be used here: the Go module proxy refuses its module (AGPL) and there is no other source
for it, so the tests run moto's S3 and IAM as a real HTTP server in a subprocess on 127.0.0.1, started
with INITIAL_NO_AUTH_ACTION_COUNT=0: unknown keys get 403 InvalidAccessKeyId, wrong secrets get 403
SignatureDoesNotMatch, and every request is checked against the IAM policies of the key's user.
Setting up the users and buckets uses moto's own /moto-api/reset-auth switch (no auth while
provisioning, enforced again right after).

The session fixture `s3` starts one plain-HTTP server and yields an `S3Server`; `s3_tls` starts a
second one over HTTPS with a generated certificate (only when a test asks for it).

Environment override: `TESTPOD_TEST_S3_ENDPOINT` (the URL of a moto server started with
INITIAL_NO_AUTH_ACTION_COUNT=0, e.g. from docker-compose.test.yml) makes `s3` provision and use it.
Tests must set AWS_EC2_METADATA_DISABLED=true so the AWS credential chain never asks a metadata endpoint.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.certs import Certificates
from tests.servers import free_port
from tests.services import unavailable

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-dev.txt"
SERVER_PACKAGES = ("moto[", "flask==", "flask-cors==")  # what `python -m moto.server` needs, pinned there
REGION = "us-east-1"
OTHER_REGION = "eu-west-1"

# IAM policies of the users the fixture creates, by role in the tests
POLICIES = {
    "admin": ["s3:*"],
    "reader": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],  # a read-only bucket user
    "no_delete": ["s3:PutObject", "s3:GetObject", "s3:ListBucket"],
    "no_list": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],  # HeadBucket needs s3:ListBucket
}


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    keys: dict[str, Keys]  # by POLICIES name
    bucket: str  # in REGION
    other_region_bucket: str | None  # in OTHER_REGION; None on a server with one region for all buckets
    ca_file: str | None = None  # for an https endpoint: the CA that signed its certificate
    wrong_ca_file: str | None = None


def install() -> None:
    """moto's server and what it needs, at the versions requirements-dev.txt pins."""
    try:
        import flask  # noqa: F401
        import flask_cors  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        pins = [
            line.strip()
            for line in REQUIREMENTS.read_text().splitlines()
            if line.strip().lower().startswith(SERVER_PACKAGES)
        ]
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pins], check=True)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    endpoint = os.environ.get("TESTPOD_TEST_S3_ENDPOINT")
    if endpoint:
        server = _provision(endpoint.rstrip("/"), ca_file=None)
        try:
            yield server
        finally:
            _empty_buckets(server)
        return
    yield from local_server(tls=False)


@pytest.fixture(scope="session")
def s3_tls() -> Iterator[S3Server]:
    yield from local_server(tls=True)


def local_server(*, tls: bool) -> Iterator[S3Server]:
    workdir = Path(tempfile.mkdtemp(prefix="testpod-s3-"))
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    ca_file = wrong_ca_file = None
    if tls:
        certs = Certificates(workdir / "certs")
        cert = certs.leaf("server")  # localhost, 127.0.0.1 and ::1
        command += ["-c", str(cert.cert_file), "-k", str(cert.key_file)]
        ca_file, wrong_ca_file = str(certs.ca_file), str(Certificates(workdir / "other", "Unrelated").ca_file)
    endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    log = (workdir / "server.log").open("wb")
    environment = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    try:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    except OSError as error:
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable("s3", f"cannot start moto's server: {error}")
    try:
        _wait_until_up(endpoint, process, workdir / "server.log", _context(ca_file))
        server = _provision(endpoint, ca_file)
        yield S3Server(
            endpoint=server.endpoint,
            keys=server.keys,
            bucket=server.bucket,
            other_region_bucket=server.other_region_bucket,
            ca_file=ca_file,
            wrong_ca_file=wrong_ca_file,
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _context(ca_file: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


def _wait_until_up(
    endpoint: str, process: subprocess.Popen[bytes], log: Path, ssl_context: ssl.SSLContext | None
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            unavailable("s3", f"moto's server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2, context=ssl_context):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    unavailable("s3", f"moto's server did not answer within 60 s:\n{log.read_text(errors='replace')[-2000:]}")


def _set_auth(endpoint: str, free_actions: str, ssl_context: ssl.SSLContext | None) -> None:
    """moto's switch: the next `free_actions` requests skip authentication ("inf": all, "0": none)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=free_actions.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10, context=ssl_context):
        pass


def _provision(endpoint: str, ca_file: str | None) -> S3Server:
    """Users with the POLICIES above and two buckets, named uniquely so a shared server can be reused."""
    import boto3
    from botocore.config import Config

    suffix = secrets.token_hex(4)
    ssl_context = _context(ca_file)
    options: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "provisioning",
        "aws_secret_access_key": "provisioning",
        "config": Config(retries={"total_max_attempts": 1}),
        "verify": ca_file or True,
    }
    try:
        _set_auth(endpoint, "inf", ssl_context)
    except (urllib.error.URLError, OSError) as error:
        unavailable("s3", f"{endpoint} does not answer moto's /moto-api/reset-auth: {error}")
    try:
        iam = boto3.client("iam", **options)
        keys = {}
        for role, actions in POLICIES.items():
            user = f"testpod-{role.replace('_', '-')}-{suffix}"
            iam.create_user(UserName=user)
            document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
            iam.put_user_policy(UserName=user, PolicyName=role, PolicyDocument=json.dumps(document))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[role] = Keys(key["AccessKeyId"], key["SecretAccessKey"])
        bucket, other = f"testpod-{suffix}", f"testpod-{suffix}-eu"
        boto3.client("s3", **options).create_bucket(Bucket=bucket)
        boto3.client("s3", **{**options, "region_name": OTHER_REGION}).create_bucket(
            Bucket=other, CreateBucketConfiguration={"LocationConstraint": OTHER_REGION}
        )
    finally:
        _set_auth(endpoint, "0", ssl_context)
    return S3Server(endpoint=endpoint, keys=keys, bucket=bucket, other_region_bucket=other)


def _empty_buckets(server: S3Server) -> None:
    """Remove what the tests left on a shared server (a denied delete leaves its scratch object)."""
    import boto3

    admin = server.keys["admin"]
    for bucket, region in ((server.bucket, REGION), (server.other_region_bucket, OTHER_REGION)):
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name=region,
            aws_access_key_id=admin.access_key_id,
            aws_secret_access_key=admin.secret_access_key,
        )
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
