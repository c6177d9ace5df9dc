"""gemini: the Gemini API (Generative Language API) answers a 1-token generateContent and, when set, an embedContent.

The key goes in the `x-goog-api-key` header, never in the URL. Failures are classified by the google.rpc
ErrorInfo reason (API_KEY_INVALID ...) or else the status word (PERMISSION_DENIED, NOT_FOUND ...) Google sends
in {"error": {"code", "message", "status", "details"}}; RESOURCE_EXHAUSTED and UNAVAILABLE (overloaded) are
warnings, with the RetryInfo delay as the retry hint. A prompt blocked by a safety filter fails.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, FilePath, SecretStr, StringConstraints

from app.checks.ai import (
    OVERLOADED,
    PROMPT,
    RATE_LIMITED,
    SERVICE_FAILED,
    TEST_IMAGE,
    VISION_PROMPT,
    Call,
    Refusal,
    Rule,
    Rules,
    ask,
    chat_facts,
    embedding_facts,
    is_vector,
    json_of,
    message_of,
    resolve_url,
)
from app.checks.base import CheckFailed, Probe, Stage, Target
from app.checks.http import Answer, HttpUrl, open_client

if TYPE_CHECKING:
    import httpx

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]

_KEY_REMEDIATION = "the api_key is not accepted: create a key in Google AI Studio (Get API key) for the project"
RULES: Rules = {
    "API_KEY_INVALID": Rule(Stage.AUTH, _KEY_REMEDIATION),
    "UNAUTHENTICATED": Rule(Stage.AUTH, _KEY_REMEDIATION),
    "SERVICE_DISABLED": Rule(
        Stage.PERMISSION, "enable the Generative Language API in the key's Google Cloud project (APIs & Services)"
    ),
    "API_KEY_SERVICE_BLOCKED": Rule(
        Stage.PERMISSION, "the key's API restrictions exclude the Generative Language API: allow it on the key"
    ),
    "PERMISSION_DENIED": Rule(
        Stage.PERMISSION,
        "the key is valid but may not use '{model}': check the key's API and IP restrictions and the project's access",
    ),
    "NOT_FOUND": Rule(
        Stage.OPERATION,
        "model '{model}' is not served by API version {api_version} for this call: use a model from "
        "GET /{api_version}/models (e.g. gemini-2.5-flash, gemini-embedding-001)",
    ),
    "FAILED_PRECONDITION": Rule(
        Stage.OPERATION,
        "the Gemini API is not available for this project from here (the free tier is not offered in every "
        "region): enable billing on the project in Google AI Studio",
    ),
    "INVALID_ARGUMENT": Rule(
        Stage.OPERATION, "the API rejects the request: check that '{model}' is a {call} model in {api_version}"
    ),
    "RESOURCE_EXHAUSTED": RATE_LIMITED,
    "UNAVAILABLE": OVERLOADED,
    "INTERNAL": SERVICE_FAILED,
}


class GeminiTarget(Target):
    default_timeout: ClassVar[float] = 30.0

    kind: Literal["gemini"]
    base_url: HttpUrl = "https://generativelanguage.googleapis.com"
    api_version: Literal["v1", "v1beta"] = "v1beta"
    api_key: SecretStr
    model: ModelName  # e.g. gemini-2.5-flash
    embedding_model: ModelName | None = None  # e.g. gemini-embedding-001
    embedding_dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None  # what the platform's index expects
    vision: bool = False
    ca_file: FilePath | None = None

    def check(self, probe: Probe) -> None:
        resolve_url(probe, self.base_url)
        image = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(TEST_IMAGE).decode()}}
        with open_client(probe, self.ca_file) as client:
            self._generate(probe, client, "chat", [{"text": PROMPT}])
            if self.vision:
                self._generate(probe, client, "vision", [image, {"text": VISION_PROMPT}])
            if self.embedding_model is not None:
                body = {"model": f"models/{self.embedding_model}", "content": {"parts": [{"text": PROMPT}]}}
                document = self._ask(
                    probe,
                    client,
                    "embedding",
                    model=self.embedding_model,
                    method="embedContent",
                    body=body,
                    shape=lambda d: is_vector((d.get("embedding") or {}).get("values")),
                )
                if document is not None:
                    embedding_facts(probe, document["embedding"]["values"], None, self.embedding_dimensions)

    def _generate(self, probe: Probe, client: httpx.Client, call: Call, parts: list[dict[str, Any]]) -> None:
        body = {"contents": [{"role": "user", "parts": parts}], "generationConfig": {"maxOutputTokens": 1}}
        document = self._ask(
            probe, client, call, model=self.model, method="generateContent", body=body, shape=_is_generation
        )
        if document is None:
            return
        blocked = (document.get("promptFeedback") or {}).get("blockReason")
        if blocked or not document.get("candidates"):
            raise CheckFailed(
                Stage.OPERATION,
                f"{call}: the prompt was blocked ({blocked or 'no candidates returned'})",
                "a safety or content filter on the project blocks even a one-word prompt: review its safety settings",
            )
        usage = document.get("usageMetadata") or {}
        chat_facts(
            probe, call, document.get("modelVersion"), usage.get("promptTokenCount"), usage.get("candidatesTokenCount")
        )

    def _ask(
        self,
        probe: Probe,
        client: httpx.Client,
        call: Call,
        *,
        model: str,
        method: str,
        body: Any,
        shape: Callable[[dict[str, Any]], bool],
    ) -> dict[str, Any] | None:
        return ask(
            probe,
            client,
            call,
            f"{self.base_url.rstrip('/')}/{self.api_version}/models/{model}:{method}",
            headers={"x-goog-api-key": self.api_key.get_secret_value()},
            body=body,
            refusal=_refusal,
            rules=RULES,
            names={"model": model, "api_version": self.api_version},
            shape=shape,
            api="Gemini API",
        )


def _is_generation(document: dict[str, Any]) -> bool:
    return "candidates" in document or "promptFeedback" in document


def _refusal(answer: Answer) -> Refusal:
    error = json_of(answer).get("error")
    error = error if isinstance(error, dict) else {}
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    reason = next((d.get("reason") for d in details if str(d.get("@type", "")).endswith("rpc.ErrorInfo")), None)
    delay = next((d.get("retryDelay") for d in details if str(d.get("@type", "")).endswith("rpc.RetryInfo")), None)
    return Refusal(
        answer.status,
        str(reason or error.get("status") or ""),
        message_of(error.get("message"), answer),
        str(delay).removesuffix("s") if delay else answer.headers.get("retry-after"),
    )
