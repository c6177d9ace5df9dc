"""Azure AI Document Intelligence on 127.0.0.1: the key header, API versions, models and an analyze operation.

GET /documentintelligence/documentModels lists MODELS; POST .../documentModels/{model}:analyze takes
{"base64Source": ...}, checks that it is a well-formed PDF (every cross-reference offset lands on its object)
and answers 202 with an Operation-Location that reports `running` for `running_polls` polls, then the result.
Errors have Azure's bodies: {"error": {"code", "message", "innererror": {"code", "message"}}}.
`outage`: "forbidden" (403 from the resource's network rules), "failed" (the operation fails), "forever" (it
never finishes), "foreign_location" (the Operation-Location names another host).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tests.checks.http_server import HttpServer, Reply, Request

KEY = "0123456789abcdef0123456789abcdef"
API_VERSIONS = {"2024-11-30", "2024-07-31-preview"}
MODELS = ["prebuilt-read", "prebuilt-layout", "prebuilt-invoice"]
_ANALYZE = re.compile(r"^/documentintelligence/documentModels/(?P<model>[^/:]+):analyze$")
_RESULT = re.compile(r"^/documentintelligence/documentModels/(?P<model>[^/]+)/analyzeResults/(?P<id>\d+)$")

Outage = Literal["forbidden", "failed", "forever", "foreign_location"] | None


class DocumentIntelligenceServer(HttpServer):
    def __init__(self) -> None:
        super().__init__(self._answer)
        self.outage: Outage = None
        self.running_polls = 2
        self.paged = False  # the model list says there is a further page (so a model missing from it may exist)
        self._ids = itertools.count(1)
        self._polls: dict[str, int] = {}
        self.documents: list[bytes] = []

    def _answer(self, request: Request) -> Reply:  # noqa: PLR0911 - the fake API's routing, one return a route
        if request.headers.get("ocp-apim-subscription-key") != KEY:
            return _error(
                401,
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.",
            )
        if self.outage == "forbidden":
            return _error(403, "403", "Public access is disabled. Please configure private endpoint.")
        url = urlsplit(request.path)
        version = parse_qs(url.query).get("api-version", [""])[0]
        if version not in API_VERSIONS:
            return _error(404, "404", "Resource not found")
        if (request.method, url.path) == ("GET", "/documentintelligence/documentModels"):
            listing: dict[str, Any] = {"value": [{"modelId": m, "apiVersion": version} for m in MODELS]}
            if self.paged:
                listing["nextLink"] = f"{self.url}/documentintelligence/documentModels?api-version={version}&skip=3"
            return _json(200, listing)
        analyze, result = _ANALYZE.match(url.path), _RESULT.match(url.path)
        if request.method == "POST" and analyze:
            return self._analyze(request, analyze["model"], version)
        if request.method == "GET" and result:
            return self._result(result["model"], result["id"], version)
        return _error(404, "404", "Resource not found")

    def _analyze(self, request: Request, model: str, version: str) -> Reply:
        if model not in MODELS:
            return _error(
                404,
                "NotFound",
                "Resource not found.",
                (
                    "ModelNotFound",
                    "The requested model was not found. It may have been deleted or is still being created.",
                ),
            )
        body = json.loads(request.body)
        document = base64.b64decode(body.get("base64Source", ""))
        if set(body) != {"base64Source"} or not _well_formed_pdf(document):
            return _error(
                400,
                "InvalidRequest",
                "Invalid request.",
                ("InvalidContent", "The file is corrupted or format is unsupported."),
            )
        self.documents.append(document)
        operation = str(next(self._ids))
        self._polls[operation] = 0
        host = "127.0.0.2" if self.outage == "foreign_location" else "127.0.0.1"
        location = f"http://{host}:{self.port}/documentintelligence/documentModels/{model}/analyzeResults/{operation}"
        headers = {"Operation-Location": f"{location}?api-version={version}", "Retry-After": "1"}
        return Reply(202, b"", headers)

    def _result(self, model: str, operation: str, version: str) -> Reply:
        if operation not in self._polls:
            return _error(404, "NotFound", "Resource not found.", ("AnalyzeResultNotFound", "Result not found."))
        self._polls[operation] += 1
        stamp = {"createdDateTime": "2025-01-01T00:00:00Z", "lastUpdatedDateTime": "2025-01-01T00:00:01Z"}
        if self.outage == "forever" or self._polls[operation] <= self.running_polls:
            return _json(200, {"status": "running", **stamp}, {"Retry-After": "1"})
        if self.outage == "failed":
            error = {"code": "InternalServerError", "message": "An unexpected error occurred."}
            return _json(200, {"status": "failed", **stamp, "error": error})
        analyzed = {
            "apiVersion": version,
            "modelId": model,
            "content": "ready",
            "pages": [{"pageNumber": 1, "width": 200, "height": 100, "unit": "pixel"}],
        }
        return _json(200, {"status": "succeeded", **stamp, "analyzeResult": analyzed})


def _well_formed_pdf(document: bytes) -> bool:
    """A PDF header, an EOF marker, and a cross-reference table whose every offset starts its object."""
    xref = re.search(rb"startxref\n(\d+)\n%%EOF\n?$", document)
    if not document.startswith(b"%PDF-") or xref is None:
        return False
    table = document[int(xref[1]) :]
    if not table.startswith(b"xref\n"):
        return False
    offsets = [int(entry[:10]) for entry in re.findall(rb"(\d{10} \d{5} n )", table)]
    return bool(offsets) and all(
        document[offset:].startswith(b"%d 0 obj" % number) for number, offset in enumerate(offsets, start=1)
    )


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


def _error(status: int, code: str, message: str, inner: tuple[str, str] | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner[0], "message": inner[1]}
    return _json(status, {"error": error})
