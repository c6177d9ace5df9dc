"""mistral: the Mistral API answers a 1-token chat completion (with `vision`, one about a tiny image) and an embedding.

POST {base_url}/chat/completions and /embeddings with a Bearer key. Mistral's errors come in two shapes:
{"object": "error", "message", "type", "code"} for a refused request (type `invalid_model` for an unknown model)
and {"message": ...} or {"detail": ...} from its gateway (401, 429); they are classified by `type`, else by status.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, FilePath, StringConstraints

from app.checks.ai import (
    PROMPT,
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
from app.checks.base import HeaderSecret, Probe, Stage, Target
from app.checks.http import Answer, HttpUrl, open_client

if TYPE_CHECKING:
    import httpx

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s/?#]+$")]

RULES: Rules = {
    401: Rule(Stage.AUTH, "the api_key is not accepted: create a key in the Mistral console (API Keys)"),
    "invalid_model": Rule(
        Stage.OPERATION, "model '{model}' does not exist for this key: use a model id from GET /v1/models"
    ),
}


class MistralTarget(Target):
    default_timeout: ClassVar[float] = 30.0
    warm_imports: ClassVar[tuple[str, ...]] = ("httpx",)

    kind: Literal["mistral"]
    base_url: HttpUrl = "https://api.mistral.ai/v1"
    api_key: HeaderSecret
    model: ModelName  # e.g. mistral-small-latest; with vision a model that reads images (pixtral, mistral-medium)
    embedding_model: ModelName | None = None  # e.g. mistral-embed
    embedding_dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None  # what the platform's index expects
    vision: bool = False
    ca_file: FilePath | None = None

    def check(self, probe: Probe) -> None:
        resolve_url(probe, self.base_url)
        with open_client(probe, self.ca_file) as client:
            self._chat(probe, client, "chat", PROMPT)
            if self.vision:
                image = f"data:image/png;base64,{base64.b64encode(TEST_IMAGE).decode()}"
                self._chat(
                    probe,
                    client,
                    "vision",
                    [{"type": "text", "text": VISION_PROMPT}, {"type": "image_url", "image_url": image}],
                )
            if self.embedding_model is not None:
                document = self._ask(
                    probe,
                    client,
                    "embedding",
                    path="embeddings",
                    body={"model": self.embedding_model, "input": [PROMPT]},
                    model=self.embedding_model,
                )
                if document is not None:  # its shape was checked: data[0].embedding is a vector
                    tokens = (document.get("usage") or {}).get("prompt_tokens")
                    embedding_facts(probe, document["data"][0]["embedding"], tokens, self.embedding_dimensions)

    def _chat(self, probe: Probe, client: httpx.Client, call: Call, content: Any) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "max_tokens": 1}
        document = self._ask(probe, client, call, path="chat/completions", body=body, model=self.model)
        if document is not None:
            usage = document.get("usage") or {}
            chat_facts(probe, call, document.get("model"), usage.get("prompt_tokens"), usage.get("completion_tokens"))

    def _ask(
        self, probe: Probe, client: httpx.Client, call: Call, *, path: str, body: Any, model: str
    ) -> dict[str, Any] | None:
        return ask(
            probe,
            client,
            call,
            f"{self.base_url.rstrip('/')}/{path}",
            headers={"Authorization": f"Bearer {self.api_key.get_secret_value()}"},
            body=body,
            refusal=_refusal,
            rules=RULES,
            names={"model": model},
            shape=_is_embedding if call == "embedding" else _has_choices,
            api="Mistral API",
        )


def _has_choices(document: dict[str, Any]) -> bool:
    return isinstance(document.get("choices"), list) and bool(document["choices"])


def _is_embedding(document: dict[str, Any]) -> bool:
    data = document.get("data")
    return bool(isinstance(data, list) and data and isinstance(data[0], dict) and is_vector(data[0].get("embedding")))


def _refusal(answer: Answer) -> Refusal:
    document = json_of(answer)
    message = document.get("message") or document.get("detail")
    return Refusal(
        answer.status,
        str(document.get("type") or ""),
        message_of(message, answer),
        answer.headers.get("retry-after"),
    )
