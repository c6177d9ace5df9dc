"""Every AI kind through a real forward proxy (tinyproxy), with the `proxy` fact, and around it for NO_PROXY."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.checks import facts
from app.checks.base import Status, Target
from tests.checks import run_check
from tests.checks import test_anthropic as anthropic
from tests.checks import test_bedrock as bedrock
from tests.checks import test_document_intelligence as document_intelligence
from tests.checks import test_gemini as gemini
from tests.checks import test_mistral as mistral
from tests.checks import test_openai as openai
from tests.checks.anthropic_server import AnthropicServer
from tests.checks.bedrock_server import BedrockServer
from tests.checks.document_intelligence_server import DocumentIntelligenceServer
from tests.checks.gemini_server import GeminiServer
from tests.checks.http_server import HttpServer
from tests.checks.mistral_server import MistralServer
from tests.checks.openai_server import OpenAiServer
from tests.checks.test_bedrock import no_ambient_aws  # noqa: F401 - the autouse fixture, for bedrock here too
from tests.services.proxy import ForwardProxy

# kind -> its test server and a target of it (every call the kind makes, embeddings and vision included)
KINDS: dict[str, tuple[type[HttpServer], Callable[[Any], Target]]] = {
    "openai": (OpenAiServer, lambda server: openai.openai_target(f"{server.url}/v1")),
    "anthropic": (AnthropicServer, lambda server: anthropic.target(server.url, vision=True)),
    "gemini": (GeminiServer, lambda server: gemini.target(server.url, vision=True)),
    "gemini vertex": (GeminiServer, gemini.vertex_target),  # the token exchange too
    "mistral": (MistralServer, mistral.target),
    "document_intelligence": (DocumentIntelligenceServer, lambda server: document_intelligence.target(server.url)),
    "bedrock": (BedrockServer, lambda server: bedrock.target(server.url, embedding_model=bedrock.TITAN)),
}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> Iterator[tuple[HttpServer, Target]]:
    server_class, make_target = KINDS[request.param]
    with server_class() as server:
        yield server, make_target(server)


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_every_call_goes_through_the_proxy_and_says_so(
    kind: tuple[HttpServer, Target], forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, target = kind
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.open_url)
    result = run_check(target)
    assert result.status == Status.PASSED, result.cause
    assert result.facts[facts.PROXY] == forward_proxy.open_url
    assert "resolve" not in [step.name for step in result.steps]  # the proxy resolves the name, not the pod
    assert server.requests
    assert all("tinyproxy" in request.headers.get("via", "") for request in server.requests)


def test_no_proxy_sends_them_directly(
    kind: tuple[HttpServer, Target], forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, target = kind
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.open_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
    result = run_check(target)
    assert result.status == Status.PASSED, result.cause
    assert result.facts[facts.PROXY] == "direct (NO_PROXY)"
    assert server.requests
    assert not any("via" in request.headers for request in server.requests)
