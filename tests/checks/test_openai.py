"""openai against a real OpenAI-compatible server (with Azure OpenAI paths) on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.checks.base import Stage, Status
from app.checks.openai import PROMPT, OpenaiTarget
from app.config import ConfigError, parse_targets
from tests.certs import Certificates
from tests.checks import run_check
from tests.checks.http_server import HttpServer, Reply
from tests.checks.openai_server import DIMENSIONS, KEY, OpenAiServer
from tests.servers import StallServer

AZURE_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def api() -> Iterator[OpenAiServer]:
    with OpenAiServer() as server:
        yield server


@pytest.fixture
def server(api: OpenAiServer) -> OpenAiServer:
    """The shared server, back to normal and with an empty request log."""
    api.outage = None
    api.hang_models = False
    api.requests.clear()
    return api


def openai_target(base_url: str, **fields: Any) -> OpenaiTarget:
    values = {"api_key": KEY, "model": "gpt-test", "embedding_model": "embed-test", **fields}
    return OpenaiTarget(name="llm", kind="openai", base_url=base_url, **values)


def azure_target(base_url: str, **fields: Any) -> OpenaiTarget:
    values = {
        "api_key": KEY,
        "deployment": "chat-deploy",
        "embedding_deployment": "embed-deploy",
        "api_version": AZURE_VERSION,
        **fields,
    }
    return OpenaiTarget(name="llm", kind="openai", provider="azure", base_url=base_url, **values)


def test_openai_chat_and_embedding_pass_with_latency_and_usage(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1"))

    assert result.status == Status.PASSED, result.cause
    names = [s.name for s in result.steps]
    assert names == ["resolve", "connect", "http request", "chat completion", "http request", "embedding"]
    prompt_tokens = len(PROMPT.split())
    assert result.facts["chat_model"] == "gpt-test"
    assert result.facts["chat_prompt_tokens"] == prompt_tokens
    assert result.facts["chat_completion_tokens"] == 1
    assert result.facts["embedding_dimensions"] == DIMENSIONS
    assert result.facts["embedding_tokens"] == prompt_tokens
    assert isinstance(result.facts["chat_latency_ms"], float)
    assert isinstance(result.facts["embedding_latency_ms"], float)

    chat, embedding = server.requests
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert "api-key" not in chat.headers
    assert json.loads(chat.body) == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 1,
    }
    assert embedding.path == "/v1/embeddings"
    assert json.loads(embedding.body) == {"model": "embed-test", "input": PROMPT}


def test_the_embedding_is_optional(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", embedding_model=None))
    assert result.status == Status.PASSED
    assert [r.path for r in server.requests] == ["/v1/chat/completions"]
    assert "embedding_dimensions" not in result.facts


def test_azure_uses_deployment_paths_api_version_and_the_api_key_header(server: OpenAiServer) -> None:
    result = run_check(azure_target(server.url))

    assert result.status == Status.PASSED, result.cause
    assert result.facts["embedding_dimensions"] == DIMENSIONS
    chat, embedding = server.requests
    assert chat.path == f"/openai/deployments/chat-deploy/chat/completions?api-version={AZURE_VERSION}"
    assert embedding.path == f"/openai/deployments/embed-deploy/embeddings?api-version={AZURE_VERSION}"
    assert chat.headers["api-key"] == KEY
    assert "authorization" not in chat.headers


def test_a_model_that_rejects_max_tokens_gets_max_completion_tokens(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", model="reasoning-test", embedding_model=None))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["length_limit_parameter"] == "max_completion_tokens"
    first, second = (json.loads(r.body) for r in server.requests)
    assert first["max_tokens"] == 1
    assert second["max_completion_tokens"] == 1
    assert "max_tokens" not in second


@pytest.mark.parametrize("make", [openai_target, azure_target])
def test_a_wrong_key_fails_at_auth_without_showing_it(server: OpenAiServer, make: Any) -> None:
    wrong = "sk-wrong-key-that-must-not-leak"
    base = f"{server.url}/v1" if make is openai_target else server.url
    result = run_check(make(base, api_key=wrong))
    assert result.status == Status.FAILED
    assert result.stage == Stage.AUTH
    assert result.cause.startswith("chat completion: HTTP 401: ")
    assert "api_key is not accepted" in result.remediation
    assert wrong not in result.model_dump_json()


def test_vision_sends_a_tiny_image_to_the_chat_model(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", vision=True, embedding_dimensions=DIMENSIONS))
    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps][-5:] == [
        "http request",
        "vision",
        "http request",
        "embedding",
        "embedding dimensions",
    ]
    assert result.facts["vision_prompt_tokens"] > 85
    assert isinstance(result.facts["vision_latency_ms"], float)
    content = json.loads(server.requests[1].body)["messages"][0]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_vision_on_azure_uses_the_chat_deployment(server: OpenAiServer) -> None:
    result = run_check(azure_target(server.url, vision=True, embedding_deployment=None))
    assert result.status == Status.PASSED, result.cause
    assert server.requests[1].path == f"/openai/deployments/chat-deploy/chat/completions?api-version={AZURE_VERSION}"


def test_vision_on_a_text_only_model_fails_naming_it(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", model="text-only-test", vision=True))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == "vision: HTTP 400: Invalid content type. image_url is only supported by certain models."
    assert "check that 'text-only-test' is a vision model" in result.remediation
    assert result.facts["chat_completion_tokens"] == 1


def test_an_embedding_of_other_dimensions_fails_naming_both(server: OpenAiServer) -> None:
    result = run_check(azure_target(server.url, embedding_dimensions=3072))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == f"embedding: the model returns {DIMENSIONS} dimensions, expected 3072"
    assert result.steps[-1].name == "embedding dimensions"


def test_an_unknown_model_is_named_with_the_models_on_offer(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", model="gpt-typo"))
    assert result.stage == Stage.OPERATION
    assert result.cause.startswith("chat completion: model 'gpt-typo' not found (HTTP 404): The model `gpt-typo`")
    assert result.remediation == "use a model this server offers (gpt-test, reasoning-test, embed-test, text-only-test)"


def test_a_hung_models_list_does_not_hide_the_unknown_model(server: OpenAiServer) -> None:
    server.hang_models = True
    result = run_check(openai_target(f"{server.url}/v1", model="gpt-typo", timeout=2))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause.startswith("chat completion: model 'gpt-typo' not found (HTTP 404)")
    assert result.remediation == "check the model name and base_url"
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/v1/chat/completions"), ("GET", "/v1/models")]
    assert 900 <= result.duration_ms < 1900  # the lookup had the time left minus the reserve, not all of it


def test_the_models_lookup_is_skipped_when_too_little_time_is_left(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", model="gpt-typo", timeout=0.9))
    assert result.cause.startswith("chat completion: model 'gpt-typo' not found (HTTP 404)")
    assert result.remediation == "check the model name and base_url"
    assert [r.path for r in server.requests] == ["/v1/chat/completions"]


def test_an_unknown_embedding_model_is_named_too(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", embedding_model="embed-typo"))
    assert result.stage == Stage.OPERATION
    assert result.cause.startswith("embedding: model 'embed-typo' not found (HTTP 404)")
    assert result.facts["chat_completion_tokens"] == 1  # the chat call worked and says so


def test_an_unknown_deployment_is_named(server: OpenAiServer) -> None:
    result = run_check(azure_target(server.url, deployment="gpt4o-prod"))
    assert result.stage == Stage.OPERATION
    assert "deployment 'gpt4o-prod' not found (HTTP 404): The API deployment for this resource does not exist." in (
        result.cause
    )
    assert "create a deployment named 'gpt4o-prod'" in result.remediation


def test_an_unknown_api_version_points_at_it(server: OpenAiServer) -> None:
    result = run_check(azure_target(server.url, api_version="2023-01-01"))
    assert result.stage == Stage.OPERATION
    assert "api_version 2023-01-01" in result.remediation


def test_a_chat_call_on_an_embedding_model_is_a_bad_request(server: OpenAiServer) -> None:
    result = run_check(openai_target(f"{server.url}/v1", model="embed-test"))
    assert result.stage == Stage.OPERATION
    assert "HTTP 400: embed-test does not support chat completions." in result.cause
    assert "check that 'embed-test' is a chat model" in result.remediation


def test_a_rate_limit_is_a_warning_and_the_rest_still_runs(server: OpenAiServer) -> None:
    server.outage = "rate_limit"
    result = run_check(openai_target(f"{server.url}/v1"))
    assert result.status == Status.WARNING
    assert result.stage == Stage.OPERATION
    assert "chat completion: rate limited (HTTP 429), retry after 7 s: Rate limit reached" in result.cause
    assert "embedding: rate limited" in result.cause
    assert len(server.requests) == 2


def test_a_spent_quota_fails(server: OpenAiServer) -> None:
    server.outage = "insufficient_quota"
    result = run_check(azure_target(server.url))
    assert result.status == Status.FAILED
    assert result.stage == Stage.OPERATION
    assert "HTTP 429: You exceeded your current quota" in result.cause
    assert "billing" in result.remediation


def test_a_content_filter_fails_naming_it(server: OpenAiServer) -> None:
    server.outage = "content_filter"
    result = run_check(azure_target(server.url))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert "HTTP 400: The response was filtered" in result.cause
    assert "content filter" in result.remediation


def test_a_server_error_fails(server: OpenAiServer) -> None:
    server.outage = "server_error"
    result = run_check(openai_target(f"{server.url}/v1"))
    assert result.stage == Stage.OPERATION
    assert result.cause == "chat completion: HTTP 500: The server had an error while processing your request."
    assert "status page" in result.remediation


def test_a_server_that_is_not_an_openai_api_fails() -> None:
    with HttpServer(lambda _: Reply(200, b"<html>welcome to nginx</html>")) as nginx:
        result = run_check(openai_target(f"{nginx.url}/v1"))
    assert result.stage == Stage.OPERATION
    assert result.cause == (
        "chat completion: the answer is not an OpenAI chat completion response: <html>welcome to nginx</html>"
    )


def test_an_endpoint_that_never_answers_times_out_at_the_request(stall: StallServer) -> None:
    result = run_check(openai_target(f"http://127.0.0.1:{stall.port}/v1", timeout=0.5))
    assert result.stage == Stage.OPERATION
    assert result.steps[-1].name == "http request"
    assert result.duration_ms < 900


def test_a_closed_port_fails_at_connect(closed_port: int) -> None:
    result = run_check(openai_target(f"http://127.0.0.1:{closed_port}/v1"))
    assert result.stage == Stage.CONNECT


def test_https_with_a_private_ca(certs: Certificates, tls_servers: dict[str, Any]) -> None:
    with OpenAiServer(certs.leaf("openai")) as secure:
        assert run_check(openai_target(f"{secure.url}/v1", ca_file=certs.ca_file)).status == Status.PASSED
        untrusted = run_check(openai_target(f"{secure.url}/v1"))
    assert untrusted.stage == Stage.TLS
    assert "unable to get local issuer certificate" in untrusted.cause
    expired = run_check(openai_target(f"https://localhost:{tls_servers['expired'].port}/v1", ca_file=certs.ca_file))
    assert expired.stage == Stage.TLS
    assert "has expired" in expired.cause


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"provider": "azure", "deployment": "d"}, "targets[0]: api_version required when provider is azure"),
        ({"provider": "azure", "api_version": "2024-10-21"}, "targets[0]: deployment required when provider is azure"),
        ({}, "targets[0]: model required when provider is openai"),
        ({"model": "m", "deployment": "d"}, "targets[0]: deployment not used when provider is openai"),
        ({"model": "m", "api_version": "2024-10-21"}, "targets[0]: api_version not used when provider is openai"),
        (
            {"provider": "azure", "deployment": "d", "api_version": "2024-10-21", "model": "m"},
            "targets[0]: model not used when provider is azure",
        ),
        ({"provider": "azure", "deployment": "d/x", "api_version": "2024-10-21"}, "targets[0].deployment:"),
        ({"provider": "azure", "deployment": "d", "api_version": "latest"}, "targets[0].api_version:"),
        ({"provider": "bedrock", "model": "m"}, "targets[0].provider:"),
    ],
)
def test_config_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    entry = {"name": "llm", "kind": "openai", "base_url": "https://ai.example.test", "api_key": "k", **fields}
    with pytest.raises(ConfigError) as error:
        parse_targets(yaml.safe_dump({"targets": [entry]}), "t.yaml", {})
    assert str(error.value).startswith(message)


def test_the_api_key_comes_from_the_environment_and_is_a_secret() -> None:
    text = """
targets:
  - {name: llm, kind: openai, base_url: "https://ai.example.test/v1", api_key: "${AI_KEY}", model: gpt-4o-mini}
"""
    (target,) = parse_targets(text, "t.yaml", {"AI_KEY": KEY})
    assert target.secrets() == [KEY]
    assert KEY not in repr(target)
    with pytest.raises(ConfigError, match=r"targets\[0\]\.api_key: environment variable AI_KEY is not set"):
        parse_targets(text, "t.yaml", {})


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)


@given(
    deployment=names,
    embedding=st.none() | names,
    version=st.from_regex(r"20[0-9]{2}-[01][0-9]-[0-3][0-9](-preview)?", fullmatch=True),
    key=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60),
)
def test_azure_config_round_trip(deployment: str, embedding: str | None, version: str, key: str) -> None:
    entry = {
        "name": "llm",
        "kind": "openai",
        "provider": "azure",
        "base_url": "https://name.openai.azure.com",
        "api_key": key,
        "deployment": deployment,
        "embedding_deployment": embedding,
        "api_version": version,
    }
    (target,) = parse_targets(yaml.safe_dump({"targets": [entry]}), "t.yaml", {})
    assert isinstance(target, OpenaiTarget)
    assert target.api_key.get_secret_value() == key
    assert (target.deployment, target.embedding_deployment, target.api_version) == (deployment, embedding, version)
