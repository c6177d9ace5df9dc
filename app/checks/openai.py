"""openai: an OpenAI-compatible or Azure OpenAI endpoint answers a 1-token chat completion (and an embedding).

Each call proves the key, the model (or deployment) and the quota at once; latency and token usage become facts.
A rate limit (HTTP 429) is a warning: the key, the deployment and the network all worked, and a rate limit
clears by itself. A spent quota (code `insufficient_quota`) fails: nothing will work until someone pays.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, StringConstraints, model_validator

from app.checks import facts
from app.checks.ai import PROMPT, TEST_IMAGE, VISION_PROMPT, chat_facts, embedding_facts, json_of, message_of
from app.checks.base import CheckFailed, HeaderSecret, Probe, Stage, Target
from app.checks.http import Answer, HttpUrl, exchange, open_client
from app.checks.net import default_port, resolve
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    import httpx

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\s?#]+$")]
DeploymentName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
ApiVersion = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")]
Api = Literal["chat", "vision", "embedding"]  # the APIs a target is checked on
_CALLS = {"chat": ("chat completion", "chat/completions"), "vision": ("vision", "chat/completions")}
MODELS_RESERVE = 1.0  # seconds kept back from the /models lookup to report the failure it decorates


class OpenaiTarget(Target):
    default_timeout: ClassVar[float] = 30.0
    warm_imports: ClassVar[tuple[str, ...]] = ("httpx",)

    kind: Literal["openai"]
    provider: Literal["openai", "azure"] = "openai"
    base_url: HttpUrl  # openai: up to /v1 (https://api.openai.com/v1); azure: https://NAME.openai.azure.com
    api_key: HeaderSecret
    model: ModelName | None = None  # openai
    embedding_model: ModelName | None = None  # openai
    deployment: DeploymentName | None = None  # azure
    embedding_deployment: DeploymentName | None = None  # azure
    api_version: ApiVersion | None = None  # azure
    vision: bool = False  # also send a tiny image to the chat model (deployment), as vision features do
    embedding_dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None  # what the platform's index expects
    ca_file: FilePath | None = None

    @model_validator(mode="after")
    def _fields_of_provider(self) -> OpenaiTarget:
        own = {"openai": ("model", "embedding_model"), "azure": ("deployment", "embedding_deployment", "api_version")}
        needed = {"openai": ("model",), "azure": ("deployment", "api_version")}[self.provider]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{' and '.join(missing)} required when provider is {self.provider}")
        foreign = [n for p, names in own.items() if p != self.provider for n in names if getattr(self, n) is not None]
        if foreign:
            raise ValueError(f"{', '.join(foreign)} not used when provider is {self.provider}")
        return self

    def check(self, probe: Probe) -> None:
        url = urlsplit(self.base_url)
        resolve(probe, url.hostname or "", default_port(url.scheme, url.port))
        with open_client(probe, self.ca_file) as client:
            chat = self._call(probe, client, "chat", self.model or self.deployment or "")
            if chat is not None:
                usage = chat.get("usage") or {}
                chat_facts(probe, "chat", chat.get("model"), usage.get("prompt_tokens"), usage.get("completion_tokens"))
            if self.vision:
                seen = self._call(probe, client, "vision", self.model or self.deployment or "")
                if seen is not None:
                    usage = seen.get("usage") or {}
                    chat_facts(
                        probe, "vision", seen.get("model"), usage.get("prompt_tokens"), usage.get("completion_tokens")
                    )
            embedding_name = self.embedding_model or self.embedding_deployment
            if embedding_name is not None:
                embedding = self._call(probe, client, "embedding", embedding_name)
                if embedding is not None:
                    tokens = (embedding.get("usage") or {}).get("prompt_tokens")
                    embedding_facts(probe, embedding["data"][0]["embedding"], tokens, self.embedding_dimensions)

    def _call(self, probe: Probe, client: httpx.Client, api: Api, name: str) -> dict[str, Any] | None:
        """One API call, judged in its own step; None when it was rate limited (a warning already noted)."""
        call, endpoint = _CALLS.get(api, ("embedding", "embeddings"))
        key = self.api_key.get_secret_value()
        if self.provider == "azure":
            url = f"{self.base_url.rstrip('/')}/openai/deployments/{name}/{endpoint}?api-version={self.api_version}"
            headers = {"api-key": key}
        else:
            url = f"{self.base_url.rstrip('/')}/{endpoint}"
            headers = {"Authorization": f"Bearer {key}"}
        length_limit = "max_tokens"
        answer = exchange(probe, client, "POST", url, headers=headers, json=_payload(api, name, length_limit))
        if api != "embedding" and answer.status == 400 and _error(answer).get("param") == "max_tokens":
            # newer OpenAI models reject max_tokens by name and want max_completion_tokens instead
            length_limit = "max_completion_tokens"
            answer = exchange(probe, client, "POST", url, headers=headers, json=_payload(api, name, length_limit))
        with probe.step(call, Stage.OPERATION):
            probe.facts[facts.CALL_LATENCY_MS.format(call=api)] = answer.latency_ms
            if answer.status == 429 and _error(answer).get("code") != "insufficient_quota":
                retry = answer.headers.get("retry-after")
                probe.warn(
                    Stage.OPERATION,
                    f"{call}: rate limited (HTTP 429){f', retry after {retry} s' if retry else ''}: {_message(answer)}",
                    "the endpoint works but is at its limit now: raise the deployment's tokens-per-minute quota "
                    "or lower the load before the platform shares it",
                )
                probe.note("rate limited (HTTP 429)")
                return None
            if answer.status != 200:
                raise self._failure(api, call, name, answer, probe=probe, client=client)
            document = json_of(answer)
            if not (_has_embedding(document) if api == "embedding" else _has_choices(document)):
                raise CheckFailed(
                    Stage.OPERATION,
                    f"{call}: the answer is not an OpenAI {call} response: {answer.snippet or '(empty)'}",
                    "base_url does not lead to an OpenAI-compatible API: check it (OpenAI-style URLs end in /v1)",
                )
            if length_limit != "max_tokens":
                probe.facts["length_limit_parameter"] = length_limit
            probe.note(f"HTTP 200 in {answer.latency_ms:.0f} ms")
            return document

    def _failure(
        self, api: Api, call: str, name: str, answer: Answer, *, probe: Probe, client: httpx.Client
    ) -> CheckFailed:
        status = answer.status
        cause = f"{call}: HTTP {status}: {_message(answer)}"
        where = "the Azure OpenAI resource" if self.provider == "azure" else "this base_url"
        if status == 401:
            return CheckFailed(
                Stage.AUTH,
                cause,
                f"the api_key is not accepted by {where}: use KEY 1 or KEY 2 from the resource's Keys and Endpoint page"
                if self.provider == "azure"
                else f"the api_key is not accepted by {where}: use a current key issued for this server or project",
            )
        if status == 403:
            return CheckFailed(
                Stage.PERMISSION,
                cause,
                "the key is valid but may not use this: check the resource's network rules (firewall, private "
                "endpoint) and the key's or project's permissions for this model",
            )
        if status == 404:
            if self.provider == "azure":
                return CheckFailed(
                    Stage.OPERATION,
                    f"{call}: deployment '{name}' not found (HTTP 404): {_message(answer)}",
                    f"create a deployment named '{name}' in the Azure OpenAI resource (or name an existing one); "
                    f"also check that api_version {self.api_version} exists",
                )
            offered = _offered_models(probe, client, self.base_url, self.api_key.get_secret_value())
            return CheckFailed(
                Stage.OPERATION,
                f"{call}: model '{name}' not found (HTTP 404): {_message(answer)}",
                f"use a model this server offers ({offered})" if offered else "check the model name and base_url",
            )
        if status == 429:  # only insufficient_quota gets here
            return CheckFailed(
                Stage.OPERATION, cause, "the account's quota or credit is used up: check billing and usage limits"
            )
        if status == 400 and _error(answer).get("code") == "content_filter":
            return CheckFailed(
                Stage.OPERATION,
                cause,
                "the resource's content filter blocks even a one-word prompt: review the content filter "
                "configuration applied to this deployment",
            )
        if status == 400:
            return CheckFailed(
                Stage.OPERATION,
                cause,
                f"the server rejects the request: check that '{name}' is a {api} model"
                + (f" and that api_version {self.api_version} supports it" if self.provider == "azure" else ""),
            )
        if status >= 500:
            return CheckFailed(
                Stage.OPERATION,
                cause,
                "the AI service failed: check its status page; 502, 503 or 504 from a gateway in front of it "
                "mean the service behind the gateway is down or overloaded",
            )
        return CheckFailed(Stage.OPERATION, cause, f"unexpected answer from {where}: check base_url and provider")


def _payload(api: Api, name: str, length_limit: str) -> dict[str, Any]:
    if api == "embedding":
        return {"model": name, "input": PROMPT}
    content: Any = PROMPT
    if api == "vision":
        image = f"data:image/png;base64,{base64.b64encode(TEST_IMAGE).decode()}"
        content = [{"type": "text", "text": VISION_PROMPT}, {"type": "image_url", "image_url": {"url": image}}]
    return {"model": name, "messages": [{"role": "user", "content": content}], length_limit: 1}


def _error(answer: Answer) -> dict[str, Any]:
    """The `error` object both OpenAI and Azure send with a failure ({code, message, type, param})."""
    error = json_of(answer).get("error")
    return error if isinstance(error, dict) else {}


def _message(answer: Answer) -> str:
    return message_of(_error(answer).get("message"), answer)


def _has_choices(document: dict[str, Any]) -> bool:
    choices = document.get("choices")
    return isinstance(choices, list) and bool(choices)


def _has_embedding(document: dict[str, Any]) -> bool:
    data = document.get("data")
    return bool(
        isinstance(data, list) and data and isinstance(data[0], dict) and isinstance(data[0].get("embedding"), list)
    )


def _offered_models(probe: Probe, client: httpx.Client, base_url: str, key: str) -> str:
    """Up to ten model ids from GET /models, to name the right one in a remediation; '' when unavailable.

    Only a nicety: it gets the time left minus a reserve, so a slow /models never turns the "model not
    found" already in hand into a timeout, and it is skipped when less than that reserve is left.
    """
    import httpx

    budget = probe.remaining(floor=0) - MODELS_RESERVE
    if budget <= 0:
        return ""
    try:
        response = client.get(
            f"{base_url.rstrip('/')}/models", headers={"Authorization": f"Bearer {key}"}, timeout=budget
        )
        ids = [str(m["id"]) for m in response.json()["data"] if isinstance(m, dict) and "id" in m]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return ""
    return clean_remote_text(", ".join(ids[:10]) + (", …" if len(ids) > 10 else ""))
