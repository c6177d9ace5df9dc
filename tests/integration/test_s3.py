"""The s3 kind against moto's S3 server with authentication and IAM policies enforced (tests/services/s3.py) and
against versitygw, a real S3 implementation (tests/services/versitygw.py), over HTTP and HTTPS.

What only moto covers (STS for the pod's web identity, buckets in several regions) runs on moto alone; what only a
real server shows (signing region, answers cut short, virtual-hosted buckets) is in test_s3_versitygw.py."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app import report
from app.checks import aws
from app.checks.base import Probe, Stage, Status
from app.checks.s3 import SCRATCH_PREFIX
from app.runner import check_target, run_targets
from tests.integration.s3_helpers import no_ambient_aws, port_of, scratch_objects, steps, target  # noqa: F401 - the autouse fixture
from tests.servers import CuttingProxy, StallServer
from tests.services.s3 import OTHER_REGION, S3Server

pytestmark = pytest.mark.integration


@pytest.fixture(params=["moto", "versitygw", "versitygw-https"])
def store(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server the kind is tested against: moto's emulator, and versitygw over HTTP and over HTTPS."""
    return SERVERS[request.param](request)


@pytest.fixture(params=["moto", "versitygw"])
def store_http(request: pytest.FixtureRequest) -> S3Server:
    """The servers over plain HTTP, for tests that put a relay between the check and the server."""
    return SERVERS[request.param](request)


@pytest.fixture(params=["moto", "versitygw"])
def store_tls(request: pytest.FixtureRequest) -> S3Server:
    return SERVERS[f"{request.param}-https"](request)


SERVERS: dict[str, Callable[[pytest.FixtureRequest], S3Server]] = {
    "moto": lambda request: request.getfixturevalue("s3"),
    "moto-https": lambda request: request.getfixturevalue("s3_tls"),
    "versitygw": lambda request: request.getfixturevalue("versitygw"),
    "versitygw-https": lambda request: request.getfixturevalue("versitygw_tls"),
}


def web_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sts_url: str) -> None:
    """IRSA as EKS sets it up (a role to assume with a projected token), with STS at a local address."""
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0.")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/airia-test-pod")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_url)


def wait_for_check_thread(name: str, within: float) -> None:
    """The thread the runner ran target `name` in has ended: every request of the check has given up."""
    for thread in threading.enumerate():
        if thread.name == f"check-{name}":
            thread.join(within)
            assert not thread.is_alive(), f"the check of {name} still runs {within} s after its result"


# --- passing ---------------------------------------------------------------------------------------


async def test_put_get_compare_delete_passes_and_leaves_nothing(store: S3Server) -> None:
    result = await check_target(target(store))
    assert result.status == Status.PASSED, result.cause
    tls = ["tls handshake"] if store.ca_file else []
    assert [name for name, _ in steps(result)] == [
        "resolve",
        "connect",
        *tls,
        "auth",
        "bucket",
        "write",
        "read",
        "delete",
    ]
    assert result.facts["endpoint"] == store.endpoint
    assert result.facts["addressing"] == "path"
    assert result.facts["bucket_region"] == "us-east-1"
    assert result.facts["credentials"] == "explicit"
    assert result.facts["upload_mib_s"] > 0 and result.facts["download_mib_s"] > 0
    assert str(result.facts["scratch_key"]).startswith(SCRATCH_PREFIX)
    assert result.facts["scratch_key"] not in scratch_objects(store)


async def test_default_credential_chain_is_used_without_keys(store: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.keys["admin"].access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.keys["admin"].secret_access_key)
    result = await check_target(target(store, role=None))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["credentials"] == "env"


async def test_bucket_in_its_configured_other_region_passes(s3: S3Server) -> None:
    result = await check_target(target(s3, bucket=s3.other_region_bucket, region=OTHER_REGION))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["bucket_region"] == OTHER_REGION


# --- failing, classified by botocore error code -----------------------------------------------------


async def test_no_credentials_anywhere_fails_at_auth(s3: S3Server) -> None:
    result = await check_target(target(s3, role=None))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause.startswith("no AWS credentials")
    assert "eks.amazonaws.com/role-arn" in result.remediation


async def test_web_identity_whose_sts_is_unreachable_fails_at_auth_naming_the_chain(
    s3: S3Server, closed_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    web_identity(monkeypatch, tmp_path, f"http://127.0.0.1:{closed_port}")
    result = await check_target(target(s3, role=None))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert steps(result)[-1] == ("auth", Status.FAILED)
    assert result.cause == (
        f'the pod\'s AWS credential chain failed: Could not connect to the endpoint URL: "http://127.0.0.1:{closed_port}/"'
    )
    assert "sts.<region>.amazonaws.com" in result.remediation


async def test_web_identity_whose_sts_never_answers_gives_up_with_the_check(
    s3: S3Server, stall: StallServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    web_identity(monkeypatch, tmp_path, f"http://127.0.0.1:{stall.port}")
    result = await check_target(target(s3, name="sts-stalled", role=None, timeout=1))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    wait_for_check_thread("sts-stalled", within=0.5)  # botocore's own STS client: 60 s reads, 5 attempts


def test_clients_botocore_makes_itself_inherit_the_deadline() -> None:
    config = aws.session(Probe(deadline=time.monotonic() + 7), None, None, None).get_default_client_config()
    assert 6.5 < config.connect_timeout <= 7
    assert 6.5 < config.read_timeout <= 7
    assert config.retries == {"total_max_attempts": 1}


async def test_unknown_access_key_is_invalid_access_key_id(store: S3Server) -> None:
    result = await check_target(
        target(store, role=None, access_key_id="AKIAUNKNOWNUNKNOWN00", secret_access_key="x" * 40)
    )
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "the server does not know access key id AKIAUNKNOWNUNKNOWN00"
    assert steps(result)[-1] == ("auth", Status.FAILED)


async def test_wrong_secret_is_signature_does_not_match(store: S3Server) -> None:
    admin = store.keys["admin"]
    result = await check_target(
        target(store, role=None, access_key_id=admin.access_key_id, secret_access_key="wrong-secret-" * 3)
    )
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == f"the secret access key does not match access key id {admin.access_key_id}"
    assert "secret_access_key" in result.remediation


async def test_read_only_bucket_fails_at_permission_naming_put_object(store: S3Server) -> None:
    result = await check_target(target(store, role="reader"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-1] == ("write", Status.FAILED)
    assert result.cause.startswith(f"s3:PutObject denied on {store.bucket}/{SCRATCH_PREFIX}scratch-")
    assert f"grant s3:PutObject on arn:aws:s3:::{store.bucket}/*" in result.remediation
    assert result.facts["scratch_key"] not in scratch_objects(store)


async def test_delete_denied_fails_and_says_the_scratch_object_is_left(store: S3Server) -> None:
    result = await check_target(target(store, role="no_delete"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-1] == ("delete", Status.FAILED)
    key = str(result.facts["scratch_key"])
    left = f"the scratch object {key} is left in the bucket"
    assert result.cause == f"s3:DeleteObject denied on {store.bucket}/{key} (AccessDenied); {left}"
    assert scratch_objects(store) == [key]


async def test_head_bucket_denied_is_a_warning_when_the_round_trip_works(store: S3Server) -> None:
    result = await check_target(target(store, role="no_list"))
    assert (result.status, result.stage) == (Status.WARNING, Stage.PERMISSION)
    assert (
        result.cause
        == f"s3:ListBucket is not granted on bucket {store.bucket}: its existence and region are unconfirmed"
    )
    assert [status for _, status in steps(result)] == [Status.PASSED] * (8 if store.ca_file else 7)


async def test_missing_bucket(store: S3Server) -> None:
    result = await check_target(target(store, bucket="no-such-bucket-here"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == f"bucket no-such-bucket-here does not exist at {store.endpoint}"
    assert steps(result)[-1] == ("bucket", Status.FAILED)


async def test_bucket_in_another_region(s3: S3Server) -> None:
    result = await check_target(target(s3, bucket=s3.other_region_bucket))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert result.cause == f"bucket {s3.other_region_bucket} is in region {OTHER_REGION}, not us-east-1"
    assert f"region: {OTHER_REGION}" in result.remediation


async def test_virtual_hosted_style_without_wildcard_dns_fails_at_resolve(s3: S3Server) -> None:
    endpoint = s3.endpoint.replace("127.0.0.1", "localhost")
    result = await check_target(target(s3, endpoint_url=endpoint, addressing_style="virtual"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.RESOLVE)
    assert result.cause.startswith(f"{s3.bucket}.localhost does not resolve")
    assert "addressing_style: path" in result.remediation


async def test_put_whose_answer_is_lost_is_deleted_after_the_deadline(store_http: S3Server) -> None:
    proxy = CuttingProxy(port_of(store_http), f"PUT /{store_http.bucket}/{SCRATCH_PREFIX}".encode(), hang=True)
    try:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        result = await check_target(target(store_http, name="lost-put", endpoint_url=endpoint, timeout=2))
        assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)  # stalled, not refused
        assert steps(result)[-1] == ("write", Status.FAILED)
        assert proxy.cut == 1  # the server stored the object; its answer never arrived
        key = str(result.facts["scratch_key"])
        wait_for_check_thread("lost-put", within=3)
        assert key not in scratch_objects(store_http)
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("role", "stage", "cause"),
    [
        ("reader", Stage.PERMISSION, "s3:PutObject denied on {bucket}/{key} (AccessDenied)"),
        (
            "admin",
            Stage.OPERATION,
            "the connection was closed while the 256 KiB scratch object was sent, yet an empty put is accepted "
            "(ConnectionClosedError: Connection was closed before we received a valid response from endpoint URL: "
            '"{endpoint}/{bucket}/{key}".)',
        ),
    ],
)
async def test_put_whose_connection_is_closed_asks_again_without_a_body(
    store_http: S3Server, role: str, stage: Stage, cause: str
) -> None:
    """A server may refuse a put and close before reading the body: the server's answer to a bodiless put decides."""
    proxy = CuttingProxy(port_of(store_http), f"PUT /{store_http.bucket}/{SCRATCH_PREFIX}".encode(), times=1)
    try:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        result = await check_target(target(store_http, role=role, endpoint_url=endpoint))
        key = str(result.facts["scratch_key"])
        assert (result.status, result.stage) == (Status.FAILED, stage)
        assert result.cause == cause.format(bucket=store_http.bucket, key=key, endpoint=endpoint)
        assert steps(result)[-1] == ("write", Status.FAILED)
        assert proxy.cut == 1
        assert key not in scratch_objects(store_http)  # the empty object an accepted put left is cleaned up
    finally:
        proxy.close()


async def test_put_whose_connection_is_closed_also_without_a_body_fails_at_operation(store_http: S3Server) -> None:
    proxy = CuttingProxy(port_of(store_http), f"PUT /{store_http.bucket}/{SCRATCH_PREFIX}".encode())
    try:
        result = await check_target(target(store_http, endpoint_url=f"http://127.0.0.1:{proxy.port}"))
        assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
        assert result.cause.startswith(
            "the connection was closed during PutObject, also without a body (ConnectionClosedError: "
        )
        assert "proxy, gateway or firewall" in result.remediation
        assert proxy.cut == 2
    finally:
        proxy.close()


# --- TLS ----------------------------------------------------------------------------------------------


async def test_https_endpoint_with_its_ca_file_passes(store_tls: S3Server) -> None:
    result = await check_target(target(store_tls, ca_file=store_tls.ca_file))
    assert result.status == Status.PASSED, result.cause
    assert "tls handshake" in [name for name, _ in steps(result)]
    assert result.facts["tls_version"] == "TLSv1.3"


async def test_https_endpoint_signed_by_another_ca_fails_at_tls(store_tls: S3Server) -> None:
    result = await check_target(target(store_tls, ca_file=store_tls.wrong_ca_file))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert "ca_file" in result.remediation


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_unverified_https_passes_with_a_warning(store_tls: S3Server) -> None:
    result = await check_target(target(store_tls, tls_verify=False))
    assert (result.status, result.stage) == (Status.WARNING, Stage.TLS)
    assert (
        result.cause
        == f"the certificate of {urlsplit(store_tls.endpoint).hostname} is not verified (tls_verify: false)"
    )


# --- network ------------------------------------------------------------------------------------------


async def test_closed_port_fails_at_connect(s3: S3Server, closed_port: int) -> None:
    result = await check_target(target(s3, endpoint_url=f"http://127.0.0.1:{closed_port}"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert "Connection refused" in result.cause


@pytest.mark.parametrize(("scheme", "stage"), [("http", Stage.AUTH), ("https", Stage.TLS)])
async def test_stalled_endpoint_fails_on_time_at_the_stage_it_hung(
    s3: S3Server, stall: StallServer, scheme: str, stage: Stage
) -> None:
    start = time.monotonic()
    result = await check_target(target(s3, endpoint_url=f"{scheme}://127.0.0.1:{stall.port}", timeout=1))
    elapsed = time.monotonic() - start
    assert (result.status, result.stage) == (Status.FAILED, stage)
    assert 1.0 <= elapsed < 1.5


# --- secrets and config -----------------------------------------------------------------------------


async def test_secret_key_and_session_token_never_appear_in_any_output(
    store_http: S3Server, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    planted_secret, planted_token = "Planted/Secret+Key0123456789abcdefghijklm", "Planted-Session-Token-5d1e"
    caplog.set_level(logging.DEBUG)
    admin = store_http.keys["admin"]
    targets = [
        target(
            store_http,
            name="bad-secret",
            role=None,
            access_key_id=admin.access_key_id,
            secret_access_key=planted_secret,
        ),
        target(
            store_http,
            name="bad-token",
            role=None,
            access_key_id=admin.access_key_id,
            secret_access_key=planted_secret,
            session_token=planted_token,
        ),
        target(
            store_http,
            name="refused",
            role=None,
            access_key_id="AKIAUNKNOWNUNKNOWN00",
            secret_access_key=planted_secret,
            endpoint_url=f"http://127.0.0.1:{store_http.endpoint.rsplit(':', 1)[1]}",
        ),
    ]
    run = await run_targets(targets)
    assert [r.status for r in run.results] == [Status.FAILED] * 3
    captured = capsys.readouterr()
    outputs = [run.model_dump_json(), report.to_json(run), report.to_text(run), report.to_junit(run), caplog.text]
    outputs += [captured.out, captured.err]
    assert caplog.text  # urllib3 logged the requests at DEBUG: the scan below looked at real log lines
    for output in outputs:
        assert planted_secret not in output and planted_token not in output
