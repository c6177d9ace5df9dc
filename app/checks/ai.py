"""What the AI kinds share: one call on the probe's clock, error tables, the tiny test image, usage facts.

Every call is one HTTP request (httpx through `exchange`, or botocore for Bedrock) whose timeout is the time left
on the probe, never retried. A provider's refusal is classified by its own error code first, then by the HTTP
status: a `Rule` says at which stage it fails, or that it is only a warning (a rate limit or an overloaded model
clears by itself; the key, the model and the network all worked).
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, StringConstraints

from app.checks import facts
from app.checks.base import CheckFailed, Probe, Scalar, Stage
from app.checks.http import Answer, exchange
from app.checks.net import default_port, resolve
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
    resolve(probe, parts.hostname or "", default_port(parts.scheme, parts.port))


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
        probe.facts[facts.CALL_LATENCY_MS.format(call=call)] = answer.latency_ms
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
        probe.facts[facts.CALL_MODEL.format(call=call)] = clean_remote_text(str(model), 200)
    probe.facts[facts.CALL_PROMPT_TOKENS.format(call=call)] = count(prompt_tokens)
    probe.facts[facts.CALL_COMPLETION_TOKENS.format(call=call)] = count(completion_tokens)


def is_vector(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    )


def embedding_facts(probe: Probe, vector: list[Any], tokens: Any, expected: int | None) -> None:
    """Dimensions and tokens; a vector of another size than the platform's index expects fails."""
    probe.facts[facts.EMBEDDING_DIMENSIONS] = len(vector)
    probe.facts[facts.EMBEDDING_TOKENS] = count(tokens)
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


# --- Google Cloud: a service account's JSON key, traded for an access token (Vertex AI) -------------------------

ProjectId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
Location = Annotated[str, StringConstraints(pattern=r"^(global|[a-z]+-[a-z]+\d+)$")]
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_KEY_AS_ISSUED = "give the JSON key file exactly as Google issued it (IAM, Service accounts, Keys, Add key)"
_KEY_REFUSED = (
    "Google does not accept the service account key: it may be deleted or disabled (create a new key for "
    "{email}), or the node's clock is off (the signed token holds the time)"
)
TOKEN_RULES: Rules = {
    "invalid_grant": Rule(Stage.AUTH, _KEY_REFUSED),
    "invalid_client": Rule(Stage.AUTH, _KEY_REFUSED),
    "unauthorized_client": Rule(Stage.AUTH, _KEY_REFUSED),
}


def vertex_endpoint(location: str) -> str:
    return (
        "https://aiplatform.googleapis.com" if location == "global" else f"https://{location}-aiplatform.googleapis.com"
    )


def _parsed_key(secret: SecretStr | None) -> dict[str, Any] | None:
    try:
        key = json.loads(secret.get_secret_value() if secret else "")
    except ValueError:
        return None
    return key if isinstance(key, dict) and key.get("type") == "service_account" else None


def service_account(probe: Probe, secret: SecretStr, project: str | None) -> dict[str, Any]:
    """The key (from a Secret, so read when checked) with what signing needs, in its own step; never quoted."""
    with probe.step("service account key", Stage.AUTH):
        key = _parsed_key(secret)
        if key is None:
            raise CheckFailed(
                Stage.AUTH,
                "service_account_key is not a service account's JSON key (type: service_account)",
                _KEY_AS_ISSUED,
            )
        if not all(isinstance(key.get(field), str) for field in ("client_email", "private_key")):
            raise CheckFailed(Stage.AUTH, "service_account_key has no client_email or private_key", _KEY_AS_ISSUED)
        if project is None and not isinstance(key.get("project_id"), str):
            raise CheckFailed(Stage.AUTH, "service_account_key names no project", "set project in this target")
        probe.note(str(key["client_email"]))
        return key


def service_account_project(secret: SecretStr | None) -> str:
    return str((_parsed_key(secret) or {}).get("project_id", ""))


def service_account_secrets(secret: SecretStr | None) -> list[str]:
    """The key's private key on its own, which an error could quote apart from the JSON around it."""
    private = (_parsed_key(secret) or {}).get("private_key")
    return [private] if isinstance(private, str) and private else []


def google_access_token(probe: Probe, client: httpx.Client, key: dict[str, Any]) -> str:
    """Sign a JWT with the service account's key and trade it at the key's token_uri for an access token."""
    import jwt

    token_uri = str(key.get("token_uri") or "https://oauth2.googleapis.com/token")
    now = int(time.time())
    claims = {"iss": key["client_email"], "scope": GOOGLE_SCOPE, "aud": token_uri, "iat": now, "exp": now + 3600}
    try:
        assertion = jwt.encode(claims, key["private_key"], "RS256", {"kid": str(key.get("private_key_id", ""))})
    except (ValueError, TypeError, jwt.PyJWTError):
        raise CheckFailed(
            Stage.AUTH,
            f"the private_key of {key['client_email']}'s key cannot sign: it is not a PEM RSA private key",
            _KEY_AS_ISSUED,
        ) from None
    answer = exchange(probe, client, "POST", token_uri, form={"grant_type": JWT_GRANT, "assertion": assertion})
    with probe.step("access token", Stage.AUTH):
        document = json_of(answer)
        if answer.status != 200:
            code, description = document.get("error"), document.get("error_description")
            refusal = Refusal(answer.status, str(code or ""), message_of(description or code, answer))
            judge(probe, "access token", refusal, TOKEN_RULES, email=key["client_email"])
        token = document.get("access_token")
        if not isinstance(token, str) or not token:
            raise CheckFailed(
                Stage.AUTH,
                f"access token: not an answer of Google's token endpoint: {answer.snippet or '(empty)'}",
                "the key's token_uri does not lead to Google's OAuth token endpoint: use the key as issued",
            )
        probe.note(f"for {key['client_email']}")
        return token
