"""anthropic against a local server that speaks the Messages API and checks the request like Anthropic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from app.checks.ai import PROMPT, TEST_IMAGE
from app.checks.anthropic import AnthropicTarget
from app.checks.base import Stage, Status
from tests.checks import run_check
from tests.checks.anthropic_server import KEY, SPEND_CAP_MESSAGE, AnthropicServer
from tests.checks.gemini_server import ACCESS_TOKEN, GeminiServer
from tests.checks.helpers import config_error
from tests.servers import StallServer


@pytest.fixture(scope="module")
def api() -> Iterator[AnthropicServer]:
    with AnthropicServer() as server:
        yield server


@pytest.fixture
def server(api: AnthropicServer) -> AnthropicServer:
    api.outage = None
    api.requests.clear()
    return api


def target(base_url: str, **fields: Any) -> AnthropicTarget:
    values = {"name": "claude", "kind": "anthropic", "base_url": base_url, "api_key": KEY, "model": "claude-test"}
    return AnthropicTarget.model_validate({**values, **fields})


def test_a_one_token_message_and_a_vision_message_pass(server: AnthropicServer) -> None:
    result = run_check(target(server.url, vision=True))

    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps] == ["resolve", "connect", "http request", "chat", "http request", "vision"]
    assert result.facts["chat_model"] == "claude-test-20250101"
    assert result.facts["chat_prompt_tokens"] == len(PROMPT.split())
    assert result.facts["chat_completion_tokens"] == 1
    assert result.facts["vision_prompt_tokens"] > 2
    assert isinstance(result.facts["chat_latency_ms"], float)
    chat, vision = server.requests
    assert chat.headers["x-api-key"] == KEY
    assert chat.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in chat.headers
    assert json.loads(chat.body) == {
        "model": "claude-test",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    image = json.loads(vision.body)["messages"][0]["content"][0]
    assert image["source"]["media_type"] == "image/png"
    assert image["source"]["data"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
    assert len(TEST_IMAGE) < 200


def test_a_wrong_key_fails_at_auth_without_showing_it(server: AnthropicServer) -> None:
    wrong = "sk-ant-wrong-key-never-shown"
    result = run_check(target(server.url, api_key=wrong))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "chat: HTTP 401 authentication_error: invalid x-api-key"
    assert "Anthropic Console" in result.remediation
    assert wrong not in result.model_dump_json()


def test_a_model_the_key_may_not_use_fails_at_permission(server: AnthropicServer) -> None:
    result = run_check(target(server.url, model="claude-locked"))
    assert result.stage == Stage.PERMISSION
    assert "permission_error" in result.cause
    assert "'claude-locked'" in result.remediation


def test_an_unknown_model_is_named(server: AnthropicServer) -> None:
    result = run_check(target(server.url, model="claude-typo"))
    assert result.stage == Stage.OPERATION
    assert result.cause == "chat: HTTP 404 not_found_error: model: claude-typo"
    assert "model 'claude-typo' does not exist" in result.remediation


def test_an_unknown_api_version_is_pointed_at(server: AnthropicServer) -> None:
    result = run_check(target(server.url, api_version="2020-01-01"))
    assert result.stage == Stage.OPERATION
    assert 'anthropic-version: "2020-01-01" is not a valid version' in result.cause
    assert "anthropic-version 2020-01-01" in result.remediation


@pytest.mark.parametrize(
    ("outage", "cause"),
    [
        ("rate_limit", "chat: HTTP 429 rate_limit_error: Number of request tokens has exceeded"),
        ("overloaded", "chat: HTTP 529 overloaded_error: Overloaded"),
    ],
)
def test_a_rate_limit_or_an_overload_is_a_warning(server: AnthropicServer, outage: Any, cause: str) -> None:
    server.outage = outage
    result = run_check(target(server.url, vision=True))
    assert (result.status, result.stage) == (Status.WARNING, Stage.OPERATION)
    assert result.cause.startswith(cause)
    assert len(server.requests) == 2  # the vision call still ran


def test_the_retry_hint_is_quoted(server: AnthropicServer) -> None:
    server.outage = "rate_limit"
    assert "per-minute rate limit, retry after 12 s" in run_check(target(server.url)).cause


def test_the_monthly_spend_cap_fails_by_its_error_code(server: AnthropicServer) -> None:
    server.outage = "spend_cap"
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == f"chat: HTTP 429 enforced_spend_limit_reached: {SPEND_CAP_MESSAGE}"
    assert "monthly spend cap" in result.remediation
    assert "Settings, Limits" in result.remediation


@pytest.mark.parametrize(("outage", "remediation"), [("credit", "Plans and Billing"), ("api_error", "status page")])
def test_a_spent_credit_or_a_server_error_fails(server: AnthropicServer, outage: Any, remediation: str) -> None:
    server.outage = outage
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert remediation in result.remediation


def test_a_server_that_is_not_the_messages_api_fails() -> None:
    from tests.checks.http_server import HttpServer, Reply

    with HttpServer(lambda _: Reply(200, b"<html>welcome</html>")) as other:
        result = run_check(target(other.url))
    assert result.cause == "chat: not an answer of the Anthropic Messages API: <html>welcome</html>"


def test_a_stalled_endpoint_ends_on_time(stall: StallServer) -> None:
    result = run_check(target(f"http://127.0.0.1:{stall.port}", timeout=0.5))
    assert (result.stage, result.steps[-1].name) == (Stage.OPERATION, "http request")
    assert result.duration_ms < 900


@pytest.fixture(scope="module")
def google() -> Iterator[GeminiServer]:
    """Google's token endpoint (with the service account key it accepts)."""
    with GeminiServer() as server:
        yield server


def vertex(server: AnthropicServer, google: GeminiServer, **fields: Any) -> AnthropicTarget:
    values = {
        "name": "claude-vertex",
        "kind": "anthropic",
        "provider": "vertex",
        "base_url": server.url,
        "service_account_key": google.service_account_key(),
        "model": "claude-test@20250101",
    }
    return AnthropicTarget.model_validate({**values, **fields})


def test_claude_on_vertex_gets_a_token_and_the_messages_body_at_raw_predict(
    server: AnthropicServer, google: GeminiServer
) -> None:
    result = run_check(vertex(server, google, vision=True))
    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps if s.name != "http request"] == [
        "service account key",
        "resolve",
        "connect",
        "access token",
        "connect",  # the token endpoint is another host than Vertex AI's
        "chat",
        "vision",
    ]
    chat, _ = server.requests
    assert chat.path == (
        "/v1/projects/airia-test-project/locations/us-east5/publishers/anthropic/models/claude-test@20250101:rawPredict"
    )
    assert chat.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "x-api-key" not in chat.headers
    assert json.loads(chat.body) == {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": PROMPT}],
    }


def test_claude_not_enabled_on_vertex_is_named_with_the_location(server: AnthropicServer, google: GeminiServer) -> None:
    result = run_check(vertex(server, google, model="claude-other@20250101", location="europe-west1"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause.startswith("chat: HTTP 404 NOT_FOUND: Publisher Model `projects/airia-test-project/")
    assert "'claude-other@20250101' is not offered in europe-west1" in result.remediation


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "api_key required when provider is anthropic"),
        ({"api_key": "k", "location": "us-east5"}, "location not used when provider is anthropic"),
        ({"provider": "vertex"}, "service_account_key required when provider is vertex"),
        ({"provider": "vertex", "service_account_key": "{}", "api_version": "2023-06-01"}, "api_version not used"),
    ],
)
def test_config_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    entry = {"name": "c", "kind": "anthropic", "model": "claude", **fields}
    assert message in config_error(yaml.safe_dump({"targets": [entry]}))
