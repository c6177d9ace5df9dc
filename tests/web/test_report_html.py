"""The HTML report: self-contained, complete, and inert whatever the remote servers wrote into a result."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html.parser import HTMLParser

from app import __version__
from app.checks.base import Stage, Status, Step
from app.report import to_html
from app.results import Result, Run

PAYLOADS = ['<script>alert("x")</script>', '<img src=x onerror="alert(1)">', '"><svg onload=alert(2)>']
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=datetime.now().astimezone().tzinfo)


def result(name: str, status: Status, **fields: object) -> Result:
    values: dict[str, object] = {
        "name": name,
        "kind": "http",
        "required": True,
        "status": status,
        "stage": None if status == Status.PASSED else Stage.OPERATION,
        "cause": "",
        "remediation": "",
        "duration_ms": 1234.5,
        "started_at": NOW,
        "steps": [],
        "facts": {},
        **fields,
    }
    return Result.model_validate(values)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_untrusted_text_is_escaped_everywhere() -> None:
    hostile = " ".join(PAYLOADS)
    run = Run(
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=2),
        strict=False,
        pending=[],
        results=[
            result(
                "api",
                Status.FAILED,
                description=hostile,
                cause=f"HTTP 500: {hostile}",
                remediation=hostile,
                steps=[Step(name="status", stage=Stage.OPERATION, status=Status.FAILED, duration_ms=3, detail=hostile)],
                facts={"server": hostile, hostile: 1},
            )
        ],
    )
    page = to_html(run)
    parser = Tags()
    parser.feed(page)
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "img", "svg", "iframe", "link"}
    assert not any(name.startswith("on") for _, attrs in parser.tags for name, _ in attrs)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert page.count("&lt;img src=x onerror=") >= 6  # description, cause, remediation, step, fact key and value


def test_a_finished_run_has_everything_a_support_ticket_needs() -> None:
    run = Run(
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=2),
        strict=True,
        pending=[],
        results=[
            result("cache", Status.PASSED, kind="tcp", facts={"connected_to": "127.0.0.1:6379"}),
            result(
                "cert",
                Status.WARNING,
                kind="tls",
                stage=Stage.TLS,
                cause="the certificate expires in 5 days",
                remediation="renew it",
                facts={"days_to_expiry": 5},
            ),
            result(
                "db",
                Status.FAILED,
                kind="postgres",
                required=False,
                stage=Stage.AUTH,
                cause="password authentication failed",
                remediation="check the password in the Secret",
                steps=[Step(name="auth", stage=Stage.AUTH, status=Status.FAILED, duration_ms=12.4, detail="28P01")],
            ),
        ],
    )
    page = to_html(run)
    for expected in (
        f"airia-test-pod {__version__}",
        "NOT READY",  # strict: the warning blocks
        "1 passed, 1 warning, 1 failed",
        "Strict mode",
        "db (optional)",
        "password authentication failed",
        "check the password in the Secret",
        "28P01",
        "days_to_expiry",
        "127.0.0.1:6379",
        "2026-03-01T12:00:00",
    ):
        assert expected in page, expected
    assert re.search(r"(src|href)=", page) is None  # nothing to fetch: it opens the same way offline


def test_a_run_in_progress_says_so() -> None:
    run = Run(
        started_at=NOW, finished_at=None, strict=False, pending=["slow-db"], results=[result("api", Status.PASSED)]
    )
    page = to_html(run)
    assert "RUN IN PROGRESS" in page
    assert "Still running: slow-db" in page
    assert "1 still running" in page
