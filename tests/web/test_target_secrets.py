"""Target secrets mounted as files are read again at every run: a rotation reaches the next run without a restart."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from app import target_secrets
from tests.servers import StallServer
from tests.web.helpers import MakeClient, bearer, tcp_target, wait_for_verdict


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "target-secrets"
    directory.mkdir()
    monkeypatch.setenv(target_secrets.DIRECTORY_VARIABLE, str(directory))
    return directory


def test_files_override_the_environment_and_bookkeeping_entries_are_skipped(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", "from-the-environment")
    (secrets_dir / "DB_PASSWORD").write_text("from-the-file")
    (secrets_dir / "..data").mkdir()  # the kubelet's atomic-update directory
    environ = target_secrets.environ()
    assert environ["DB_PASSWORD"] == "from-the-file"
    assert "..data" not in environ
    assert target_secrets.environ(secrets_dir / "missing")["DB_PASSWORD"] == "from-the-environment"


def test_each_run_resolves_the_secret_files_as_they_are_then(
    make_client: MakeClient, secrets_dir: Path, stall: StallServer, closed_port: int
) -> None:
    variable = secrets_dir / "DB_HOST"
    variable.write_text("127.0.0.1")
    client = make_client([tcp_target("db", stall.port, host="${DB_HOST}")])
    auth = bearer(client)
    assert client.post("/api/runs", headers=auth).status_code == 202
    assert wait_for_verdict(client, auth)["verdict"] == "ready"

    variable.write_text("not a host name!")  # rotated to a value the targets file cannot accept
    refused = client.post("/api/runs", headers=auth)
    assert refused.status_code == 409
    assert "targets[0].host" in refused.json()["detail"]
    assert client.get("/health/ready").status_code == 503

    variable.unlink()  # a Secret key that went away
    refused = client.post("/api/runs", headers=auth)
    assert refused.status_code == 409
    assert "DB_HOST is not set" in refused.json()["detail"]

    variable.write_text("127.0.0.1")
    assert client.post("/api/runs", headers=auth).status_code == 202
    assert wait_for_verdict(client, auth)["verdict"] == "ready"
    assert client.get("/health/ready").status_code == 200


def test_a_rotated_secret_is_kept_out_of_the_log_from_the_run_that_reads_it(
    make_client: MakeClient, secrets_dir: Path, closed_port: int
) -> None:
    token = secrets_dir / "API_TOKEN"
    token.write_text("first-token-value-0001")
    http = {"name": "api", "kind": "http", "url": f"http://127.0.0.1:{closed_port}/"}
    client = make_client([{**http, "headers": {"Authorization": "${API_TOKEN}"}}])
    auth = bearer(client)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger().addHandler(handler)
    try:
        token.write_text("rotated-token-value-0002")
        assert client.post("/api/runs", headers=auth).status_code == 202
        wait_for_verdict(client, auth)
        logging.getLogger("app").warning("a driver quoting rotated-token-value-0002 back")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "rotated-token-value-0002" not in log.getvalue()
    assert "a driver quoting" in log.getvalue()
