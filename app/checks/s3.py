"""s3: a bucket on AWS S3 or an S3-compatible store that the platform can write, read back and delete in.

botocore (boto3's engine) with explicit timeouts from the runner's deadline and one attempt per request
(no hidden retries), also for the clients botocore makes itself (STS, for IRSA's web identity). The service
models are loaded once per process and shared by every check's session. Failures are classified by botocore
exception type and S3 error code. HEAD responses carry no error code, so credentials are proven with a
ListObjectsV2 call, whose errors do. Whatever fails once the probe object's put is sent, it is deleted, with a
few seconds beyond the deadline to do so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import FilePath, SecretStr, StringConstraints, field_validator, model_validator

from app.checks.base import CheckFailed, ConfiguredUrl, Probe, Stage, Target
from app.checks.net import connect, resolve
from app.checks.tls import client_context, handshake, ssl_error_in, tls_failure
from app.sanitization import clean_remote_text

if TYPE_CHECKING:
    from botocore.loaders import Loader
    from botocore.session import Session

PROBE_BYTES = 256 * 1024
PROBE_PREFIX = "airia-test-pod/"
CLEAN_UP_GRACE = 2.0  # seconds a clean-up delete may take even when the deadline has passed

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId": (
        "the server does not know access key id {key_id}",
        "check access_key_id: it must be a key of this account (or of this S3-compatible store) that is active",
    ),
    "SignatureDoesNotMatch": (
        "the secret access key does not match access key id {key_id}",
        "check secret_access_key (the secret the pod is given); the key may have been rotated",
    ),
    "RequestTimeTooSkewed": (
        "the pod's clock differs too much from the server's for a valid signature",
        "synchronise the node's clock (NTP); S3 accepts at most 15 minutes of skew",
    ),
    "ExpiredToken": (
        "the session token has expired",
        "issue fresh temporary credentials, or drop the static keys and let the pod use its role (IRSA)",
    ),
    "InvalidToken": (
        "the session token is malformed or invalid",
        "check session_token: it must belong to the same temporary credentials as the key pair",
    ),
    "TokenRefreshRequired": (
        "the session token must be refreshed",
        "issue fresh temporary credentials, or let the pod use its role (IRSA)",
    ),
}
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "403"}
_MISSING_BUCKET_CODES = {"NoSuchBucket", "404"}
_REDIRECT_CODES = {"PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}


class S3Target(Target):
    default_timeout: ClassVar[float] = 15.0
    warm_imports: ClassVar[tuple[str, ...]] = ("botocore.session", "botocore.config", "app.checks.s3:parse_models")

    kind: Literal["s3"]
    bucket: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")]
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$")] = "us-east-1"
    endpoint_url: ConfiguredUrl | None = None  # an S3-compatible store (MinIO, Ceph ...); default: AWS for the region
    access_key_id: Annotated[str, StringConstraints(pattern=r"^\S{1,128}$")] | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    ca_file: FilePath | None = None  # PEM bundle to trust instead of the system store
    verify: bool = True

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. https://minio.example.com:9000")
        if parts.username or parts.password:
            raise ValueError("must not hold credentials; use access_key_id and secret_access_key")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be the service's root URL (scheme, host and port only)")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> S3Target:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "access_key_id and secret_access_key go together; leave both out to use the pod's AWS "
                "credential chain (IRSA, environment, instance role)"
            )
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file is unused with verify: false; keep verify and give the CA instead")
        if self.endpoint_url is not None and self.endpoint_url.startswith("http://") and self.ca_file is not None:
            raise ValueError("ca_file needs an https:// endpoint_url")
        return self

    def check(self, probe: Probe) -> None:
        _quiet_botocore_debug()
        session = self._session(probe)
        url = urlsplit(self._request_url(session))
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
        probe.facts["endpoint"] = f"{url.scheme}://{url.netloc}"
        probe.facts["addressing"] = "virtual" if host.startswith(self.bucket + ".") else "path"
        try:
            addresses = resolve(probe, host, port)
        except CheckFailed as failure:
            if probe.facts["addressing"] == "virtual" and self.endpoint_url:
                failure.remediation = (
                    f"requests go to the bucket's own host name {host} (virtual-hosted style): set "
                    f"addressing_style: path, as most S3-compatible stores need, or add a wildcard DNS record"
                )
            raise
        sock = connect(probe, host, port, addresses)
        try:
            if url.scheme == "https":
                self._tls(probe, sock, host)
        finally:
            sock.close()
        self._auth(probe, session)
        self._bucket(probe, session)
        self._round_trip(probe, session)

    def _session(self, probe: Probe) -> Session:
        import botocore.session
        from botocore.config import Config

        session = botocore.session.Session()
        # inherited by the clients botocore creates on its own, such as STS for a web identity (IRSA), which would
        # otherwise wait 60 s per read and try 5 times
        remaining = probe.remaining()
        session.set_default_client_config(
            Config(connect_timeout=remaining, read_timeout=remaining, retries={"total_max_attempts": 1})
        )
        session.register_component("data_loader", _shared_loader())
        if self.access_key_id and self.secret_access_key:
            token = self.session_token.get_secret_value() if self.session_token else None
            session.set_credentials(self.access_key_id, self.secret_access_key.get_secret_value(), token)
        return session

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
    def _client(self, session: Session, timeout: float) -> Iterator[Any]:
        """A client whose every socket gives up after `timeout`, that never retries on its own; closed after use.

        botocore fixes timeouts per client, so each step makes its own with the time then left.
        """
        from botocore.config import Config

        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": self.addressing_style},
        )
        verify: bool | str = str(self.ca_file) if self.ca_file else self.verify
        client = session.create_client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=config, verify=verify
        )
        with contextlib.closing(client):
            yield client

    def _tls(self, probe: Probe, sock: Any, host: str) -> None:
        with probe.step("tls", Stage.TLS):
            context = client_context(self.ca_file, verify=self.verify)
            version, _ = handshake(sock, host, context, probe.remaining())
            probe.note(version if self.verify else f"{version}, certificate not verified")
            probe.facts["tls_version"] = version
        if not self.verify:
            probe.warn(
                Stage.TLS,
                "the endpoint's certificate is not verified (verify: false)",
                "give the CA that signed the endpoint's certificate as ca_file and remove verify: false",
            )

    def _auth(self, probe: Probe, session: Session) -> None:
        """Credentials the server accepts: any answer but a credential error proves them."""
        with probe.step("auth", Stage.AUTH):
            try:  # resolved first, so that a failure of the chain's own requests (STS for IRSA) is named as such
                credentials = session.get_credentials()
                if credentials is not None:
                    credentials.get_frozen_credentials()
            except Exception as error:
                raise _chain_failure(error) from None
            try:
                with self._client(session, probe.remaining()) as client:
                    client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                probe.note("credentials accepted; listing allowed")
            except Exception as error:
                failure = self._failure(error, probe, "ListBucket")
                if failure.stage in (Stage.CONNECT, Stage.TLS, Stage.AUTH):
                    raise failure from None
                probe.note(f"credentials accepted ({_code(error)})")
            chain = None if self.access_key_id else getattr(credentials, "method", None)
            probe.facts["credentials"] = "explicit" if self.access_key_id else chain or "unknown"

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
                if region != self.region:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"bucket {self.bucket} is in region {region}, not {self.region}",
                        f"set region: {region} in this target (and in the platform's S3 settings)",
                    )
            probe.note(f"{self.bucket} in {region or 'an unreported region'}")

    def _round_trip(self, probe: Probe, session: Session) -> None:
        """Put, get, compare and delete a uniquely named probe object; customer objects are never touched."""
        key = f"{PROBE_PREFIX}probe-{secrets.token_hex(8)}"
        payload = secrets.token_bytes(PROBE_BYTES)
        probe.facts["probe_key"] = key
        stored = True  # from before the put: one whose answer is lost may still have stored the object
        try:
            with probe.step("write", Stage.PERMISSION):
                start = time.perf_counter()
                with self._classified(probe, "PutObject", key), self._client(session, probe.remaining()) as client:
                    client.put_object(Bucket=self.bucket, Key=key, Body=payload)
                _throughput(probe, "upload", time.perf_counter() - start)
            with probe.step("read", Stage.PERMISSION):
                start = time.perf_counter()
                with self._classified(probe, "GetObject", key), self._client(session, probe.remaining()) as client:
                    body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                _throughput(probe, "download", time.perf_counter() - start)
                if body != payload:
                    raise CheckFailed(
                        Stage.OPERATION,
                        f"the object read back differs from the {PROBE_BYTES} bytes written",
                        "check for a proxy or gateway that rewrites objects, or server-side transformations",
                    )
            with probe.step("delete", Stage.PERMISSION):
                with self._classified(probe, "DeleteObject", key), self._client(session, probe.remaining()) as client:
                    client.delete_object(Bucket=self.bucket, Key=key)
                stored = False
        finally:
            if stored:  # a step failed: remove the probe object if the server lets us (a missing key is no error)
                grace = max(probe.remaining(), CLEAN_UP_GRACE)
                # the step's own failure is what gets reported
                with contextlib.suppress(Exception), self._client(session, grace) as client:
                    client.delete_object(Bucket=self.bucket, Key=key)

    @contextlib.contextmanager
    def _classified(self, probe: Probe, action: str, key: str) -> Iterator[None]:
        """The request inside either succeeds or ends the step with a classified failure."""
        try:
            yield
        except Exception as error:
            failure = self._failure(error, probe, action, key)
            if action == "DeleteObject" and failure.stage == Stage.PERMISSION:
                failure.cause += f"; the probe object {key} is left in the bucket"
            raise failure from None

    def _failure(self, error: Exception, probe: Probe, action: str, key: str | None = None) -> CheckFailed:
        """One botocore error as a stage, a cause and a remediation, by exception type and S3 error code."""
        from botocore import exceptions

        stage = probe.stage
        if isinstance(error, exceptions.NoCredentialsError):
            return CheckFailed(
                Stage.AUTH,
                "no AWS credentials: none are configured and the pod's credential chain found none",
                "set access_key_id and secret_access_key, or give the pod a role: with IRSA, annotate its "
                "ServiceAccount with eks.amazonaws.com/role-arn",
            )
        if isinstance(error, exceptions.ConnectTimeoutError):
            return CheckFailed(
                Stage.CONNECT,
                "no answer from the endpoint before the timeout",
                "packets are being dropped: check firewalls, security groups and NetworkPolicy egress",
            )
        if isinstance(error, exceptions.ReadTimeoutError):
            return CheckFailed(
                stage,
                f"{action} got no answer before the timeout",
                "the endpoint accepted the request but did not answer in time: check its load and health",
            )
        if isinstance(error, exceptions.SSLError):
            host = urlsplit(str(probe.facts.get("endpoint", ""))).hostname or ""
            return tls_failure(ssl_error_in(error) or OSError(str(error)), host)
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
        if code in _CREDENTIAL_CODES:
            cause, remediation = _CREDENTIAL_CODES[code]
            return CheckFailed(Stage.AUTH, cause.format(key_id=self.access_key_id or "(from the chain)"), remediation)
        if code in _DENIED_CODES:
            resource = f"arn:aws:s3:::{self.bucket}" + ("/*" if key else "")
            return CheckFailed(
                Stage.PERMISSION,
                f"s3:{action} denied on {self.bucket}" + (f"/{key}" if key else "") + f" ({code})",
                f"grant s3:{action} on {resource} to the identity the pod uses (IAM policy, bucket policy "
                "or the store's user policy), and check the bucket belongs to your account",
            )
        if code in _MISSING_BUCKET_CODES:
            return CheckFailed(
                Stage.OPERATION,
                f"bucket {self.bucket} does not exist at {probe.facts.get('endpoint', 'the endpoint')}",
                "create the bucket (the platform does not create it) or correct bucket, region and endpoint_url",
            )
        if code in _REDIRECT_CODES:
            region = _bucket_region(error.response) or error.response.get("Error", {}).get("Region")
            where = region or "the bucket's region"
            return CheckFailed(
                Stage.OPERATION,
                f"bucket {self.bucket} is not in region {self.region}" + (f" but in {region}" if region else ""),
                f"set region: {where} in this target (and the platform's S3 settings)",
            )
        return CheckFailed(
            Stage.OPERATION,
            f"{action} failed: {code} {message}".strip(),
            "look the error code up in the S3 error reference and check the endpoint's log",
        )


@functools.cache
def _shared_loader() -> Loader:
    """botocore's JSON service models, parsed once: a fresh session would spend ~0.2 s of CPU on them per check."""
    from botocore.loaders import create_loader

    return create_loader()


def parse_models() -> None:
    """Parse S3's model and endpoint rules into the shared loader before the first run (no request is sent)."""
    import botocore.session

    session = botocore.session.Session()
    session.register_component("data_loader", _shared_loader())
    keys = {"aws_access_key_id": "warm-up", "aws_secret_access_key": "warm-up"}  # never the credential chain
    session.create_client("s3", region_name="us-east-1", **keys).close()


def _quiet_botocore_debug() -> None:
    """botocore's DEBUG records hold signed request headers, session tokens included: never let them through."""
    logger = logging.getLogger("botocore")
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)


def _chain_failure(error: Exception) -> CheckFailed:
    """The AWS credential chain itself failed: a partial configuration, a role it may not assume, STS unreachable."""
    return CheckFailed(
        Stage.AUTH,
        f"the pod's AWS credential chain failed: {clean_remote_text(str(error))}",
        "check the role the pod assumes (IRSA: the ServiceAccount annotation and the role's trust policy) and that "
        "the pod may reach STS (sts.<region>.amazonaws.com, or an STS VPC endpoint)",
    )


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(error).__name__))


def _bucket_region(response: Any) -> str | None:
    headers = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region")
    return str(region) if region else None


def _throughput(probe: Probe, direction: str, seconds: float) -> None:
    mib_per_s = round(PROBE_BYTES / (1024 * 1024) / max(seconds, 1e-6), 2)
    probe.note(f"{PROBE_BYTES // 1024} KiB in {seconds * 1000:.1f} ms, {mib_per_s} MiB/s")
    probe.facts[f"{direction}_ms"] = round(seconds * 1000, 2)
    probe.facts[f"{direction}_mib_s"] = mib_per_s
