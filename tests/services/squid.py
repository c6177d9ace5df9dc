"""A real TLS-inspecting forward proxy for the tests: Debian's squid-openssl (squid 5) on 127.0.0.1, bumping every
CONNECT the way corporate egress proxies inspect TLS.

`started(trusting=[ca_file, ...])` starts one squid on a free port and yields an `InspectingProxy`. For each
CONNECT it reads the client's hello, shakes hands with the destination (which must verify against the CA files
given, and nothing else: no system store), then answers the client with a copy of the destination's certificate
that squid forges and signs with its own inspection CA (`security_file_certgen`), and relays the decrypted
requests. The inspection CA is made for each proxy: `ca_file` is its root, the one the platform must trust.

Start one per test module, trusting the CA of the servers the module sends through it: OpenSSL caches the first
root of a given name it loads, so a CA added while squid runs would not replace one of the same name.

Destinations must be named `localhost`, not 127.0.0.1: squid 5 does not match IP addresses in the
subjectAltName of the destination's certificate, so it refuses to bump such a tunnel. Squid resolves names from
/etc/hosts only (its DNS client is pointed at 127.0.0.1), and has no peers, ICP, HTCP or pinger: nothing it does
leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.certs import Certificates, ServerCert
from tests.servers import free_port
from tests.services import unavailable

SQUID = Path("/usr/sbin/squid")
CERTGEN = Path("/usr/lib/squid/security_file_certgen")
INSPECTION = "Corp Inspection"  # the organisation in the inspection CA's names
USER = "proxy"  # squid started as root runs as this user (Debian's own)
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class InspectingProxy:
    url: str  # http://127.0.0.1:P, no credentials
    ca_file: Path  # the inspection root CA: what clients must trust to accept the forged certificates
    issuer: str  # the issuer of every forged certificate, as the checks name it


def install() -> None:
    """squid-openssl from Debian (.ci/run installs it with the other packages)."""
    if not SQUID.exists():
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "squid-openssl"], check=True)


@contextmanager
def started(trusting: Sequence[Path | str]) -> Iterator[InspectingProxy]:
    """One bumping squid whose destinations must verify against the CA files in `trusting`; stopped afterwards."""
    if not SQUID.exists() or not CERTGEN.exists():
        unavailable("squid", f"{SQUID} or {CERTGEN} is missing (apt-get install squid-openssl)")
    # not under pytest's temporary directory: that is private to root, and squid reads and writes as USER
    workdir = Path(tempfile.mkdtemp(prefix="testpod-squid-"))
    workdir.chmod(0o755)
    try:
        inspection = Certificates(workdir / "inspection", organisation=INSPECTION)
        port = _configure(workdir, inspection.signing("signing"), trusting)
        log = workdir / "squid.out"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(SQUID), "-N", "-f", str(workdir / "squid.conf")],
                cwd=workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_until_listening(port, process, workdir)
            yield InspectingProxy(f"http://127.0.0.1:{port}", inspection.ca_file, f"CN={INSPECTION} Intermediate CA")
        finally:
            process.terminate()  # with shutdown_lifetime 0, squid exits in about 2 s (its shutdown runs in 1 s ticks)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _configure(workdir: Path, signing: ServerCert, trusting: Sequence[Path | str]) -> int:
    """Write squid.conf, the trusted CAs and the certificate database into workdir; the port squid will use."""
    trusted = workdir / "destinations-ca.pem"
    trusted.write_bytes(b"".join(Path(ca_file).read_bytes() for ca_file in trusting))
    database = workdir / "ssl_db"
    subprocess.run([str(CERTGEN), "-c", "-s", str(database), "-M", "4MB"], check=True, capture_output=True)
    port = free_port()
    lines = [
        # bump: peek at the client's hello, stare at the server's certificate (to mimic it), then bump
        f"http_port 127.0.0.1:{port} ssl-bump tls-cert={signing.cert_file} tls-key={signing.key_file} "
        "generate-host-certificates=on dynamic_cert_mem_cache_size=1MB",
        f"sslcrtd_program {CERTGEN} -s {database} -M 4MB",
        "sslcrtd_children 2 startup=1 idle=1",
        "acl step1 at_step SslBump1",
        "acl step2 at_step SslBump2",
        "ssl_bump peek step1",
        "ssl_bump stare step2",
        "ssl_bump bump all",
        f"tls_outgoing_options cafile={trusted} default-ca=off",
        "http_access allow localhost",
        "http_access deny all",
        # nothing leaves the machine: names from /etc/hosts, no peers or neighbour protocols
        "dns_nameservers 127.0.0.1",
        "icp_port 0",
        "htcp_port 0",
        "pinger_enable off",
        "netdb_filename none",
        "visible_hostname inspection.test",
        # everything in workdir, nothing cached
        f"pid_filename {workdir / 'squid.pid'}",
        f"cache_log {workdir / 'cache.log'}",
        f"access_log stdio:{workdir / 'access.log'}",
        "cache_store_log none",
        "cache deny all",
        "cache_mem 8 MB",
        f"coredump_dir {workdir}",
        "shutdown_lifetime 0 seconds",
    ]
    if os.geteuid() == 0:
        lines.append(f"cache_effective_user {USER}")
    (workdir / "squid.conf").write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:
        shutil.chown(workdir, USER)
        for path in workdir.rglob("*"):
            shutil.chown(path, USER)
    return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], workdir: Path) -> None:
    """Until squid accepts connections: it listens only once its configuration and helpers are up."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    logs = "".join(
        (workdir / name).read_text(errors="replace")[-1500:]
        for name in ("squid.out", "cache.log")
        if (workdir / name).exists()
    )
    unavailable("squid", f"squid did not listen on 127.0.0.1:{port} within {START_TIMEOUT:g} s:\n{logs}")
