"""The azure_blob kind's config: defaults, `${ENV}` references and precise messages for malformed targets."""

from __future__ import annotations

from typing import Any

import pytest

from app.checks.azure_blob import AzureBlobTarget
from tests.checks.helpers import config_error, parse


def with_credential(**credential: Any) -> AzureBlobTarget:
    return AzureBlobTarget.model_validate({"name": "blobs", "kind": "azure_blob", "container": "data", **credential})


def test_derived_secrets_cover_the_key_in_a_string_and_the_sas_signature() -> None:
    string = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=S2V5S2V5;EndpointSuffix=core.windows.net"
    assert with_credential(connection_string=string).secrets() == [string, "S2V5S2V5"]
    url = "https://acct.blob.core.windows.net/?sv=2025-11-05&ss=b&srt=sco&sp=rwd&sig=ab%2Bcd%3D"
    assert with_credential(sas_url=url).secrets() == [url, "ab%2Bcd%3D", "ab+cd="]
    sas_string = "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2025-11-05&sig=x%2By"
    assert with_credential(connection_string=sas_string).secrets() == [sas_string, "x%2By", "x+y"]


def test_config_with_defaults_and_env_key() -> None:
    [blobs] = parse(
        "targets:\n"
        "  - {name: blobs, kind: azure_blob, account_name: airiastore, account_key: '${STORAGE_KEY}',\n"
        "     container: data}\n"
    )
    assert isinstance(blobs, AzureBlobTarget)
    assert (blobs.create_container, blobs.endpoint, blobs.api_version, blobs.scratch_bytes) == (
        False,
        None,
        None,
        1048576,
    )
    assert blobs.effective_timeout == 15.0
    assert blobs.secrets() == ["S2V5S2V5"]
    assert "S2V5S2V5" not in repr(blobs)


SAS = "https://acct.blob.core.windows.net/?sv=2025-11-05&ss=b&srt=sco&sp=rwd&sig=abc"


CONTAINER_SAS = "https://acct.blob.core.windows.net/data?sv=2025-11-05&sr=c&sp=rwd&sig=abc"


CONTAINER_SAS_STRING = (
    "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2025-11-05&sr=c&sig=abc"
)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("container: data", "targets[0]: give exactly one credential: account_name with account_key"),
        (
            f"account_name: acct, account_key: k, sas_url: '{SAS}', container: data",
            "targets[0]: give exactly one credential: account_name with account_key, connection_string, or sas_url "
            "(found account_key and sas_url)",
        ),
        ("account_key: k, container: data", "targets[0]: account_name is required with account_key"),
        (
            f"sas_url: '{SAS}', endpoint: 'https://e.example', container: data",
            "targets[0]: account_name and endpoint go with account_key only",
        ),
        ("account_name: acct, account_key: k", "targets[0]: container is required"),
        ("account_name: Acct_1, account_key: k, container: data", "targets[0].account_name: String should match"),
        ("account_name: acct, account_key: k, container: Data_1", "targets[0].container: String should match"),
        ("account_name: acct, account_key: k, container: ab", "targets[0].container: String should have at least 3"),
        (
            "account_name: acct, account_key: k, container: data, endpoint: 'ftp://acct.example'",
            "targets[0].endpoint: must be an http(s) URL",
        ),
        (
            "account_name: acct, account_key: k, container: data, endpoint: 'https://acct.example/?sig=x'",
            "targets[0].endpoint: must not carry a query",
        ),
        ("connection_string: 'AccountName=acct', container: data", "targets[0]: connection_string: needs AccountKey"),
        ("sas_url: 'https://acct.blob.core.windows.net/?sv=1', container: data", "targets[0]: sas_url: has no SAS"),
        (
            "sas_url: 'https://acct.blob.core.windows.net/data/x?sr=b&sig=abc', container: data",
            "targets[0]: sas_url: must be an account SAS or a container SAS (sr=c)",
        ),
        (
            f"sas_url: '{CONTAINER_SAS}', container: other",
            "targets[0]: container differs from the container the SAS URL is issued for",
        ),
        (f"sas_url: '{CONTAINER_SAS}', create_container: true", "targets[0]: create_container needs an account SAS"),
        (
            f"connection_string: '{CONTAINER_SAS_STRING}', container: data, create_container: true",
            "targets[0]: create_container needs an account SAS",
        ),
        (
            "account_name: acct, account_key: k, container: data, api_version: latest",
            "targets[0].api_version: String should match",
        ),
        (
            "account_name: acct, account_key: k, container: data, scratch_bytes: 0",
            "targets[0].scratch_bytes: Input should",
        ),
        ("account_name: acct, account_key: k, container: data, ca_file: /nonexistent.pem", "targets[0].ca_file: Path"),
    ],
)
def test_malformed_config_names_target_and_field(fields: str, message: str) -> None:
    error = config_error(f"targets:\n  - {{name: blobs, kind: azure_blob, {fields}}}\n")
    assert error.startswith(message)
    assert "sig=abc" not in error
