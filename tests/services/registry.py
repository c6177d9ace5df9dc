"""A real OCI registry for the tests: CNCF distribution (`registry`, built from the Go module proxy) on 127.0.0.1.

The session fixture `oci_registry` starts two over one storage directory:
- `basic_url`: htpasswd (Basic) auth, user USER / PASSWORD;
- `token_url`: the bearer token flow, with a token server written here (ES256 JWTs with an x5c header, the
  registry trusting their certificate) that grants pull on every repository but those under `private/`.
It seeds `airia/api:1.0` (one linux/amd64 manifest), `airia/api:multi` (an index of linux/amd64 and
linux/arm64/v8) and `private/secret:1.0`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.checks.http_server import HttpServer, Reply, Request
from tests.servers import free_port
from tests.services import unavailable

with warnings.catch_warnings():  # crypt (deprecated, in 3.11 and 3.12) makes htpasswd's bcrypt hashes here
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

VERSION = "v3.1.2"
MODULE = f"github.com/distribution/distribution/v3/cmd/registry@{VERSION}"
USER, PASSWORD = "puller", "r3gistry-s3cret"
SERVICE, ISSUER = "test-registry", "test-token-issuer"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class OciRegistry:
    basic_url: str
    token_url: str
    digests: dict[str, str]  # "airia/api:1.0" -> sha256:...


def binary() -> Path:
    gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(gopath) / "bin" / "registry"


def install() -> None:
    """distribution's registry at VERSION (a CGO-free build of about two minutes, cached by Go afterwards)."""
    path = binary()
    if path.exists():
        built = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False).stdout
        if VERSION in built:
            return
    environment = os.environ | {"CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
    subprocess.run(["go", "install", MODULE], check=True, env=environment)


def htpasswd_line(user: str, password: str) -> str:
    """An htpasswd entry with the bcrypt hash the registry's htpasswd auth accepts."""
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"


# --- the token server ---------------------------------------------------------------------------------------------


class TokenServer:
    """Issues registry tokens to USER: pull on any repository asked for, except those under private/."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = directory / "token-signer.pem"
        self.cert_file.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self.server = HttpServer(self._answer)
        self.realm = f"{self.server.url}/token"

    def _answer(self, request: Request) -> Reply:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Reply(401, b'{"details": "incorrect username or password"}')
        query = dict(part.split("=", 1) for part in request.path.partition("?")[2].split("&") if "=" in part)
        scope = urllib.request.unquote(query.get("scope", ""))
        access = []
        if scope.startswith("repository:"):
            _, repository, _actions = scope.split(":")
            if not repository.startswith("private/"):
                access.append({"type": "repository", "name": repository, "actions": ["pull"]})
        return Reply(200, json.dumps({"token": self._jwt(access)}).encode())

    def _jwt(self, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"alg": "ES256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- running registries -------------------------------------------------------------------------------------------


def _start(directory: Path, name: str, storage: Path, auth: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = directory / f"{name}.yml"
    document = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": auth,
    }
    config.write_text(json.dumps(document))  # JSON is YAML
    log = (directory / f"{name}.log").open("wb")
    process = subprocess.Popen([str(binary()), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/v2/", timeout=1)
        except urllib.error.HTTPError:
            return process, url  # 401: up, and asking for credentials
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
        else:
            return process, url
    process.kill()
    raise RuntimeError(f"registry {name} did not start: {(directory / f'{name}.log').read_text()[-800:]}")


def _push(url: str, repository: str, reference: str, manifest: dict[str, Any], blobs: list[bytes]) -> str:
    """Upload the blobs and the manifest with USER's Basic credentials; the manifest's digest."""
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for blob in blobs:
        start = urllib.request.Request(f"{url}/v2/{repository}/blobs/uploads/", method="POST")
        start.add_header("Authorization", auth)
        with urllib.request.urlopen(start, timeout=10) as answer:
            location = answer.headers["Location"]
        target = location if location.startswith("http") else f"{url}{location}"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        separator = "&" if "?" in target else "?"
        put = urllib.request.Request(f"{target}{separator}digest={digest}", data=blob, method="PUT")
        put.add_header("Authorization", auth)
        put.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(put, timeout=10).close()
    body = json.dumps(manifest).encode()
    request = urllib.request.Request(f"{url}/v2/{repository}/manifests/{reference}", data=body, method="PUT")
    request.add_header("Authorization", auth)
    request.add_header("Content-Type", manifest["mediaType"])
    urllib.request.urlopen(request, timeout=10).close()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _image(url: str, repository: str, reference: str, architecture: str, variant: str = "") -> tuple[str, int]:
    platform = {"os": "linux", "architecture": architecture} | ({"variant": variant} if variant else {})
    config = json.dumps({"architecture": architecture, "os": "linux", "rootfs": {"type": "layers"}}).encode()
    layer = f"layer for {repository} {architecture}".encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                "size": len(layer),
            }
        ],
        "annotations": {"platform": json.dumps(platform)},
    }
    digest = _push(url, repository, reference, manifest, [config, layer])
    return digest, len(json.dumps(manifest).encode())


def _seed(url: str) -> dict[str, str]:
    digests = {}
    digests["airia/api:1.0"], _ = _image(url, "airia/api", "1.0", "amd64")
    amd64, amd64_size = _image(url, "airia/api", "amd64", "amd64")
    arm64, arm64_size = _image(url, "airia/api", "arm64", "arm64", "v8")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": amd64,
                "size": amd64_size,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": arm64,
                "size": arm64_size,
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
        ],
    }
    digests["airia/api:multi"] = _push(url, "airia/api", "multi", index, [])
    digests["private/secret:1.0"], _ = _image(url, "private/secret", "1.0", "amd64")
    return digests


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[OciRegistry]:
    if not binary().exists():
        unavailable("registry", f"not installed ({MODULE}): python -m tests.services install registry")
    directory = Path(tempfile.mkdtemp(prefix="registry-"))
    storage = directory / "storage"
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(htpasswd_line(USER, PASSWORD))
    tokens = TokenServer(directory)
    started: list[subprocess.Popen[bytes]] = []
    try:
        basic, basic_url = _start(directory, "basic", storage, {"htpasswd": {"realm": "test", "path": str(htpasswd)}})
        started.append(basic)
        digests = _seed(basic_url)
        token_auth = {
            "token": {
                "realm": tokens.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(tokens.cert_file),
            }
        }
        token, token_url = _start(directory, "token", storage, token_auth)
        started.append(token)
    except (RuntimeError, OSError) as error:
        for process in started:
            process.kill()
        tokens.server.close()
        unavailable("registry", str(error))
    try:
        yield OciRegistry(basic_url=basic_url, token_url=token_url, digests=digests)
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=10)
        tokens.server.close()
        shutil.rmtree(directory, ignore_errors=True)
