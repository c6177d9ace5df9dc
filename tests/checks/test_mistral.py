"""mistral against a local server that speaks the Mistral API and answers with its error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.checks.ai import PROMPT
from app.checks.base import Stage, Status
from app.checks.mistral import MistralTarget
from tests.checks import run_check
from tests.checks.mistral_server import DIMENSIONS, KEY, MistralServer
from tests.servers import StallServer


@pytest.fixture(scope="module")
def api() -> Iterator[MistralServer]:
    with MistralServer() as server:
        yield server


@pytest.fixture
def server(api: MistralServer) -> MistralServer:
    api.outage = None
    api.requests.clear()
    return api


def target(server: MistralServer, **fields: Any) -> MistralTarget:
    values = {
        "name": "mistral",
        "kind": "mistral",
        "base_url": f"{server.url}/v1",
        "api_key": KEY,
        "model": "mistral-test",
        "embedding_model": "embed-test",
    }
    return MistralTarget.model_validate({**values, **fields})


def test_chat_and_embedding_pass_with_usage(server: MistralServer) -> None:
    result = run_check(target(server, embedding_dimensions=DIMENSIONS))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["chat_model"] == "mistral-test"
    assert result.facts["chat_completion_tokens"] == 1
    assert result.facts["embedding_dimensions"] == DIMENSIONS
    assert result.facts["embedding_tokens"] == len(PROMPT.split())
    chat, embedding = server.requests
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(chat.body) == {
        "model": "mistral-test",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 1,
    }
    assert json.loads(embedding.body) == {"model": "embed-test", "input": [PROMPT]}


def test_vision_needs_a_model_that_reads_images(server: MistralServer) -> None:
    assert run_check(target(server, model="pixtral-test", vision=True)).status == Status.PASSED
    result = run_check(target(server, vision=True))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == "vision: HTTP 400 invalid_request_message: Image input is not supported by this model"
    assert "check that 'mistral-test' is a vision model" in result.remediation


def test_a_wrong_key_fails_at_auth(server: MistralServer) -> None:
    result = run_check(target(server, api_key="wrong-mistral-key-never-shown"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "chat: HTTP 401: Unauthorized"
    assert "wrong-mistral-key-never-shown" not in result.model_dump_json()


def test_an_unknown_model_is_named(server: MistralServer) -> None:
    result = run_check(target(server, embedding_model="mistral-embedd"))
    assert result.stage == Stage.OPERATION
    assert result.cause == "embedding: HTTP 400 invalid_model: Invalid model: mistral-embedd"
    assert "model 'mistral-embedd' does not exist" in result.remediation


def test_a_rate_limit_is_a_warning_and_a_server_error_fails(server: MistralServer) -> None:
    server.outage = "rate_limit"
    warned = run_check(target(server))
    assert warned.status == Status.WARNING
    assert "chat: HTTP 429: Requests rate limit exceeded, retry after 3 s" in warned.cause
    server.outage = "server_error"
    failed = run_check(target(server))
    assert (failed.status, failed.stage) == (Status.FAILED, Stage.OPERATION)
    assert "status page" in failed.remediation


def test_a_stalled_endpoint_ends_on_time(stall: StallServer) -> None:
    result = MistralTarget(
        name="m",
        kind="mistral",
        base_url=f"http://127.0.0.1:{stall.port}/v1",
        api_key=KEY,
        model="mistral-test",
        timeout=0.5,
    )
    outcome = run_check(result)
    assert (outcome.stage, outcome.steps[-1].name) == (Stage.OPERATION, "http request")
    assert outcome.duration_ms < 900
