"""The s3 kind's config: defaults, `${ENV}` references and precise messages for malformed targets."""

from __future__ import annotations

import pytest

from app.checks.s3 import S3Target
from app.config import parse_targets
from tests.checks.helpers import config_error


def test_config_with_defaults() -> None:
    [store] = parse_targets(
        "targets:\n  - {name: store, kind: s3, bucket: airia-data, access_key_id: AKIA1, secret_access_key: sk}\n",
        "targets.yaml",
        {},
    )
    assert isinstance(store, S3Target)
    assert (store.region, store.endpoint_url, store.addressing_style, store.tls_verify) == (
        "us-east-1",
        None,
        "auto",
        True,
    )
    assert store.secrets() == ["sk"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("region: eu-west-1", "targets[0].bucket: required"),
        ("bucket: b", "targets[0].bucket: String should match pattern"),
        ("bucket: data, endpoint_url: 'minio:9000'", "targets[0].endpoint_url: must be an http:// or https:// URL"),
        ("bucket: data, endpoint_url: 'https://u:p@minio'", "targets[0].endpoint_url: must not contain credentials"),
        ("bucket: data, endpoint_url: 'https://minio/data'", "targets[0].endpoint_url: must be the service's root"),
        ("bucket: data, access_key_id: AKIA1", "targets[0]: access_key_id and secret_access_key go together"),
        ("bucket: data, session_token: t", "targets[0]: session_token needs access_key_id and secret_access_key"),
        ("bucket: data, addressing_style: dns", "targets[0].addressing_style: Input should be 'auto', 'path'"),
        ("bucket: data, ca_file: /nonexistent/ca.pem", "targets[0].ca_file: Path does not point to a file"),
        (
            "bucket: data, tls_verify: false, ca_file: /etc/hostname",
            "targets[0]: ca_file is unused with tls_verify: false",
        ),
        ("bucket: data, endpoint_url: 'http://minio:9000', ca_file: /etc/hostname", "targets[0]: ca_file needs"),
    ],
)
def test_malformed_config_names_target_and_field(fields: str, message: str) -> None:
    assert config_error(f"targets:\n  - {{name: store, kind: s3, {fields}}}\n").startswith(message)
