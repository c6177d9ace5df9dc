"""Certificate expiry in the metrics: from a real TLS server's certificate, and from any kind's own count."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from app.checks.base import Status
from app.metrics import Metrics
from app.results import Result, Run
from tests.certs import Certificates
from tests.checks.http_server import HttpServer, Reply
from tests.web.helpers import MakeClient, bearer, wait_for_verdict


def test_days_to_expiry_of_a_real_certificate(make_client: MakeClient, tmp_path: Path) -> None:
    certificates = Certificates(tmp_path)
    with HttpServer(lambda request: Reply(200), cert=certificates.leaf("soon", days=(-1, 5))) as server:
        target = {
            "name": "ingress",
            "kind": "tls",
            "host": "127.0.0.1",
            "port": server.port,
            "server_name": "localhost",
            "ca_file": str(certificates.ca_file),
        }
        client = make_client([target])
        auth = bearer(client)
        client.post("/api/runs", headers=auth)
        run = wait_for_verdict(client, auth)
    assert run["results"][0]["status"] == "warning"
    line = re.search(r'testpod_tls_days_to_expiry\{kind="tls",target="ingress"\} ([\d.]+)', client.get("/metrics").text)
    assert line, client.get("/metrics").text
    assert 4.9 < float(line.group(1)) <= 5.0
    assert 'testpod_target_status{kind="tls",status="warning",target="ingress"} 1.0' in client.get("/metrics").text


def test_a_kind_may_report_the_days_itself() -> None:
    now = datetime.now().astimezone()
    result = Result(
        name="db",
        kind="postgres",
        required=True,
        status=Status.PASSED,
        stage=None,
        cause="",
        remediation="",
        duration_ms=5,
        started_at=now,
        steps=[],
        facts={"days_to_expiry": 42, "tls_version": "TLSv1.3"},
    )
    metrics = Metrics(lambda: False, configured=1, config_valid=True)
    metrics.observe(
        Run(started_at=now, finished_at=now + timedelta(seconds=1), strict=False, results=[result], pending=[])
    )
    assert 'testpod_tls_days_to_expiry{kind="postgres",target="db"} 42.0' in metrics.render().decode()
