"""bedrock against a local Bedrock runtime that recomputes every SigV4 signature with botocore."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from app.checks.ai import PROMPT, TEST_IMAGE
from app.checks.base import Stage, Status
from app.checks.bedrock import BedrockTarget
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.bedrock_server import (
    CHAT,
    COHERE,
    DIMENSIONS,
    KEYS,
    LOCKED,
    REGION,
    SESSIONS,
    TEXT_ONLY,
    TITAN,
    BedrockServer,
    StsServer,
)
from tests.checks.dns_sandbox import run_in_sandbox
from tests.checks.helpers import config_error
from tests.servers import StallServer
from tests.services import unavailable

KEY_ID, SECRET = next(iter(KEYS.items()))


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The credential chain sees only what a test gives it, and never asks an instance metadata endpoint."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)


@pytest.fixture(scope="module")
def api() -> Iterator[BedrockServer]:
    with BedrockServer() as server:
        yield server


@pytest.fixture
def server(api: BedrockServer) -> BedrockServer:
    api.outage = None
    api.requests.clear()
    return api


def target(endpoint: str, keys: bool = True, **fields: Any) -> BedrockTarget:
    values: dict[str, Any] = {"name": "bedrock", "kind": "bedrock", "region": REGION, "model": CHAT}
    values["endpoint_url"] = endpoint
    if keys:
        values.update(access_key_id=KEY_ID, secret_access_key=SECRET)
    return BedrockTarget.model_validate({**values, **fields})


def test_converse_vision_and_a_titan_embedding_pass_signed(server: BedrockServer) -> None:
    result = run_check(target(server.url, vision=True, embedding_model=TITAN, embedding_dimensions=1024))

    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps] == [
        "resolve",
        "credentials",
        "chat",
        "vision",
        "embedding",
        "embedding dimensions",
    ]
    assert result.facts["credentials"] == "explicit"
    assert result.facts["chat_model"] == CHAT
    assert result.facts["chat_prompt_tokens"] == len(PROMPT.split())
    assert result.facts["chat_completion_tokens"] == 1
    assert result.facts["embedding_dimensions"] == DIMENSIONS[TITAN]
    assert result.facts["embedding_tokens"] == len(PROMPT.split())
    assert isinstance(result.facts["vision_latency_ms"], float)
    chat, vision, embedding = server.requests
    assert unquote(chat.path) == f"/model/{CHAT}/converse"
    assert f"Credential={KEY_ID}/" in chat.headers["authorization"]
    assert json.loads(chat.body) == {
        "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
        "inferenceConfig": {"maxTokens": 1},
    }
    image = json.loads(vision.body)["messages"][0]["content"][0]["image"]
    assert base64.b64decode(image["source"]["bytes"]) == TEST_IMAGE
    assert unquote(embedding.path) == f"/model/{TITAN}/invoke"
    assert json.loads(embedding.body) == {"inputText": PROMPT}


def test_a_cohere_embedding_gets_the_cohere_body(server: BedrockServer) -> None:
    result = run_check(target(server.url, embedding_model=COHERE))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["embedding_dimensions"] == DIMENSIONS[COHERE]
    assert json.loads(server.requests[-1].body) == {"texts": [PROMPT], "input_type": "search_document"}


def test_the_credential_chain_signs_without_configured_keys(server: BedrockServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    result = run_check(target(server.url, keys=False))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["credentials"] == "env"


def test_irsa_signs_with_the_web_identity_role_s_temporary_credentials(
    server: BedrockServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0.")
    with StsServer() as sts:
        monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/airia-test-pod")
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        result = run_check(target(server.url, keys=False))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["credentials"] == "assume-role-with-web-identity"
    (session_key, (_, session_token)) = next(iter(SESSIONS.items()))
    (chat,) = server.requests
    assert f"Credential={session_key}/" in chat.headers["authorization"]
    assert chat.headers["x-amz-security-token"] == session_token


def test_irsa_whose_sts_is_unreachable_fails_at_auth_naming_the_chain(
    server: BedrockServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, closed_port: int
) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0.")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/airia-test-pod")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{closed_port}")
    result = run_check(target(server.url, keys=False))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause.startswith("the pod's AWS credential chain failed: Could not connect to the endpoint URL")
    assert server.requests == []


def test_https_with_a_private_ca(certs: Certificates) -> None:
    with BedrockServer(certs.leaf("bedrock")) as secure:
        assert run_check(target(secure.url, ca_file=certs.ca_file)).status == Status.PASSED
        untrusted = run_check(target(secure.url))
    assert untrusted.stage == Stage.TLS
    assert "unable to get local issuer certificate" in untrusted.cause


def test_no_credentials_at_all_fails_at_auth_before_any_request(server: BedrockServer) -> None:
    result = run_check(target(server.url, keys=False))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause.startswith("no AWS credentials")
    assert "eks.amazonaws.com/role-arn" in result.remediation
    assert server.requests == []


@pytest.mark.parametrize(
    ("fields", "cause"),
    [
        ({"access_key_id": "AKIAUNKNOWN000000000"}, "UnrecognizedClientException: The security token included"),
        ({"secret_access_key": "wrong-secret-never-shown"}, "InvalidSignatureException: The request signature we"),
    ],
)
def test_wrong_keys_fail_at_auth(server: BedrockServer, fields: dict[str, str], cause: str) -> None:
    result = run_check(target(server.url, **fields))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert f"chat: HTTP 403 {cause}" in result.cause
    assert "wrong-secret-never-shown" not in result.model_dump_json()


def test_a_model_without_access_fails_at_permission_naming_model_and_region(server: BedrockServer) -> None:
    result = run_check(target(server.url, model=LOCKED))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert "AccessDeniedException: You don't have access to the model" in result.cause
    assert f"request access to '{LOCKED}' in the Bedrock console's Model access page for region {REGION}" in (
        result.remediation
    )


def test_an_unknown_model_and_a_text_only_model_with_vision_fail_at_operation(server: BedrockServer) -> None:
    unknown = run_check(target(server.url, model="anthropic.claude-typo"))
    assert unknown.stage == Stage.OPERATION
    assert "ValidationException: The provided model identifier is invalid." in unknown.cause
    text_only = run_check(target(server.url, model=TEXT_ONLY, vision=True))
    assert text_only.stage == Stage.OPERATION
    assert text_only.cause.startswith("vision: HTTP 400 ValidationException: This model doesn't support the image")


@pytest.mark.parametrize(
    ("outage", "status", "cause"),
    [
        ("throttled", Status.WARNING, "chat: HTTP 429 ThrottlingException"),
        ("unavailable", Status.WARNING, "chat: HTTP 503 ServiceUnavailableException"),
        ("quota", Status.FAILED, "chat: HTTP 400 ServiceQuotaExceededException"),
    ],
)
def test_throttling_and_quota(server: BedrockServer, outage: Any, status: Status, cause: str) -> None:
    server.outage = outage
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (status, Stage.OPERATION)
    assert result.cause.startswith(cause)
    assert len(server.requests) == 1  # one attempt: botocore's retries are off


def test_an_embedding_model_of_an_unknown_family_is_a_config_error() -> None:
    entry = {"name": "b", "kind": "bedrock", "region": REGION, "model": CHAT, "embedding_model": "acme.embed-1"}
    assert re.search(r"targets\[0\]\.embedding_model: .*Titan .*Cohere", config_error(json.dumps({"targets": [entry]})))


def test_a_stalled_endpoint_ends_on_time(stall: StallServer) -> None:
    result = run_check(target(f"http://127.0.0.1:{stall.port}", timeout=0.5))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.duration_ms < 900


def test_a_region_without_a_bedrock_endpoint_is_named(tmp_path: Path) -> None:
    """In a network namespace whose only DNS server knows no AWS name: a real NXDOMAIN, and no query leaves."""
    entry = {"name": "b", "kind": "bedrock", "region": "xx-nowhere-1", "model": CHAT}
    try:
        (result,) = run_in_sandbox([{**entry, "access_key_id": KEY_ID, "secret_access_key": SECRET}], tmp_path)
    except RuntimeError as error:
        unavailable("network namespace for DNS tests", str(error))
    assert (result.status, result.stage) == (Status.FAILED, Stage.RESOLVE)
    assert result.cause.startswith("bedrock-runtime.xx-nowhere-1.amazonaws.com does not resolve")
    assert "Bedrock's endpoint for region xx-nowhere-1" in result.remediation


def test_a_closed_port_fails_at_connect(closed_port: int) -> None:
    result = run_check(target(f"http://127.0.0.1:{closed_port}"))
    assert result.stage == Stage.CONNECT
    assert "Connection refused" in result.cause
