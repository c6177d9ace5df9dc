"""document_intelligence against a local resource that lists models, analyzes a PDF and is polled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.checks.base import Stage, Status
from app.checks.document_intelligence import DOCUMENT_TEXT, DocumentIntelligenceTarget, tiny_pdf
from tests.checks import run_check
from tests.checks.document_intelligence_server import KEY, DocumentIntelligenceServer
from tests.servers import StallServer


@pytest.fixture(scope="module")
def api() -> Iterator[DocumentIntelligenceServer]:
    with DocumentIntelligenceServer() as server:
        yield server


@pytest.fixture
def server(api: DocumentIntelligenceServer) -> DocumentIntelligenceServer:
    api.outage = None
    api.running_polls = 2
    api.paged = False
    api.requests.clear()
    return api


def target(endpoint: str, **fields: Any) -> DocumentIntelligenceTarget:
    values = {"name": "docs", "kind": "document_intelligence", "endpoint": endpoint, "api_key": KEY}
    return DocumentIntelligenceTarget.model_validate({**values, **fields})


def test_list_analyze_and_poll_pass(server: DocumentIntelligenceServer) -> None:
    result = run_check(target(server.url))

    assert result.status == Status.PASSED, result.cause
    assert [s.name for s in result.steps if s.name != "http request"] == [
        "resolve",
        "connect",
        "list models",
        "analyze",
        "poll result",
    ]
    assert result.facts["models_listed"] == 3
    assert result.facts["model_id"] == "prebuilt-read"
    assert result.facts["pages"] == 1
    assert result.facts["content_chars"] == len(DOCUMENT_TEXT)
    assert result.facts["polls"] == 3
    listing, analyze, *polls = server.requests
    assert listing.path == "/documentintelligence/documentModels?api-version=2024-11-30"
    assert analyze.path == "/documentintelligence/documentModels/prebuilt-read:analyze?api-version=2024-11-30"
    assert set(json.loads(analyze.body)) == {"base64Source"}
    assert server.documents[-1] == tiny_pdf(DOCUMENT_TEXT)
    assert all(r.headers["ocp-apim-subscription-key"] == KEY for r in server.requests)
    assert len(polls) == 3


def test_a_wrong_key_fails_at_auth(server: DocumentIntelligenceServer) -> None:
    result = run_check(target(server.url, api_key="wrong-key-never-shown"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause.startswith("list models: HTTP 401: Access denied due to invalid subscription key")
    assert "wrong-key-never-shown" not in result.model_dump_json()


def test_network_rules_fail_at_permission(server: DocumentIntelligenceServer) -> None:
    server.outage = "forbidden"
    result = run_check(target(server.url))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert "Public access is disabled" in result.cause


def test_a_model_missing_from_the_resource_is_named_with_those_it_has(server: DocumentIntelligenceServer) -> None:
    result = run_check(target(server.url, model="custom-contracts"))
    assert result.stage == Stage.OPERATION
    assert result.cause == "model 'custom-contracts' does not exist in this resource"
    assert "prebuilt-read, prebuilt-layout, prebuilt-invoice" in result.remediation
    assert len(server.requests) == 1  # nothing was analyzed


def test_a_model_not_on_the_first_page_is_judged_by_the_analyze_error(server: DocumentIntelligenceServer) -> None:
    server.paged = True
    result = run_check(target(server.url, model="custom-contracts"))
    assert result.stage == Stage.OPERATION
    assert result.cause.startswith("analyze: HTTP 404 ModelNotFound: The requested model was not found.")
    assert "model 'custom-contracts' does not exist in this resource" in result.remediation


def test_an_unknown_api_version_is_pointed_at(server: DocumentIntelligenceServer) -> None:
    result = run_check(target(server.url, api_version="2022-08-31"))
    assert result.stage == Stage.OPERATION
    assert result.cause == "list models: HTTP 404: Resource not found"
    assert "api_version 2022-08-31" in result.remediation


def test_a_failed_operation_fails_with_its_error(server: DocumentIntelligenceServer) -> None:
    server.outage = "failed"
    result = run_check(target(server.url))
    assert result.stage == Stage.OPERATION
    assert result.cause == "analyze: the operation failed: InternalServerError An unexpected error occurred."


def test_an_operation_that_never_finishes_ends_at_the_deadline(server: DocumentIntelligenceServer) -> None:
    server.outage = "forever"
    result = run_check(target(server.url, timeout=1.5))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.steps[-1].name in ("poll result", "http request")
    assert result.duration_ms < 2000


def test_the_key_never_goes_to_another_host(server: DocumentIntelligenceServer) -> None:
    server.outage = "foreign_location"
    result = run_check(target(server.url))
    assert result.stage == Stage.OPERATION
    assert result.cause.startswith("analyze: the operation is not on the resource (http://127.0.0.2:")
    assert [r.method for r in server.requests] == ["GET", "POST"]


def test_a_stalled_resource_ends_on_time(stall: StallServer) -> None:
    result = run_check(target(f"http://127.0.0.1:{stall.port}", timeout=0.5))
    assert (result.stage, result.steps[-1].name) == (Stage.OPERATION, "http request")
    assert result.duration_ms < 900
