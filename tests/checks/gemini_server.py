"""The Gemini API on 127.0.0.1: key header, API version and methods checked, Google's error bodies.

POST /{v1,v1beta}/models/{model}:generateContent | :embedContent with `x-goog-api-key: KEY`. Errors are
{"error": {"code", "message", "status", "details"}} with google.rpc ErrorInfo / RetryInfo details as Google sends
them. `outage` turns every call into one failure: "rate_limit" (429 RESOURCE_EXHAUSTED, RetryInfo 23s),
"overloaded" (503 UNAVAILABLE), "region" (400 FAILED_PRECONDITION), "disabled" (403 SERVICE_DISABLED), or
"blocked" (200 with a promptFeedback blockReason).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Literal

from tests.checks.http_server import HttpServer, Reply, Request

KEY = "AIzaSyTest0123456789abcdefghijklmnopq"
DIMENSIONS = 768
# model -> (methods, API versions that serve it)
MODELS = {
    "gemini-test": ({"generateContent"}, {"v1", "v1beta"}),
    "gemini-beta-only": ({"generateContent"}, {"v1beta"}),
    "embed-test": ({"embedContent"}, {"v1", "v1beta"}),
}
_PATH = re.compile(r"^/(?P<version>v1|v1beta)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

Outage = Literal["rate_limit", "overloaded", "region", "disabled", "blocked"] | None


class GeminiServer(HttpServer):
    def __init__(self) -> None:
        super().__init__(self._answer)
        self.outage: Outage = None

    def _answer(self, request: Request) -> Reply:
        path = _PATH.match(request.path)
        if request.method != "POST" or path is None:
            return _error(404, "NOT_FOUND", f"no route for {request.method} {request.path}")
        key = request.headers.get("x-goog-api-key")
        if key is None:
            return _error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call this API.",
            )
        if key != KEY:
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
        model, method, version = path["model"], path["method"], path["version"]
        methods, versions = MODELS.get(model, (set(), set()))
        if method not in methods or version not in versions:
            return _error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported for {method}. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        failure = self._outage()
        if failure is not None:
            return failure
        body = json.loads(request.body)
        if method == "embedContent":
            if body != {"model": f"models/{model}", "content": {"parts": body["content"]["parts"]}}:
                return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            return _json(200, {"embedding": {"values": [0.01] * DIMENSIONS}})
        if set(body) != {"contents", "generationConfig"} or body["generationConfig"] != {"maxOutputTokens": 1}:
            return _error(400, "INVALID_ARGUMENT", "this test server answers only 1-token requests")
        tokens = _tokens(body["contents"][0]["parts"])
        if tokens is None:
            return _error(400, "INVALID_ARGUMENT", "Unable to process input image.")
        usage = {"promptTokenCount": tokens, "candidatesTokenCount": 1, "totalTokenCount": tokens + 1}
        if self.outage == "blocked":
            return _json(200, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage})
        candidate = {"content": {"parts": [{"text": "ready"}], "role": "model"}, "finishReason": "MAX_TOKENS"}
        return _json(200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": f"{model}-001"})

    def _outage(self) -> Reply | None:
        if self.outage == "rate_limit":
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "23s"},
            ]
            return _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details=details)
        if self.outage == "overloaded":
            return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if self.outage == "region":
            return _error(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")
        if self.outage == "disabled":
            return _error(
                403,
                "PERMISSION_DENIED",
                "Generative Language API has not been used in project 123 before or it is disabled.",
                "SERVICE_DISABLED",
            )
        return None


def _tokens(parts: list[dict[str, Any]]) -> int | None:
    tokens = 0
    for part in parts:
        if "text" in part:
            tokens += len(part["text"].split())
        elif part.get("inlineData", {}).get("mimeType") == "image/png":
            if not base64.b64decode(part["inlineData"]["data"]).startswith(b"\x89PNG\r\n\x1a\n"):
                return None
            tokens += 258  # what Gemini counts for a small image
        else:
            return None
    return tokens


def _json(status: int, document: Any) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json; charset=UTF-8"})


def _error(
    status: int, word: str, message: str, reason: str | None = None, details: list[dict[str, Any]] | None = None
) -> Reply:
    details = list(details or [])
    if reason:
        details.append({"@type": _ERROR_INFO, "reason": reason, "domain": "googleapis.com"})
    error: dict[str, Any] = {"code": status, "message": message, "status": word}
    if details:
        error["details"] = details
    return _json(status, {"error": error})
