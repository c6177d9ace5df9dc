"""The Gemini API and Vertex AI on 127.0.0.1: key header or OAuth token, methods checked, Google's error bodies.

POST /{v1,v1beta}/models/{model}:generateContent | :embedContent with `x-goog-api-key: KEY`. Errors are
{"error": {"code", "message", "status", "details"}} with google.rpc ErrorInfo / RetryInfo details as Google sends
them. `outage` turns every call into one failure: "rate_limit" (429 RESOURCE_EXHAUSTED whose QuotaFailure names a
per-minute quota, RetryInfo 23s), "daily_quota" (the day's requests used up, among per-minute violations),
"no_free_tier" (every quota of the model 0), "region_quota_zero" (the older form: ErrorInfo RATE_LIMIT_EXCEEDED
whose metadata names a per-minute quota of 0 in the region), "prepaid" (402: prepaid credits used up),
"quota_details" (429 RESOURCE_EXHAUSTED carrying `quota_details` as its details, whatever they are),
"overloaded" (503 UNAVAILABLE), "region" (400 FAILED_PRECONDITION), "disabled" (403 SERVICE_DISABLED), or
"blocked" (200 with a promptFeedback blockReason). The 429 bodies are Google's: the QuotaFailure violations carry
quotaMetric, quotaId, quotaDimensions and quotaValue (an int64, so a JSON string), next to a Help link and RetryInfo.

Vertex AI: POST /token trades a JWT signed with the service account's key (verified with its public key,
audience and issuer) for an access token, as Google's token endpoint does; then
POST /v1/projects/{PROJECT}/locations/{location}/publishers/google/models/{model}:generateContent | :predict
with `Authorization: Bearer <token>`. Another project gets 403 IAM_PERMISSION_DENIED.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Literal
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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
_VERTEX = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/google/models/"
    r"(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
PROJECT = "airia-test-project"
CLIENT_EMAIL = f"airia-test-pod@{PROJECT}.iam.gserviceaccount.com"
ACCESS_TOKEN = "ya29.test-access-token-0123456789"

Outage = (
    Literal[
        "rate_limit",
        "daily_quota",
        "no_free_tier",
        "region_quota_zero",
        "prepaid",
        "quota_details",
        "overloaded",
        "region",
        "disabled",
        "blocked",
    ]
    | None
)
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information on this "
    "error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
_QUOTA_HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}
FREE_REQUESTS = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
FREE_INPUT_TOKENS = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"


class GeminiServer(HttpServer):
    def __init__(self) -> None:
        super().__init__(self._answer)
        self.outage: Outage = None
        self.quota_details: Any = None  # the details of the "quota_details" outage
        self.key_disabled = False
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def service_account_key(self, **changes: Any) -> str:
        """The JSON key Google issues for a service account, with this server as its token endpoint."""
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": pem.decode(),
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": f"{self.url}/token",
            **changes,
        }
        return json.dumps(key)

    def _answer(self, request: Request) -> Reply:  # noqa: PLR0911 - the fake API's routing, one return a route
        if request.path == "/token":
            return self._token(request)
        vertex = _VERTEX.match(request.path)
        if vertex:
            if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
                return _error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                    "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                )
            if vertex["project"] != PROJECT:
                resource = f"projects/{vertex['project']}/locations/{vertex['location']}"
                return _error(
                    403,
                    "PERMISSION_DENIED",
                    f"Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/"
                    f"{resource}/publishers/google/models/{vertex['model']}' (or it may not exist).",
                    "IAM_PERMISSION_DENIED",
                )
            return self._call(request, vertex["model"], vertex["method"], "v1")
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
        return self._call(request, path["model"], path["method"], path["version"])

    def _token(self, request: Request) -> Reply:
        import jwt

        form = parse_qs(request.body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return _json(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "})
        public = self._private_key.public_key()
        try:
            claims = jwt.decode(form["assertion"][0], public, algorithms=["RS256"], audience=f"{self.url}/token")
        except jwt.PyJWTError:
            return _json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        if claims.get("iss") != CLIENT_EMAIL or claims.get("scope") != "https://www.googleapis.com/auth/cloud-platform":
            return _json(
                400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience"}
            )
        if self.key_disabled:
            return _json(400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"})
        return _json(200, {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    def _call(self, request: Request, model: str, method: str, version: str) -> Reply:  # noqa: PLR0911 - one return a case
        methods, versions = MODELS.get(model, (set(), set()))
        if method == "predict" and "embedContent" in methods:
            methods = {"predict"}
        if method not in methods or version not in versions:
            return _error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported for {method}. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        failure = self._outage(model)
        if failure is not None:
            return failure
        body = json.loads(request.body)
        if method == "predict":
            if body != {"instances": [{"content": body["instances"][0]["content"]}]}:
                return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            statistics = {"token_count": float(len(body["instances"][0]["content"].split())), "truncated": False}
            prediction = {"embeddings": {"values": [0.01] * DIMENSIONS, "statistics": statistics}}
            return _json(200, {"predictions": [prediction], "metadata": {"billableCharacterCount": 20}})
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

    def _outage(self, model: str) -> Reply | None:  # noqa: PLR0911 - one return an outage
        if self.outage == "rate_limit":
            violation = _violation(FREE_REQUESTS, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", model, "15")
            return _quota_exceeded(QUOTA_MESSAGE, [violation], "23s")
        if self.outage == "daily_quota":
            violations = [
                _violation(FREE_REQUESTS, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", model, "20"),
                _violation(FREE_REQUESTS, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", model, "5"),
                _violation(FREE_INPUT_TOKENS, "GenerateContentInputTokensPerModelPerMinute-FreeTier", model, "250000"),
            ]
            return _quota_exceeded(QUOTA_MESSAGE, violations, "5s")
        if self.outage == "no_free_tier":
            violations = [
                _violation(FREE_INPUT_TOKENS, "GenerateContentInputTokensPerModelPerMinute-FreeTier", model, "0"),
                _violation(FREE_REQUESTS, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", model, "0"),
                _violation(FREE_REQUESTS, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", model, "0"),
            ]
            message = (
                f"{QUOTA_MESSAGE} To monitor your current usage, head to: https://ai.dev/rate-limit. \n"
                f"* Quota exceeded for metric: {FREE_INPUT_TOKENS}, limit: 0, model: {model}\n"
                f"* Quota exceeded for metric: {FREE_REQUESTS}, limit: 0, model: {model}\n"
                "Please retry in 29.019961092s."
            )
            return _quota_exceeded(message, violations, "29s")
        if self.outage == "region_quota_zero":
            metadata = {
                "service": "generativelanguage.googleapis.com",
                "quota_metric": "generativelanguage.googleapis.com/generate_content_requests",
                "quota_location": "us-west4",
                "quota_limit": "GenerateContentRequestsPerMinutePerProjectPerRegion",
                "quota_limit_value": "0",
                "consumer": "projects/123456789",
            }
            details = [
                {
                    "@type": _ERROR_INFO,
                    "reason": "RATE_LIMIT_EXCEEDED",
                    "domain": "googleapis.com",
                    "metadata": metadata,
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Request a higher quota limit.",
                            "url": "https://cloud.google.com/docs/quota#requesting_higher_quota",
                        }
                    ],
                },
            ]
            message = (
                "Quota exceeded for quota metric 'Generate Content API requests per minute' and limit "
                "'GenerateContent request limit per minute for a region' of service "
                "'generativelanguage.googleapis.com' for consumer 'project_number:123456789'."
            )
            return _error(429, "RESOURCE_EXHAUSTED", message, details=details)
        if self.outage == "prepaid":
            return _error(
                402,
                "RESOURCE_EXHAUSTED",
                "Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage "
                "your project and billing. Learn more at https://ai.google.dev/gemini-api/docs/billing#prepay.",
            )
        if self.outage == "quota_details":
            error = {
                "code": 429,
                "message": QUOTA_MESSAGE,
                "status": "RESOURCE_EXHAUSTED",
                "details": self.quota_details,
            }
            return _json(429, {"error": error})
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


def _violation(metric: str, quota_id: str, model: str, value: str) -> dict[str, Any]:
    """One google.rpc.QuotaFailure.Violation as the Gemini API sends it."""
    dimensions = {"location": "global", "model": model}
    return {"quotaMetric": metric, "quotaId": quota_id, "quotaDimensions": dimensions, "quotaValue": value}


def _quota_exceeded(message: str, violations: list[dict[str, Any]], delay: str) -> Reply:
    """Google's 429: the violated quotas, a Help link, and when to retry."""
    details = [
        _QUOTA_HELP,
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    return _error(429, "RESOURCE_EXHAUSTED", message, details=details)


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
