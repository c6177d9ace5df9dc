"""anthropic: the Anthropic Messages API answers a 1-token message (and, with `vision`, one about a tiny image).

POST {base_url}/v1/messages with `x-api-key` and `anthropic-version`. Failures are classified by the error
`type` Anthropic sends ({"type": "error", "error": {"type", "message"}}); a rate limit (429) and an overloaded
API (529) are warnings with the retry hint. Claude through Bedrock is the bedrock kind.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, ClassVar, Literal

from pydantic import FilePath, SecretStr, StringConstraints

from app.checks.ai import (
    OVERLOADED,
    PROMPT,
    QUOTA_SPENT,
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
    json_of,
    message_of,
    resolve_url,
)
from app.checks.base import Probe, Stage, Target
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
    "rate_limit_error": RATE_LIMITED,
    "overloaded_error": OVERLOADED,
    "api_error": SERVICE_FAILED,
    529: OVERLOADED,
}


class AnthropicTarget(Target):
    default_timeout: ClassVar[float] = 30.0

    kind: Literal["anthropic"]
    base_url: HttpUrl = "https://api.anthropic.com"  # the host: /v1/messages is added
    api_key: SecretStr
    model: ModelName  # e.g. claude-sonnet-4-5
    api_version: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")] = "2023-06-01"
    vision: bool = False  # also send a tiny image, as the platform does for vision features
    ca_file: FilePath | None = None

    def check(self, probe: Probe) -> None:
        resolve_url(probe, self.base_url)
        with open_client(probe, self.ca_file) as client:
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
                    f"{self.base_url.rstrip('/')}/v1/messages",
                    headers={"x-api-key": self.api_key.get_secret_value(), "anthropic-version": self.api_version},
                    body={"model": self.model, "max_tokens": 1, "messages": [{"role": "user", "content": content}]},
                    refusal=_refusal,
                    rules=RULES,
                    names={"model": self.model, "api_version": self.api_version},
                    shape=lambda d: d.get("type") == "message" and isinstance(d.get("content"), list),
                    api="Anthropic Messages API",
                )
                if message is not None:
                    usage = message.get("usage") or {}
                    chat_facts(probe, call, message.get("model"), usage.get("input_tokens"), usage.get("output_tokens"))


def _refusal(answer: Answer) -> Refusal:
    error = json_of(answer).get("error")
    error = error if isinstance(error, dict) else {}
    return Refusal(
        answer.status,
        str(error.get("type") or ""),
        message_of(error.get("message"), answer),
        answer.headers.get("retry-after"),
    )
