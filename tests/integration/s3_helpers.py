"""What the s3 tests on every server share: a target for a server's bucket, the scratch objects left in it, and
a credential chain that sees only what a test gives it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from app.checks.base import Status
from app.checks.s3 import SCRATCH_PREFIX, S3Target
from app.results import Result
from tests.services.s3 import S3Server


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The credential chain sees only what a test gives it, and never asks an instance metadata endpoint."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)


def target(server: S3Server, role: str | None = "admin", **fields: Any) -> S3Target:
    """A target for the server's bucket as `role`; over HTTPS it trusts the server's CA unless told otherwise."""
    values: dict[str, Any] = {"name": "bucket", "kind": "s3", "bucket": server.bucket, "endpoint_url": server.endpoint}
    if server.ca_file and fields.get("tls_verify", True):
        values["ca_file"] = server.ca_file
    if role is not None:
        keys = server.keys[role]
        values.update(access_key_id=keys.access_key_id, secret_access_key=keys.secret_access_key)
    values.update(fields)
    return S3Target.model_validate(values)


def scratch_objects(server: S3Server, bucket: str | None = None) -> list[str]:
    import boto3

    admin = server.keys["admin"]
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=admin.access_key_id,
        aws_secret_access_key=admin.secret_access_key,
        verify=server.ca_file or True,
    )
    # no Prefix parameter: moto's signature check mis-encodes the '/' in it
    listing = client.list_objects_v2(Bucket=bucket or server.bucket)
    return [item["Key"] for item in listing.get("Contents", []) if item["Key"].startswith(SCRATCH_PREFIX)]


def steps(result: Result) -> list[tuple[str, Status]]:
    return [(step.name, step.status) for step in result.steps]


def port_of(server: S3Server) -> int:
    return int(urlsplit(server.endpoint).port or 0)
