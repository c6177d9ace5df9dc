"""The azure_blob kind against a real Azurite on 127.0.0.1 (tests/services/azurite.py), every path for real."""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app import report
from app.checks.azure_blob import SCRATCH_PREFIX, AzureBlobTarget
from app.checks.base import Stage, Status
from app.results import Result
from app.runner import check_target, run_targets
from tests.servers import CuttingProxy, StallServer
from tests.services import azurite as service
from tests.services.azurite import Azurite

pytestmark = pytest.mark.integration


@pytest.fixture
def container(azurite: Azurite) -> Iterator[str]:
    """A fresh container of the development account, removed afterwards."""
    name = f"probe-{uuid.uuid4().hex[:16]}"
    client = azurite.service()
    client.create_container(name)
    yield name
    client.delete_container(name)


def target(azurite: Azurite, container: str | None, **fields: Any) -> AzureBlobTarget:
    values: dict[str, Any] = {
        "name": "blobs",
        "kind": "azure_blob",
        "account_name": service.ACCOUNT,
        "account_key": service.ACCOUNT_KEY,
        "endpoint": azurite.endpoint,
        "container": container,
        "scratch_bytes": 256 * 1024,
    }
    values.update(fields)
    return AzureBlobTarget.model_validate({key: value for key, value in values.items() if value is not None})


def only(azurite: Azurite, container: str | None, **credential: Any) -> AzureBlobTarget:
    """A target with just the credential given (no account key, account name or endpoint)."""
    return target(azurite, container, account_name=None, account_key=None, endpoint=None, **credential)


def account_sas(**permissions: bool) -> str:
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    return generate_account_sas(
        service.ACCOUNT,
        service.ACCOUNT_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(**permissions),
        datetime.now(UTC) + timedelta(hours=1),
    )


def container_sas(container: str, **permissions: bool) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        service.ACCOUNT,
        container,
        service.ACCOUNT_KEY,
        permission=ContainerSasPermissions(**permissions),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


@pytest.fixture
def cutting(azurite: Azurite) -> Iterator[Callable[..., CuttingProxy]]:
    """Starts relays to Azurite that cut chosen answers (tests/servers.py); all are closed afterwards."""
    proxies: list[CuttingProxy] = []

    def start(request: str, **options: Any) -> CuttingProxy:
        proxies.append(CuttingProxy(azurite.port, request.encode(), **options))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.close()


def through(proxy: CuttingProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}/{service.ACCOUNT}"


def connection_string_with(sas: str, azurite: Azurite) -> str:
    return f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={sas}"


def wait_for_check_thread(name: str, within: float) -> None:
    """The thread the runner ran target `name` in has ended: every request of the check has given up."""
    for thread in threading.enumerate():
        if thread.name == f"check-{name}":
            thread.join(within)
            assert not thread.is_alive(), f"the check of {name} still runs {within} s after its result"


def scratch_blobs(azurite: Azurite, container: str) -> list[str]:
    blobs = azurite.service().get_container_client(container).list_blobs(name_starts_with="airia-test-pod/")
    return [blob.name for blob in blobs]


def steps(result: Result) -> list[str]:
    return [step.name for step in result.steps]


ROUND_TRIP = ["client", "resolve", "connect", "account", "container", "upload", "download", "delete"]


# --- passing ---------------------------------------------------------------------------------------


async def test_account_key_passes_every_step_and_leaves_nothing_behind(azurite: Azurite, container: str) -> None:
    result = await check_target(target(azurite, container))
    assert result.status == Status.PASSED, result.cause
    assert steps(result) == ROUND_TRIP
    facts = result.facts
    assert (facts["account_name"], facts["container"], facts["scratch_bytes"]) == (service.ACCOUNT, container, 262144)
    assert facts["endpoint"] == f"http://127.0.0.1:{azurite.port}"
    assert facts["account_kind"] and facts["sku_name"]
    assert float(facts["upload_mib_s"]) > 0 and float(facts["download_mib_s"]) > 0  # type: ignore[arg-type]
    download = next(s for s in result.steps if s.name == "download")
    assert download.detail == "262144 bytes, identical"
    assert scratch_blobs(azurite, container) == []


async def test_connection_string_passes(azurite: Azurite, container: str) -> None:
    result = await check_target(only(azurite, container, connection_string=azurite.connection_string))
    assert result.status == Status.PASSED, result.cause
    assert steps(result) == ROUND_TRIP


async def test_account_sas_with_read_write_delete_passes(azurite: Azurite, container: str) -> None:
    sas = account_sas(read=True, write=True, delete=True, list=True)
    result = await check_target(only(azurite, container, sas_url=f"{azurite.endpoint}?{sas}"))
    assert result.status == Status.PASSED, result.cause
    assert scratch_blobs(azurite, container) == []


async def test_container_sas_names_its_container_and_passes(azurite: Azurite, container: str) -> None:
    sas = container_sas(container, read=True, write=True, delete=True)
    blobs = only(azurite, None, sas_url=f"{azurite.endpoint}/{container}?{sas}")
    assert blobs.container_sas
    result = await check_target(blobs)
    assert result.status == Status.PASSED, result.cause
    assert result.facts["container"] == container
    step = next(s for s in result.steps if s.name == "container")
    assert "the upload proves it exists" in step.detail
    assert scratch_blobs(azurite, container) == []


async def test_container_sas_in_a_connection_string_passes(azurite: Azurite, container: str) -> None:
    sas = container_sas(container, read=True, write=True, delete=True)
    blobs = only(azurite, container, connection_string=connection_string_with(sas, azurite))
    assert blobs.container_sas
    result = await check_target(blobs)
    assert result.status == Status.PASSED, result.cause
    assert steps(result) == ROUND_TRIP
    step = next(s for s in result.steps if s.name == "container")
    assert "the upload proves it exists" in step.detail
    assert scratch_blobs(azurite, container) == []


async def test_create_container_creates_a_missing_one(azurite: Azurite) -> None:
    name = f"created-{uuid.uuid4().hex[:16]}"
    try:
        result = await check_target(target(azurite, name, create_container=True))
        assert result.status == Status.PASSED, result.cause
        assert result.facts["container_created"] is True
        assert azurite.service().get_container_client(name).exists()
        assert scratch_blobs(azurite, name) == []
    finally:
        azurite.service().delete_container(name)


async def test_pinned_api_version_is_sent(azurite: Azurite, container: str) -> None:
    result = await check_target(target(azurite, container, api_version="2025-11-05"))
    assert result.status == Status.PASSED, result.cause
    assert result.facts["api_version"] == "2025-11-05"


async def test_https_with_the_ca_file_passes(azurite_https: Azurite) -> None:
    assert azurite_https.ca_file is not None
    name = f"probe-{uuid.uuid4().hex[:16]}"
    azurite_https.service().create_container(name)
    result = await check_target(target(azurite_https, name, ca_file=azurite_https.ca_file))
    assert result.status == Status.PASSED, result.cause
    assert steps(result) == [*ROUND_TRIP[:3], "tls handshake", *ROUND_TRIP[3:]]
    assert result.facts["tls_version"] == "TLSv1.3"


# --- failing ---------------------------------------------------------------------------------------


async def test_wrong_key_fails_at_auth(azurite: Azurite, container: str) -> None:
    wrong = base64.b64encode(b"not the key of devstoreaccount1").decode()
    result = await check_target(target(azurite, container, account_key=wrong))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert steps(result)[-1] == "account"
    assert result.cause.startswith("read the account information: HTTP 403 AuthorizationFailure")
    assert "account key" in result.remediation and "firewall" in result.remediation


async def test_forged_sas_signature_fails_at_auth(azurite: Azurite, container: str) -> None:
    sas = account_sas(read=True, write=True, delete=True).replace("sig=", "sig=AAAA")
    result = await check_target(only(azurite, container, sas_url=f"{azurite.endpoint}?{sas}"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert "HTTP 403" in result.cause


async def test_missing_container_fails_and_says_how_to_create_it(azurite: Azurite) -> None:
    result = await check_target(target(azurite, "no-such-container"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert steps(result)[-1] == "container"
    assert result.cause.startswith("read the container's properties: HTTP 404 ContainerNotFound")
    assert (
        result.remediation
        == "create container no-such-container (or set create_container: true to let the check create it)"
    )


async def test_read_only_sas_fails_the_upload_at_permission(azurite: Azurite, container: str) -> None:
    sas = account_sas(read=True, list=True)
    result = await check_target(only(azurite, container, sas_url=f"{azurite.endpoint}?{sas}"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-1] == "upload"
    assert result.cause.startswith("upload the scratch blob: HTTP 403 AuthorizationPermissionMismatch")
    assert result.remediation.startswith("issue the SAS with the 'w' permission")
    assert scratch_blobs(azurite, container) == []


async def test_read_only_sas_cannot_create_the_container(azurite: Azurite) -> None:
    sas = account_sas(read=True, list=True)
    name = f"never-{uuid.uuid4().hex[:16]}"
    result = await check_target(only(azurite, name, sas_url=f"{azurite.endpoint}?{sas}", create_container=True))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert result.cause.startswith("create the container: HTTP 403 AuthorizationPermissionMismatch")
    assert "'c' permission" in result.remediation
    assert not azurite.service().get_container_client(name).exists()


async def test_sas_in_a_connection_string_that_may_not_read_account_information_goes_on(
    azurite: Azurite, container: str
) -> None:
    sas = container_sas(container, write=True, delete=True)
    result = await check_target(only(azurite, container, connection_string=connection_string_with(sas, azurite)))
    account = next(s for s in result.steps if s.name == "account")
    assert account.status == Status.PASSED
    assert account.detail == "this SAS may not read account information; the upload proves the credential"
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-2:] == ["upload", "download"]
    assert result.remediation.startswith("issue the SAS with the 'r' permission")
    assert scratch_blobs(azurite, container) == []  # the SAS may delete: the scratch blob is cleaned up


async def test_sas_without_delete_fails_and_names_the_blob_left_behind(azurite: Azurite, container: str) -> None:
    sas = account_sas(read=True, write=True, list=True)
    result = await check_target(only(azurite, container, sas_url=f"{azurite.endpoint}?{sas}"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.PERMISSION)
    assert steps(result)[-1] == "delete"
    assert result.cause.startswith("delete the scratch blob: HTTP 403 AuthorizationPermissionMismatch")
    [left] = scratch_blobs(azurite, container)
    assert left.startswith(SCRATCH_PREFIX)
    assert result.remediation.endswith(f"then remove the scratch blob {left} it left behind")
    azurite.service().get_container_client(container).delete_blob(left)


async def test_api_version_unknown_to_the_sdk_fails_before_any_request(azurite: Azurite, container: str) -> None:
    result = await check_target(target(azurite, container, api_version="2099-01-01"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert steps(result) == ["client"]
    assert result.cause.startswith("the Azure SDK refuses this configuration: Unsupported API version '2099-01-01'")


async def test_https_without_the_ca_fails_at_tls(azurite_https: Azurite) -> None:
    result = await check_target(target(azurite_https, "any-container"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert "unable to get local issuer certificate" in result.cause


async def test_https_to_the_plain_port_fails_at_tls(azurite: Azurite) -> None:
    result = await check_target(target(azurite, "any-container", endpoint=azurite.endpoint.replace("http:", "https:")))
    assert (result.status, result.stage) == (Status.FAILED, Stage.TLS)
    assert result.cause == "the port does not speak TLS (its answer is not a TLS record)"


async def test_closed_port_fails_at_connect(closed_port: int) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}/{service.ACCOUNT}"
    result = await check_target(target(Azurite(closed_port), "any-container", endpoint=endpoint))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert result.cause == f"cannot connect to 127.0.0.1:{closed_port}: Connection refused"


async def test_unreachable_proxy_is_named(
    azurite: Azurite, container: str, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{closed_port}"
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    result = await check_target(target(azurite, container))
    assert (result.status, result.stage) == (Status.FAILED, Stage.CONNECT)
    assert steps(result) == ["client", "account"]  # no direct resolve or connect: the SDK goes through the proxy
    assert result.facts["proxy"] == proxy
    assert result.cause == f"read the account information: cannot reach the proxy {proxy} (Connection refused)"


@pytest.mark.parametrize(
    ("scheme", "stage", "step"), [("http", Stage.AUTH, "account"), ("https", Stage.TLS, "tls handshake")]
)
async def test_stalled_server_fails_on_time_at_the_stage_it_hung(
    stall: StallServer, scheme: str, stage: Stage, step: str
) -> None:
    endpoint = f"{scheme}://127.0.0.1:{stall.port}/{service.ACCOUNT}"
    start = time.monotonic()
    result = await check_target(target(Azurite(stall.port), "any-container", endpoint=endpoint, timeout=2))
    elapsed = time.monotonic() - start
    assert (result.status, result.stage) == (Status.FAILED, stage)
    assert steps(result)[-1] == step
    assert 1.5 <= elapsed < 2.5


async def test_download_that_breaks_off_is_named_and_the_blob_removed(
    azurite: Azurite, container: str, cutting: Callable[..., CuttingProxy]
) -> None:
    proxy = cutting(f"GET /{service.ACCOUNT}/{container}/{SCRATCH_PREFIX}", body_bytes=1000)
    result = await check_target(target(azurite, container, endpoint=through(proxy), timeout=10))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert steps(result)[-1] == "download"
    assert result.cause.startswith("download the scratch blob: the answer from 127.0.0.1 broke off (")
    assert "IncompleteRead" in result.cause
    assert "proxy, firewall or load balancer" in result.remediation
    assert scratch_blobs(azurite, container) == []


async def test_download_that_stalls_gives_up_by_the_deadline_despite_the_sdks_rereads(
    azurite: Azurite, container: str, cutting: Callable[..., CuttingProxy]
) -> None:
    proxy = cutting(f"GET /{service.ACCOUNT}/{container}/{SCRATCH_PREFIX}", body_bytes=1000, hang=True)
    start = time.monotonic()
    result = await check_target(target(azurite, container, name="stalled-download", endpoint=through(proxy), timeout=4))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)
    assert steps(result)[-1] == "download"
    wait_for_check_thread("stalled-download", within=1.5)
    assert time.monotonic() - start < 5.5  # unbounded, three full-length reads and two pauses took 13 s
    assert proxy.cut == 3  # the SDK's own re-reads, each cut again
    assert scratch_blobs(azurite, container) == []


async def test_upload_whose_answer_is_lost_is_deleted_after_the_deadline(
    azurite: Azurite, container: str, cutting: Callable[..., CuttingProxy]
) -> None:
    proxy = cutting(f"PUT /{service.ACCOUNT}/{container}/{SCRATCH_PREFIX}", hang=True)
    result = await check_target(target(azurite, container, name="lost-upload", endpoint=through(proxy), timeout=2))
    assert (result.status, result.stage) == (Status.FAILED, Stage.OPERATION)  # stalled, not refused
    assert steps(result)[-1] == "upload"
    assert proxy.cut == 1  # Azurite stored the blob; its answer never arrived
    wait_for_check_thread("lost-upload", within=3)
    assert scratch_blobs(azurite, container) == []


# --- secrets and config -----------------------------------------------------------------------------


async def test_secrets_never_appear_in_any_output(
    azurite: Azurite,
    container: str,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    planted_key = base64.b64encode(b"Planted-Secret-az-key-7f3a9c1e").decode()
    sas = account_sas(read=True, list=True)
    forged = sas.replace("sig=", "sig=Planted0Sig")
    caplog.set_level(logging.DEBUG)
    closed = f"http://127.0.0.1:{closed_port}/{service.ACCOUNT}"
    targets = [
        target(azurite, container, name="wrong-key", account_key=planted_key),
        target(azurite, container, name="closed", account_key=planted_key, endpoint=closed),
        only(
            azurite,
            container,
            name="wrong-string",
            connection_string=azurite.connection_string.replace(service.ACCOUNT_KEY, planted_key),
        ),
        only(azurite, container, name="forged-sas", sas_url=f"{azurite.endpoint}?{forged}"),
        only(azurite, container, name="read-only-sas", sas_url=f"{azurite.endpoint}?{sas}"),
    ]
    secrets = {secret for t in targets for secret in t.secrets()}
    assert planted_key in secrets and any(s.startswith("Planted0Sig") for s in secrets)
    run = await run_targets(targets)
    assert [r.status for r in run.results] == [Status.FAILED] * 5
    assert [r.stage for r in run.results] == [Stage.AUTH, Stage.CONNECT, Stage.AUTH, Stage.AUTH, Stage.PERMISSION]
    outputs = [run.model_dump_json(), report.to_json(run), report.to_text(run), report.to_junit(run), caplog.text]
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err, repr(targets)]
    for output in outputs:
        for secret in secrets:
            assert secret not in output
