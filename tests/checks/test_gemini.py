"""gemini against a local server that speaks the Gemini API and checks the request like Google."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from app.checks.ai import PROMPT
from app.checks.base import Stage, Status
from app.checks.gemini import GeminiTarget
from tests.checks import run_check
from tests.checks.gemini_server import (
    ACCESS_TOKEN,
    CLIENT_EMAIL,
    DIMENSIONS,
    FREE_REQUESTS,
    KEY,
    PROJECT,
    QUOTA_MESSAGE,
    GeminiServer,
)
from tests.checks.helpers import config_error
from tests.servers import StallServer


@pytest.fixture(scope="module")
def api() -> Iterator[GeminiServer]:
    with GeminiServer() as server:
        yield server


@pytest.fixture
def server(api: GeminiServer) -> GeminiServer:
    api.outage = None
    api.quota_details = None
    api.key_disabled = False
    api.requests.clear()
    return api


def target(base_url: str, **fields: Any) -> GeminiTarget:
    values = {
        "name": "gemini",
        "kind": "gemini",
        "base_url": base_url,
        "api_key": KEY,
        "model": "gemini-test",
        "embedding_model": "embed-test",
    }
    return GeminiTarget.model_validate({**values, **fields})


def test_generate_vision_and_embed_pass(server: GeminiServer) -> None:
    result = run_check(target(server.url, vision=True, embedding_dimensions=DIMENSIONS))

    assert result.status == Status.PASSED, result.cause
    names = [s.name for s in result.steps]
    assert names[-4:] == ["vision", "http request", "embedding", "embedding dimensions"]
    assert result.facts["chat_model"] == "gemini-test-001"
    assert result.facts["chat_prompt_tokens"] == len(PROMPT.split())
    assert result.facts["vision_prompt_tokens"] > 258
    assert result.facts["embedding_dimensions"] == DIMENSIONS
    chat, vision, embed = server.requests
    assert chat.path == "/v1beta/models/gemini-test:generateContent"
    assert chat.headers["x-goog-api-key"] == KEY
    assert KEY not in chat.path
    assert json.loads(chat.body) == {
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
        "generationConfig": {"maxOutputTokens": 1},
    }
    assert json.loads(vision.body)["contents"][0]["parts"][0]["inlineData"]["mimeType"] == "image/png"
    assert embed.path == "/v1beta/models/embed-test:embedContent"


def test_a_dimension_mismatch_names_both_numbers(server: GeminiServer) -> None:
    result = run_check(target(server.url, embedding_dimensions=1536))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == f"embedding: the model returns {DIMENSIONS} dimensions, expected 1536"
    assert f"set embedding_dimensions to {DIMENSIONS}" in result.remediation


def test_a_wrong_key_fails_at_auth_by_its_error_reason(server: GeminiServer) -> None:
    result = run_check(target(server.url, api_key="AIzaWrongKeyNeverShown"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "chat: HTTP 400 API_KEY_INVALID: API key not valid. Please pass a valid API key."
    assert "AIzaWrongKeyNeverShown" not in result.model_dump_json()


def test_a_model_not_in_the_api_version_is_named(server: GeminiServer) -> None:
    result = run_check(target(server.url, model="gemini-beta-only", api_version="v1"))
    assert result.stage == Stage.OPERATION
    assert "models/gemini-beta-only is not found for API version v1" in result.cause
    assert "model 'gemini-beta-only' is not offered for this call at API version v1" in result.remediation
    assert run_check(target(server.url, model="gemini-beta-only")).status == Status.PASSED


def test_a_chat_model_used_for_embeddings_is_named(server: GeminiServer) -> None:
    result = run_check(target(server.url, embedding_model="gemini-test"))
    assert result.stage == Stage.OPERATION
    assert result.cause.startswith("embedding: HTTP 404 NOT_FOUND: models/gemini-test is not found")


@pytest.mark.parametrize(
    ("outage", "status", "stage", "cause"),
    [
        (
            "rate_limit",
            Status.WARNING,
            Stage.OPERATION,
            "HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current quota, please check your plan",
        ),
        ("overloaded", Status.WARNING, Stage.OPERATION, "HTTP 503 UNAVAILABLE: The model is overloaded."),
        ("region", Status.FAILED, Stage.OPERATION, "HTTP 400 FAILED_PRECONDITION: User location is not supported"),
        ("disabled", Status.FAILED, Stage.PERMISSION, "HTTP 403 SERVICE_DISABLED: Generative Language API has not"),
        ("blocked", Status.FAILED, Stage.OPERATION, "chat: the prompt was blocked (SAFETY)"),
    ],
)
def test_each_refusal_by_its_code(server: GeminiServer, outage: Any, status: Status, stage: Stage, cause: str) -> None:
    server.outage = outage
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (status, stage)
    assert cause in result.cause


def test_the_retry_delay_of_a_rate_limit_is_quoted(server: GeminiServer) -> None:
    server.outage = "rate_limit"
    assert "retry after 23 s" in run_check(target(server.url, embedding_model=None)).cause


def test_a_per_minute_quota_is_a_warning_naming_the_quota_and_the_delay(server: GeminiServer) -> None:
    server.outage = "rate_limit"
    result = run_check(target(server.url, embedding_model=None))
    assert (result.status, result.stage) == (Status.WARNING, Stage.OPERATION)
    assert result.cause.endswith(
        f"; quota GenerateRequestsPerMinutePerProjectPerModel-FreeTier ({FREE_REQUESTS}), limit 15, retry after 23 s"
    )
    assert "is at its limit this minute" in result.remediation


def test_a_day_s_quota_used_up_fails_naming_the_quota(server: GeminiServer) -> None:
    server.outage = "daily_quota"  # listed with two per-minute violations: the day's quota decides
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == (
        f"chat: HTTP 429 RESOURCE_EXHAUSTED: {QUOTA_MESSAGE}; "
        f"quota GenerateRequestsPerDayPerProjectPerModel-FreeTier ({FREE_REQUESTS}), limit 20"
    )
    assert result.remediation.startswith(
        f"quota GenerateRequestsPerDayPerProjectPerModel-FreeTier ({FREE_REQUESTS}) is used up for this day and "
        "the platform cannot call 'gemini-test' until it refills: raise the quota"
    )
    assert [s.name for s in result.steps if s.name != "http request"][-1] == "chat"  # no embedding after it


@pytest.mark.parametrize(
    ("outage", "quota"),
    [
        ("no_free_tier", "GenerateContentInputTokensPerModelPerMinute-FreeTier (generativelanguage.googleapis.com/"),
        ("region_quota_zero", "GenerateContentRequestsPerMinutePerProjectPerRegion (generativelanguage.googleapis."),
    ],
)
def test_a_quota_of_0_fails_at_permission_asking_for_billing(server: GeminiServer, outage: Any, quota: str) -> None:
    server.outage = outage
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert f"; quota {quota}" in result.cause
    assert result.cause.endswith(", limit 0")
    assert "is 0 for 'gemini-test': its tier does not include the model" in result.remediation
    assert "enable billing on the project" in result.remediation
    assert "or use a model its tier includes" in result.remediation


def test_prepaid_credits_used_up_fail(server: GeminiServer) -> None:
    server.outage = "prepaid"
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause.startswith("chat: HTTP 402 RESOURCE_EXHAUSTED: Your prepayment credits are depleted.")
    assert "add credits" in result.remediation


_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@pytest.mark.parametrize(
    "details",
    [
        "GenerateRequestsPerDayPerProjectPerModel",
        12345,
        None,
        {"@type": _QUOTA_FAILURE, "violations": [{"quotaId": "GenerateRequestsPerDay", "quotaValue": "0"}]},
        [None, 1, "x", [], {"@type": 5}, {"@type": _QUOTA_FAILURE}],
        [{"@type": _QUOTA_FAILURE, "violations": "GenerateRequestsPerDay"}],
        [{"@type": _QUOTA_FAILURE, "violations": [None, 7, {"quotaId": 12, "quotaMetric": ["m"], "quotaValue": {}}]}],
        [{"@type": _QUOTA_FAILURE, "violations": [{"quotaMetric": "a/b", "quotaValue": "-1"}]}],
        [{"@type": _QUOTA_FAILURE, "violations": [{"quotaId": "RequestsPerMinute", "quotaValue": False}]}],
        [{"@type": _QUOTA_FAILURE, "violations": [{"quotaId": "RequestsPerMinute", "quotaValue": "０"}]}],
        [{"@type": _RETRY_INFO, "retryDelay": "9" * 40 + "s"}, {"@type": _RETRY_INFO, "retryDelay": {"seconds": 5}}],
        [{}] * 50_000 + [{"@type": _QUOTA_FAILURE, "violations": [{"quotaId": "RequestsPerDay"}]}],
        [{"@type": _QUOTA_FAILURE, "violations": [{"quotaId": "PerMinute"}] * 30_000 + [{"quotaValue": "0"}]}],
    ],
    ids=["string", "number", "null", "object", "junk", "violations-string", "wrong-types", "negative", "false",
         "fullwidth-digit", "bad-delays", "huge-details", "huge-violations"],
)  # fmt: skip
def test_malformed_quota_details_leave_a_plain_rate_limit(server: GeminiServer, details: Any) -> None:
    server.outage, server.quota_details = "quota_details", details
    result = run_check(target(server.url, embedding_model=None))
    assert (result.status, result.stage) == (Status.WARNING, Stage.OPERATION), result.cause
    assert result.cause.startswith(f"chat: HTTP 429 RESOURCE_EXHAUSTED: {QUOTA_MESSAGE}")
    assert "limit 0" not in result.cause
    assert "retry after" not in result.cause
    assert len(result.cause) < 500


def test_hostile_quota_texts_are_cleaned_and_never_show_the_key(server: GeminiServer) -> None:
    violation = {
        "quotaId": f"GenerateRequestsPerDay\x1b[2J\n{KEY}" + "X" * 100_000,
        "quotaMetric": f"<script>{KEY}</script>\u0000",
        "quotaValue": "20",
    }
    server.outage, server.quota_details = (
        "quota_details",
        [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": f"{KEY}\n" * 1000},
            {"@type": _QUOTA_FAILURE, "violations": [violation]},
            {"@type": _RETRY_INFO, "retryDelay": KEY},
        ],
    )
    result = run_check(target(server.url, embedding_model=None))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)  # still the day's quota
    dump = result.model_dump_json()
    assert KEY not in dump
    assert KEY[:12] not in dump
    assert not any(character in result.cause + result.remediation for character in "\x1b\n\x00")
    assert "; quota GenerateRequestsPerDay [2J ***XXX" in result.cause
    assert len(result.cause) < 1000


def test_a_stalled_endpoint_ends_on_time(stall: StallServer) -> None:
    result = run_check(target(f"http://127.0.0.1:{stall.port}", timeout=0.5))
    assert (result.stage, result.steps[-1].name) == (Stage.OPERATION, "http request")
    assert result.duration_ms < 900


def vertex_target(server: GeminiServer, **fields: Any) -> GeminiTarget:
    values = {
        "name": "vertex",
        "kind": "gemini",
        "provider": "vertex",
        "base_url": server.url,
        "service_account_key": server.service_account_key(),
        "model": "gemini-test",
        "embedding_model": "embed-test",
    }
    return GeminiTarget.model_validate({**values, **fields})


def test_vertex_trades_a_signed_jwt_for_a_token_and_calls_the_project_s_models(server: GeminiServer) -> None:
    result = run_check(vertex_target(server, vision=True, embedding_dimensions=DIMENSIONS))

    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps if s.name != "http request"] == [
        "service account key",
        "resolve",
        "connect",
        "access token",
        "chat",
        "vision",
        "embedding",
        "embedding dimensions",
    ]
    assert result.facts["embedding_tokens"] == len(PROMPT.split())
    token, chat, _, embed = server.requests
    assert token.path == "/token"
    assert (
        chat.path
        == f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/gemini-test:generateContent"
    )
    assert chat.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "x-goog-api-key" not in chat.headers
    assert json.loads(embed.body) == {"instances": [{"content": PROMPT}]}
    assert embed.path.endswith("/models/embed-test:predict")


def test_vertex_with_a_key_google_refuses_fails_at_auth(server: GeminiServer) -> None:
    server.key_disabled = True
    result = run_check(vertex_target(server))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "access token: HTTP 400 invalid_grant: Invalid grant: account not found"
    assert f"create a new key for {CLIENT_EMAIL}" in result.remediation


def test_vertex_with_a_key_of_another_private_key_fails_at_auth_without_showing_it(server: GeminiServer) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    result = run_check(vertex_target(server, service_account_key=server.service_account_key(private_key=pem)))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "access token: HTTP 400 invalid_grant: Invalid JWT Signature."
    assert pem.splitlines()[1] not in result.model_dump_json()


def test_vertex_in_a_project_the_account_may_not_use_fails_at_permission(server: GeminiServer) -> None:
    result = run_check(vertex_target(server, project="someone-elses-project"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert "HTTP 403 IAM_PERMISSION_DENIED: Permission 'aiplatform.endpoints.predict' denied" in result.cause
    assert "roles/aiplatform.user" in result.remediation


def test_a_private_key_that_cannot_sign_fails_at_auth_before_any_request(server: GeminiServer) -> None:
    key = server.service_account_key(private_key="-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    result = run_check(vertex_target(server, service_account_key=key))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert "is not a PEM RSA private key" in result.cause
    assert server.requests == []


def test_vertex_endpoints_follow_the_location() -> None:
    key = json.dumps({"type": "service_account", "client_email": "a@b", "private_key": "k", "project_id": "p-1234"})
    fields = {"name": "v", "kind": "gemini", "provider": "vertex", "service_account_key": key, "model": "m"}
    assert GeminiTarget.model_validate({**fields, "location": "europe-west4"}).endpoint == (
        "https://europe-west4-aiplatform.googleapis.com"
    )
    assert GeminiTarget.model_validate({**fields, "location": "global"}).endpoint == "https://aiplatform.googleapis.com"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "api_key required when provider is google_ai"),
        ({"api_key": "k", "location": "us-east1"}, "location not used when provider is google_ai"),
        ({"provider": "vertex"}, "service_account_key required when provider is vertex"),
        ({"provider": "vertex", "service_account_key": "{}", "api_key": "k"}, "api_key not used when provider is"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    entry = {"name": "g", "kind": "gemini", "model": "gemini-test", **fields}
    assert message in config_error(yaml.safe_dump({"targets": [entry]}))


@pytest.mark.parametrize(
    ("key", "cause"),
    [
        ("not json", "service_account_key is not a service account's JSON key (type: service_account)"),
        ('{"type": "service_account"}', "service_account_key has no client_email or private_key"),
        (
            '{"type": "service_account", "client_email": "a", "private_key": "no-key-here"}',
            "service_account_key names no project",
        ),
    ],
)
def test_a_key_that_is_no_service_account_key_fails_at_auth_before_any_traffic(
    key: str, cause: str, closed_port: int
) -> None:
    entry = {"name": "g", "kind": "gemini", "provider": "vertex", "model": "m", "service_account_key": key}
    result = run_check(GeminiTarget.model_validate({**entry, "base_url": f"http://127.0.0.1:{closed_port}"}))
    assert (result.status, result.stage, result.cause) == (Status.FAILED, Stage.AUTH, cause)
    assert [s.name for s in result.steps] == ["service account key"]
