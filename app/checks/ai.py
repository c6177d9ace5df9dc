"""What the AI kinds share: one call on the probe's clock, error tables, the tiny test image, usage facts.

Every call is one HTTP request (httpx through `exchange`, or botocore for Bedrock) whose timeout is the time left
on the probe, never retried. A provider's refusal is classified by its own error code first, then by the HTTP
status: a `Rule` says at which stage it fails, or that it is only a warning (a rate limit or an overloaded model
clears by itself; the key, the model and the network all worked).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from app.checks.base import CheckFailed, Probe, Scalar, Stage
from app.checks.http import Answer, exchange
from app.checks.net import resolve
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    import httpx

PROMPT = "Reply with one word: ready"
VISION_PROMPT = "What colour is this image? Reply with one word."
Call = Literal["chat", "embedding", "vision"]


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG, made here so that no file ships with the image and no library is needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))  # filter byte 0 before each row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


TEST_IMAGE = _png(32, 32, (220, 20, 20))  # red: big enough for every provider's minimum, ~100 bytes on the wire


@dataclass(frozen=True)
class Rule:
    """What a refusal means: the stage it fails at (None: a warning, the endpoint works) and what to do."""

    stage: Stage | None
    remediation: str


@dataclass(frozen=True)
class Refusal:
    """A provider's answer other than success, reduced to what classifies it."""

    status: int
    code: str  # the provider's own error code, type or status word; "" when it sent none
    message: str
    retry_after: str | None = None


Rules = Mapping[str | int, Rule]

RATE_LIMITED = Rule(
    None,
    "the endpoint works but is at its limit now: raise the quota (requests or tokens per minute) "
    "or lower the load before the platform shares it",
)
OVERLOADED = Rule(None, "the endpoint works but the model is overloaded now: retry later, or use another region")
QUOTA_SPENT = Rule(Stage.OPERATION, "the account's quota or credit is used up: check billing and usage limits")
SERVICE_FAILED = Rule(
    Stage.OPERATION,
    "the AI service failed: check its status page; 502, 503 or 504 from a gateway in front of it mean the "
    "service behind the gateway is down or overloaded",
)
BY_STATUS: Rules = {
    400: Rule(Stage.OPERATION, "the service rejects the request: check that '{model}' is a {call} model"),
    401: Rule(Stage.AUTH, "the key is not accepted: use a current key of this account"),
    403: Rule(Stage.PERMISSION, "the key is valid but may not use '{model}': check its permissions and network rules"),
    404: Rule(Stage.OPERATION, "'{model}' is not found: check the model name and the base URL"),
    429: RATE_LIMITED,
    500: SERVICE_FAILED,
}


def judge(probe: Probe, call: str, refusal: Refusal, rules: Rules, **names: str) -> None:
    """Raise the failure the provider's refusal means, or record it as a warning and return."""
    status = refusal.status
    rule = (
        (rules.get(refusal.code) if refusal.code else None)
        or rules.get(status)
        or BY_STATUS.get(status)
        or (SERVICE_FAILED if status >= 500 else BY_STATUS[400])
    )
    code = f" {refusal.code}" if refusal.code and refusal.code != str(status) else ""
    cause = f"{call}: HTTP {status}{code}: {refusal.message or '(no message)'}"
    remediation = rule.remediation.format(call=call, **names)
    if rule.stage is not None:
        raise CheckFailed(rule.stage, cause, remediation)
    retry = f", retry after {refusal.retry_after} s" if refusal.retry_after else ""
    probe.warn(Stage.OPERATION, cause + retry, remediation)
    probe.note(f"HTTP {status}{code}: a warning")


def resolve_url(probe: Probe, url: str) -> None:
    parts = urlsplit(url)
    resolve(probe, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))


def ask(
    probe: Probe,
    client: httpx.Client,
    call: Call,
    url: str,
    *,
    headers: dict[str, str],
    body: Any,
    refusal: Callable[[Answer], Refusal],
    rules: Rules,
    names: dict[str, str],
    shape: Callable[[dict[str, Any]], bool],
    api: str,
) -> dict[str, Any] | None:
    """POST one request and judge it in a step named after the call; None when it ended in a warning."""
    answer = exchange(probe, client, "POST", url, headers=headers, json=body)
    with probe.step(call, Stage.OPERATION):
        probe.facts[f"{call}_latency_ms"] = answer.latency_ms
        if not 200 <= answer.status < 300:
            judge(probe, call, refusal(answer), rules, **names)
            return None
        document = json_of(answer)
        if not shape(document):
            raise CheckFailed(
                Stage.OPERATION,
                f"{call}: not an answer of the {api}: {answer.snippet or '(empty)'}",
                f"the URL does not lead to the {api}: check base_url",
            )
        probe.note(f"HTTP {answer.status} in {answer.latency_ms:.0f} ms")
        return document


def json_of(answer: Answer) -> dict[str, Any]:
    try:
        document = json.loads(answer.body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def message_of(value: Any, answer: Answer) -> str:
    """The provider's message, cleaned for display; the start of the body when it sent none."""
    return clean_remote_text(str(value), 300) if value else (answer.snippet or "(no body)")


def count(value: Any) -> Scalar:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def chat_facts(probe: Probe, call: Call, model: Any, prompt_tokens: Any, completion_tokens: Any) -> None:
    """The model as the provider reports it, and the tokens the call cost."""
    if model:
        probe.facts[f"{call}_model"] = clean_remote_text(str(model), 200)
    probe.facts[f"{call}_prompt_tokens"] = count(prompt_tokens)
    probe.facts[f"{call}_completion_tokens"] = count(completion_tokens)


def is_vector(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    )


def embedding_facts(probe: Probe, vector: list[Any], tokens: Any, expected: int | None) -> None:
    """Dimensions and tokens; a vector of another size than the platform's index expects fails."""
    probe.facts["embedding_dimensions"] = len(vector)
    probe.facts["embedding_tokens"] = count(tokens)
    if expected is None:
        return
    with probe.step("embedding dimensions", Stage.OPERATION):
        if len(vector) != expected:
            raise CheckFailed(
                Stage.OPERATION,
                f"embedding: the model returns {len(vector)} dimensions, expected {expected}",
                f"the platform's vector index holds {expected}-dimensional vectors: use an embedding model that "
                f"returns {expected}, or set embedding_dimensions to {len(vector)} if the index is built for that",
            )
        probe.note(f"{expected}, as expected")
