"""The Anthropic Messages API on 127.0.0.1: key and version headers checked, Anthropic's own error bodies.

POST /v1/messages with `x-api-key: KEY` and `anthropic-version` (one of VERSIONS). Errors are
{"type": "error", "error": {"type", "message"}} with the status Anthropic gives each type. `outage` turns every
call into one failure: "rate_limit" (429 + retry-after), "spend_cap" (429 with error.details.error_code
enforced_spend_limit_reached and no retry-after, as the rate-limits page documents it), "overloaded" (529),
"credit" (400, a spent credit balance), "api_error" (500).

Claude on Vertex AI: POST /v1/projects/{PROJECT}/locations/{location}/publishers/anthropic/models/{model}:rawPredict
with `Authorization: Bearer <gemini_server.ACCESS_TOKEN>` (the token a GeminiServer's /token hands out, standing
in for Google's token endpoint) and `anthropic_version: vertex-2023-10-16` in the body instead of `model`;
Google's own refusals (a model not enabled: 404 NOT_FOUND) come as google.rpc errors.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Literal

from tests.certs import ServerCert
from tests.checks.gemini_server import ACCESS_TOKEN, PROJECT
from tests.checks.http_server import HttpServer, Reply, Request

KEY = "sk-ant-api03-test-0123456789"
VERSIONS = {"2023-06-01", "2023-01-01"}
MODELS = {"claude-test": "granted", "claude-locked": "forbidden"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VERTEX_MODELS = {"claude-test@20250101"}
_VERTEX = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/anthropic/models/"
    r"(?P<model>[^/:]+):rawPredict$"
)

Outage = Literal["rate_limit", "spend_cap", "overloaded", "credit", "api_error"] | None
SPEND_CAP_MESSAGE = (
    "You have reached your API usage limits: your organization has crossed its monthly API usage threshold, set "
    "based on your organization's API tier. You will regain access on 2026-09-01 at 00:00 UTC."
)


class AnthropicServer(HttpServer):
    def __init__(self, cert: ServerCert | None = None) -> None:
        super().__init__(self._answer, cert)
        self.outage: Outage = None

    def _answer(self, request: Request) -> Reply:  # noqa: PLR0911 - the fake API's routing, one return a route
        vertex = _VERTEX.match(request.path)
        if vertex:
            return self._vertex(request, vertex["project"], vertex["model"])
        if (request.method, request.path) != ("POST", "/v1/messages"):
            return _error(404, "not_found_error", "Not Found")
        if request.headers.get("x-api-key") != KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if version not in VERSIONS:
            return _error(400, "invalid_request_error", f'anthropic-version: "{version}" is not a valid version')
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(400, "invalid_request_error", "Content-Type must be application/json")
        body = json.loads(request.body)
        if set(body) != {"model", "max_tokens", "messages"} or body["max_tokens"] != 1:
            return _error(400, "invalid_request_error", "this test server answers only minimal 1-token requests")
        return self._message(body["model"], body)

    def _vertex(self, request: Request, project: str, model: str) -> Reply:
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if project != PROJECT or model not in VERTEX_MODELS:
            return _google_error(
                404,
                "NOT_FOUND",
                f"Publisher Model `projects/{project}/locations/us-east5/publishers/anthropic/models/{model}` "
                "not found.",
            )
        body = json.loads(request.body)
        if set(body) != {"anthropic_version", "max_tokens", "messages"} or body["max_tokens"] != 1:
            return _error(400, "invalid_request_error", "this test server answers only minimal 1-token requests")
        if body["anthropic_version"] != "vertex-2023-10-16":
            return _error(400, "invalid_request_error", "anthropic_version: invalid value")
        return self._message(model.partition("@")[0], body)

    def _message(self, model: str, body: dict[str, Any]) -> Reply:  # noqa: PLR0911 - one return a case
        if model not in MODELS:
            return _error(404, "not_found_error", f"model: {model}")
        if MODELS[model] == "forbidden":
            return _error(
                403, "permission_error", "Your API key does not have permission to use the specified resource."
            )
        if self.outage == "rate_limit":
            return _error(
                429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", "12"
            )
        if self.outage == "spend_cap":
            details = {"error_code": "enforced_spend_limit_reached"}
            return _error(429, "rate_limit_error", SPEND_CAP_MESSAGE, details=details)
        if self.outage == "overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        if self.outage == "credit":
            return _error(
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. "
                "Please go to Plans & Billing to upgrade or purchase credits.",
            )
        if self.outage == "api_error":
            return _error(500, "api_error", "Internal server error")
        (message,) = body["messages"]
        tokens = _tokens(message["content"])
        if tokens is None:
            return _error(400, "invalid_request_error", "messages.0.content: invalid content block")
        return _json(
            200,
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": f"{model}-20250101",
                "content": [{"type": "text", "text": "ready"}],
                "stop_reason": "max_tokens",
                "stop_sequence": None,
                "usage": {"input_tokens": tokens, "output_tokens": 1},
            },
        )


def _tokens(content: Any) -> int | None:
    """Input tokens of a message's content (an image costs width * height / 750), None when a block is invalid."""
    if isinstance(content, str):
        return len(content.split())
    tokens = 0
    for block in content:
        if block.get("type") == "text":
            tokens += len(block["text"].split())
        elif block.get("type") == "image":
            source = block["source"]
            if source.get("type") != "base64" or source.get("media_type") != "image/png":
                return None
            if not base64.b64decode(source["data"]).startswith(PNG_SIGNATURE):
                return None
            tokens += 2
        else:
            return None
    return tokens


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


def _google_error(status: int, word: str, message: str) -> Reply:
    return _json(status, {"error": {"code": status, "message": message, "status": word}})


def _error(
    status: int, kind: str, message: str, retry_after: str | None = None, details: dict[str, str] | None = None
) -> Reply:
    headers = {"retry-after": retry_after} if retry_after else {}
    error: dict[str, Any] = {"type": kind, "message": message, **({"details": details} if details else {})}
    return _json(status, {"type": "error", "error": error, "request_id": "req_011CTest0123456789"}, headers)
