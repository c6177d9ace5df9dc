"""tls: the endpoint completes a handshake with a certificate the platform will trust, and it is not about to expire.

Failures are diagnosed by OpenSSL's verify code and reason code, never by message text. `tls_failure` does
that for every kind that speaks TLS (http, openai, the data stores), so one broken certificate reads the same
everywhere; `handshake_step` is the handshake of every kind that shakes hands before its SDK connects.
"""

from __future__ import annotations

import functools
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, FilePath

from app.checks import facts
from app.checks.base import CheckFailed, Host, Port, Probe, Scalar, Stage, Target
from app.checks.net import NO_ANSWER, connect, resolve
from app.sanitization import clean_remote_text

TlsVersion = Literal["TLSv1.2", "TLSv1.3"]
HANDSHAKE_STEP = "tls handshake"

_FULL_CHAIN = (
    "the server does not send its intermediate certificate (or the CA is not trusted): "
    "configure the full chain on the server or set ca_file"
)
_NO_COMMON_VERSION = (
    "the server and this client share no TLS version (this check offers {min_version} and newer)",
    "enable TLS 1.2 or 1.3 on the server; older versions are insecure and rejected by the platform",
)

# OpenSSL X509_V_ERR_* verify codes: (cause, remediation); {host} is the name the certificate must carry
_VERIFY_CODES: dict[int, tuple[str, str]] = {
    2: ("the issuer of a certificate in the chain is unknown (unable to get issuer certificate)", _FULL_CHAIN),
    7: ("a certificate's signature does not verify", "the chain is mixed up: reinstall the certificate and its chain"),
    9: (
        "the certificate is not valid yet",
        "check the certificate's start date and the clocks (NTP) of the server and of this node",
    ),
    10: (
        "the certificate (or one in its chain) has expired",
        "renew it and reload the server (with cert-manager: check the Certificate's status and its issuer)",
    ),
    18: (
        "the server presents a self-signed certificate",
        "use a certificate issued by your CA; if this self-signed one is intended, give it to the check as ca_file "
        "(and to the platform's trust store)",
    ),
    19: (
        "the chain ends in a root CA that is not trusted",
        "add that root CA to ca_file (and the platform's trust store), or use a certificate from a trusted CA",
    ),
    20: ("no trusted CA issued the certificate (unable to get local issuer certificate)", _FULL_CHAIN),
    21: ("the certificate's issuer is unknown (unable to verify the first certificate)", _FULL_CHAIN),
    23: ("the certificate has been revoked", "issue a new certificate and install it on the server"),
    24: ("a certificate in the chain is not allowed to act as a CA", "install the chain the CA issued, in order"),
    26: (
        "the certificate is not meant for TLS servers (extended key usage)",
        "issue a certificate with the serverAuth extended key usage",
    ),
    62: (
        "the certificate is not valid for {host}",
        "issue a certificate whose subject alternative names include {host}, "
        "or connect by (or set server_name to) a name it carries",
    ),
    64: (
        "the certificate is not valid for the IP address {host}",
        "add {host} to the certificate as an IP address SAN, or connect by a DNS name it carries",
    ),
    66: ("the certificate's key is too small", "issue a certificate with at least a 2048-bit RSA or a P-256 key"),
    67: ("a CA certificate's key is too small", "use a CA with at least a 2048-bit RSA or a P-256 key"),
    68: ("a certificate is signed with a weak digest (e.g. SHA-1)", "reissue the chain with SHA-256 signatures"),
}

# OpenSSL reason codes for handshakes that fail before (or apart from) certificate verification
_REASONS: dict[str, tuple[str, str]] = {
    "WRONG_VERSION_NUMBER": (
        "the port does not speak TLS (its answer is not a TLS record)",
        "check the port: this may be the plain-text (e.g. HTTP) one",
    ),
    "TLSV1_ALERT_PROTOCOL_VERSION": _NO_COMMON_VERSION,
    "UNSUPPORTED_PROTOCOL": _NO_COMMON_VERSION,
    "NO_PROTOCOLS_AVAILABLE": _NO_COMMON_VERSION,
    "SSLV3_ALERT_HANDSHAKE_FAILURE": (
        "the server aborted the handshake (no cipher in common, or it wants a client certificate)",
        "compare the server's TLS settings (ciphers, client certificate requirement) with what the platform offers",
    ),
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "the server requires a client certificate (mutual TLS)",
        "this check does not present client certificates: test this endpoint from a client that has one",
    ),
    "TLSV1_ALERT_UNRECOGNIZED_NAME": (
        "the server does not serve the name {host} (SNI)",
        "configure the server (or ingress) for {host}, or set server_name to a name it serves",
    ),
}


class TlsTarget(Target):
    default_timeout: ClassVar[float] = 10.0

    kind: Literal["tls"]
    host: Host
    port: Port = 443
    server_name: Host | None = None  # the name sent as SNI and checked against the certificate; default: host
    ca_file: FilePath | None = None  # PEM bundle to trust instead of the system store
    warn_days: Annotated[int, Field(ge=0, le=3650)] = 30
    min_version: TlsVersion = "TLSv1.2"

    def check(self, probe: Probe) -> None:
        name = self.server_name or self.host
        addresses = resolve(probe, self.host, self.port)
        with connect(probe, self.host, self.port, addresses) as raw:
            peer = raw.getpeername()[:2]
            with probe.step(HANDSHAKE_STEP, Stage.TLS):
                context = client_context(self.ca_file, self.min_version)
                raw.settimeout(probe.remaining())
                try:
                    with context.wrap_socket(raw, server_hostname=name) as tls:
                        version, cipher = tls.version() or "", tls.cipher()
                        der = tls.getpeercert(binary_form=True) or b""
                except OSError as error:
                    raise self._diagnosis(probe, error, peer, name) from error
                probe.note(f"{version}, {cipher[0] if cipher else 'no cipher'}")
        probe.facts.update({facts.TLS_VERSION: version, facts.TLS_CIPHER: cipher[0] if cipher else ""})
        probe.facts.update(certificate_facts(der))

        with probe.step("certificate expiry", Stage.TLS):
            not_after = datetime.fromisoformat(str(probe.facts[facts.NOT_AFTER]))
            left = not_after - datetime.now(UTC)
            probe.note(f"{left.days} days left, until {not_after:%Y-%m-%d}")
            if left <= timedelta(days=self.warn_days):
                probe.warn(
                    Stage.TLS,
                    f"the certificate expires in {left.days} days ({not_after:%Y-%m-%d %H:%M} UTC)",
                    "renew it now (with cert-manager: check why the Certificate was not renewed)",
                )

    def _diagnosis(self, probe: Probe, error: OSError, peer: tuple[str, int], name: str) -> CheckFailed:
        """tls_failure, plus what the certificate itself says when verification failed."""
        failure = tls_failure(error, name, self.min_version)
        if not isinstance(error, ssl.SSLCertVerificationError):
            return failure
        leaf = _unverified_leaf(probe, peer, name)
        if not leaf:
            return failure
        certificate = certificate_facts(leaf)
        probe.facts.update(certificate)
        return _with_evidence(failure, error.verify_code, certificate)


def client_context(
    ca_file: Path | None = None,
    min_version: TlsVersion = "TLSv1.2",
    *,
    verify: bool = True,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """What a careful client uses: the system trust store (or ca_file), hostname checks, min_version or newer.

    `verify=False` gives a context that accepts any certificate, for explicit opt-outs and for fetching a bad
    certificate to describe it; `check_hostname=False` verifies the chain but not the name (PostgreSQL's
    verify-ca). Contexts are shared between checks (loading a trust store costs ~25 ms of CPU while holding
    the GIL): treat the result as read-only.
    """
    if not verify:
        return _unverified_context()
    mtime = ca_file.stat().st_mtime if ca_file is not None and ca_file.exists() else None
    with _CONTEXT_LOCK:  # fifty checks starting together would otherwise all load the same store at once
        return _verified_context(str(ca_file) if ca_file else None, mtime, min_version, check_hostname)


_CONTEXT_LOCK = threading.Lock()


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.lru_cache(maxsize=32)
def _verified_context(
    ca_file: str | None, _mtime: float | None, min_version: TlsVersion, check_hostname: bool
) -> ssl.SSLContext:
    """Keyed by the CA file's modification time as well, so a rotated bundle is read again."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        raise CheckFailed(
            Stage.TLS,
            f"ca_file {ca_file} holds no usable PEM certificate ({type(error).__name__})",
            "mount the CA bundle in PEM format (-----BEGIN CERTIFICATE-----) at that path",
        ) from error
    context.minimum_version = ssl.TLSVersion[min_version.replace(".", "_")]
    context.check_hostname = check_hostname  # the chain is still verified (verify_mode stays CERT_REQUIRED)
    return context


def handshake_step(
    probe: Probe,
    sock: socket.socket,
    host: str,
    *,
    ca_file: Path | None = None,
    verify: bool = True,
    server_name: str | None = None,
) -> None:
    """The step "tls handshake" on a connected socket, which is closed afterwards; a failure is classified.

    The data-store kinds shake hands themselves before their SDK connects, because the SDKs lose the verify
    code. The certificate must be trusted by the system store (or ca_file) and name `server_name` (default:
    host); a kind's `tls_verify: false` (verify=False) accepts any certificate, with a warning.
    """
    name = server_name or host
    with probe.step(HANDSHAKE_STEP, Stage.TLS):
        context = client_context(ca_file, verify=verify)
        sock.settimeout(probe.remaining())
        try:
            with context.wrap_socket(sock, server_hostname=name) as tls:
                version, cipher = tls.version() or "", (tls.cipher() or ("",))[0]
        except OSError as error:
            raise tls_failure(error, name) from None
        probe.note(f"{version}, {cipher}, " + (f"verified as {name}" if verify else "NOT verified (tls_verify: false)"))
    probe.facts[facts.TLS_VERSION] = version
    probe.facts[facts.TLS_CIPHER] = cipher
    if not verify:
        probe.warn(
            Stage.TLS,
            f"the certificate of {name} is not verified (tls_verify: false)",
            "give the CA that signed it as ca_file and remove tls_verify: false",
        )


def tls_failure(error: OSError, host: str, min_version: TlsVersion = "TLSv1.2") -> CheckFailed:
    """A failed handshake as a tls-stage failure: by verify code, OpenSSL reason, or socket error."""
    if isinstance(error, ssl.SSLCertVerificationError):
        cause, remediation = _VERIFY_CODES.get(
            error.verify_code,
            (
                f"certificate verification failed: {error.verify_message}",
                "check the chain the server sends against the CA in ca_file (or the system trust store)",
            ),
        )
    elif isinstance(error, ssl.SSLError) and error.reason in _REASONS:
        cause, remediation = _REASONS[error.reason]
    elif isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError)):
        cause, remediation = (
            "the server closed the connection during the TLS handshake",
            "the server rejects this client (SNI name, client certificate, source IP) or does not speak TLS here: "
            "check its log",
        )
    elif isinstance(error, TimeoutError):
        cause, remediation = "no answer to the TLS handshake before the timeout", NO_ANSWER[Stage.TLS]
    else:
        reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
        cause, remediation = f"the TLS handshake failed ({reason})", "check the server's TLS configuration and log"
    values = {"host": host, "min_version": min_version}
    return CheckFailed(Stage.TLS, cause.format(**values), remediation.format(**values))


def certificate_facts(der: bytes) -> dict[str, Scalar]:
    """Subject, issuer, names and validity of a DER certificate, as displayable facts."""
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [
            *alternative.get_values_for_type(x509.DNSName),
            *map(str, alternative.get_values_for_type(x509.IPAddress)),
        ]
    except x509.ExtensionNotFound:
        names = []
    return {
        facts.SUBJECT: clean_remote_text(certificate.subject.rfc4514_string()),
        facts.ISSUER: clean_remote_text(certificate.issuer.rfc4514_string()),
        facts.NAMES: clean_remote_text(", ".join(names)),
        facts.NOT_BEFORE: certificate.not_valid_before_utc.isoformat(),
        facts.NOT_AFTER: certificate.not_valid_after_utc.isoformat(),
        facts.DAYS_TO_EXPIRY: (certificate.not_valid_after_utc - datetime.now(UTC)).days,
    }


def _unverified_leaf(probe: Probe, peer: tuple[str, int], name: str) -> bytes:
    """The certificate the server presents, fetched again without verifying it, to show what is wrong with it."""
    context = client_context(verify=False)
    try:
        with (
            socket.create_connection(peer, timeout=probe.remaining()) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            return tls.getpeercert(binary_form=True) or b""
    except OSError:
        return b""


def _with_evidence(failure: CheckFailed, code: int, certificate: dict[str, Scalar]) -> CheckFailed:
    """The failure, with the part of the certificate that proves it appended to the cause."""
    if code in (9, 10):
        valid = f"{_minute(certificate[facts.NOT_BEFORE])} to {_minute(certificate[facts.NOT_AFTER])}"
        evidence = f"the server's certificate is valid from {valid}"
    elif code in (62, 64):
        evidence = f"it names {certificate[facts.NAMES] or 'no subject alternative names'}"
    elif code in (2, 18, 19, 20, 21):
        evidence = f"issued by {certificate[facts.ISSUER]}"
    else:
        return failure
    return CheckFailed(failure.stage, f"{failure.cause}; {evidence}", failure.remediation)


def _minute(iso: Scalar) -> str:
    return f"{datetime.fromisoformat(str(iso)):%Y-%m-%d %H:%M} UTC"
