"""The s3 kind against versitygw, a real S3 implementation, for what an emulator never shows.

Over HTTP and HTTPS: every failure path repeated, to prove its classification stable (a refused upload's answer
can be lost on the wire), a signing region the server rejects, path and virtual-hosted addressing through a real
resolver, and a server that has stopped answering.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import app.checks.s3 as s3_kind
from app.checks.base import Stage, Status
from app.runner import check_target
from tests.integration.s3_helpers import no_ambient_aws, port_of, scratch_objects, steps, target
from tests.services import versitygw
from tests.services.s3 import REGION, S3Server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TRIES = 50  # of a refused upload, whose answer a client can lose
STREAMED_TRIES = 25  # the answer is lost in about 9 of 10 of them
REPEATS = 5  # of every other failure path
AT_ONCE = 5  # tries run concurrently, as the runner runs targets: the suite stays fast on two cores
OTHER_REGION = "eu-central-1"

__all__ = ["no_ambient_aws"]  # the credential chain sees only what a test gives it


@pytest.fixture(params=["http", "https"])
def gateway(request: pytest.FixtureRequest) -> S3Server:
    return request.getfixturevalue("versitygw" if request.param == "http" else "versitygw_tls")


async def outcomes(make: Callable[[], Any], tries: int) -> Counter[tuple[Status, Stage | None, str]]:
    """How `tries` checks of the same target ended; the scratch object's random key is replaced by KEY."""
    seen: Counter[tuple[Status, Stage | None, str]] = Counter()
    for start in range(0, tries, AT_ONCE):
        for result in await asyncio.gather(*(check_target(make()) for _ in range(min(AT_ONCE, tries - start)))):
            seen[(result.status, result.stage, result.cause.replace(str(result.facts.get("scratch_key")), "KEY"))] += 1
    return seen


# --- every failure path, stable ---------------------------------------------------------------------------


async def test_a_refused_put_is_permission_in_every_try(gateway: S3Server) -> None:
    before = scratch_objects(gateway)
    seen = await outcomes(lambda: target(gateway, role="reader"), TRIES)
    denied = f"s3:PutObject denied on {gateway.bucket}/KEY (AccessDenied)"
    assert seen == {(Status.FAILED, Stage.PERMISSION, denied): TRIES}
    assert scratch_objects(gateway) == before


async def test_a_refused_streamed_put_is_still_permission_when_its_answer_is_lost(
    versitygw_tls: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's default streams the body; the server answers before reading it and closes, and the client sees
    an SSL EOF instead of AccessDenied. The check asks again without a body and reports the real answer."""
    monkeypatch.setattr(s3_kind, "CHECKSUMS", "when_supported")
    lost = []
    real = s3_kind._connection_lost

    def counted(error: Exception) -> bool:
        lost.append(real(error))
        return lost[-1]

    monkeypatch.setattr(s3_kind, "_connection_lost", counted)
    seen = await outcomes(lambda: target(versitygw_tls, role="reader"), STREAMED_TRIES)
    denied = f"s3:PutObject denied on {versitygw_tls.bucket}/KEY (AccessDenied)"
    assert seen == {(Status.FAILED, Stage.PERMISSION, denied): STREAMED_TRIES}
    assert any(lost), "no answer was lost: the server's behaviour changed and this test proves nothing"


@pytest.mark.parametrize(
    ("fields", "stage", "step", "cause"),
    [
        (
            {"role": None, "access_key_id": "AKIAUNKNOWNUNKNOWN00", "secret_access_key": "x" * 40},
            Stage.AUTH,
            "auth",
            "the server does not know access key id AKIAUNKNOWNUNKNOWN00",
        ),
        (
            {"role": None, "access_key_id": versitygw.ROOT.access_key_id, "secret_access_key": "wrong-" * 7},
            Stage.AUTH,
            "auth",
            f"the secret access key does not match access key id {versitygw.ROOT.access_key_id}",
        ),
        ({"bucket": "no-such-bucket-here"}, Stage.OPERATION, "bucket", "bucket no-such-bucket-here does not exist at "),
        (
            {"role": "no_delete"},
            Stage.PERMISSION,
            "delete",
            "s3:DeleteObject denied on {bucket}/KEY (AccessDenied); the scratch object KEY is left in the bucket",
        ),
    ],
    ids=["unknown-key", "wrong-secret", "missing-bucket", "delete-denied"],
)
async def test_every_failure_path_is_classified_the_same_every_time(
    gateway: S3Server, fields: dict[str, Any], stage: Stage, step: str, cause: str
) -> None:
    cause = cause.format(bucket=gateway.bucket) + (gateway.endpoint if cause.endswith(" at ") else "")
    seen = await outcomes(lambda: target(gateway, **fields), REPEATS)
    assert seen == {(Status.FAILED, stage, cause): REPEATS}
    result = await check_target(target(gateway, **fields))
    assert steps(result)[-1] == (step, Status.FAILED)


# --- signing region -----------------------------------------------------------------------------------------


async def test_a_signing_region_the_server_rejects_is_a_warning_naming_both(gateway: S3Server) -> None:
    result = await check_target(target(gateway, region=OTHER_REGION))
    assert (result.status, result.stage) == (Status.WARNING, Stage.AUTH)
    assert result.cause == (
        f"the server rejects requests signed for region {OTHER_REGION} and expects {REGION} "
        "(AuthorizationHeaderMalformed): boto3 re-signs each refused request for it, other clients may not"
    )
    assert result.remediation == f"set region: {REGION} in this target and in the platform's S3 settings"
    assert (result.facts["signing_region"], result.facts["bucket_region"]) == (REGION, REGION)
    assert all(status == Status.PASSED for _, status in steps(result))
    assert result.facts["scratch_key"] not in scratch_objects(gateway)


async def test_a_signing_region_mismatch_does_not_hide_a_refusal(gateway: S3Server) -> None:
    result = await check_target(target(gateway, role="reader", region=OTHER_REGION))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.facts["signing_region"] == REGION


# --- addressing, through a real resolver ---------------------------------------------------------------------


@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_path_and_virtual_hosted_addressing_under_a_domain(gateway: S3Server, addressing: str, tmp_path: Path) -> None:
    """The CLI in a private mount namespace whose /etc/hosts names the gateway's domain and the bucket's host."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to give the check its own /etc/hosts")
    domain = versitygw.VIRTUAL_DOMAIN
    scheme = urlsplit(gateway.endpoint).scheme
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {domain} {gateway.bucket}.{domain}\n")
    admin = gateway.keys["admin"]
    store = {
        "name": "gateway",
        "kind": "s3",
        "bucket": gateway.bucket,
        "endpoint_url": f"{scheme}://{domain}:{port_of(gateway)}",
        "addressing_style": addressing,
        "access_key_id": admin.access_key_id,
        "secret_access_key": "${GATEWAY_SECRET}",
        **({"ca_file": gateway.ca_file} if gateway.ca_file else {}),
    }
    config = tmp_path / "targets.yaml"
    config.write_text(json.dumps({"targets": [store]}))
    command = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]
    command += [sys.executable, "-m", "app", "check", "--config", str(config), "--format", "json"]
    environment = {**os.environ, "GATEWAY_SECRET": admin.secret_access_key, "PYTHONPATH": str(ROOT)}
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=environment, cwd=ROOT, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    [result] = json.loads(finished.stdout)["results"]
    assert result["status"] == "passed", result["cause"]
    assert result["facts"]["addressing"] == addressing
    host = f"{gateway.bucket}.{domain}" if addressing == "virtual" else domain
    assert result["facts"]["endpoint"] == f"{scheme}://{host}:{port_of(gateway)}"
    assert result["facts"]["scratch_key"] not in scratch_objects(gateway)


# --- a server that stops answering ----------------------------------------------------------------------------


@pytest.mark.parametrize(("tls", "stage"), [(False, Stage.AUTH), (True, Stage.TLS)])
async def test_a_paused_gateway_fails_on_time_at_the_stage_it_hung(tls: bool, stage: Stage) -> None:
    """SIGSTOP: the kernel still accepts connections for the gateway, which never answers them."""
    with versitygw.started(tls=tls) as (server, process):
        process.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        result = await check_target(target(server, timeout=1))
        elapsed = time.monotonic() - start
    assert (result.status, result.stage) == (Status.FAILED, stage)
    assert 1.0 <= elapsed < 1.5


# --- the same server for Docker users and GitHub -------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "path"),
    [
        ("docker-compose.test.yml", ["services", "versitygw"]),
        (".github/workflows/test.yml", ["jobs", "test", "services", "versitygw"]),
    ],
)
def test_the_docker_service_runs_the_version_and_settings_the_fixtures_expect(file: str, path: list[str]) -> None:
    import yaml

    document = yaml.safe_load((ROOT / file).read_text())
    service = document
    for key in path:
        service = service[key]
    environment = service.get("environment") or service["env"]
    assert service["image"].split("@")[0] == f"versity/versitygw:{versitygw.VERSION}"  # a digest may follow
    root = versitygw.ROOT
    assert (environment["ROOT_ACCESS_KEY"], environment["ROOT_SECRET_KEY"]) == (
        root.access_key_id,
        root.secret_access_key,
    )
    assert environment["VGW_VIRTUAL_DOMAIN"] == versitygw.VIRTUAL_DOMAIN
    port = environment["VGW_PORT"].rsplit(":", 1)[1]
    assert any(published.endswith(f"{port}:{port}") for published in service["ports"])
    assert f"TESTPOD_TEST_VERSITYGW_ENDPOINT=http://127.0.0.1:{port}" in (ROOT / file).read_text().replace(": ", "=")
