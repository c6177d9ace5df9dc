"""An OpenAI-compatible API on 127.0.0.1, with the Azure OpenAI deployment paths, real key checks and errors.

OpenAI style: GET /v1/models, POST /v1/chat/completions and /v1/embeddings with `Authorization: Bearer KEY`.
Azure style: POST /openai/deployments/{deployment}/chat/completions|embeddings?api-version=V with `api-key: KEY`.
Errors have the bodies the real services send. `outage` switches every call to a failure:
"rate_limit" (429 + Retry-After), "insufficient_quota" (429 with that code), "server_error" (500) or
"content_filter" (Azure's 400 for a filtered prompt).
`hang_models` makes GET /v1/models accept the request and never answer (until the server closes).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tests.certs import ServerCert
from tests.checks.http_server import HttpServer, Reply, Request

KEY = "sk-test-0123456789abcdef"
API_VERSIONS = {"2024-10-21", "2025-01-01-preview"}
MODELS = {"gpt-test": "chat", "reasoning-test": "reasoning", "embed-test": "embedding", "text-only-test": "text"}
DEPLOYMENTS = {"chat-deploy": "chat", "embed-deploy": "embedding"}
DIMENSIONS = 8
_AZURE_PATH = re.compile(r"^/openai/deployments/(?P<name>[^/]+)/(?P<call>chat/completions|embeddings)$")

Outage = Literal["rate_limit", "insufficient_quota", "server_error", "content_filter"] | None


class OpenAiServer(HttpServer):
    def __init__(self, cert: ServerCert | None = None) -> None:
        super().__init__(self._answer, cert)
        self.outage: Outage = None
        self.hang_models = False
        self._closing = threading.Event()

    def close(self) -> None:
        self._closing.set()  # lets hung /models handlers end
        super().close()

    def _answer(self, request: Request) -> Reply:  # noqa: PLR0911 - the fake API's routing, one return a route
        url = urlsplit(request.path)
        azure = _AZURE_PATH.match(url.path)
        if azure:
            if request.headers.get("api-key") != KEY:
                return _error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint.")
            if parse_qs(url.query).get("api-version", [""])[0] not in API_VERSIONS:
                return _error(404, "404", "Resource not found")
            purpose = DEPLOYMENTS.get(azure["name"])
            if purpose is None:
                return _error(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
            return self._call(request, azure["call"], azure["name"], purpose)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return _error(401, "invalid_api_key", "Incorrect API key provided: sk-wro***.")
        if (request.method, url.path) == ("GET", "/v1/models"):
            if self.hang_models:
                self._closing.wait()
            return _json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
        if request.method == "POST" and url.path in ("/v1/chat/completions", "/v1/embeddings"):
            model = json.loads(request.body).get("model", "")
            if model not in MODELS:
                return _error(404, "model_not_found", f"The model `{model}` does not exist or you do not have access.")
            return self._call(request, url.path.removeprefix("/v1/"), model, MODELS[model])
        return _error(404, "not_found", f"no route for {request.method} {url.path}")

    def _call(self, request: Request, call: str, model: str, purpose: str) -> Reply:  # noqa: PLR0911 - one a case
        if self.outage == "rate_limit":
            return _error(429, "rate_limit_exceeded", "Rate limit reached for requests.", {"Retry-After": "7"})
        if self.outage == "insufficient_quota":
            return _error(429, "insufficient_quota", "You exceeded your current quota, please check your plan.")
        if self.outage == "content_filter":
            return _error(
                400,
                "content_filter",
                "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                param="prompt",
            )
        if self.outage == "server_error":
            return _error(500, "server_error", "The server had an error while processing your request.")
        payload = json.loads(request.body)
        if call == "embeddings":
            if purpose != "embedding":
                return _error(400, "OperationNotSupported", f"{model} does not support embeddings.")
            tokens = len(str(payload["input"]).split())
            return _json(
                200,
                {
                    "object": "list",
                    "model": model,
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.125] * DIMENSIONS}],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
            )
        if purpose == "embedding":
            return _error(400, "OperationNotSupported", f"{model} does not support chat completions.")
        if purpose == "reasoning" and "max_tokens" in payload:
            return _error(
                400,
                "unsupported_parameter",
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                param="max_tokens",
            )
        if payload.get("max_tokens", payload.get("max_completion_tokens")) != 1:
            return _error(400, "invalid_value", "this test server only answers 1-token completions")
        tokens = sum(_tokens(m["content"]) for m in payload["messages"])
        images = [
            p
            for m in payload["messages"]
            if isinstance(m["content"], list)
            for p in m["content"]
            if p["type"] != "text"
        ]
        if tokens < 0 or (images and purpose == "text"):
            return _error(
                400,
                "invalid_request_error",
                "Invalid content type. image_url is only supported by certain models.",
                param="messages.[0].content.[1].type",
            )
        return _json(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ready"}, "finish_reason": "length"}
                ],
                "usage": {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1},
            },
        )


def _tokens(content: Any) -> int:
    """Prompt tokens of a message (an image costs 85, as OpenAI counts a low-detail one); -1 for a bad image."""
    if isinstance(content, str):
        return len(content.split())
    tokens = 0
    for part in content:
        if part["type"] == "text":
            tokens += len(part["text"].split())
        else:
            header, _, data = part["image_url"]["url"].partition(",")
            if header != "data:image/png;base64" or not base64.b64decode(data).startswith(b"\x89PNG"):
                return -1
            tokens += 85
    return tokens


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, param: str | None = None
) -> Reply:
    return _json(
        status, {"error": {"code": code, "message": message, "type": "invalid_request_error", "param": param}}, headers
    )
