"""Certificates for TLS tests, generated on the fly and written as PEM files.

    certs = Certificates(tmp_path)          # a root CA (certs.ca_file: trust this) and an intermediate CA
    certs.leaf("ok")                        # localhost, 127.0.0.1, ::1; the server sends leaf + intermediate
    certs.leaf("bare", chain=False)         # the server sends only its leaf (a missing intermediate)
    certs.leaf("old", days=(-30, -1))       # expired; (1, 30) is not yet valid; (-1, 5) expires in 5 days
    certs.leaf("other", hosts=["elsewhere.test"])
    certs.self_signed("self")               # a leaf that signs itself
    certs.untrusted("rogue")                # a chain under a root nobody trusts; the server sends that root too
    certs.signing("ca")                     # the intermediate CA and its key, for a server that issues certificates

Each returns a ServerCert: `cert_file` (what the server presents, leaf first) and `key_file` (mode 0600).
Keys are EC P-256, so a whole set is generated in milliseconds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerCert:
    cert_file: Path  # the leaf followed by the chain the server sends
    key_file: Path
    certificate: x509.Certificate  # the leaf


@dataclass(frozen=True)
class _Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


class Certificates:
    """A root CA and an intermediate in `directory`, and leaf certificates issued on demand."""

    def __init__(self, directory: Path, organisation: str = "Test") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.root = _authority(f"{organisation} Root CA", issuer=None)
        self.intermediate = _authority(f"{organisation} Intermediate CA", issuer=self.root)
        self.ca_file = self._write_pem("ca.pem", [self.root.certificate])

    def leaf(
        self,
        name: str,
        *,
        hosts: Sequence[str] = DEFAULT_HOSTS,
        days: tuple[int, int] = (-1, 365),
        chain: bool = True,
    ) -> ServerCert:
        """A server certificate from the intermediate, valid from `days[0]` to `days[1]` days from now."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _server_certificate(key, hosts, self.intermediate, days)
        sent = [certificate, self.intermediate.certificate] if chain else [certificate]
        return self._server_cert(name, sent, key)

    def signing(self, name: str) -> ServerCert:
        """The intermediate CA itself (followed by the root) and its key, for a server that issues certificates of
        its own, such as a TLS-inspecting proxy."""
        return self._server_cert(name, [self.intermediate.certificate, self.root.certificate], self.intermediate.key)

    def self_signed(self, name: str, *, hosts: Sequence[str] = DEFAULT_HOSTS) -> ServerCert:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _server_certificate(key, hosts, None, (-1, 365))
        return self._server_cert(name, [certificate], key)

    def untrusted(self, name: str, *, hosts: Sequence[str] = DEFAULT_HOSTS) -> ServerCert:
        """A full chain (leaf, intermediate, root) under a root CA that `ca_file` does not contain."""
        root = _authority("Rogue Root CA", issuer=None)
        intermediate = _authority("Rogue Intermediate CA", issuer=root)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _server_certificate(key, hosts, intermediate, (-1, 365))
        return self._server_cert(name, [certificate, intermediate.certificate, root.certificate], key)

    def _server_cert(self, name: str, sent: list[x509.Certificate], key: ec.EllipticCurvePrivateKey) -> ServerCert:
        key_file = self.directory / f"{name}.key"
        key_file.touch(mode=0o600)
        key_file.chmod(0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return ServerCert(self._write_pem(f"{name}.pem", sent), key_file, sent[0])

    def _write_pem(self, filename: str, certificates: list[x509.Certificate]) -> Path:
        path = self.directory / filename
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
        return path


def _authority(common_name: str, issuer: _Authority | None) -> _Authority:
    """A CA certificate: a self-signed root when `issuer` is None, else one signed by `issuer`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return _Authority(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def _server_certificate(
    key: ec.EllipticCurvePrivateKey, hosts: Sequence[str], issuer: _Authority | None, days: tuple[int, int]
) -> x509.Certificate:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())
