"""s3: a bucket on AWS S3 or an S3-compatible store that the platform can write, read back and delete in.

botocore (boto3's engine) with explicit timeouts from the runner's deadline and one attempt per request
(no hidden retries), also for the clients botocore makes itself (STS, for IRSA's web identity). The service
models are loaded once per process and shared by every check's session. Failures are classified by botocore
exception type and S3 error code. HEAD responses carry no error code, so credentials are proven with a
ListObjectsV2 call, whose errors do. Whatever fails once the scratch object's put is sent, it is deleted, with a
few seconds beyond the deadline to do so.

Two behaviours of real servers that emulators never show are handled here: a refused put whose answer is lost
because the server closed the connection before reading the body (see `_put`), and a server that rejects the
signing region and names its own, which botocore follows silently (see `_follow_signing_region`).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import ssl
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import FilePath, SecretStr, StringConstraints, field_validator, model_validator

from app.checks import aws, facts, proxy_env
from app.checks.base import CLEAN_UP_GRACE, CheckFailed, ConfiguredUrl, HeaderSecret, Probe, Stage, Target, find_cause
from app.checks.net import DROPPED, NO_ANSWER, connect, default_port, resolve
from app.checks.tls import handshake_step, tls_failure
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from botocore.session import Session

SCRATCH_BYTES = 256 * 1024
SCRATCH_PREFIX = "airia-test-pod/"
# botocore's default ("when_supported") streams a put's body in aws-chunked encoding with a trailing checksum. A server
# that refuses the put answers before reading that stream and closes the connection; the client, still sending, then
# sees the connection closed (over HTTPS an SSL EOF) instead of the answer. A body with a Content-Length is read before
# the answer. Integrity is proven by comparing the object read back.
CHECKSUMS = "when_required"

_DENIED = (
    Stage.PERMISSION,
    "s3:{action} denied on {bucket}{object} ({code})",
    "grant s3:{action} on {resource} to the identity the pod uses (IAM policy, bucket policy or the store's user "
    "policy), and check the bucket belongs to your account",
)
_MISSING_BUCKET = (
    Stage.OPERATION,
    "bucket {bucket} does not exist at {endpoint}",
    "create the bucket (the platform does not create it) or correct bucket, region and endpoint_url",
)
_REDIRECT = (
    Stage.OPERATION,
    "bucket {bucket} is not in region {region}{actual_region}",
    "set region: {where} in this target (and the platform's S3 settings)",
)
# S3 error code → (stage, cause, remediation); {action}, {bucket}, {object}, {resource}, {code}, {key_id},
# {endpoint}, {region}, {actual_region} and {where} are filled in
_ERROR_CODES: dict[str, tuple[Stage, str, str]] = {
    "AccessDenied": _DENIED,
    "AllAccessDisabled": _DENIED,
    "403": _DENIED,
    "NoSuchBucket": _MISSING_BUCKET,
    "404": _MISSING_BUCKET,
    "PermanentRedirect": _REDIRECT,
    "301": _REDIRECT,
    "AuthorizationHeaderMalformed": _REDIRECT,
    "IllegalLocationConstraintException": _REDIRECT,
    "InvalidAccessKeyId": (
        Stage.AUTH,
        "the server does not know access key id {key_id}",
        "check access_key_id: it must be a key of this account (or of this S3-compatible store) that is active",
    ),
    "SignatureDoesNotMatch": (
        Stage.AUTH,
        "the secret access key does not match access key id {key_id}",
        "check secret_access_key (the secret the pod is given); the key may have been rotated",
    ),
    "RequestTimeTooSkewed": (
        Stage.AUTH,
        "the pod's clock differs too much from the server's for a valid signature",
        "synchronise the node's clock (NTP); S3 accepts at most 15 minutes of skew",
    ),
    "ExpiredToken": (
        Stage.AUTH,
        "the session token has expired",
        "issue fresh temporary credentials, or drop the static keys and let the pod use its role (IRSA)",
    ),
    "InvalidToken": (
        Stage.AUTH,
        "the session token is malformed or invalid",
        "check session_token: it must belong to the same temporary credentials as the key pair",
    ),
    "TokenRefreshRequired": (
        Stage.AUTH,
        "the session token must be refreshed",
        "issue fresh temporary credentials, or let the pod use its role (IRSA)",
    ),
}


class S3Target(Target):
    default_timeout: ClassVar[float] = 15.0
    warm_imports: ClassVar[tuple[str, ...]] = ("botocore.session", "botocore.config", "app.checks.aws:parse_s3_models")

    kind: Literal["s3"]
    bucket: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")]
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$")] = "us-east-1"
    endpoint_url: ConfiguredUrl | None = None  # an S3-compatible store (MinIO, Ceph ...); default: AWS for the region
    access_key_id: aws.AccessKeyId | None = None
    secret_access_key: SecretStr | None = None
    session_token: HeaderSecret | None = None  # sent as X-Amz-Security-Token
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    ca_file: FilePath | None = None  # PEM bundle to trust instead of the system store
    tls_verify: bool = True  # chain and hostname; off only for a throwaway test store

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. https://minio.example.com:9000")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be the service's root URL (scheme, host and port only)")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> S3Target:
        aws.check_keys(self.access_key_id, self.secret_access_key, self.session_token)
        if self.ca_file is not None and not self.tls_verify:
            raise ValueError("ca_file is unused with tls_verify: false; keep tls_verify and give the CA instead")
        if self.endpoint_url is not None and self.endpoint_url.startswith("http://") and self.ca_file is not None:
            raise ValueError("ca_file needs an https:// endpoint_url")
        return self

    def check(self, probe: Probe) -> None:
        session = aws.session(probe, self.access_key_id, self.secret_access_key, self.session_token)
        session.set_config_variable("region", self.region)  # the signing region; see _follow_signing_region
        url = urlsplit(self._request_url(session))
        proxy = aws.route(probe, session, url.geturl())
        host, port = url.hostname or "", default_port(url.scheme, url.port)
        probe.facts[facts.ENDPOINT] = f"{url.scheme}://{url.netloc}"
        probe.facts["addressing"] = "virtual" if host.startswith(self.bucket + ".") else "path"
        try:
            addresses = [] if proxy else resolve(probe, host, port)  # the proxy, not the pod, resolves the name
        except CheckFailed as failure:
            if probe.facts["addressing"] == "virtual" and self.endpoint_url:
                failure.remediation = (
                    f"requests go to the bucket's own host name {host} (virtual-hosted style): set "
                    f"addressing_style: path, as most S3-compatible stores need, or add a wildcard DNS record"
                )
            raise
        if not proxy:  # through a proxy, a direct connection would prove nothing
            with connect(probe, host, port, addresses) as sock:
                if url.scheme == "https":
                    handshake_step(probe, sock, host, ca_file=self.ca_file, verify=self.tls_verify)
        self._auth(probe, session)
        self._bucket(probe, session)
        self._round_trip(probe, session)

    def _request_url(self, session: Session) -> str:
        """Where requests for this bucket go (endpoint rules and addressing style applied), found offline."""
        from botocore import UNSIGNED
        from botocore.config import Config

        unsigned = session.create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=Config(signature_version=UNSIGNED, s3={"addressing_style": self.addressing_style}),
        )
        with contextlib.closing(unsigned):
            return str(unsigned.generate_presigned_url("head_bucket", Params={"Bucket": self.bucket}))

    @contextlib.contextmanager
    def _client(self, session: Session, timeout: float, checksums: str | None = None) -> Iterator[Any]:
        """A client on the probe's clock (see aws.client), signing for the session's region, which it follows."""
        with aws.client(
            session,
            "s3",
            region=session.get_config_variable("region"),
            endpoint_url=self.endpoint_url,
            timeout=timeout,
            ca_file=self.ca_file,
            tls_verify=self.tls_verify,
            s3={"addressing_style": self.addressing_style},
            request_checksum_calculation=checksums or CHECKSUMS,
        ) as client:
            client.meta.events.register_first("needs-retry.s3", functools.partial(_follow_signing_region, session))
            yield client

    def _auth(self, probe: Probe, session: Session) -> None:
        """Credentials the server accepts: any answer but a credential error proves them."""
        with probe.step("auth", Stage.AUTH):
            aws.credentials(probe, session, explicit=self.access_key_id is not None)
            try:
                with self._client(session, probe.remaining()) as client:
                    client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                probe.note("credentials accepted; listing allowed")
            except Exception as error:
                failure = self._failure(error, probe, "ListBucket")
                if failure.stage in (Stage.CONNECT, Stage.TLS, Stage.AUTH):
                    raise failure from None
                probe.note(f"credentials accepted ({_code(error)})")
            signing_region = session.get_config_variable("region")
            if signing_region != self.region:
                probe.facts["signing_region"] = signing_region
                probe.warn(
                    Stage.AUTH,
                    f"the server rejects requests signed for region {self.region} and expects {signing_region} "
                    "(AuthorizationHeaderMalformed): boto3 re-signs each refused request for it, other clients may not",
                    f"set region: {signing_region} in this target and in the platform's S3 settings",
                )

    def _bucket(self, probe: Probe, session: Session) -> None:
        """The bucket exists, in the configured region."""
        with probe.step("bucket", Stage.OPERATION):
            try:
                with self._client(session, probe.remaining()) as client:
                    response = client.head_bucket(Bucket=self.bucket)
            except Exception as error:
                failure = self._failure(error, probe, "ListBucket")
                if failure.stage != Stage.PERMISSION:
                    raise failure from None
                # HeadBucket needs s3:ListBucket; the round trip below still proves what the platform does
                response = getattr(error, "response", {})
                probe.warn(
                    Stage.PERMISSION,
                    f"s3:ListBucket is not granted on bucket {self.bucket}: its existence and region are unconfirmed",
                    f"grant s3:ListBucket on arn:aws:s3:::{self.bucket} to the identity the pod uses",
                )
            region = _bucket_region(response)
            if region:
                probe.facts["bucket_region"] = region
                # the configured region, unless the server named another one (see _auth)
                signing_region = session.get_config_variable("region")
                if region != signing_region:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"bucket {self.bucket} is in region {region}, not {signing_region}",
                        f"set region: {region} in this target (and in the platform's S3 settings)",
                    )
            probe.note(f"{self.bucket} in {region or 'an unreported region'}")

    def _round_trip(self, probe: Probe, session: Session) -> None:
        """Put, get, compare and delete a uniquely named scratch object; customer objects are never touched."""
        key = f"{SCRATCH_PREFIX}scratch-{secrets.token_hex(8)}"
        payload = secrets.token_bytes(SCRATCH_BYTES)
        probe.facts["scratch_key"] = key
        stored = True  # from before the put: one whose answer is lost may still have stored the object
        try:
            with probe.step("write", Stage.OPERATION):
                start = time.perf_counter()
                with self._classified(probe, "PutObject", key):
                    self._put(probe, session, key, payload)
                probe.throughput("upload", SCRATCH_BYTES, start)
            with probe.step("read", Stage.OPERATION):
                start = time.perf_counter()
                with self._classified(probe, "GetObject", key), self._client(session, probe.remaining()) as client:
                    body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                probe.throughput("download", SCRATCH_BYTES, start)
                if body != payload:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"the object read back differs from the {SCRATCH_BYTES} bytes written",
                        "check for a proxy or gateway that rewrites objects, or server-side transformations",
                    )
            with probe.step("delete", Stage.OPERATION):
                with self._classified(probe, "DeleteObject", key), self._client(session, probe.remaining()) as client:
                    client.delete_object(Bucket=self.bucket, Key=key)
                stored = False
        finally:
            if stored:  # a step failed: remove the scratch object if the server lets us (a missing key is no error)
                grace = max(probe.remaining(), CLEAN_UP_GRACE)
                # the step's own failure is what gets reported
                with contextlib.suppress(Exception), self._client(session, grace) as client:
                    client.delete_object(Bucket=self.bucket, Key=key)

    def _put(self, probe: Probe, session: Session, key: str, payload: bytes) -> None:
        """Put the scratch object; if the connection is lost on the way, ask the server for its real answer.

        A server that refuses a put may answer and close before it has read the body: the client, still sending,
        then sees a closed connection (an SSL EOF over HTTPS) instead of AccessDenied. The same put without a body
        gets an answer nothing cuts short: a refusal raises its own error code; an accepted one means the transfer
        itself broke.
        """
        try:
            with self._client(session, probe.remaining()) as client:
                client.put_object(Bucket=self.bucket, Key=key, Body=payload)
            return
        except Exception as error:
            if not _connection_lost(error) or probe.remaining(floor=0) == 0:
                raise
            lost = f"{type(error).__name__}: {clean_remote_text(str(error))}"
        try:  # never streamed: Content-Length: 0 leaves the server nothing unread when it answers and closes
            with self._client(session, probe.remaining(), checksums="when_required") as client:
                client.put_object(Bucket=self.bucket, Key=key, Body=b"")
        except Exception as error:
            if not _connection_lost(error):
                raise  # the server's real answer
            raise CheckFailed(
                Stage.OPERATION,
                f"the connection was closed during PutObject, also without a body ({lost})",
                "check the endpoint's log, and any proxy, gateway or firewall between the pod and the endpoint",
            ) from None
        raise CheckFailed(
            Stage.OPERATION,
            f"the connection was closed while the {SCRATCH_BYTES // 1024} KiB scratch object was sent, "
            f"yet an empty put is accepted ({lost})",
            "check for a proxy, gateway or firewall between the pod and the endpoint that limits or inspects "
            "request bodies",
        )

    @contextlib.contextmanager
    def _classified(self, probe: Probe, action: str, key: str) -> Iterator[None]:
        """The request inside either succeeds or ends the step with a classified failure."""
        try:
            yield
        except CheckFailed:
            raise
        except Exception as error:
            failure = self._failure(error, probe, action, key)
            if action == "DeleteObject" and failure.stage == Stage.PERMISSION:
                failure.cause += f"; the scratch object {key} is left in the bucket"
            raise failure from None

    def _failure(self, error: Exception, probe: Probe, action: str, key: str | None = None) -> CheckFailed:
        """One botocore error as a stage, a cause and a remediation, by exception type and S3 error code."""
        from botocore import exceptions

        stage = probe.stage
        if isinstance(error, exceptions.ConnectTimeoutError):
            return CheckFailed(Stage.CONNECT, "no answer from the endpoint before the timeout", DROPPED)
        if isinstance(error, exceptions.ReadTimeoutError):
            return CheckFailed(stage, f"{action} got no answer before the timeout", NO_ANSWER[Stage.OPERATION])
        if isinstance(error, exceptions.SSLError):
            endpoint = str(probe.facts.get(facts.ENDPOINT, ""))
            underlying = find_cause(error, ssl.SSLError) or OSError(str(error))
            failure = tls_failure(underlying, urlsplit(endpoint).hostname or "")
            return proxy_env.tls_through(failure, underlying, proxy_env.ProxySettings.from_env().for_url(endpoint))
        if isinstance(error, exceptions.EndpointConnectionError):
            return CheckFailed(
                Stage.CONNECT,
                f"cannot reach the endpoint: {clean_remote_text(str(error))}",
                "check endpoint_url and that the pod may reach it (NetworkPolicy, proxy settings)",
            )
        if not isinstance(error, exceptions.ClientError):
            return CheckFailed(
                stage,
                f"{action} failed: {type(error).__name__}: {clean_remote_text(str(error))}",
                "check the endpoint's health and log",
            )
        code = _code(error)
        message = clean_remote_text(str(error.response.get("Error", {}).get("Message", "")))
        stage, cause, remediation = _ERROR_CODES.get(
            code,
            (
                Stage.OPERATION,
                "{action} failed: {code} {message}",
                "look the error code up in the S3 error reference and check the endpoint's log",
            ),
        )
        region = _bucket_region(error.response) or error.response.get("Error", {}).get("Region")
        values = {
            "action": action,
            "bucket": self.bucket,
            "object": f"/{key}" if key else "",
            "resource": f"arn:aws:s3:::{self.bucket}" + ("/*" if key else ""),
            "code": code,
            "message": message,
            "key_id": self.access_key_id or "(from the chain)",
            "endpoint": probe.facts.get(facts.ENDPOINT, "the endpoint"),
            "region": self.region,
            "actual_region": f" but in {region}" if region else "",
            "where": region or "the bucket's region",
        }
        return CheckFailed(stage, cause.format(**values).strip(), remediation.format(**values))


def _follow_signing_region(session: Session, response: Any = None, **_: Any) -> None:
    """botocore hook on every answer: remember the region a server names when it rejects the signing region.

    botocore re-signs such a request for the named region and says nothing; the session remembers it, so the check
    reports the mismatch and signs its next requests for that region, as the platform's boto3 ends up doing.
    """
    error = response[1].get("Error", {}) if response else {}
    if error.get("Code") == "AuthorizationHeaderMalformed" and error.get("Region"):
        session.set_config_variable("region", str(error["Region"]))


def _connection_lost(error: Exception) -> bool:
    """The connection closed under a request after TLS was established, as opposed to a failed handshake."""
    from botocore import exceptions

    if isinstance(error, exceptions.ConnectionClosedError):
        return True
    return isinstance(error, exceptions.SSLError) and find_cause(error, ssl.SSLEOFError) is not None


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(error).__name__))


def _bucket_region(response: Any) -> str | None:
    headers = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region")
    return str(region) if region else None
