"""Azurite (the Azure Storage emulator) from npm, its blob service started on 127.0.0.1 for the integration tests.

`install()` puts `azurite@3.35.0` (the last release that supports Node 20) into
`$XDG_CACHE_HOME/airia-test-pod/azurite-3.35.0` (default `~/.cache/...`) with `npm install --prefix`, so nothing
is installed globally; once there, a second run does nothing.

The session fixture `azurite` starts `azurite-blob` in memory on a free port with `--skipApiVersionCheck` (the
SDK sends a service version newer than Azurite 3.35 knows) and yields an `Azurite` for the well-known development
account devstoreaccount1. `azurite_https` starts a second one with a generated certificate for localhost /
127.0.0.1 and gives its CA file. Both are stopped at the end of the session.

Environment: `TESTPOD_TEST_AZURITE_PORT` selects an Azurite that already listens on 127.0.0.1:PORT (e.g. from
docker-compose.test.yml, started with --skipApiVersionCheck); `azurite_https` is then skipped, saying why, unless
this module's own Azurite is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.certs import Certificates
from tests.servers import free_port
from tests.services import unavailable

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

VERSION = "3.35.0"
ACCOUNT = "devstoreaccount1"
# Azurite's documented development key: public, the same in every installation
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Azurite:
    port: int
    scheme: str = "http"
    ca_file: str | None = None  # https only: the CA that signed its certificate
    host: str = "127.0.0.1"  # or localhost, which its certificate names too

    @property
    def endpoint(self) -> str:
        """The account's blob endpoint, path style as emulators use it."""
        return f"{self.scheme}://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def service(self) -> BlobServiceClient:
        """An SDK client as the account owner, for arranging and inspecting test data."""
        from azure.storage.blob import BlobServiceClient

        verify = self.ca_file or True
        credential = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
        return BlobServiceClient(self.endpoint, credential=credential, connection_verify=verify, retry_total=0)


def install_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "airia-test-pod" / f"azurite-{VERSION}"


def executable() -> Path:
    return install_dir() / "node_modules" / ".bin" / "azurite-blob"


def install() -> None:
    """Azurite from npm into the cache directory (needs Node.js 20 and npm)."""
    if executable().exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install Azurite: apt-get install nodejs npm")
    command = [npm, "install", "--prefix", str(install_dir()), "--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run([*command, f"azurite@{VERSION}"], check=True)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    external = os.environ.get("TESTPOD_TEST_AZURITE_PORT")
    if external:
        server = Azurite(int(external))
        try:
            _wait_until_ready(server, None)
        except RuntimeError as error:
            unavailable("azurite", f"nothing answers on 127.0.0.1:{external} (TESTPOD_TEST_AZURITE_PORT): {error}")
        yield server
        return
    yield from local_server(https=False)


@pytest.fixture(scope="session")
def azurite_https() -> Iterator[Azurite]:
    if os.environ.get("TESTPOD_TEST_AZURITE_PORT") and not executable().exists():
        pytest.skip("the external Azurite serves plain HTTP and this module's Azurite is not installed for HTTPS")
    yield from local_server(https=True)


def local_server(*, https: bool) -> Iterator[Azurite]:
    """Start one azurite-blob in memory on a free port, yield it, and stop it when resumed."""
    if not executable().exists():
        unavailable("azurite", f"{executable()} is missing: run `python -m tests.services install azurite`")
    workdir = Path(tempfile.mkdtemp(prefix="testpod-azurite-"))
    port = free_port()
    command = [str(executable()), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    command += ["--inMemoryPersistence", "--disableTelemetry", "--silent", "--skipApiVersionCheck"]
    server = Azurite(port)
    if https:
        certificates = Certificates(workdir / "certs")
        leaf = certificates.leaf("azurite")
        command += ["--cert", str(leaf.cert_file), "--key", str(leaf.key_file)]
        server = Azurite(port, "https", str(certificates.ca_file))
    log = workdir / "azurite.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            _wait_until_ready(server, process)
        except RuntimeError as error:
            unavailable("azurite", f"{error}\n{log.read_text(errors='replace')[-2000:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_ready(server: Azurite, process: subprocess.Popen[bytes] | None) -> None:
    """Until a real request as the account owner succeeds."""
    from azure.core.exceptions import AzureError

    client = server.service()
    started, last = time.monotonic(), ""
    while time.monotonic() - started < START_TIMEOUT:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with status {process.returncode} while starting")
        try:
            client.get_account_information(connection_timeout=1, read_timeout=2)
            return
        except AzureError as error:
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.2)
    raise RuntimeError(f"no answer within {START_TIMEOUT:g} s ({last})")
