"""document_intelligence: an Azure AI Document Intelligence resource lists its models and reads a tiny document.

GET {endpoint}/documentintelligence/documentModels proves the key and the API version and shows whether the
configured model exists; POST .../documentModels/{model}:analyze sends a one-page PDF made here (the word
"ready"), and the operation it starts is polled at its Operation-Location until it succeeds or fails, within
the deadline. Failures are classified by Azure's error code (the inner one when there is one: ModelNotFound).
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import FilePath, StringConstraints

from app.checks.ai import RATE_LIMITED, Refusal, Rule, Rules, json_of, judge, message_of, resolve_url
from app.checks.base import CheckFailed, HeaderSecret, Probe, Stage, Target, elapsed_ms
from app.checks.http import Answer, HttpUrl, exchange, open_client
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    import httpx

POLL_INTERVAL = 0.5  # seconds between polls at most, whatever Retry-After says: the deadline is short
DOCUMENT_TEXT = "ready"

RULES: Rules = {
    "401": Rule(
        Stage.AUTH,
        "the api_key is not accepted: use KEY 1 or KEY 2 from the resource's Keys and Endpoint page, and the "
        "resource's own endpoint",
    ),
    "403": Rule(
        Stage.PERMISSION,
        "the key is valid but the request is refused: check the resource's network rules (firewall, private "
        "endpoint) and that key authentication is enabled",
    ),
    "AuthenticationTypeDisabled": Rule(
        Stage.PERMISSION, "key authentication is disabled on the resource: enable local auth or use Entra ID"
    ),
    "ModelNotFound": Rule(
        Stage.OPERATION, "model '{model}' does not exist in this resource: use a prebuilt model or a model it lists"
    ),
    "404": Rule(
        Stage.OPERATION,
        "nothing is served at this path: check that endpoint is the resource's endpoint and that api_version "
        "{api_version} is a Document Intelligence version (2024-11-30 or later uses /documentintelligence)",
    ),
    "InvalidRequest": Rule(
        Stage.OPERATION, "the resource rejects the request: check api_version {api_version} and model '{model}'"
    ),
    "429": RATE_LIMITED,
}


class DocumentIntelligenceTarget(Target):
    default_timeout: ClassVar[float] = 30.0
    warm_imports: ClassVar[tuple[str, ...]] = ("httpx",)

    kind: Literal["document_intelligence"]
    endpoint: HttpUrl  # https://NAME.cognitiveservices.azure.com
    api_key: HeaderSecret
    model: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$")] = "prebuilt-read"
    api_version: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")] = "2024-11-30"
    ca_file: FilePath | None = None

    def check(self, probe: Probe) -> None:
        resolve_url(probe, self.endpoint)
        headers = {"Ocp-Apim-Subscription-Key": self.api_key.get_secret_value()}
        base = f"{self.endpoint.rstrip('/')}/documentintelligence/documentModels"
        with open_client(probe, self.ca_file) as client:
            listed = exchange(probe, client, "GET", f"{base}?api-version={self.api_version}", headers=headers)
            with probe.step("list models", Stage.OPERATION):
                self._models(probe, listed)
            started = time.perf_counter()
            body = {"base64Source": base64.b64encode(tiny_pdf(DOCUMENT_TEXT)).decode()}
            url = f"{base}/{self.model}:analyze?api-version={self.api_version}"
            accepted = exchange(probe, client, "POST", url, headers=headers, json=body)
            with probe.step("analyze", Stage.OPERATION):
                if accepted.status != 202:
                    self._refused(probe, "analyze", accepted)
                    return
                operation = self._operation_url(accepted)
                probe.note(f"accepted by {self.model}")
            with probe.step("poll result", Stage.OPERATION):
                result = self._poll(probe, client, operation, headers, accepted)
                if result is None:
                    return
            probe.facts["analyze_ms"] = elapsed_ms(started)
            analyzed = result.get("analyzeResult") or {}
            probe.facts["model_id"] = clean_remote_text(str(analyzed.get("modelId", "")), 100)
            probe.facts["pages"] = len(analyzed.get("pages") or [])
            probe.facts["content_chars"] = len(str(analyzed.get("content") or ""))

    def _models(self, probe: Probe, answer: Answer) -> None:
        if answer.status != 200:
            self._refused(probe, "list models", answer)
            return
        document = json_of(answer)
        if not isinstance(document.get("value"), list):
            raise CheckFailed(
                Stage.OPERATION,
                f"list models: the answer is not a Document Intelligence model list: {answer.snippet or '(empty)'}",
                "endpoint does not lead to a Document Intelligence resource: check it",
            )
        models = [str(m.get("modelId")) for m in document["value"] if isinstance(m, dict)]
        probe.facts["models_listed"] = len(models)
        if self.model not in models and not document.get("nextLink"):
            offered = clean_remote_text(", ".join(models[:10]) + (", …" if len(models) > 10 else ""))
            raise CheckFailed(
                Stage.OPERATION,
                f"model '{self.model}' does not exist in this resource",
                f"use one of its models ({offered or 'none listed'}), or build or copy '{self.model}' into it",
            )
        probe.note(f"{len(models)} models{', more on further pages' if document.get('nextLink') else ''}")

    def _operation_url(self, accepted: Answer) -> str:
        """Where the result will be: on the resource itself, or the key would go to another host."""
        location = accepted.headers.get("operation-location", "")
        if urlsplit(location)[:2] != urlsplit(self.endpoint)[:2]:
            raise CheckFailed(
                Stage.OPERATION,
                f"analyze: the operation is not on the resource ({clean_remote_text(location) or 'no location'})",
                "the answer did not come from a Document Intelligence resource: check endpoint and any proxy",
            )
        return str(location)

    def _poll(
        self, probe: Probe, client: httpx.Client, url: str, headers: dict[str, str], accepted: Answer
    ) -> dict[str, Any] | None:
        wait = _seconds(accepted.headers.get("retry-after"))
        polls = 0
        while True:
            time.sleep(min(wait, POLL_INTERVAL, probe.remaining(floor=0)))
            answer = exchange(probe, client, "GET", url, headers=headers)
            polls += 1
            if answer.status != 200:
                self._refused(probe, "poll result", answer)
                return None
            result = json_of(answer)
            status = result.get("status")
            probe.facts["polls"] = polls
            if status == "succeeded":
                probe.note(f"succeeded after {polls} polls")
                return result
            if status in ("failed", "canceled"):
                refusal = _refusal_of(result.get("error"), answer)
                raise CheckFailed(
                    Stage.OPERATION,
                    f"analyze: the operation {status}: {refusal.code} {refusal.message}".strip(),
                    RULES.get(refusal.code, RULES["InvalidRequest"]).remediation.format(
                        model=self.model, api_version=self.api_version
                    ),
                )
            if status in ("notStarted", "running") and probe.remaining(floor=0) == 0:
                raise CheckFailed(
                    Stage.OPERATION,
                    f"analyze: the operation is still {status} at the deadline, after {polls} polls",
                    "the resource reads even a one-page document slowly: check its pricing tier and load, "
                    "or give this target a longer timeout",
                )
            if status not in ("notStarted", "running"):
                raise CheckFailed(
                    Stage.OPERATION,
                    f"poll result: not an analyze operation: {answer.snippet or '(empty)'}",
                    "the operation URL does not lead to a Document Intelligence result: check endpoint and any proxy",
                )
            wait = _seconds(answer.headers.get("retry-after"))

    def _refused(self, probe: Probe, call: str, answer: Answer) -> None:
        refusal = _refusal_of(json_of(answer).get("error"), answer)
        judge(probe, call, refusal, RULES, model=self.model, api_version=self.api_version)


def _refusal_of(error: Any, answer: Answer) -> Refusal:
    """Azure's {"error": {"code", "message", "innererror": {"code", "message"}}}: the inner code is the precise one."""
    error = error if isinstance(error, dict) else {}
    inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
    code = str(inner.get("code") or error.get("code") or "")
    message = message_of(inner.get("message") or error.get("message"), answer)
    return Refusal(answer.status, code, message, answer.headers.get("retry-after"))


def _seconds(value: str | None) -> float:
    try:
        return max(float(value or POLL_INTERVAL), 0.0)
    except ValueError:
        return POLL_INTERVAL


def tiny_pdf(text: str) -> bytes:
    """A valid one-page PDF whose only content is `text` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 24 Tf 20 40 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(pdf)
