"""anthropic: Claude answers a 1-token message (and, with `vision`, one about a tiny image).

Two ways in. The Anthropic API (provider anthropic): POST {base_url}/v1/messages with `x-api-key` and
`anthropic-version`. Vertex AI (provider vertex): a service account key is traded for an access token (as for
gemini), then the same Messages body, with `anthropic_version` inside it instead of `model`, goes to the model's
rawPredict in the project and location. Failures are classified by the error `type` Anthropic sends
({"type": "error", "error": {"type", "message", "details": {"error_code"}}}; the error_code first where it is
given) or, from Google's side of Vertex AI, the google.rpc reason or status; a rate limit (429) and an overloaded
API (529) are warnings with the retry hint, but a 429 whose error_code is enforced_spend_limit_reached (the
tier's monthly spend cap) fails. A spent credit balance is a 400 invalid_request_error told apart by its message
only, so it is reported as that error, its remediation naming billing too. Claude through Bedrock is the bedrock
kind.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, ClassVar, Literal

from pydantic import FilePath, SecretStr, StringConstraints, model_validator

from app.checks.ai import (
    OVERLOADED,
    PROMPT,
    QUOTA_SPENT,
    RATE_LIMITED,
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
    google_access_token,
    google_details,
    google_reason,
    google_word,
    json_of,
    message_of,
    resolve_url,
    service_account,
    service_account_project,
    service_account_secrets,
    vertex_endpoint,
)
from app.checks.base import HeaderSecret, Probe, Stage, Target
from app.checks.http import Answer, HttpUrl, open_client

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\s/?#]+$")]

RULES: Rules = {
    "authentication_error": Rule(
        Stage.AUTH, "the api_key is not accepted: create a key in the Anthropic Console (Settings, API keys)"
    ),
    "permission_error": Rule(
        Stage.PERMISSION,
        "the key is valid but may not use '{model}': check the key's workspace and the organisation's model access",
    ),
    "not_found_error": Rule(
        Stage.OPERATION, "model '{model}' does not exist for this key: use a model id from GET /v1/models"
    ),
    "invalid_request_error": Rule(
        Stage.OPERATION,
        "the API rejects the request: check that '{model}' is a Messages model and that anthropic-version "
        "{api_version} is valid; a spent credit balance is reported this way too (check Plans and Billing)",
    ),
    "billing_error": QUOTA_SPENT,
    "enforced_spend_limit_reached": Rule(
        Stage.OPERATION,
        "the organisation has reached its usage tier's monthly spend cap: every call is refused until 00:00 UTC "
        "on the first of next month; request a higher limit or tier in the Claude Console (Settings, Limits)",
    ),
    "rate_limit_error": RATE_LIMITED,
    "overloaded_error": OVERLOADED,
    "api_error": SERVICE_FAILED,
    529: OVERLOADED,
    # Google's side of Vertex AI
    "UNAUTHENTICATED": Rule(Stage.AUTH, "Vertex AI does not accept the access token: check the service account key"),
    "SERVICE_DISABLED": Rule(Stage.PERMISSION, "enable the Vertex AI API (aiplatform.googleapis.com) in the project"),
    "IAM_PERMISSION_DENIED": Rule(
        Stage.PERMISSION,
        "grant the service account the Vertex AI User role (roles/aiplatform.user) on the project, and enable "
        "'{model}' in Vertex AI's Model Garden",
    ),
    "PERMISSION_DENIED": Rule(
        Stage.PERMISSION, "enable '{model}' in Vertex AI's Model Garden for the project, and check the role"
    ),
    "NOT_FOUND": Rule(
        Stage.OPERATION,
        "'{model}' is not offered in {location} for the project: check the model id (with its @version) and "
        "the location (us-east5, europe-west1, global ...)",
    ),
    "RESOURCE_EXHAUSTED": RATE_LIMITED,
    "UNAVAILABLE": OVERLOADED,
}
VERTEX_VERSION = "vertex-2023-10-16"


class AnthropicTarget(Target):
    default_timeout: ClassVar[float] = 30.0
    warm_imports: ClassVar[tuple[str, ...]] = ("httpx", "jwt")

    kind: Literal["anthropic"]
    provider: Literal["anthropic", "vertex"] = "anthropic"
    base_url: HttpUrl | None = None  # default: https://api.anthropic.com, or the location's Vertex AI endpoint
    api_key: HeaderSecret | None = None  # anthropic
    service_account_key: SecretStr | None = None  # vertex: the service account's JSON key
    project: ProjectId | None = None  # vertex; default: the key's project_id
    location: Location = "us-east5"  # vertex
    model: ModelName  # e.g. claude-sonnet-4-5 (on Vertex AI with its version: claude-sonnet-4-5@20250929)
    api_version: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")] = "2023-06-01"  # anthropic
    vision: bool = False  # also send a tiny image, as the platform does for vision features
    ca_file: FilePath | None = None

    @model_validator(mode="after")
    def _fields_of_provider(self) -> AnthropicTarget:
        needed = "api_key" if self.provider == "anthropic" else "service_account_key"
        if getattr(self, needed) is None:
            raise ValueError(f"{needed} required when provider is {self.provider}")
        other = (
            ("service_account_key", "project", "location")
            if self.provider == "anthropic"
            else ("api_key", "api_version")
        )
        unused = [name for name in other if name in self.model_fields_set]
        if unused:
            raise ValueError(f"{', '.join(unused)} not used when provider is {self.provider}")
        return self

    def secrets(self) -> list[str]:
        return [*super().secrets(), *service_account_secrets(self.service_account_key)]

    def check(self, probe: Probe) -> None:
        key = None
        if self.service_account_key is not None:  # a broken key fails here, before any traffic
            key = service_account(probe, self.service_account_key, self.project)
        if self.base_url is not None:
            endpoint = self.base_url.rstrip("/")
        else:
            endpoint = "https://api.anthropic.com" if key is None else vertex_endpoint(self.location)
        resolve_url(probe, endpoint)
        with open_client(probe, self.ca_file) as client:
            if key is None:
                url = f"{endpoint}/v1/messages"
                headers = {"x-api-key": self.api_key.get_secret_value() if self.api_key else ""}
                headers["anthropic-version"] = self.api_version
                envelope: dict[str, Any] = {"model": self.model}
            else:
                project = self.project or service_account_project(self.service_account_key)
                url = (
                    f"{endpoint}/v1/projects/{project}/locations/{self.location}/publishers/anthropic/models/"
                    f"{self.model}:rawPredict"
                )
                headers = {"Authorization": f"Bearer {google_access_token(probe, client, key)}"}
                envelope = {"anthropic_version": VERTEX_VERSION}
            calls: list[tuple[Call, Any]] = [("chat", PROMPT)]
            if self.vision:
                image = base64.b64encode(TEST_IMAGE).decode()
                source = {"type": "base64", "media_type": "image/png", "data": image}
                calls.append(("vision", [{"type": "image", "source": source}, {"type": "text", "text": VISION_PROMPT}]))
            for call, content in calls:
                message = ask(
                    probe,
                    client,
                    call,
                    url,
                    headers=headers,
                    body={**envelope, "max_tokens": 1, "messages": [{"role": "user", "content": content}]},
                    refusal=_refusal,
                    rules=RULES,
                    names={"model": self.model, "api_version": self.api_version, "location": self.location},
                    shape=lambda d: d.get("type") == "message" and isinstance(d.get("content"), list),
                    api="Anthropic Messages API",
                )
                if message is not None:
                    usage = message.get("usage") or {}
                    chat_facts(probe, call, message.get("model"), usage.get("input_tokens"), usage.get("output_tokens"))


def _refusal(answer: Answer) -> Refusal:
    """Anthropic's {"error": {"type", "message", "details"}}, or Google's {"error": {"status", "message", "details"}}
    (Vertex AI's refusals name no quota in structured form, so a 429 of theirs stays a rate limit)."""
    error = json_of(answer).get("error")
    error = error if isinstance(error, dict) else {}
    details = error.get("details")
    error_code = details.get("error_code") if isinstance(details, dict) else None
    kind = error.get("type")
    return Refusal(
        answer.status,
        (error_code if isinstance(error_code, str) else "")
        or (kind if isinstance(kind, str) else "")
        or google_reason(google_details(error))
        or google_word(error.get("status")),
        message_of(error.get("message"), answer),
        answer.headers.get("retry-after"),
    )
