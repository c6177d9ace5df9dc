"""gemini against a local server that speaks the Gemini API and checks the request like Google."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.checks.ai import PROMPT
from app.checks.base import Stage, Status
from app.checks.gemini import GeminiTarget
from tests.checks import run_check
from tests.checks.gemini_server import DIMENSIONS, KEY, GeminiServer
from tests.servers import StallServer


@pytest.fixture(scope="module")
def api() -> Iterator[GeminiServer]:
    with GeminiServer() as server:
        yield server


@pytest.fixture
def server(api: GeminiServer) -> GeminiServer:
    api.outage = None
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
    assert "model 'gemini-beta-only' is not served by API version v1" in result.remediation
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
            "HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current quota.",
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


def test_a_stalled_endpoint_ends_on_time(stall: StallServer) -> None:
    result = run_check(target(f"http://127.0.0.1:{stall.port}", timeout=0.5))
    assert (result.stage, result.steps[-1].name) == (Stage.OPERATION, "http request")
    assert result.duration_ms < 900
