"""Amazon Bedrock's runtime API on 127.0.0.1: SigV4 recomputed with botocore, Bedrock's error codes and bodies.

POST /model/{modelId}/converse and /model/{modelId}/invoke. Every request's Authorization header is parsed and
its signature recomputed from the request as received (botocore's SigV4Auth, the secret of the access key id,
the x-amz-date timestamp): an unknown key id gets 403 UnrecognizedClientException, a wrong secret or scope
403 InvalidSignatureException, as Bedrock answers. Errors carry the code in `x-amzn-ErrorType` and
{"message": ...} in the body. Converse bodies and each embedding family's InvokeModel body are checked.
`outage`: "throttled" (429), "unavailable" (503), "quota" (ServiceQuotaExceededException).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from tests.certs import ServerCert
from tests.checks.http_server import HttpServer, Reply, Request

REGION = "eu-central-1"
KEYS = {"AKIATESTBEDROCK00001": "bedrock/secret/key/0123456789abcdefghij"}
# temporary credentials, as STS hands them to a pod with IRSA: key id -> (secret, session token)
SESSIONS = {"ASIATESTBEDROCK00002": ("bedrock/session/secret/0123456789abcd", "IQoJb3JpZ2luX2VjEJr//////////test")}
CHAT = "anthropic.claude-test-v1:0"
TEXT_ONLY = "meta.llama-test-v1:0"
LOCKED = "anthropic.claude-locked-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
DIMENSIONS = {TITAN: 1024, COHERE: 384}
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<action>converse|invoke)$")
_INVALID_TOKEN = "The security token included in the request is invalid."

Outage = Literal["throttled", "unavailable", "quota"] | None


class BedrockServer(HttpServer):
    def __init__(self, cert: ServerCert | None = None) -> None:
        super().__init__(self._answer, cert)
        self.outage: Outage = None

    def _answer(self, request: Request) -> Reply:  # noqa: PLR0911 - the fake API's routing, one return a route
        refused = self._signature_refusal(request)
        if refused is not None:
            return refused
        path = _PATH.match(request.path)
        if request.method != "POST" or path is None:
            return _error(404, "UnknownOperationException", "")
        model, action = unquote(path["model"]), path["action"]
        if model == LOCKED:
            return _error(
                403, "AccessDeniedException", "You don't have access to the model with the specified model ID."
            )
        if model not in (CHAT, TEXT_ONLY, TITAN, COHERE):
            return _error(400, "ValidationException", "The provided model identifier is invalid.")
        if self.outage == "throttled":
            return _error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        if self.outage == "unavailable":
            return _error(503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
        if self.outage == "quota":
            return _error(
                400, "ServiceQuotaExceededException", "Your request exceeds the service quota for your account."
            )
        body = json.loads(request.body)
        if action == "converse":
            if model not in (CHAT, TEXT_ONLY):
                return _error(
                    400,
                    "ValidationException",
                    "This action doesn't support the model that you provided. Try again with a supported text or "
                    "chat model.",
                )
            return _converse(body, images=model == CHAT)
        return _embed(model, body, request.headers)

    def _signature_refusal(self, request: Request) -> Reply | None:  # noqa: PLR0911 - one return a case
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        parts = _AUTH.match(request.headers.get("authorization", ""))
        if parts is None:
            return _error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        token = request.headers.get("x-amz-security-token")
        if parts["key"] in SESSIONS:
            secret, session_token = SESSIONS[parts["key"]]
            if token != session_token or "x-amz-security-token" not in parts["signed"].split(";"):
                return _error(403, "UnrecognizedClientException", _INVALID_TOKEN)
        elif parts["key"] in KEYS:
            secret = KEYS[parts["key"]]
        else:
            return _error(403, "UnrecognizedClientException", _INVALID_TOKEN)
        if (parts["region"], parts["service"]) != (REGION, "bedrock"):
            return _error(403, "InvalidSignatureException", "Credential should be scoped to a valid region.")
        stamp = request.headers.get("x-amz-date", "")
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - signed_at) > timedelta(minutes=5) or stamp[:8] != parts["date"]:
            return _error(403, "InvalidSignatureException", "Signature expired")
        signed = parts["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return _error(403, "IncompleteSignatureException", "Host and x-amz-date must be signed")
        copy = AWSRequest(
            method=request.method,
            url=f"{self.url}{request.path}",
            headers={name: request.headers[name] for name in signed},
            data=request.body,
        )
        copy.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(parts["key"], secret, token), "bedrock", REGION)
        expected = signer.signature(signer.string_to_sign(copy, signer.canonical_request(copy)), copy)
        if expected != parts["signature"]:
            return _error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.",
            )
        return None


class StsServer(HttpServer):
    """STS answering AssumeRoleWithWebIdentity (what botocore asks for IRSA) with the temporary credentials above."""

    def __init__(self) -> None:
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Reply:
        form = parse_qs(request.body.decode())
        if form.get("Action") != ["AssumeRoleWithWebIdentity"] or not form.get("WebIdentityToken"):
            return Reply(400, b"<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>")
        key_id, (secret, token) = next(iter(SESSIONS.items()))
        body = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:airia:airia-test-pod</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/airia-test-pod/botocore-session</Arn>
      <AssumedRoleId>AROATEST:botocore-session</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>0c1d2e3f</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
        return Reply(200, body.encode(), {"Content-Type": "text/xml"})


def _converse(body: dict[str, Any], images: bool) -> Reply:
    if set(body) != {"messages", "inferenceConfig"} or body["inferenceConfig"] != {"maxTokens": 1}:
        return _error(400, "ValidationException", "this test server answers only 1-token Converse requests")
    (message,) = body["messages"]
    tokens = 0
    for block in message["content"]:
        if "text" in block:
            tokens += len(block["text"].split())
        elif "image" in block:
            if not images:
                return _error(
                    400,
                    "ValidationException",
                    "This model doesn't support the image content block that you provided. Try again with a "
                    "supported content block.",
                )
            image = block["image"]
            if image["format"] != "png" or not base64.b64decode(image["source"]["bytes"]).startswith(b"\x89PNG"):
                return _error(400, "ValidationException", "The provided image is not valid.")
            tokens += 3
    usage = {"inputTokens": tokens, "outputTokens": 1, "totalTokens": tokens + 1}
    reply = {
        "output": {"message": {"role": "assistant", "content": [{"text": "ready"}]}},
        "stopReason": "max_tokens",
        "usage": usage,
        "metrics": {"latencyMs": 7},
    }
    return _json(200, reply)


def _embed(model: str, body: dict[str, Any], headers: dict[str, str]) -> Reply:
    if headers.get("content-type") != "application/json" or headers.get("accept") != "application/json":
        return _error(400, "ValidationException", "Content type and accept must be application/json")
    vector = [0.5] * DIMENSIONS[model]
    if model == TITAN:
        extra = set(body) - {"inputText", "dimensions", "normalize"}
        if extra or not isinstance(body.get("inputText"), str):
            return _malformed(
                f"extraneous key [{sorted(extra)[0]}] is not permitted"
                if extra
                else "#: required key [inputText] not found"
            )
        return _json(200, {"embedding": vector, "inputTextTokenCount": len(body["inputText"].split())})
    if not isinstance(body.get("texts"), list):
        return _malformed("#: required key [texts] not found")
    if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
        return _malformed("#: required key [input_type] not found")
    return _json(
        200, {"id": "e1", "texts": body["texts"], "embeddings": [vector], "response_type": "embeddings_floats"}
    )


def _malformed(detail: str) -> Reply:
    return _error(
        400, "ValidationException", f"Malformed input request: {detail}, please reformat your input and try again."
    )


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


def _error(status: int, code: str, message: str) -> Reply:
    error_type = f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    return _json(status, {"message": message}, {"x-amzn-ErrorType": error_type})
