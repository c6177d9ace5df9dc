"""The cluster's certificates and kubeconfigs: one CA, a serving certificate for the API server and the kubelet,
a client certificate per component, the service-account signing key. EC P-256, generated in milliseconds."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cluster.layout import (
    APISERVER_PORT,
    CLUSTER_DOMAIN,
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    NODE_NAME,
)

# kubeconfig name -> (common name, organisation)
CLIENTS = {
    "admin": ("airia-test-pod-admin", "system:masters"),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kube-proxy": ("system:kube-proxy", None),
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
}
KUBECONFIGS = ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet")


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _issue(
    directory: Path,
    stem: str,
    subject: x509.Name,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server_names: list[str] | None = None,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server_names is None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    else:
        alternatives: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    certificate = builder.sign(ca[1], hashes.SHA256())
    (directory / f"{stem}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key, directory / f"{stem}.key")


def create(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    ca_name = _name("airia-test-pod-cluster-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, directory / "ca.key")
    ca = (ca_cert, ca_key)
    service_names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
    ]
    _issue(
        directory,
        "apiserver",
        _name("kube-apiserver"),
        ca,
        server_names=[*service_names, "localhost", "127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP],
    )
    _issue(directory, "kubelet-server", _name(NODE_NAME), ca, server_names=[NODE_NAME, NODE_IP, "127.0.0.1"])
    for stem, (common_name, organisation) in CLIENTS.items():
        _issue(directory, stem, _name(common_name, organisation), ca)
    service_account = ec.generate_private_key(ec.SECP256R1())
    _write_key(service_account, directory / "service-account.key")
    (directory / "service-account.pub").write_bytes(
        service_account.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for stem in KUBECONFIGS:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "airia-test-pod",
                    "cluster": {
                        "certificate-authority": str(directory / "ca.crt"),
                        "server": f"https://{NODE_IP}:{APISERVER_PORT}",
                    },
                }
            ],
            "users": [
                {
                    "name": stem,
                    "user": {
                        "client-certificate": str(directory / f"{stem}.crt"),
                        "client-key": str(directory / f"{stem}.key"),
                    },
                }
            ],
            "contexts": [{"name": "airia-test-pod", "context": {"cluster": "airia-test-pod", "user": stem}}],
            "current-context": "airia-test-pod",
        }
        path = directory / f"{stem}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
