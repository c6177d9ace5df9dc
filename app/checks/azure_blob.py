"""azure_blob: an Azure Blob Storage container the platform can write to, read from and delete in.

Credentials: exactly one of `account_name` + `account_key`, `connection_string`, or `sas_url` — an account SAS URL,
or a container SAS URL (`sr=c`), which then names the container itself. `endpoint` is the account's blob endpoint
for sovereign clouds, private endpoints or an emulator (path style: `http://127.0.0.1:10000/devstoreaccount1`);
it defaults to `https://<account_name>.blob.core.windows.net`. `api_version` pins the service version the SDK
sends, for endpoints (such as an older emulator) that reject the newest one.

Steps: resolve, connect and, for https, the TLS handshake to the endpoint, done by the check itself so each is
named precisely (skipped when an HTTP(S) proxy is configured for the endpoint: the SDK then goes through it);
account (Get Account Information, asked of the container: the credential is accepted; a SAS that may not read it
is no failure, the upload proves it); container (exists, or is created with `create_container: true`; a container
SAS, in sas_url or a connection string, cannot read its own container's properties, so there the upload proves it
exists); then upload, download, compare and delete of a uniquely named scratch blob `airia-test-pod/scratch-<uuid>`,
uploaded with overwrite off so no customer blob is ever touched, with the throughput of each direction. Whatever
fails once the upload is sent, the scratch blob is deleted, with a few seconds beyond the deadline to do so.

Failures are classified by HTTP status and x-ms-error-code (AuthorizationFailure, AuthenticationFailed,
AuthorizationPermissionMismatch, ContainerNotFound ...) and by azure-core's exception types (ServiceRequestError:
the request never got out; ServiceResponseError: no answer). Every request carries the time left as its connect
and read timeouts, and retries are off, so the runner's timeout holds; the download, which the SDK re-reads on its
own, gets a share of it per attempt. One client per check, closed at its end.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, FilePath, SecretStr, StringConstraints, field_validator, model_validator

from app.checks import facts, proxy_env
from app.checks.base import CLEAN_UP_GRACE, CheckFailed, ConfiguredUrl, Probe, Stage, Target, find_cause
from app.checks.net import connect, connect_failure, default_port, resolve
from app.checks.tls import handshake_step, tls_failure, trust_file
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContainerClient

T = TypeVar("T")

AccountName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{3,24}$")]
ContainerName = Annotated[str, StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
ApiVersion = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]

SCRATCH_PREFIX = "airia-test-pod/scratch-"
# StorageStreamDownloader re-reads a body that breaks off up to 3 times, a second apart, whatever retry_total says
_DOWNLOAD_ATTEMPTS, _DOWNLOAD_PAUSES = 3, 2.0
_SAS_PERMISSION = (
    "issue the SAS with the '{letter}' permission (the check needs r, w and d; c too for create_container), "
    "or give the identity the Storage Blob Data Contributor role on the container"
)
# x-ms-error-code → (stage, remediation); {action}, {letter} and {container} are filled in
_ERROR_CODES: dict[str, tuple[Stage, str]] = {
    "AuthenticationFailed": (
        Stage.AUTH,
        "the signature does not match: check the account key (Access keys in the portal) or issue a new SAS, "
        "and check that the SAS has not expired and that the pod's clock is right",
    ),
    "AuthorizationFailure": (
        Stage.AUTH,
        "the request was refused before any permission was considered: a wrong account key or SAS signature, "
        "or the storage account's firewall does not admit the pod's network (Networking: allowed virtual "
        "networks and IP ranges, or a private endpoint)",
    ),
    "InvalidAuthenticationInfo": (Stage.AUTH, "the credential is malformed: copy the key or SAS again"),
    "AccountIsDisabled": (Stage.AUTH, "the storage account is disabled: enable it in the Azure portal"),
    "KeyBasedAuthenticationNotPermitted": (
        Stage.AUTH,
        "the account disallows shared key access: use a SAS signed with a user delegation key, or allow key access",
    ),
    "AuthorizationPermissionMismatch": (Stage.PERMISSION, _SAS_PERMISSION),
    "AuthorizationResourceTypeMismatch": (
        Stage.PERMISSION,
        "the account SAS does not cover this resource type: issue it with srt=sco (service, container, object)",
    ),
    "AuthorizationServiceMismatch": (Stage.PERMISSION, "the SAS does not cover the Blob service: issue it with ss=b"),
    "AuthorizationSourceIPMismatch": (
        Stage.PERMISSION,
        "the SAS admits other source addresses only: add the pod's egress address to its sip range",
    ),
    "AuthorizationProtocolMismatch": (Stage.PERMISSION, "the SAS requires HTTPS: use an https endpoint"),
    "InsufficientAccountPermissions": (Stage.PERMISSION, _SAS_PERMISSION),
    "ContainerNotFound": (
        Stage.OPERATION,
        "create container {container} (or set create_container: true to let the check create it)",
    ),
    "ContainerBeingDeleted": (Stage.OPERATION, "container {container} is being deleted: wait, then recreate it"),
    "ContainerDisabled": (Stage.OPERATION, "container {container} is disabled: re-enable it"),
    "ServerBusy": (Stage.OPERATION, "the account is throttling requests: lower its load or spread it across accounts"),
    "InvalidHeaderValue": (
        Stage.OPERATION,
        "the endpoint rejected a header, often the service version: set api_version to one it supports",
    ),
}


class AzureBlobTarget(Target):
    default_timeout: ClassVar[float] = 15.0
    warm_imports: ClassVar[tuple[str, ...]] = ("azure.storage.blob", "azure.core.exceptions")

    kind: Literal["azure_blob"]
    account_name: AccountName | None = None
    account_key: SecretStr | None = None
    connection_string: SecretStr | None = None
    sas_url: SecretStr | None = None
    endpoint: Annotated[ConfiguredUrl, StringConstraints(min_length=8, max_length=2048)] | None = None
    container: ContainerName | None = None
    create_container: bool = False
    ca_file: FilePath | None = None  # PEM bundle to trust instead of the system store
    api_version: ApiVersion | None = None
    scratch_bytes: Annotated[int, Field(ge=1, le=64 * 1024 * 1024)] = 1024 * 1024

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://account.blob.core.windows.net")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query: put a SAS in sas_url")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> AzureBlobTarget:
        given = [
            name
            for name, value in (
                ("account_key", self.account_key),
                ("connection_string", self.connection_string),
                ("sas_url", self.sas_url),
            )
            if value is not None
        ]
        if len(given) != 1:
            found = f" (found {' and '.join(given)})" if given else ""
            raise ValueError(
                f"give exactly one credential: account_name with account_key, connection_string, or sas_url{found}"
            )
        if self.account_key is not None and self.account_name is None:
            raise ValueError("account_name is required with account_key")
        if self.account_key is None and (self.account_name is not None or self.endpoint is not None):
            raise ValueError(
                "account_name and endpoint go with account_key only; a connection string or SAS URL carries both"
            )
        if self.connection_string is not None:
            _check_connection_string(self.connection_string.get_secret_value())
        if self.sas_url is not None:
            sas_container = _check_sas_url(self.sas_url.get_secret_value())
            if sas_container is not None and self.container not in (None, sas_container):
                raise ValueError("container differs from the container the SAS URL is issued for")
        if self.container_sas and self.create_container:
            raise ValueError("create_container needs an account SAS or key: a container SAS cannot create")
        if self.container is None and not (self.sas_url is not None and self.container_sas):
            raise ValueError("container is required (only a container SAS URL names its own)")
        return self

    def secrets(self) -> list[str]:
        """The configured secrets, plus the parts that may leak alone: a connection string's key, a SAS signature."""
        derived: list[str] = []
        if self.connection_string is not None:
            fields = _connection_fields(self.connection_string.get_secret_value())
            derived += [fields.get("accountkey", ""), *_signatures(fields.get("sharedaccesssignature", ""))]
        if self.sas_url is not None:
            derived += _signatures(urlsplit(self.sas_url.get_secret_value()).query)
        return [*super().secrets(), *(value for value in derived if value)]

    @property
    def sas_token(self) -> str | None:
        """The SAS the credential is: sas_url's query or a connection string's SharedAccessSignature; else None."""
        if self.sas_url is not None:
            return urlsplit(self.sas_url.get_secret_value()).query
        if self.connection_string is not None:
            return _connection_fields(self.connection_string.get_secret_value()).get("sharedaccesssignature")
        return None

    @property
    def container_sas(self) -> bool:
        """The SAS is issued for one container (sr=c): it may not read that container's properties or create it."""
        return parse_qs(self.sas_token or "").get("sr") == ["c"]

    def check(self, probe: Probe) -> None:
        _redact_signatures_in(logging.getLogger("urllib3.connectionpool"))
        with probe.step("client", Stage.CONNECT):
            container = self._client(probe)
            probe.note(f"API version {container.api_version}")
        probe.facts["api_version"] = container.api_version
        with container:  # closes its connections however the check ends
            self._reach(probe, container.url)
            self._account(probe, container)
            self._container(probe, container)
            self._round_trip(probe, container)

    # --- the client and the way to the endpoint -----------------------------------------------------

    def _client(self, probe: Probe) -> ContainerClient:
        """The container's client, through which every request goes; no request is sent yet."""

        options: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": probe.remaining(),
            "read_timeout": probe.remaining(),
            "max_single_get_size": self.scratch_bytes,  # one GET for the scratch blob; _round_trip bounds its re-reads
        }
        trusted = trust_file(self.ca_file)  # ca_file, or the system store with the CA bundle
        if trusted is not None:
            options["connection_verify"] = trusted
        if self.api_version is not None:
            options["api_version"] = self.api_version
        # the endpoint (hence its proxy) is known once the client has parsed the credential; building one sends nothing
        client = self._build(options | proxy_env.azure_args(""))
        routed = proxy_env.azure_args(client.url)
        return self._build(options | routed) if "proxies" in routed else client

    def _build(self, options: dict[str, Any]) -> ContainerClient:
        from azure.storage.blob import ContainerClient

        try:
            if self.sas_url is not None and self.container is None:  # by _one_credential: a container SAS URL
                return ContainerClient.from_container_url(self.sas_url.get_secret_value(), **options)
            assert self.container is not None
            if self.sas_url is not None:
                return ContainerClient(self.sas_url.get_secret_value(), self.container, **options)
            if self.connection_string is not None:
                text = self.connection_string.get_secret_value()
                return ContainerClient.from_connection_string(text, self.container, **options)
            assert self.account_name is not None  # by _one_credential
            assert self.account_key is not None
            endpoint = self.endpoint or f"https://{self.account_name}.blob.core.windows.net"
            key = {"account_name": self.account_name, "account_key": self.account_key.get_secret_value()}
            return ContainerClient(endpoint, self.container, credential=key, **options)
        except ValueError as error:  # e.g. an api_version this SDK does not know
            raise CheckFailed(
                Stage.CONNECT,
                f"the Azure SDK refuses this configuration: {clean_remote_text(str(error))}",
                "fix the field it names (api_version must be one the SDK lists)",
            ) from None

    def _reach(self, probe: Probe, url: str) -> None:
        """Resolve, connect and (https) shake hands with the endpoint, unless a proxy stands in between."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", default_port(parts.scheme, parts.port)
        probe.facts[facts.ENDPOINT] = f"{parts.scheme}://{parts.netloc}"
        # through a proxy, a direct connection would prove nothing (and the pod may not resolve the name)
        if proxy_env.record(probe, url):
            return
        with connect(probe, host, port, resolve(probe, host, port)) as sock:
            if parts.scheme == "https":
                handshake_step(probe, sock, host, ca_file=self.ca_file)

    # --- account and container ----------------------------------------------------------------------

    def _account(self, probe: Probe, container: ContainerClient) -> None:
        # asked of the container: a container SAS may read it there, every other credential anywhere
        with probe.step("account", Stage.AUTH):
            try:
                info = self._call(probe, "read the account information", "r", container.get_account_information)
            except CheckFailed as failure:
                if failure.stage != Stage.PERMISSION or self.sas_token is None:
                    raise
                probe.note("this SAS may not read account information; the upload proves the credential")
                return
            probe.facts["account_kind"] = str(info.get("account_kind") or "")
            probe.facts["sku_name"] = str(info.get("sku_name") or "")
            probe.note(f"{probe.facts['sku_name']}, {probe.facts['account_kind']}")
        probe.facts["account_name"] = container.account_name

    def _container(self, probe: Probe, container: ContainerClient) -> None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        probe.facts["container"] = container.container_name
        with probe.step("container", Stage.OPERATION):
            if self.container_sas:
                probe.note("a container SAS cannot read its container's properties; the upload proves it exists")
                return
            try:
                self._call(probe, "read the container's properties", "r", container.get_container_properties)
                probe.note("exists")
                return
            except CheckFailed as failure:
                if not isinstance(failure.__cause__, ResourceNotFoundError) or not self.create_container:
                    raise
            try:
                self._call(probe, "create the container", "c", container.create_container)
            except CheckFailed as failure:
                if not isinstance(failure.__cause__, ResourceExistsError):  # created meanwhile: as good
                    raise
            probe.note("created")
            probe.facts["container_created"] = True

    # --- the scratch blob -----------------------------------------------------------------------------

    def _round_trip(self, probe: Probe, container: ContainerClient) -> None:
        blob = container.get_blob_client(f"{SCRATCH_PREFIX}{uuid.uuid4().hex}")
        data = os.urandom(self.scratch_bytes)
        probe.facts["scratch_bytes"] = self.scratch_bytes
        deleted = False
        try:  # from before the upload: one whose answer is lost may still have stored the blob
            with probe.step("upload", Stage.OPERATION):
                started = time.perf_counter()
                self._call(probe, "upload the scratch blob", "w", blob.upload_blob, data, overwrite=False)
                probe.throughput("upload", self.scratch_bytes, started)
            with probe.step("download", Stage.OPERATION):
                started = time.perf_counter()

                def download(*, connection_timeout: float, read_timeout: float) -> bytes:
                    # the SDK's re-reads cannot be turned off: each gets its share of the time left
                    share = max((read_timeout - _DOWNLOAD_PAUSES) / _DOWNLOAD_ATTEMPTS, 0.05)
                    return blob.download_blob(connection_timeout=share, read_timeout=share).readall()

                copy = self._call(probe, "download the scratch blob", "r", download)
                probe.throughput("download", self.scratch_bytes, started)
                if copy != data:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"the scratch blob came back different ({len(copy)} bytes, {len(data)} uploaded)",
                        "something between the pod and the account alters content (a proxy or gateway): check it",
                    )
                probe.note(f"{len(copy)} bytes, identical")
            with probe.step("delete", Stage.OPERATION):
                try:
                    self._call(probe, "delete the scratch blob", "d", blob.delete_blob)
                except CheckFailed as failure:
                    raise CheckFailed(
                        failure.stage,
                        failure.cause,
                        f"{failure.remediation}; then remove the scratch blob {blob.blob_name} it left behind",
                    ) from failure.__cause__
                deleted = True
        finally:
            if not deleted:  # best effort: the failure already reported is the one that counts
                grace = max(probe.remaining(), CLEAN_UP_GRACE)
                with suppress(Exception):  # 404 included: a blob never stored is as good as deleted
                    blob.delete_blob(connection_timeout=grace, read_timeout=grace)

    # --- requests and their failures ----------------------------------------------------------------

    def _call(self, probe: Probe, action: str, letter: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One SDK call with the time left as its timeouts; an Azure error becomes a failure at its stage."""
        from azure.core.exceptions import AzureError

        try:
            return function(*args, **kwargs, connection_timeout=probe.remaining(), read_timeout=probe.remaining())
        except AzureError as error:
            raise self._failure(probe, error, action, letter) from error

    def _failure(self, probe: Probe, error: AzureError, action: str, letter: str) -> CheckFailed:
        from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

        # the downloader wraps the error that ended its last re-read in an HttpResponseError without a status
        while (
            isinstance(error, HttpResponseError) and not error.status_code and isinstance(error.__cause__, AzureError)
        ):
            error = error.__cause__
        endpoint = str(probe.facts.get(facts.ENDPOINT, ""))
        host = urlsplit(endpoint).hostname or endpoint
        if isinstance(error, HttpResponseError) and error.status_code:
            status = error.status_code
            code = getattr(error, "error_code", None)  # set by azure-storage from x-ms-error-code
            code = str(getattr(code, "value", code) or "")
            default = (Stage.AUTH, "check the credential") if status in (401, 403) else (Stage.OPERATION, "")
            stage, remediation = _ERROR_CODES.get(code, default)
            message = clean_remote_text((error.message or "").split("\n", 1)[0], limit=200)
            return CheckFailed(
                stage,
                f"{action}: HTTP {status} {code or error.reason or ''}".rstrip() + (f": {message}" if message else ""),
                remediation.format(action=action, letter=letter, container=self.container or "")
                or f"the service refused to {action}: see the error code in Azure's storage error reference",
            )
        if isinstance(error, ServiceRequestError):  # the request never got out
            ssl_error = find_cause(error, ssl.SSLError)
            if ssl_error is not None:
                proxied = proxy_env.ProxySettings.from_env().for_url(endpoint)
                return proxy_env.tls_through(tls_failure(ssl_error, host), ssl_error, proxied)
            os_error = find_cause(error, OSError, lambda e: e.errno is not None)
            proxy = proxy_env.ProxySettings.from_env().for_url(endpoint)
            if proxy:
                proxy = proxy_env.redacted(proxy)
                reason = os_error.strerror if os_error is not None else type(error).__name__
                return CheckFailed(
                    Stage.CONNECT,
                    f"{action}: cannot reach the proxy {proxy} ({reason})",
                    "check HTTPS_PROXY / HTTP_PROXY, and NO_PROXY for endpoints reached directly",
                )
            if os_error is not None:
                parts = urlsplit(endpoint)
                return connect_failure(host, default_port(parts.scheme, parts.port), os_error)
            return CheckFailed(
                Stage.CONNECT,
                f"{action}: the request could not be sent ({clean_remote_text(str(error), limit=200)})",
                "check the endpoint and, if one is configured, the HTTP(S) proxy",
            )
        if isinstance(error, ServiceResponseError):  # sent, but no (complete) answer
            return CheckFailed(
                probe.stage,
                f"{action}: no answer from {host} ({clean_remote_text(str(error), limit=200)})",
                "the endpoint accepted the request but did not answer in time: check that it is the account's blob "
                "endpoint and whether a proxy or firewall in between holds the connection",
            )
        if isinstance(error, HttpResponseError) and not error.status_code:  # an answer that broke off
            return CheckFailed(
                probe.stage,
                f"{action}: the answer from {host} broke off ({clean_remote_text(str(error), limit=200)})",
                "the connection was cut in the middle of a transfer: check whether a proxy, firewall or load "
                "balancer in between limits or resets long transfers",
            )
        return CheckFailed(
            probe.stage,
            f"{action}: {type(error).__name__}: {clean_remote_text(str(error), limit=200)}",
            "unexpected error from the Azure SDK; the cause is its own message",
        )


class _SignatureFilter(logging.Filter):
    """Blanks SAS signatures in log records: urllib3 logs every request line, query string included, at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sig=" in message:
            record.msg, record.args = _SIGNATURE.sub(r"\1***", message), None
        return True


_SIGNATURE = re.compile(r"(sig=)[^&\s\"']+")


def _redact_signatures_in(logger: logging.Logger) -> None:
    if not any(isinstance(existing, _SignatureFilter) for existing in logger.filters):
        logger.addFilter(_SignatureFilter())


def _connection_fields(text: str) -> dict[str, str]:
    """`Key=Value;...` with lower-case keys (the format is case-insensitive); values may contain '='."""
    pairs = (part.split("=", 1) for part in text.split(";") if "=" in part)
    return {key.strip().lower(): value.strip() for key, value in pairs}


def _check_connection_string(text: str) -> None:
    fields = _connection_fields(text)
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return
    if not (fields.get("accountkey") or fields.get("sharedaccesssignature")):
        raise ValueError("connection_string: needs AccountKey=... or SharedAccessSignature=...")
    if not (fields.get("accountname") or fields.get("blobendpoint")):
        raise ValueError("connection_string: needs AccountName=... or BlobEndpoint=...")


def _check_sas_url(url: str) -> str | None:
    """Raise on a SAS URL the check cannot use; return the container a container SAS is issued for, else None."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("sas_url: must be an http(s) URL")
    if "sig" not in query:
        raise ValueError("sas_url: has no SAS token (no sig= in its query)")
    resource = query.get("sr", [""])[0]
    if not resource:
        return None  # an account SAS (ss=, srt=)
    if resource != "c":
        raise ValueError("sas_url: must be an account SAS or a container SAS (sr=c), not one for a single blob")
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise ValueError("sas_url: a container SAS URL must end with the container's name")
    return unquote(name)


def _signatures(query: str) -> list[str]:
    """The sig= value of a SAS query, as written (percent-encoded) and decoded."""
    raw = [part.split("=", 1)[1] for part in query.split("&") if part.startswith("sig=")]
    return [*raw, *(unquote(value) for value in raw)]
