"""gemini: Gemini answers a 1-token generateContent (with `vision`, one about a tiny image) and, when set, an embedding.

Two ways in. The Gemini API (provider google_ai): the key goes in the `x-goog-api-key` header, never in the URL;
embeddings are embedContent. Vertex AI (provider vertex): a service account key signs a JWT that Google's token
endpoint (the key's token_uri) exchanges for an access token, sent as a Bearer token to the location's
aiplatform endpoint; embeddings are the model's predict. Both send google.rpc errors
{"error": {"code", "message", "status", "details"}}: classified by the quota the details name, else the ErrorInfo
reason (API_KEY_INVALID, SERVICE_DISABLED ...), else the status word. A 429 RESOURCE_EXHAUSTED whose QuotaFailure
(or ErrorInfo RATE_LIMIT_EXCEEDED metadata) names a per-minute quota is a warning, as is one that names none; a
quota of 0 (the model is not in the project's tier) fails at permission, a day's quota used up at operation, and
a 402 (prepaid credits used up) fails too. UNAVAILABLE (overloaded) is a warning; warnings carry the RetryInfo
delay as the retry hint. A prompt blocked by a safety filter fails.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, FilePath, SecretStr, StringConstraints, model_validator

from app.checks.ai import (
    GOOGLE_QUOTAS,
    OVERLOADED,
    PROMPT,
    SERVICE_FAILED,
    TEST_IMAGE,
    VISION_PROMPT,
    Call,
    Location,
    ProjectId,
    Refusal,
    Rule,
    Rules,
    ask,
    chat_facts,
    embedding_facts,
    google_access_token,
    google_details,
    google_quota,
    google_reason,
    google_retry_delay,
    google_word,
    is_vector,
    json_of,
    message_of,
    resolve_url,
    service_account,
    service_account_project,
    service_account_secrets,
    vertex_endpoint,
)
from app.checks.base import CheckFailed, HeaderSecret, Probe, Stage, Target
from app.checks.http import Answer, HttpUrl, open_client

if TYPE_CHECKING:
    import httpx

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._@-]+$")]
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
    "IAM_PERMISSION_DENIED": Rule(
        Stage.PERMISSION,
        "the service account may not call '{model}': grant it the Vertex AI User role (roles/aiplatform.user) "
        "on the project",
    ),
    "NOT_FOUND": Rule(
        Stage.OPERATION,
        "model '{model}' is not offered for this call at {where}: check the model id (e.g. gemini-2.5-flash, "
        "gemini-embedding-001) and where it is available",
    ),
    "FAILED_PRECONDITION": Rule(
        Stage.OPERATION,
        "the Gemini API is not available for this project from here (the free tier is not offered in every "
        "region): enable billing on the project in Google AI Studio",
    ),
    "INVALID_ARGUMENT": Rule(
        Stage.OPERATION, "the API rejects the request: check that '{model}' is a {call} model at {where}"
    ),
    # a 429 RESOURCE_EXHAUSTED that names no quota of 0 and no long window is a rate limit: by its status
    402: Rule(
        Stage.OPERATION,
        "the prepaid credits of the project's billing account are used up: add credits (Google AI Studio, "
        "Billing) or turn on auto-reload",
    ),
    "UNAVAILABLE": OVERLOADED,
    "INTERNAL": SERVICE_FAILED,
    **GOOGLE_QUOTAS,
}


class GeminiTarget(Target):
    default_timeout: ClassVar[float] = 30.0
    warm_imports: ClassVar[tuple[str, ...]] = ("httpx", "jwt")

    kind: Literal["gemini"]
    provider: Literal["google_ai", "vertex"] = "google_ai"
    base_url: HttpUrl | None = None  # default: the Gemini API, or https://LOCATION-aiplatform.googleapis.com
    api_version: Literal["v1", "v1beta"] = "v1beta"  # google_ai (Vertex AI is v1)
    api_key: HeaderSecret | None = None  # google_ai
    service_account_key: SecretStr | None = None  # vertex: the service account's JSON key
    project: ProjectId | None = None  # vertex; default: the key's project_id
    location: Location = "us-central1"  # vertex
    model: ModelName  # e.g. gemini-2.5-flash
    embedding_model: ModelName | None = None  # e.g. gemini-embedding-001
    embedding_dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None  # what the platform's index expects
    vision: bool = False
    ca_file: FilePath | None = None

    @model_validator(mode="after")
    def _fields_of_provider(self) -> GeminiTarget:
        if self.provider == "google_ai":
            if self.api_key is None:
                raise ValueError("api_key required when provider is google_ai")
            foreign = [n for n in ("service_account_key", "project", "location") if n in self.model_fields_set]
            if foreign:
                raise ValueError(f"{', '.join(foreign)} not used when provider is google_ai")
            return self
        if self.service_account_key is None:
            raise ValueError("service_account_key required when provider is vertex")
        unused = [n for n in ("api_key", "api_version") if n in self.model_fields_set]
        if unused:
            raise ValueError(f"{', '.join(unused)} not used when provider is vertex")
        return self

    def secrets(self) -> list[str]:
        return [*super().secrets(), *service_account_secrets(self.service_account_key)]

    @property
    def endpoint(self) -> str:
        if self.base_url is not None:
            return self.base_url.rstrip("/")
        if self.provider == "google_ai":
            return "https://generativelanguage.googleapis.com"
        return vertex_endpoint(self.location)

    def check(self, probe: Probe) -> None:
        key = None
        if self.service_account_key is not None:  # a broken key fails here, before any traffic
            key = service_account(probe, self.service_account_key, self.project)
        resolve_url(probe, self.endpoint)
        image = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(TEST_IMAGE).decode()}}
        with open_client(probe, self.ca_file) as client:
            if key is None:
                headers = {"x-goog-api-key": self.api_key.get_secret_value() if self.api_key else ""}
            else:
                headers = {"Authorization": f"Bearer {google_access_token(probe, client, key)}"}
            self._generate(probe, client, headers, "chat", [{"text": PROMPT}])
            if self.vision:
                self._generate(probe, client, headers, "vision", [image, {"text": VISION_PROMPT}])
            if self.embedding_model is not None:
                self._embed(probe, client, headers, self.embedding_model)

    def _url(self, model: str, method: str) -> str:
        if self.provider == "google_ai":
            return f"{self.endpoint}/{self.api_version}/models/{model}:{method}"
        project = self.project or service_account_project(self.service_account_key)
        return (
            f"{self.endpoint}/v1/projects/{project}/locations/{self.location}/publishers/google/models/{model}:{method}"
        )

    def _embed(self, probe: Probe, client: httpx.Client, headers: dict[str, str], model: str) -> None:
        if self.provider == "google_ai":
            body: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": PROMPT}]}}
            document = self._ask(
                probe, client, headers, "embedding", model=model, method="embedContent", body=body, shape=_embedded
            )
            if document is not None:
                embedding_facts(probe, document["embedding"]["values"], None, self.embedding_dimensions)
            return
        body = {"instances": [{"content": PROMPT}]}
        document = self._ask(
            probe, client, headers, "embedding", model=model, method="predict", body=body, shape=_predicted
        )
        if document is not None:
            embeddings = document["predictions"][0]["embeddings"]
            tokens = (embeddings.get("statistics") or {}).get("token_count")
            embedding_facts(
                probe,
                embeddings["values"],
                int(tokens) if isinstance(tokens, float) else tokens,
                self.embedding_dimensions,
            )

    def _generate(
        self, probe: Probe, client: httpx.Client, headers: dict[str, str], call: Call, parts: list[dict[str, Any]]
    ) -> None:
        body = {"contents": [{"role": "user", "parts": parts}], "generationConfig": {"maxOutputTokens": 1}}
        document = self._ask(
            probe, client, headers, call, model=self.model, method="generateContent", body=body, shape=_is_generation
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
        headers: dict[str, str],
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
            self._url(model, method),
            headers=headers,
            body=body,
            refusal=_refusal,
            rules=RULES,
            names={"model": model, "where": self._where},
            shape=shape,
            api="Gemini API" if self.provider == "google_ai" else "Vertex AI API",
        )

    @property
    def _where(self) -> str:
        return f"API version {self.api_version}" if self.provider == "google_ai" else f"Vertex AI in {self.location}"


def _embedded(document: dict[str, Any]) -> bool:
    return is_vector((document.get("embedding") or {}).get("values"))


def _predicted(document: dict[str, Any]) -> bool:
    predictions = document.get("predictions")
    first = predictions[0] if isinstance(predictions, list) and predictions else None
    return isinstance(first, dict) and is_vector((first.get("embeddings") or {}).get("values"))


def _is_generation(document: dict[str, Any]) -> bool:
    return "candidates" in document or "promptFeedback" in document


def _refusal(answer: Answer) -> Refusal:
    error = json_of(answer).get("error")
    error = error if isinstance(error, dict) else {}
    details = google_details(error)
    return Refusal(
        answer.status,
        google_reason(details) or google_word(error.get("status")),
        message_of(error.get("message"), answer),
        google_retry_delay(details) or answer.headers.get("retry-after"),
        google_quota(details),
    )
