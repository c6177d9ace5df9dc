"""bedrock: Amazon Bedrock runs the models: a 1-token Converse call, a vision Converse, an InvokeModel embedding.

botocore signs every request (SigV4) with static keys or the pod's credential chain (IRSA, environment,
instance role), which is resolved first so that its own failure is named as such. Each call gets a client whose
timeouts are the time left on the probe and that never retries. Converse takes the same body for every chat
model; InvokeModel embeddings take the body of the model's family (Titan or Cohere). Refusals are classified
by Bedrock's error code: AccessDeniedException is a model not granted in the region (or an IAM denial).
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import time
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, SecretStr, StringConstraints, field_validator, model_validator

from app.checks import aws, facts
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
    chat_facts,
    embedding_facts,
    is_vector,
    judge,
)
from app.checks.base import CheckFailed, ConfiguredUrl, HeaderSecret, Probe, Stage, Target, elapsed_ms, find_cause
from app.checks.net import connect_failure, default_port, resolve
from app.checks.tls import tls_failure
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from botocore.session import Session

ModelId = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9._:/-]+$")]
EmbeddingFamily = Literal["titan", "cohere"]
_FAMILIES: dict[EmbeddingFamily, re.Pattern[str]] = {
    "titan": re.compile(r"(^|[./])amazon\.titan-embed-"),
    "cohere": re.compile(r"(^|[./])cohere\.embed-"),
}

_CREDENTIALS = Rule(
    Stage.AUTH,
    "AWS does not accept the credentials: check access_key_id and secret_access_key (or the role the pod "
    "assumes), that the session token is current, and that the node's clock is right",
)
RULES: Rules = {
    "UnrecognizedClientException": _CREDENTIALS,
    "InvalidSignatureException": _CREDENTIALS,
    "IncompleteSignature": _CREDENTIALS,
    "ExpiredTokenException": _CREDENTIALS,
    "AccessDeniedException": Rule(
        Stage.PERMISSION,
        "request access to '{model}' in the Bedrock console's Model access page for region {region}, and allow "
        "bedrock:InvokeModel on it to the identity the pod uses",
    ),
    "ResourceNotFoundException": Rule(
        Stage.OPERATION, "'{model}' is not offered in region {region}: check the model id and the region"
    ),
    "ValidationException": Rule(
        Stage.OPERATION,
        "Bedrock rejects the request for '{model}' in {region}: check the model id (some models need an inference "
        "profile id such as us.<model id>) and that it is a {call} model",
    ),
    "ThrottlingException": RATE_LIMITED,
    "ServiceQuotaExceededException": QUOTA_SPENT,
    "ModelNotReadyException": OVERLOADED,
    "ServiceUnavailableException": OVERLOADED,
    "ModelTimeoutException": SERVICE_FAILED,
    "ModelErrorException": SERVICE_FAILED,
    "InternalServerException": SERVICE_FAILED,
}


class BedrockTarget(Target):
    default_timeout: ClassVar[float] = 30.0
    warm_imports: ClassVar[tuple[str, ...]] = (
        "botocore.session",
        "botocore.config",
        "app.checks.aws:parse_bedrock_models",
    )

    kind: Literal["bedrock"]
    region: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
    model: ModelId  # a chat model or inference profile id, e.g. us.anthropic.claude-3-5-haiku-20241022-v1:0
    embedding_model: ModelId | None = None  # e.g. amazon.titan-embed-text-v2:0 or cohere.embed-english-v3
    embedding_dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None  # what the platform's index expects
    vision: bool = False
    endpoint_url: ConfiguredUrl | None = None  # a VPC endpoint; default: bedrock-runtime.<region>.amazonaws.com
    access_key_id: aws.AccessKeyId | None = None
    secret_access_key: SecretStr | None = None
    session_token: HeaderSecret | None = None  # sent as X-Amz-Security-Token
    ca_file: FilePath | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @field_validator("embedding_model")
    @classmethod
    def _known_family(cls, model: str | None) -> str | None:
        if model is not None and _family(model) is None:
            raise ValueError(
                "must be a Titan (amazon.titan-embed-...) or Cohere (cohere.embed-...) embedding model: "
                "their request bodies are the ones this check knows"
            )
        return model

    @model_validator(mode="after")
    def _consistent(self) -> BedrockTarget:
        aws.check_keys(self.access_key_id, self.secret_access_key, self.session_token)
        return self

    def check(self, probe: Probe) -> None:
        session = aws.session(probe, self.access_key_id, self.secret_access_key, self.session_token)
        with self._client(session, probe.remaining()) as client:
            endpoint = urlsplit(str(client.meta.endpoint_url))
        host, port = endpoint.hostname or "", default_port(endpoint.scheme, endpoint.port)
        probe.facts[facts.ENDPOINT] = f"{endpoint.scheme}://{endpoint.netloc}"
        try:
            resolve(probe, host, port)
        except CheckFailed as failure:
            if self.endpoint_url is None:  # AWS names its endpoints after the region: a wrong region has none
                failure.remediation = (
                    f"{host} is Bedrock's endpoint for region {self.region}: check that the region is right and offers "
                    f"Bedrock, and that the pod's DNS resolves AWS names (or set endpoint_url to a VPC endpoint)"
                )
            raise
        self._credentials(probe, session)
        self._converse(probe, session, "chat", [{"text": PROMPT}])
        if self.vision:
            image = {"image": {"format": "png", "source": {"bytes": TEST_IMAGE}}}
            self._converse(probe, session, "vision", [image, {"text": VISION_PROMPT}])
        if self.embedding_model is not None:
            self._embed(probe, session, self.embedding_model)

    def _client(self, session: Session, timeout: float) -> contextlib.AbstractContextManager[Any]:
        verify: bool | str = str(self.ca_file) if self.ca_file else True
        return aws.client(
            session,
            "bedrock-runtime",
            region=self.region,
            endpoint_url=self.endpoint_url,
            timeout=timeout,
            verify=verify,
        )

    def _credentials(self, probe: Probe, session: Session) -> None:
        """The credentials to sign with: the static keys, or what the pod's chain finds (STS for IRSA)."""
        with probe.step("credentials", Stage.AUTH):
            aws.credentials(probe, session, explicit=self.access_key_id is not None)
            probe.note(str(probe.facts[facts.CREDENTIALS]))

    def _converse(self, probe: Probe, session: Session, call: Call, content: list[dict[str, Any]]) -> None:
        with probe.step(call, Stage.OPERATION):
            response = self._send(
                probe,
                session,
                call,
                self.model,
                lambda client: client.converse(
                    modelId=self.model,
                    messages=[{"role": "user", "content": content}],
                    inferenceConfig={"maxTokens": 1},
                ),
            )
            if response is not None:
                usage = response.get("usage") or {}
                chat_facts(probe, call, self.model, usage.get("inputTokens"), usage.get("outputTokens"))

    def _embed(self, probe: Probe, session: Session, model: str) -> None:
        family = _family(model)
        body = {"inputText": PROMPT} if family == "titan" else {"texts": [PROMPT], "input_type": "search_document"}
        with probe.step("embedding", Stage.OPERATION):
            response = self._send(
                probe,
                session,
                "embedding",
                model,
                lambda client: client.invoke_model(
                    modelId=model, body=json.dumps(body), contentType="application/json", accept="application/json"
                ),
            )
            if response is None:
                return
            try:
                document = json.loads(response["body"].read())
            except ValueError:
                document = {}
            vector, tokens = _embedding_of(family, document)
            if vector is None:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"embedding: the answer of '{model}' holds no embedding: {clean_remote_text(str(document), 200)}",
                    "check that embedding_model is an embedding model",
                )
        embedding_facts(probe, vector, tokens, self.embedding_dimensions)

    def _send(self, probe: Probe, session: Session, call: Call, model: str, request: Any) -> dict[str, Any] | None:
        """One request on a fresh client with the time left; None when the refusal was only a warning."""
        from botocore import exceptions

        started = time.perf_counter()
        host = urlsplit(str(probe.facts.get(facts.ENDPOINT, ""))).hostname or ""
        try:
            with self._client(session, probe.remaining()) as client:
                response: dict[str, Any] = request(client)
        except exceptions.ClientError as error:
            probe.facts[facts.CALL_LATENCY_MS.format(call=call)] = elapsed_ms(started)
            meta = error.response.get("ResponseMetadata", {})
            details = error.response.get("Error", {})
            refusal = Refusal(
                int(meta.get("HTTPStatusCode") or 0),
                str(details.get("Code") or ""),
                clean_remote_text(str(details.get("Message") or "(no message)"), 300),
                (meta.get("HTTPHeaders") or {}).get("retry-after"),
            )
            judge(probe, call, refusal, RULES, model=model, region=self.region)
            return None
        except exceptions.SSLError as error:
            raise tls_failure(find_cause(error, ssl.SSLError) or OSError(str(error)), host) from None
        except exceptions.ConnectTimeoutError:
            raise connect_failure(host, _port(probe), TimeoutError()) from None
        except exceptions.EndpointConnectionError as error:
            raise connect_failure(host, _port(probe), find_cause(error, OSError)) from None
        except exceptions.ReadTimeoutError:
            raise CheckFailed(
                Stage.OPERATION,
                f"{call}: {host} accepted the request but did not answer before the timeout",
                "Bedrock (or a proxy or VPC endpoint in front of it) is slow or stuck: check the endpoint and retry",
            ) from None
        except exceptions.HTTPClientError as error:
            raise CheckFailed(
                Stage.OPERATION,
                f"{call}: {host} broke off the exchange: {clean_remote_text(str(error))}",
                "a proxy or firewall in between may be cutting the connection: check the pod's egress path",
            ) from None
        latency = elapsed_ms(started)
        probe.facts[facts.CALL_LATENCY_MS.format(call=call)] = latency
        probe.note(f"answered in {latency:.0f} ms")
        return response


def _family(model: str) -> EmbeddingFamily | None:
    return next((family for family, pattern in _FAMILIES.items() if pattern.search(model)), None)


def _embedding_of(family: EmbeddingFamily | None, document: Any) -> tuple[list[Any] | None, Any]:
    """The first vector and the input tokens, where each family puts them."""
    if not isinstance(document, dict):
        return None, None
    if family == "titan":
        vector = document.get("embedding")
        return (vector if is_vector(vector) else None), document.get("inputTextTokenCount")
    vectors = document.get("embeddings")
    if isinstance(vectors, dict):  # Cohere with embedding_types answers {"float": [[...]]}
        vectors = vectors.get("float")
    first = vectors[0] if isinstance(vectors, list) and vectors else None
    return (first if is_vector(first) else None), None


def _port(probe: Probe) -> int:
    endpoint = urlsplit(str(probe.facts.get(facts.ENDPOINT, "")))
    return default_port(endpoint.scheme, endpoint.port)
