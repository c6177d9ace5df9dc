"""What the AI kinds share: one call on the probe's clock, error tables, the tiny test image, usage facts.

Every call is one HTTP request (httpx through `exchange`, or botocore for Bedrock) whose timeout is the time left
on the probe, never retried. A provider's refusal is classified by the quota it names (Google's structured
google.rpc details), then by its own error code, then by the HTTP status: a `Rule` says at which stage it fails, or
that it is only a warning (a rate limit or an overloaded model clears by itself; the key, the model and the network
all worked).
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, StringConstraints

from app.checks import facts, proxy_env
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


# What a named quota means, as keys of a Rules table (Quota.term)
NO_QUOTA = "quota of 0"  # never granted: waiting does not help
QUOTA_USED_UP = "quota used up"  # a day's (or an hour's, a month's) allowance: not back within a run
QUOTA_PER_MINUTE = "quota per minute"  # refills within the minute: the endpoint works
_SHORT_WINDOWS = frozenset({"second", "minute"})
_WINDOWS = _SHORT_WINDOWS | {"hour", "day", "week", "month", "year"}
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")  # CamelCase and snake_case alike


@dataclass(frozen=True)
class Quota:
    """A quota a google.rpc error names as exceeded, its texts already cleaned for display."""

    name: str  # the limit's id: GenerateRequestsPerDayPerProjectPerModel-FreeTier
    metric: str  # generativelanguage.googleapis.com/generate_content_free_tier_requests
    limit: int | None  # the quota's value; 0: the project was never granted any
    window: str | None  # the time the quota counts over, from its id ("day" in ...PerDay...); None: not named

    @property
    def term(self) -> str | None:
        """The rule key; None when nothing structured says more than a rate limit would."""
        if self.limit == 0:
            return NO_QUOTA
        if self.window is None:
            return None
        return QUOTA_PER_MINUTE if self.window in _SHORT_WINDOWS else QUOTA_USED_UP

    @property
    def label(self) -> str:
        return f"{self.name} ({self.metric})" if self.name and self.metric else self.name or self.metric

    def __str__(self) -> str:
        return f"quota {self.label}" + ("" if self.limit is None else f", limit {self.limit}")

    def names(self) -> dict[str, str]:
        """What a quota rule's remediation may name."""
        return {"quota": self.label, "window": self.window or ""}


@dataclass(frozen=True)
class Refusal:
    """A provider's answer other than success, reduced to what classifies it."""

    status: int
    code: str  # the provider's own error code, type or status word; "" when it sent none
    message: str
    retry_after: str | None = None
    quota: Quota | None = None  # the quota the provider names as exceeded, when it names one in structured form


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
    status, quota = refusal.status, refusal.quota
    term = quota.term if quota else None
    rule = (
        (rules.get(term) if term else None)
        or (rules.get(refusal.code) if refusal.code else None)
        or rules.get(status)
        or BY_STATUS.get(status)
        or (SERVICE_FAILED if status >= 500 else BY_STATUS[400])
    )
    code = f" {shown(refusal.code, 80)}" if refusal.code and refusal.code != str(status) else ""
    cause = f"{call}: HTTP {status}{code}: {refusal.message or '(no message)'}" + (f"; {quota}" if quota else "")
    remediation = rule.remediation.format(call=call, **names, **(quota.names() if quota else {}))
    if rule.stage is not None:
        raise CheckFailed(rule.stage, cause, remediation)
    retry = f", retry after {shown(refusal.retry_after, 40)} s" if refusal.retry_after else ""
    probe.warn(Stage.OPERATION, cause + retry, remediation)
    probe.note(f"HTTP {status}{code}: a warning")


MAX_SHOWN = 4000  # a remote field is cut to this before scrubbing: longer than any secret, and scrubbed fast


def shown(text: str, limit: int) -> str:
    """A short remote field (a code, a quota's id) cleaned for display, however long the server made it."""
    return clean_remote_text(text[:MAX_SHOWN], limit)


def resolve_url(probe: Probe, url: str) -> None:
    """Resolve the endpoint's name, unless a proxy goes to it: then the proxy, not the pod, resolves it."""
    if proxy_env.ProxySettings.from_env().for_url(url):
        return
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


# --- Google's errors: google.rpc.Status {"code", "message", "status", "details": [Any ...]} ----------------------

MAX_DETAILS = 16  # Google sends three or four details, and a few violations; a longer list is read no further
RPC_TYPE = "type.googleapis.com/google.rpc."
GOOGLE_QUOTAS: Rules = {
    NO_QUOTA: Rule(
        Stage.PERMISSION,
        "the project's quota {quota} is 0 for '{model}': its tier does not include the model (the free tier "
        "leaves out some models and regions; a project without billing has no paid quota): enable billing on the "
        "project (Google AI Studio, Billing; for Vertex AI the Cloud console), or use a model its tier includes",
    ),
    QUOTA_USED_UP: Rule(
        Stage.OPERATION,
        "quota {quota} is used up for this {window} and the platform cannot call '{model}' until it refills: "
        "raise the quota (Google AI Studio, Rate limits; or IAM & Admin, Quotas in the Cloud console), enable "
        "billing for a paid tier, or use another model, which has a quota of its own",
    ),
    QUOTA_PER_MINUTE: Rule(
        None,
        "the endpoint works but quota {quota} is at its limit this {window}: lower the load, or raise the "
        "quota before the platform shares it",
    ),
}


def google_details(error: dict[str, Any]) -> list[dict[str, Any]]:
    """The error's details that are objects, at most MAX_DETAILS of them; nothing when `details` is no list."""
    details = error.get("details")
    return [d for d in details[:MAX_DETAILS] if isinstance(d, dict)] if isinstance(details, list) else []


def google_detail(details: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The first detail of a google.rpc type (ErrorInfo, RetryInfo, QuotaFailure), or an empty one."""
    return next((d for d in details if d.get("@type") == RPC_TYPE + kind), {})


_RPC_WORD = re.compile(r"[A-Z0-9_]{1,63}")  # an ErrorInfo reason or a google.rpc.Code name, as the protos define them


def google_word(value: Any) -> str:
    """A reason or status word as Google's protos define them; "" for anything else a server sends there."""
    return value if isinstance(value, str) and _RPC_WORD.fullmatch(value) else ""


def google_reason(details: list[dict[str, Any]]) -> str:
    return google_word(google_detail(details, "ErrorInfo").get("reason"))


_DURATION = re.compile(r"(\d{1,10}(?:\.\d{1,9})?)s")  # google.protobuf.Duration in JSON: "23s", "20.044661790s"


def google_retry_delay(details: list[dict[str, Any]]) -> str | None:
    """RetryInfo's retryDelay in whole seconds (rounded up), None when absent or not a Duration."""
    delay = google_detail(details, "RetryInfo").get("retryDelay")
    match = _DURATION.fullmatch(delay) if isinstance(delay, str) else None
    return str(math.ceil(float(match[1]))) if match else None


def google_quota(details: list[dict[str, Any]]) -> Quota | None:
    """The exceeded quota the error names: a QuotaFailure's violations (quotaId, quotaMetric, quotaValue) or,
    in Google Cloud's older form, an ErrorInfo RATE_LIMIT_EXCEEDED's metadata (quota_limit, quota_metric,
    quota_limit_value). Of several, the one that says most: a quota of 0, a long window, a short one, then any."""
    violations = google_detail(details, "QuotaFailure").get("violations")
    named = [
        (v.get("quotaId"), v.get("quotaMetric"), v.get("quotaValue"))
        for v in (violations[:MAX_DETAILS] if isinstance(violations, list) else [])
        if isinstance(v, dict)
    ]
    info = google_detail(details, "ErrorInfo")
    metadata = info.get("metadata")
    if info.get("reason") == "RATE_LIMIT_EXCEEDED" and isinstance(metadata, dict):
        named.append((metadata.get("quota_limit"), metadata.get("quota_metric"), metadata.get("quota_limit_value")))
    quotas = [quota for quota in (_quota(*fields) for fields in named) if quota is not None]
    rank = {NO_QUOTA: 3, QUOTA_USED_UP: 2, QUOTA_PER_MINUTE: 1}
    return max(quotas, key=lambda quota: rank.get(quota.term or "", 0), default=None)


def _quota(name: Any, metric: Any, value: Any) -> Quota | None:
    name = name if isinstance(name, str) else ""
    metric = metric if isinstance(metric, str) else ""
    if not (name or metric):
        return None
    words = [word.lower() for word in _WORDS.findall(name[:200])]
    window = next((unit for per, unit in pairwise(words) if per == "per" and unit in _WINDOWS), None)
    return Quota(shown(name, 120), shown(metric, 120), _quota_value(value), window)


def _quota_value(value: Any) -> int | None:
    """An int64 in proto3 JSON is a string of digits ("250000"); a number is taken too. Anything else: unknown."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19 else None


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
